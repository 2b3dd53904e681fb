"""Exact integer matrix products for the fast path (not a hardware unit: a kernel).

``exact_matmul(a, b_t)`` returns the exact int64 ``a @ b_t.T`` of integer operands through
the fastest backend proven exact on this host: torch's int8 ``_int_mm`` (self-tested once per
process), float32 BLAS on K-chunks short enough that every partial sum stays below 2**24,
or float64 BLAS below 2**53. See docs/performance.md.
"""

from __future__ import annotations

import numpy as np


def exact_matmul(
    a: np.ndarray,
    b_t: np.ndarray,
    a_range: tuple[int, int] | None = None,
    b_range: tuple[int, int] | None = None,
) -> np.ndarray:
    """Exact int64 ``a @ b_t.T`` for integer operands (a: (Q, K), b_t: (N, K)).

    Backends (environment variable ``HWSIM_MATMUL`` = auto | torch | onnxruntime | numpy |
    float64; see docs/performance.md), all returning the same integers:

    * torch: ``torch._int_mm`` on int8 operands (exact int32 sums, K cut into pieces of at
      most 131071); an operand spanning <= 256 values is shifted into int8 and the shift is
      corrected exactly in int64. Used only if torch is installed and a self-test proves it
      exact on this host (oneDNN without AVX512-VNNI saturates int16 pairs and fails it).
      ``auto`` uses it for products of >= 2**24 multiply-adds on hosts with AVX512-VNNI or
      AMX (elsewhere oneDNN's int8 product was ~30x slower than BLAS).
    * onnxruntime: ``MatMulInteger`` on uint8 operands with zero points (exact int32 sums,
      K <= 33,025; simulator/kernels_ort.py), after a self-test on this host. ``auto`` uses
      it (where torch is not used) for products of >= 2**24 multiply-adds whose operands
      span <= 256 values each and whose right operand is read-only (its session, holding
      the packed matrix, is kept with it): ~85 ms against ~140 ms in float32 BLAS for the
      bench's layer 1 on an AVX2 host.
    * numpy: float32 BLAS on K-chunks short enough that every partial sum of |products|
      stays below 2**24 (so exact whatever the summation order), chunks summed exactly.
    * float64: float64 BLAS on chunks whose partial sums stay below 2**53.

    The operands' (min, max) come from ``a_range`` / ``b_range`` when given (the caller
    guarantees every value lies inside: no scan), else from the dtype for int8/uint8, else
    from a scan. Raises OverflowError if a sum may leave int64.
    """
    a = np.asarray(a)
    b_t = np.asarray(b_t)
    if a.ndim != 2 or b_t.ndim != 2 or a.shape[1] != b_t.shape[1]:
        raise ValueError(f"exact_matmul: shapes {a.shape} and {b_t.shape} do not fit")
    q, k = a.shape
    n = b_t.shape[0]
    if q == 0 or n == 0 or k == 0:
        return np.zeros((q, n), dtype=np.int64)
    alo, ahi = _mm_int_bounds(a) if a_range is None else (int(a_range[0]), int(a_range[1]))
    blo, bhi = _mm_int_bounds(b_t) if b_range is None else (int(b_range[0]), int(b_range[1]))
    amax = max(-alo, ahi)
    bmax = max(-blo, bhi)
    if amax == 0 or bmax == 0:
        return np.zeros((q, n), dtype=np.int64)
    if k * amax * bmax >= 2**63:
        raise OverflowError("exact_matmul: operands too large, sums may not fit int64")
    backend = _mm_backend()
    fits8 = ahi - alo <= 255 and bhi - blo <= 255
    if backend == "torch" and not fits8:
        raise ValueError("HWSIM_MATMUL=torch: an operand spans more than 256 values (not int8)")
    if fits8 and (backend == "torch" or (backend == "auto" and q * n * k >= _MM_TORCH_MIN
                                         and _mm_torch_fast())):
        tfn = _mm_torch_fn(required=backend == "torch")
        if tfn is not None:
            return _mm_torch(tfn, a, alo, ahi, b_t, blo, bhi)
    if backend == "onnxruntime" or (backend == "auto" and fits8 and q * n * k >= ORT_MIN_PRODUCTS):
        out = ort_product(a, (alo, ahi), b_t, (blo, bhi), required=backend == "onnxruntime")
        if out is not None:
            return out
    if backend == "float64":
        return _mm_chunked(a, b_t, np.float64, amax * bmax, k * amax * bmax)
    return _mm_numpy(a, alo, ahi, b_t, bmax)


_MM_BACKENDS = ("auto", "torch", "onnxruntime", "numpy", "float64")
_MM_TORCH_MIN = 1 << 24  # multiply-adds below which "auto" stays with numpy (no torch import)
ORT_MIN_PRODUCTS = 1 << 24  # likewise for ONNX Runtime (a session per weight matrix, ~50 ms)
_MM_TORCH: dict[str, object] = {}  # self-test result, cached per process


def ort_product(a: np.ndarray, a_range: tuple[int, int], b_t: np.ndarray,
                b_range: tuple[int, int], cache: dict | None = None,
                required: bool = False, int32_ok: bool = False) -> np.ndarray | None:
    """Exact int64 a @ b_t.T through ONNX Runtime (simulator/kernels_ort.py) when it applies;
    None otherwise, or ValueError when ``required`` (HWSIM_MATMUL=onnxruntime: then a
    session is built even for a right operand that may change). ``int32_ok``: see
    kernels_ort.ort_matmul."""
    from . import kernels_ort

    out = kernels_ort.ort_matmul(a, a_range, b_t, b_range, cache, one_off=required,
                                 int32_ok=int32_ok)
    if out is None and required:
        why = kernels_ort.why_unavailable() or "an operand spans more than 256 values"
        raise ValueError(f"HWSIM_MATMUL=onnxruntime cannot compute this product: {why}")
    return out


def uses_ort() -> bool:
    """True when products that fit uint8 go through ONNX Runtime (HWSIM_MATMUL = auto or
    onnxruntime, and it is installed and proven exact here)."""
    if _mm_backend() not in ("auto", "onnxruntime"):
        return False
    from . import kernels_ort

    return kernels_ort.available()


def _mm_backend() -> str:
    """The exact_matmul backend named by HWSIM_MATMUL (default auto)."""
    import os

    name = os.environ.get("HWSIM_MATMUL", "auto").strip().lower() or "auto"
    name = "numpy" if name == "float32" else name
    if name not in _MM_BACKENDS:
        raise ValueError(f"HWSIM_MATMUL={name!r}: choose one of {', '.join(_MM_BACKENDS)}")
    return name


def _mm_torch_fast() -> bool:
    """True if torch's int8 ``_int_mm`` is worth using here (``auto`` only).

    oneDNN runs it fast with AVX512-VNNI (or AMX) int8 instructions; on an AVX2-only host it
    took 5.1 s for the 500 x 3136 x 6272 product that float32 BLAS does in 0.16 s, so
    ``auto`` then stays with numpy. Decided from the CPU flags in /proc/cpuinfo (no torch
    import); elsewhere from torch's CPU capability. ``HWSIM_MATMUL=torch`` still forces it.
    """
    if "fast" not in _MM_TORCH:
        fast = False
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                flags: set[str] = set()
                for line in fh:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
            fast = bool(flags & {"avx512_vnni", "amx_int8"})
        except OSError:
            import importlib.util

            if importlib.util.find_spec("torch") is not None:
                try:
                    import torch

                    cap = str(torch.backends.cpu.get_cpu_capability()).upper()
                    fast = cap.startswith("AVX512")
                except Exception:  # an old or unusual torch: do not rely on it
                    fast = False
        _MM_TORCH["fast"] = fast
    return bool(_MM_TORCH["fast"])


def _mm_int_bounds(x: np.ndarray) -> tuple[int, int]:
    """(min, max) of an integer-valued array (int8/uint8 from the dtype, without a scan)."""
    if x.dtype == np.int8:
        return -128, 127
    if x.dtype == np.uint8:
        return 0, 255
    if x.dtype.kind == "f" and not np.array_equal(x, np.trunc(x)):
        raise TypeError("exact_matmul: float operands must hold integers")
    if x.dtype.kind not in "iubf":
        raise TypeError(f"exact_matmul: operands must be integers, not {x.dtype}")
    return int(x.min()), int(x.max())


def _mm_to_int8(x: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, int]:
    """(x - c as int8, c) with the shift c that brings [lo, hi] (span <= 255) into int8.

    Computed modulo 256 in int8 (the cast keeps the low byte; the true x - c fits int8).
    """
    if x.dtype == np.int8:
        return x, 0
    c = 0 if (lo >= -128 and hi <= 127) else lo + 128
    x8 = x.astype(np.int8) if x.dtype.kind in "iub" else x.astype(np.int64).astype(np.int8)
    if c:
        x8 -= np.array(c % 256, dtype=np.uint8).view(np.int8)
    return x8, c


def _mm_torch_fn(required: bool = False) -> tuple | None:
    """(torch, torch._int_mm) if torch is installed and proven exact here, else None."""
    if "ok" not in _MM_TORCH:
        import importlib.util

        why = "torch is not installed"
        if importlib.util.find_spec("torch") is not None:
            try:
                import torch

                why = _mm_torch_self_test(torch, torch._int_mm)
            except Exception as exc:  # any failure only disables this backend
                why = f"torch._int_mm failed: {exc}"
            if not why:
                _MM_TORCH["fn"] = (torch, torch._int_mm)
        _MM_TORCH["ok"] = not why
        _MM_TORCH["why"] = why
    if not _MM_TORCH["ok"]:
        if required:
            raise RuntimeError(f"HWSIM_MATMUL=torch is unavailable: {_MM_TORCH['why']}")
        return None
    return _MM_TORCH["fn"]  # type: ignore[return-value]


def _mm_torch_self_test(torch: object, int_mm: object) -> str:
    """'' if int_mm equals the exact products on extreme and random int8 operands."""
    rng = np.random.default_rng(12345)
    cases = [
        (rng.integers(-128, 128, (m, k)), rng.integers(-128, 128, (n, k)))
        for m, k, n in ((1, 777, 5), (37, 300, 1), (33, 1024, 65), (130, 2048, 48))
    ]
    ext = np.array([-128, 127, -128, -128, 127, 127, -1, 0])
    rows = np.stack([np.resize(np.roll(ext, s), 4096) for s in range(8)])
    cases += [(rows, rows[::-1]), (np.full((3, 4096), -128), np.full((5, 4096), -128))]
    for x, y in cases:
        want = x.astype(np.float64) @ y.astype(np.float64).T
        tx = torch.from_numpy(np.ascontiguousarray(x, dtype=np.int8))  # type: ignore[attr-defined]
        ty = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int8))  # type: ignore[attr-defined]
        got = int_mm(tx, ty.t()).numpy()  # type: ignore[operator]
        if not np.array_equal(got.astype(np.float64), want):
            return "torch._int_mm is not exact on this host (e.g. oneDNN without AVX512-VNNI)"
    return ""


def _mm_torch(
    tfn: tuple, a: np.ndarray, alo: int, ahi: int, b_t: np.ndarray, blo: int, bhi: int
) -> np.ndarray:
    """a @ b_t.T via int8 torch._int_mm: a = a8 + c, b = b8 + d, shifts corrected in int64."""
    import warnings

    torch, int_mm = tfn
    a8, c = _mm_to_int8(a, alo, ahi)
    b8, d = _mm_to_int8(b_t, blo, bhi)
    q, k = a8.shape
    if c:  # a row of ones yields sum_k b8[n, k] from the same call
        a8 = np.concatenate([a8, np.ones((1, k), dtype=np.int8)], axis=0)
    step = ((1 << 31) - 1) // (128 * 128)  # int32 sums stay exact
    out: np.ndarray | None = None
    for k0 in range(0, k, step):
        with warnings.catch_warnings():  # read-only weights: _int_mm never writes its inputs
            warnings.simplefilter("ignore", UserWarning)
            ta = torch.from_numpy(np.ascontiguousarray(a8[:, k0 : k0 + step]))
            tb = torch.from_numpy(np.ascontiguousarray(b8[:, k0 : k0 + step]))
        part = int_mm(ta, tb.t()).numpy()
        out = part if out is None else np.add(out, part, dtype=np.int64)
    assert out is not None
    if not (c or d):
        return out if out.dtype == np.int64 else out.astype(np.int64)
    corr = np.zeros((1, out.shape[1]), dtype=np.int64)
    if c:
        corr += c * out[q].astype(np.int64) + k * c * d
    res = np.add(out[:q], corr, dtype=np.int64)
    if d:
        res += d * a8[:q].sum(axis=1, dtype=np.int64)[:, None]
    return res


def _mm_numpy(a: np.ndarray, alo: int, ahi: int, b_t: np.ndarray, bmax: int) -> np.ndarray:
    """Exact float32 BLAS in K-chunks; a is centred first when that allows longer chunks."""
    k = a.shape[1]
    c = (alo + ahi + 1) // 2 if ahi - alo <= 255 and max(-alo, ahi) > 128 else 0
    amax = max(c - alo, ahi - c, 1)
    if amax * bmax * 128 >= 1 << 24:  # float32 chunks would be too short: use float64
        raw = max(-alo, ahi) * bmax
        return _mm_chunked(a, b_t, np.float64, raw, k * raw)
    if not c:
        return _mm_chunked(a, b_t, np.float32, amax * bmax, k * amax * bmax)
    ac = np.empty((a.shape[0] + 1, k), dtype=np.float32)
    if max(-alo, ahi) < 1 << 24:  # a and a - c are exact in float32
        np.subtract(a, c, out=ac[:-1], dtype=np.float32)
    else:
        ac[:-1] = a.astype(np.int64) - c
    ac[-1] = 1.0  # this row yields sum_k b[n, k]
    out = _mm_chunked(ac, b_t, np.float32, amax * bmax, k * amax * bmax)
    res = out[:-1]
    res += c * out[-1][None, :]
    return res


_MM_F32_CACHE: dict[int, tuple[object, np.ndarray]] = {}  # id -> (weakref, float32 copy)
_MM_F32_CACHE_MAX = 8


def _mm_frozen(x: np.ndarray) -> bool:
    """True if x and every array it views are read-only (so it cannot change under us)."""
    node: object = x
    while isinstance(node, np.ndarray):
        if node.flags.writeable:
            return False
        node = node.base
    return node is None or isinstance(node, bytes)


def _mm_as_float(b: np.ndarray, dtype: type) -> np.ndarray:
    """b as ``dtype``; float32 copies of read-only int8/uint8 weight matrices are kept (weakly)."""
    if b.dtype == dtype:
        return b
    if (dtype != np.float32 or b.dtype not in (np.int8, np.uint8) or b.size < (1 << 16)
            or not _mm_frozen(b)):
        return b.astype(dtype)
    import weakref

    hit = _MM_F32_CACHE.get(id(b))
    if hit is not None and hit[0]() is b:  # type: ignore[operator]
        return hit[1]
    conv = b.astype(np.float32)
    conv.flags.writeable = False
    key = id(b)
    if len(_MM_F32_CACHE) >= _MM_F32_CACHE_MAX:
        _MM_F32_CACHE.pop(next(iter(_MM_F32_CACHE)))
    _MM_F32_CACHE[key] = (weakref.ref(b, lambda _r, d=_MM_F32_CACHE: d.pop(key, None)), conv)
    return conv


def _mm_chunked(
    a: np.ndarray, b_t: np.ndarray, dtype: type, prod_max: int, total_max: int
) -> np.ndarray:
    """Sum of ``dtype`` BLAS products over K-chunks; prod_max bounds one |product|."""
    k = a.shape[1]
    exact = (1 << 24) if dtype == np.float32 else (1 << 53)
    if prod_max >= exact:  # not even one product is exact in floats: int64 (no BLAS, slow)
        return a.astype(np.int64) @ b_t.astype(np.int64).T
    chunk = max(1, min(k, (exact - 1) // max(prod_max, 1)))
    af = a.astype(dtype, copy=False)
    if _mm_frozen(b_t) and b_t.dtype in (np.int8, np.uint8):
        b_t = _mm_as_float(b_t, dtype)
    if chunk >= k:
        return (af @ _mm_as_float(b_t, dtype).T).astype(np.int64)
    big = total_max >= 1 << 53  # the running sum must then be kept in int64
    acc: np.ndarray | None = None
    for k0 in range(0, k, chunk):
        part = af[:, k0 : k0 + chunk] @ _mm_as_float(b_t[:, k0 : k0 + chunk], dtype).T
        if big:
            part = part.astype(np.int64)
        if acc is None:
            acc = part.astype(np.float64) if not big else part
        else:
            acc += part
    assert acc is not None
    return acc.astype(np.int64) if acc.dtype != np.int64 else acc
