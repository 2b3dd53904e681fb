"""ONNX Runtime's uint8 MatMulInteger as an exact_matmul backend (simulator/kernels_ort.py).

Every product is compared with Python-integer products; the self-test and the fallbacks
are checked by forcing them.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator import kernels, kernels_ort
from simulator.kernels import exact_matmul
from simulator.units.sign_split import split_sign_sums

_ORT = pytest.mark.skipif(not kernels_ort.available(),
                                reason=f"onnxruntime unusable: {kernels_ort.why_unavailable()}")


def _ref(a: np.ndarray, b_t: np.ndarray) -> np.ndarray:
    return np.asarray(a).astype(object) @ np.asarray(b_t).astype(object).T


def _frozen(x: np.ndarray) -> np.ndarray:
    x = np.array(x)
    x.flags.writeable = False
    return x


@pytest.mark.parametrize(("lo", "hi", "want"), [
    (0, 255, 0), (-255, 0, 255), (-17, 200, 17), (-128, 127, 128), (-64, 127, 64),
    (3, 200, 0), (-256, -1, None), (-1, 255, None), (100, 356, None), (-300, -100, None),
])
def test_zero_point(lo: int, hi: int, want: int | None) -> None:
    assert kernels_ort.zero_point(lo, hi) == want


RANGES = [((0, 255), (-128, 127)), ((-255, 0), (-128, 127)), ((-240, -31), (-64, 127)),
          ((-17, 200), (0, 255)), ((4000, 4255), (-5, 250)), ((-9000, -8745), (300, 555)),
          ((0, 1), (-1, 1)), ((-128, 127), (-128, 127))]


@_ORT
@pytest.mark.parametrize(("ar", "br"), RANGES)
def test_products_equal_python_integers(ar: tuple[int, int], br: tuple[int, int]) -> None:
    rng = np.random.default_rng(abs(ar[0]) + br[1])
    for q, k, n in ((1, 2, 1), (3, 700, 5), (17, 64, 33), (40, 1031, 9)):
        a = rng.integers(ar[0], ar[1] + 1, (q, k))
        b = rng.integers(br[0], br[1] + 1, (n, k))
        a[0, :2], b[0, :2] = ar, br  # the range ends present
        got = kernels_ort.ort_matmul(a, ar, _frozen(b), br)
        assert got is not None and got.dtype == np.int64
        assert np.array_equal(got.astype(object), _ref(a, b)), (ar, br, q, k, n)


@_ORT
def test_extremes_and_k_pieces_past_int32() -> None:
    """All-255 x all-255 sums pass int32 past K_MAX: cut into pieces, summed in int64."""
    k = kernels_ort.K_MAX + 77
    a = np.full((2, k), 255, dtype=np.uint8)
    b = _frozen(np.full((3, k), 255, dtype=np.uint8))
    got = kernels_ort.ort_matmul(a, (0, 255), b, (0, 255))
    assert got is not None
    assert (got == k * 255 * 255).all() and k * 255 * 255 > (1 << 31)
    bn = _frozen(np.full((1, k), -128, dtype=np.int8))
    got = kernels_ort.ort_matmul(a, (0, 255), bn, (-128, 127))
    assert got is not None and (got == -128 * 255 * k).all()


@_ORT
def test_not_applicable_cases_return_none() -> None:
    a = np.zeros((2, 8), dtype=np.int64)
    b = _frozen(np.zeros((3, 8), dtype=np.int64))
    assert kernels_ort.ort_matmul(a, (0, 256), b, (0, 1)) is None  # span 257
    assert kernels_ort.ort_matmul(a, (0, 1), b, (-200, 100)) is None
    writable = np.zeros((3, 8), dtype=np.int8)
    assert kernels_ort.ort_matmul(a, (0, 1), writable, (-1, 1)) is None  # may change
    assert kernels_ort.ort_matmul(a, (0, 1), writable, (-1, 1), one_off=True) is not None
    assert kernels_ort.ort_matmul(a, (0, 1), writable, (-1, 1), cache={}) is not None


@_ORT
def test_sessions_are_kept_with_the_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    built = []
    real = kernels_ort._session

    def spy(b_u8: np.ndarray, bzp: int) -> object:
        built.append(b_u8.shape)
        return real(b_u8, bzp)

    monkeypatch.setattr(kernels_ort, "_session", spy)
    rng = np.random.default_rng(3)
    b = _frozen(rng.integers(-128, 128, (6, 50)).astype(np.int8))
    for _ in range(3):
        a = rng.integers(0, 256, (4, 50))
        got = kernels_ort.ort_matmul(a, (0, 255), b, (-128, 127))
        assert got is not None and np.array_equal(got.astype(object), _ref(a, b))
    assert len(built) == 1
    cache: dict = {}
    w = rng.integers(-3, 4, (5, 20)).astype(np.int8)  # writable, kept by the caller's cache
    for _ in range(2):
        kernels_ort.ort_matmul(np.ones((1, 20)), (0, 1), w, (-3, 3), cache)
    assert len(built) == 2 and "ort_sessions" in cache


@_ORT
def test_failed_self_test_falls_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels_ort, "_STATE", {})
    monkeypatch.setattr(kernels_ort, "_self_test", lambda: "not exact here (forced)")
    assert not kernels_ort.available()
    assert "forced" in kernels_ort.why_unavailable()
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (300, 300))
    b = _frozen(rng.integers(-128, 128, (300, 300)).astype(np.int8))
    monkeypatch.setenv("HWSIM_MATMUL", "auto")
    assert not kernels.uses_ort()
    assert np.array_equal(exact_matmul(a, b).astype(object), _ref(a, b))
    monkeypatch.setenv("HWSIM_MATMUL", "onnxruntime")
    with pytest.raises(ValueError, match="forced"):
        exact_matmul(a, b)


@_ORT
def test_self_test_detects_a_saturating_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that clips int16 pairs (what uint8 x int8 kernels do without VNNI) fails."""
    real = kernels_ort._run

    def clipped(sess: object, a_u8: np.ndarray, azp: int) -> np.ndarray:
        out = real(sess, a_u8, azp)
        return np.minimum(out, 32767 * (a_u8.shape[1] // 2))

    monkeypatch.setattr(kernels_ort, "_run", clipped)
    assert kernels_ort._self_test() != ""
    monkeypatch.setattr(kernels_ort, "_run", real)
    assert kernels_ort._self_test() == ""


@_ORT
def test_auto_uses_it_for_large_products(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = kernels_ort.ort_matmul

    def spy(*args: object, **kw: object) -> object:
        calls.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(kernels_ort, "ort_matmul", spy)
    monkeypatch.setattr(kernels, "_mm_torch_fast", lambda: False)
    monkeypatch.setenv("HWSIM_MATMUL", "auto")
    rng = np.random.default_rng(9)
    a = rng.integers(0, 256, (64, 512))
    b = _frozen(rng.integers(-128, 128, (512, 512)).astype(np.int8))  # 2**24 products
    assert np.array_equal(exact_matmul(a, b).astype(object), _ref(a, b))
    assert calls
    calls.clear()
    monkeypatch.setenv("HWSIM_MATMUL", "numpy")
    exact_matmul(a, b)
    assert not calls


@_ORT
@pytest.mark.parametrize("backend", ["auto", "numpy"])
def test_split_sign_sums_agree_across_backends(monkeypatch: pytest.MonkeyPatch,
                                               backend: str) -> None:
    """The sums of sign_split.py come from ONNX Runtime under auto: same integers."""
    monkeypatch.setenv("HWSIM_MATMUL", backend)
    calls = []
    real = kernels_ort.ort_matmul
    monkeypatch.setattr(kernels_ort, "ort_matmul",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    rng = np.random.default_rng(21)
    for trial in range(6):
        q, k, n = 64 + trial, 1100 + 37 * trial, 300
        x = rng.integers(0, 256, (q, k)).astype(np.int16)
        x[rng.random((q, k)) < 0.2] = 0
        w = _frozen(rng.integers(-64 if trial % 2 else -128, 128, (n, k)).astype(np.int8))
        sp = split_sign_sums(x, w, int(x.max()), {})
        assert sp is not None
        x64, w64 = x.astype(np.int64), w.astype(np.int64)  # integer matmul: exact
        assert np.array_equal(sp.exact, x64 @ w64.T)
        assert (sp.pos_ub >= x64 @ np.maximum(w64, 0).T).all()
    assert bool(calls) == (backend == "auto")


@pytest.mark.parametrize(("given", "want"), [(None, "4"), ("12", "12")])
def test_cli_sets_openblas_thread_timeout_before_numpy(given: str | None, want: str) -> None:
    """The hwsim CLI makes OpenBLAS's idle workers sleep at once (they spun ~0.1 s after
    each BLAS call, slowing the compiled loops that follow; a user's value is kept) and
    raises glibc's mmap / trim thresholds unless HWSIM_MALLOC=default."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if given is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = given
    code = ("import sys, os, simulator.cli\n"
            "from simulator._process_env import APPLIED\n"
            "print(os.environ['OPENBLAS_THREAD_TIMEOUT'], 'numpy' in sys.modules,\n"
            "      APPLIED['malloc_thresholds'])\n")
    glibc = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None
    for malloc, applied in (("", glibc), ("tuned", glibc), ("default", False), ("of", False)):
        env["HWSIM_MALLOC"] = malloc
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=120, check=True)
        assert out.stdout.split() == [want, "True", str(applied)]
        assert ("HWSIM_MALLOC='of'" in out.stderr) == (malloc == "of")


@pytest.mark.parametrize(("omp", "want_max"), [("1", 1), ("", None), ("junk", None)])
def test_session_threads_follow_omp_num_threads(monkeypatch: pytest.MonkeyPatch, omp: str,
                                                want_max: int | None) -> None:
    """Sweep workers set OMP_NUM_THREADS=1: ONNX Runtime then runs one thread too."""
    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    n = kernels_ort._threads()
    assert n >= 1
    if want_max is not None:
        assert n == want_max


def test_small_runs_do_not_load_onnxruntime() -> None:
    """Products below ORT_MIN_PRODUCTS stay with numpy without importing onnxruntime or
    running its self-test (~0.2 s): a small exact-headroom run never loads it."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from simulator.bench import bench_inputs, bench_network\n"
            "from simulator.config import load_config\n"
            "from simulator.engine import simulate\n"
            "net = bench_network(300, 600, 40, seed=3)\n"
            "simulate(net, load_config('pytorch_fbgemm'), bench_inputs(20, 300, seed=3))\n"
            "print('onnxruntime' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.split()[-1] == "False"
