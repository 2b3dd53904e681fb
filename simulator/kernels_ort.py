"""Exact integer matrix products through ONNX Runtime's ``MatMulInteger`` (uint8 x uint8).

Not a hardware unit: a kernel behind :func:`simulator.kernels.exact_matmul` (backend
``onnxruntime``, and ``auto`` when installed and proven exact here). Operands spanning at most
256 values are shifted into uint8 with a zero point each, ``a' = a_u8 - a_zp``,
``b' = b_u8 - b_zp``; ONNX Runtime (MLAS) sums ``a' * b'`` in int32. With both operands uint8
its x86 kernels widen to int16 and use ``vpmaddwd`` (pairs of products up to 2 * 255 * 255 fit
int32: no int16 saturation, unlike the uint8 x int8 kernels on hosts without VNNI), so the
sums are exact while every intermediate fits int32: K * 255 * 255 < 2**31, K <= 33,025.

A process-wide self-test on extreme and random operands must pass before the first use.
Sessions hold one weight matrix each (packed once by ONNX Runtime) and are kept with that
matrix: in the caller's cache dict, or weakly by identity for read-only arrays. On this AVX2
host the 500 x 3136 x 6272 product takes ~85 ms against ~140 ms in float32 BLAS K-chunks.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import numpy as np

K_MAX = ((1 << 31) - 1) // (255 * 255)  # longest K whose uint8 sums fit int32 (33,025)
_STATE: dict[str, Any] = {}
_SESSIONS: dict[int, tuple[object, dict]] = {}  # id(read-only b) -> (weakref, sessions)
_SESSIONS_MAX = 8


def zero_point(lo: int, hi: int) -> int | None:
    """The uint8 zero point z with every value of [lo, hi] + z in [0, 255], or None."""
    z = max(0, -lo)
    return z if z <= 255 and hi + z <= 255 else None


def available() -> bool:
    """True when onnxruntime is installed and its uint8 product passed the self-test here."""
    if "ok" not in _STATE:
        why = "onnxruntime is not installed"
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            pass
        else:
            try:
                why = _self_test()
            except Exception as exc:  # any failure only disables this backend
                why = f"onnxruntime MatMulInteger failed: {exc}"
        _STATE["ok"] = not why
        _STATE["why"] = why
    return bool(_STATE["ok"])


def why_unavailable() -> str:
    """'' when :func:`available`, else the reason."""
    available()
    return str(_STATE["why"])


def _threads() -> int:
    """The CPUs this process may use, at most OMP_NUM_THREADS when set (sweep workers run
    single-threaded)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS", "0"))
    except ValueError:
        cap = 0
    return max(1, min(cpus, cap) if cap > 0 else cpus)


def _session(b_u8_t: np.ndarray, bzp: int) -> Any:
    """An InferenceSession computing (A - a_zp) @ (B - bzp) for A uint8 (Q, K), a_zp uint8
    scalar (runtime inputs), B = ``b_u8_t``.T (K, N) uint8 held as an initializer."""
    return _make_session(np.ascontiguousarray(b_u8_t.T), bzp)


def session_for(b_u8_t: np.ndarray, bzp: int) -> Any:
    """A session computing (A - a_zp) @ (``b_u8_t`` - bzp).T for A uint8 (Q, K) (run it
    with :func:`run_into`); ``b_u8_t`` uint8 (N, K), K <= K_MAX."""
    return _session(b_u8_t, bzp)


def batched_session(b_u8: np.ndarray, bzp: int) -> Any:
    """A session for batched products: A uint8 (C, Q, K) against ``b_u8`` (C, K, N) ->
    int32 (C, Q, N), zero points as in :func:`_session` (run it with :func:`run_batched`)."""
    return _make_session(np.ascontiguousarray(b_u8), bzp)


def run_batched(sess: Any, a_u8: np.ndarray, azp: int) -> np.ndarray:
    """int32 (C, Q, N) of a :func:`batched_session` for A = ``a_u8`` (C, Q, K) uint8."""
    return _run(sess, a_u8, azp)


def _make_session(b: np.ndarray, bzp: int) -> Any:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    *batch, k, n = b.shape
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B", "a_zp", "b_zp"], ["Y"])],
        "hwsim_exact_matmul",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [*batch, None, k]),
         helper.make_tensor_value_info("a_zp", TensorProto.UINT8, [])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [*batch, None, n])],
        initializer=[helper.make_tensor("B", TensorProto.UINT8, list(b.shape), b.tobytes(),
                                        raw=True),
                     helper.make_tensor("b_zp", TensorProto.UINT8, [], [bzp])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 9
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _threads()
    opts.inter_op_num_threads = 1
    # no busy-waiting after a call: the compiled loops and BLAS calls that follow need the cores
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _run(sess: Any, a_u8: np.ndarray, azp: int) -> np.ndarray:
    return sess.run(None, {"A": a_u8, "a_zp": np.array(azp, dtype=np.uint8)})[0]


def run_into(sess: Any, a_u8: np.ndarray, azp: int, out: np.ndarray) -> None:
    """:func:`_run` writing int32 ``out`` (C-ordered, the product's shape) in place (ONNX
    Runtime's I/O binding: no result array to copy)."""
    assert out.dtype == np.int32 and out.flags.c_contiguous
    a = np.ascontiguousarray(a_u8)  # bound inputs wrap these arrays' memory without holding
    zp = np.array(azp, dtype=np.uint8)  # a reference: they must live until the run ends
    io = sess.io_binding()
    io.bind_cpu_input("A", a)
    io.bind_cpu_input("a_zp", zp)
    io.bind_output("Y", "cpu", 0, np.int32, list(out.shape), out.ctypes.data)
    sess.run_with_iobinding(io)
    del a, zp


def _self_test() -> str:
    """'' if MatMulInteger equals the exact products on extreme and random uint8 operands
    (sums near int32's limit; products whose int16 pairs would saturate)."""
    rng = np.random.default_rng(2468)
    cases = [(rng.integers(0, 256, (m, k)), rng.integers(0, 256, (n, k)), az, bz)
             for m, k, n, az, bz in ((1, 777, 5, 0, 128), (37, 300, 1, 17, 0),
                                     (33, 1024, 65, 255, 255), (130, 2048, 48, 3, 128))]
    full = np.full((3, K_MAX), 255)
    cases += [(full, full[:2], 0, 0), (np.zeros((2, 64)), np.full((3, 64), 255), 255, 0)]
    for a, b, az, bz in cases:
        want = (a.astype(np.float64) - az) @ (b.astype(np.float64) - bz).T
        got = _run(_session(b.astype(np.uint8), bz), np.ascontiguousarray(a, np.uint8), az)
        if not np.array_equal(got.astype(np.float64), want):
            return "onnxruntime MatMulInteger (uint8) is not exact on this host"
    return ""


def _sessions_for(b_t: np.ndarray, cache: dict | None) -> dict | None:
    """The dict that keeps sessions of ``b_t``: ``cache`` (lives as long as b_t), or one held
    weakly by identity for a read-only b_t; None: b_t may change, build nothing."""
    if cache is not None:
        return cache.setdefault("ort_sessions", {})
    from .kernels import _mm_frozen

    if not _mm_frozen(b_t):
        return None
    key = id(b_t)
    hit = _SESSIONS.get(key)
    if hit is not None and hit[0]() is b_t:  # type: ignore[operator]
        return hit[1]
    if len(_SESSIONS) >= _SESSIONS_MAX:
        _SESSIONS.pop(next(iter(_SESSIONS)))
    store: dict = {}
    _SESSIONS[key] = (weakref.ref(b_t, lambda _r, d=_SESSIONS: d.pop(key, None)), store)
    return store


def _as_u8(x: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, int, int]:
    """(x_u8, zp, c) with x = (x_u8 - zp) + c exactly: a zero point when [lo, hi] holds 0's
    neighbourhood (c = 0), else a shift c = lo corrected by the caller (span <= 255)."""
    z = zero_point(lo, hi)
    zp, c = (z, 0) if z is not None else (0, lo)
    if x.dtype == np.uint8 and zp == 0 and c == 0:
        return np.ascontiguousarray(x), 0, 0
    if x.dtype.kind in "iu":  # x + zp - c lies in [0, 255]: uint8 arithmetic mod 256 is exact
        return np.add(x, (zp - c) % 256, dtype=np.uint8, casting="unsafe"), zp, c
    return np.add(x, zp - c, dtype=np.int64, casting="unsafe").astype(np.uint8), zp, c


def ort_matmul(
    a: np.ndarray, a_range: tuple[int, int], b_t: np.ndarray, b_range: tuple[int, int],
    cache: dict | None = None, one_off: bool = False, int32_ok: bool = False,
) -> np.ndarray | None:
    """Exact int64 ``a @ b_t.T`` (a: (Q, K), b_t: (N, K), every value inside its range), or
    None when this backend does not apply: unavailable, an operand spans more than 256
    values, or b_t may change, no ``cache`` keeps its sessions and ``one_off`` is False.
    ``int32_ok``: ONNX Runtime's int32 sums come back as they are when they need no
    correction (K <= K_MAX, both operands with zero points), else int64.

    K longer than :data:`K_MAX` is cut into pieces (one session each) summed in int64; an
    operand whose range does not contain a uint8 zero point's neighbourhood is shifted by its
    minimum and the shift corrected exactly in int64."""
    (alo, ahi), (blo, bhi) = a_range, b_range
    if ahi - alo > 255 or bhi - blo > 255 or not available():
        return None
    store = _sessions_for(b_t, cache)
    if store is None and not one_off:
        return None
    store = {} if store is None else store
    q, k = a.shape
    a_u8, azp, ca = _as_u8(a, alo, ahi)
    out: np.ndarray | None = None
    for k0 in range(0, k, K_MAX):
        k1 = min(k, k0 + K_MAX)
        key = (blo, bhi, k0, k1)
        if key not in store:
            b_u8, bzp, cb = _as_u8(b_t[:, k0:k1], blo, bhi)
            b_sum = b_u8.sum(axis=1, dtype=np.int64) - (k1 - k0) * bzp  # sum_k b''
            store[key] = (_session(b_u8, bzp), bzp, cb, b_sum)
        sess, bzp, cb, b_sum = store[key]
        part = _run(sess, np.ascontiguousarray(a_u8[:, k0:k1]), azp)
        if int32_ok and k <= K_MAX and not ca and not cb:
            return part
        part = part.astype(np.int64)
        if ca:  # a = a'' + ca: add ca * sum_k b''
            part += ca * b_sum[None, :]
        if cb:  # b = b'' + cb: add cb * sum_k a (a itself, ca included)
            a_sum = a_u8[:, k0:k1].sum(axis=1, dtype=np.int64) - (k1 - k0) * (azp - ca)
            part += cb * a_sum[:, None]
        out = part if out is None else np.add(out, part, out=out)
    assert out is not None
    return out
