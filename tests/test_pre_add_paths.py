"""The pre-add (AVX2 VPMADDUBSW-style) fast path agrees bit for bit with a plain step loop.

simulator/units/acc_ordered.py settles most runs from exact split-sign sums
(sign_split.py: [neg, pos] bounds every partial sum) and the hot pre-add entries
(pre_add.py; pairs in the SIMD loop of pre_add_simd.py, other groups or HWSIM_SIMD=0 in
the numba kernel of pre_add_kernel.py, and a numpy fallback). These tests run it in each of
the three (HWSIM_SIMD=0, HWSIM_NUMBA=0) against a per-query step loop
(simulator/engine/reference.py) plus an independent loop over every partial sum for
``min_safe_acc_bits``: final accumulators, per-neuron and per-pair accumulator and pre-add
events, first events and the exact width. The stepwise engine comparison of the whole
engine is tests/test_stepwise.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator.engine.reference import accumulate_query
from simulator.units import chunk_stepper, pre_add_kernel, pre_add_simd, sign_split
from simulator.units.accumulator import MacSpec, bits_for_range, fit_policy, operands
from simulator.units.mac_array import accumulate
from simulator.units.pre_add import pre_add_stage
from simulator.units.sign_split import split_sign_sums

N_CASES = 200  # per stepping implementation


@pytest.fixture(params=["simd", "numba", "numpy"])
def stepper(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the SIMD pair loop (pre_add_simd.py), with the numba kernel
    (HWSIM_SIMD=0) and with the numpy fallback."""
    if request.param in ("simd", "numba"):
        monkeypatch.setenv("HWSIM_NUMBA", "1")
        monkeypatch.setenv("HWSIM_SIMD", "1" if request.param == "simd" else "0")
        if not pre_add_kernel.hot_kernel_available():
            pytest.skip("numba is not installed")
        if request.param == "simd" and not pre_add_simd.available():
            pytest.skip(f"no SIMD pre-add loop here: {pre_add_simd.why_unavailable()}")
    else:
        monkeypatch.setenv("HWSIM_NUMBA", "0")
        assert not chunk_stepper.numba_enabled()
        assert not pre_add_kernel.hot_kernel_available()
    return str(request.param)


def _partial_range(x: np.ndarray, zx: int, w: np.ndarray, zw: np.ndarray,
                   spec: MacSpec) -> tuple[int, int]:
    """(min, max) (0 included) of every accumulator addition's exact result, one loop."""
    lo = hi = 0
    ox, ow, corr = operands(x, zx, w, zw, spec.operand)
    g, p = spec.adder_tree_width, spec.pre_add_width
    for q in range(x.shape[0]):
        idx = np.flatnonzero(x[q] != zx) if spec.event_driven else np.arange(x.shape[1])
        run = np.zeros(w.shape[0], dtype=np.int64)
        for s in range(0, idx.size, g):
            ids = idx[s: s + g]
            prods = ow[:, ids] * ox[q, ids][None, :]
            prods = np.concatenate([prods, np.zeros((prods.shape[0], -ids.size % p),
                                                    np.int64)], axis=1)
            pre = prods.reshape(prods.shape[0], -1, p).sum(axis=2)
            run = run + fit_policy(pre, spec.pre_register, spec.pre_add_overflow).sum(axis=1)
            lo, hi = min(lo, int(run.min())), max(hi, int(run.max()))
        if corr is not None:
            run = run + corr[q]
            lo, hi = min(lo, int(run.min())), max(hi, int(run.max()))
    return lo, hi


def _case(seed: int) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, MacSpec]:
    rng = np.random.default_rng(70_000 + seed)
    q = int(rng.integers(1, 6))
    k = int(rng.integers(1, 50)) if rng.random() < 0.8 else int(rng.integers(100, 300))
    n = int(rng.integers(1, 14))
    style = rng.integers(4)
    if style == 0:
        w = rng.integers(-128, 128, (n, k))
    elif style == 1:  # extremes: pairs that saturate both ways
        w = rng.choice(np.array([-128, 127, 127, 0, -128]), (n, k))
    elif style == 2:  # VPRTempo-like: few large excitatory, many small inhibitory weights
        w = np.where(rng.random((n, k)) < 0.15, rng.integers(64, 128, (n, k)),
                     -rng.integers(0, 65, (n, k)))
    else:
        w = rng.integers(-20, 21, (n, k))
    p = int(rng.choice([2, 2, 3, 4]))
    raw = rng.random() < 0.7
    zx = 0 if rng.random() < 0.6 else int(rng.integers(0, 256))
    zw = rng.integers(-3, 4, n) if rng.random() < 0.2 else np.zeros(n, dtype=np.int64)
    x = rng.integers(0, 256, (q, k))
    if rng.random() < 0.3:
        x = np.where(rng.random((q, k)) < 0.5, zx, x)
    if rng.random() < 0.15:
        x[:] = 255  # every pair at its largest
    wide = rng.random() < 0.6
    spec = MacSpec(
        acc_bits=32 if wide else int(rng.integers(8, 28)),
        overflow=str(rng.choice(["wrap", "saturate"])),
        adder_tree_width=p * int(rng.integers(1, 4)),
        operand="raw" if raw else "offset",
        pre_add_width=p,
        pre_add_bits=16 if rng.random() < 0.5 else int(rng.integers(6, 17)),
        pre_add_overflow=str(rng.choice(["wrap", "saturate", "saturate"])),
        event_driven=(not raw) and rng.random() < 0.2,
        lanes=int(rng.integers(1, 9)),
    )
    return x.astype(np.uint8), zx, w.astype(np.int8), zw.astype(np.int64), spec


def _check(x: np.ndarray, zx: int, w: np.ndarray, zw: np.ndarray, spec: MacSpec,
           tag: str) -> int:
    acc, st = accumulate(x.astype(np.int64), zx, w, zw, spec)
    rows = {(int(r[0]), int(r[1])): tuple(int(v) for v in r[2:]) for r in st.pair_events}
    first = first_pre = None
    events = 0
    for q in range(x.shape[0]):
        ra = accumulate_query(x[q], zx, w, zw, spec)
        assert np.array_equal(ra.acc, acc[q]), tag
        ev = np.stack([ra.acc_wrap, ra.acc_saturate, ra.pre_add], axis=1)
        for j in np.flatnonzero(ev.sum(axis=1)):
            assert rows.pop((q, int(j))) == tuple(int(v) for v in ev[j]), (tag, q, j)
        events += int(ev.sum())
        if first is None and ra.first is not None:
            first = (q, *ra.first)
        if first_pre is None and ra.first_pre_add is not None:
            first_pre = (q, *ra.first_pre_add)
    assert not rows, tag
    assert st.first == first, tag
    assert st.first_pre_add == first_pre, tag
    lo, hi = _partial_range(x, zx, w, zw, spec)
    assert st.min_safe_acc_bits == bits_for_range(lo, hi), tag
    return events


@pytest.mark.parametrize("part", range(2))
def test_pre_add_path_equals_a_step_loop(stepper: str, part: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # exact positive sums of the flagged pairs: by dot products (part 0) or a full product
    monkeypatch.setattr(sign_split, "DOT_PAIRS_MAX_FRACTION", 1.0 if part == 0 else 0.0)
    pre_events = 0
    for seed in range(part, N_CASES, 2):
        x, zx, w, zw, spec = _case(seed)
        pre_events += _check(x, zx, w, zw, spec, f"seed {seed} {spec}")
    assert pre_events > 0


def test_vprtempo_like_layer_is_settled_by_split_sums(stepper: str) -> None:
    """A layer shaped like the benchmark's (raw uint8 inputs, a correction for zx = 255,
    dense hot pairs): settled without stepping a pair, and still equal to the loop."""
    rng = np.random.default_rng(5)
    n, k = 24, 400
    w = np.where(rng.random((n, k)) < 0.12, rng.integers(64, 128, (n, k)),
                 -rng.integers(0, 65, (n, k))).astype(np.int8)
    x = rng.integers(0, 256, (6, k)).astype(np.uint8)
    for zx in (0, 255):
        spec = MacSpec(32, "wrap", 4, "raw", 2, 16, "saturate", False, 8)
        acc, st = accumulate(x.astype(np.int64), zx, w, np.zeros(n, np.int64), spec)
        assert st.ordered_pairs == 0 and st.pre_add_events.sum() > 0
        _check(x, zx, w, np.zeros(n, np.int64), spec, f"zx {zx}")


def test_partial_sum_exactly_at_the_width_edge(stepper: str) -> None:
    """min_safe_acc_bits when a partial sum (not the final one) sits exactly on a power of
    two: 2 * 127 * 127 * m reaches 2**15 - 2 ... then negatives bring the final sum down."""
    k = 8
    w = np.array([[127] * 4 + [-1] * 4, [127] * 6 + [-128] * 2], dtype=np.int8)
    for top in (255, 254, 129, 128):
        x = np.array([[top] * 4 + [255] * 4], dtype=np.uint8)
        for pre_bits in (16, 17):
            spec = MacSpec(32, "wrap", 2, "raw", 2, pre_bits, "saturate", False, 1)
            _check(x, 0, w, np.zeros(2, np.int64), spec, f"top {top} bits {pre_bits}")
    assert k == x.shape[1]


def test_pre_add_kernel_equals_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled hot-entry kernel and the numpy loop find the same events and sums."""
    if not pre_add_kernel.hot_kernel_available():
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(11)
    for case in range(12):
        q, k, n = int(rng.integers(1, 9)), int(rng.integers(1, 301)), int(rng.integers(1, 40))
        w = rng.choice(np.array([-128, -90, 127, 100, 3, 0]), (n, k)).astype(np.int8)
        x = rng.integers(0, 256, (q, k)).astype(np.int64)
        p = int(rng.choice([2, 3, 4]))
        spec = MacSpec(32, "wrap", p, "raw", p, int(rng.integers(8, 17)),
                       str(rng.choice(["wrap", "saturate"])), False, int(rng.integers(1, 9)))
        ox, ow, _ = operands(x, 0, w, np.zeros(n, np.int64), "raw")
        got = {}
        for mode, numba_on, simd_on in (("simd", "1", "1"), ("numba", "1", "0"),
                                         ("numpy", "0", "0")):
            monkeypatch.setenv("HWSIM_NUMBA", numba_on)
            monkeypatch.setenv("HWSIM_SIMD", simd_on)
            got[mode] = pre_add_stage(x, 0, ox, ow, np.abs(ow), spec)
        b = got["numpy"]
        for a in (got["simd"], got["numba"]):
            for name in ("delta", "dpos", "dneg", "counts"):
                va, vb = getattr(a, name), getattr(b, name)
                assert (va is None) == (vb is None), (case, name)
                assert va is None or np.array_equal(va, vb), (case, name)
            assert (a.first, a.first_value) == (b.first, b.first_value), case
            ra, rb = ([r() if callable(r) else r for r in res.rows] for res in (a, b))
            ra = np.concatenate(ra) if ra else np.zeros((0, 5), np.int64)
            rb = np.concatenate(rb) if rb else np.zeros((0, 5), np.int64)
            rb = rb[np.lexsort((rb[:, 1], rb[:, 0]))]
            assert np.array_equal(ra, rb), case


def test_split_sign_sums_are_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact sums and exact positive sums against int64 products, bounds that hold, also when
    K must be cut into several chunks or the operands need float64; a cache gives the same
    numbers; the dot products compiled and in numpy."""
    rng = np.random.default_rng(3)
    for wmax, xmax, k in ((127, 255, 3000), (127, 255, 40), (30000, 255, 700),
                          (1 << 20, 1 << 12, 300), (0, 255, 10)):
        w = rng.integers(-wmax, wmax + 1, (17, k))
        w[0] = wmax  # one neuron with the largest positive sum
        w[1] = -wmax
        x = rng.integers(0, xmax + 1, (9, k))
        x[0] = xmax
        cache: dict = {}
        for _ in range(2):
            got = split_sign_sums(x, w, xmax, cache)
            assert got is not None
            want_pos, want_neg = x @ np.maximum(w, 0).T, x @ np.minimum(w, 0).T
            assert np.array_equal(got.exact, x @ w.T)
            lo, hi = got.hull()
            assert (hi >= want_pos).all() and (lo <= want_neg).all()
            if wmax and k >= 8:  # the bound is not the exact sum (it would not need a test)
                assert (hi > want_pos).any()
            qs, js = np.nonzero(np.ones_like(want_pos, dtype=bool))
            assert np.array_equal(got.exact_pos(qs, js), want_pos[qs, js])  # full product
            sign_split.DOT_PAIRS_MAX_FRACTION, was = 1.0, sign_split.DOT_PAIRS_MAX_FRACTION
            try:  # dot products
                for numba_on in ("0", "1"):
                    monkeypatch.setenv("HWSIM_NUMBA", numba_on)
                    assert np.array_equal(got.exact_pos(qs[::37], js[::37]),
                                          want_pos[qs, js][::37]), numba_on
            finally:
                sign_split.DOT_PAIRS_MAX_FRACTION = was
    too_wide = np.full((2, 4), 1 << 40)
    assert split_sign_sums(np.ones((1, 4), np.int64) * (1 << 20), too_wide, 1 << 20) is None


def test_positive_bound_through_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound U' from ONNX Runtime's uint8 product (halved block sums, rounded up) holds
    (>= the exact positive sums), is never below the float32 bound's sums, and gives the same
    exact sums and open pairs' exact positive sums; weights that may change (no cache) keep
    the float product."""
    from simulator import kernels, kernels_ort
    from simulator.units.sign_split import positive_bound

    if not kernels_ort.available():
        pytest.skip(f"onnxruntime: {kernels_ort.why_unavailable()}")
    monkeypatch.setattr(kernels, "ORT_MIN_PRODUCTS", 0)
    monkeypatch.setenv("HWSIM_MATMUL", "auto")
    used = {"n": 0}
    real = sign_split._ort_pos_half

    def counting(*a, **kw):
        out = real(*a, **kw)
        used["n"] += out is not None
        return out

    monkeypatch.setattr(sign_split, "_ort_pos_half", counting)
    rng = np.random.default_rng(12)
    for q, k, n in ((7, 3001, 19), (40, 130, 33), (1, 5, 2)):
        w = rng.integers(-128, 128, (n, k)).astype(np.int8)
        w[0] = 127  # block sums of w'+ reach 508: halved to 254
        x = rng.integers(0, 256, (q, k))
        x[0] = 255
        want_pos = x @ np.maximum(w.astype(np.int64), 0).T
        cache: dict = {}
        got = split_sign_sums(x.astype(np.int16), w, 255, cache)
        assert got is not None and np.array_equal(got.exact, x @ w.astype(np.int64).T)
        assert (got.pos_ub.astype(np.int64) >= want_pos).all()
        float_ub = positive_bound(x.astype(np.int16), w, 255, None)  # no cache: float32
        assert float_ub is not None and (got.pos_ub >= float_ub).all()
        assert np.array_equal(positive_bound(x.astype(np.int16), w, 255, cache),
                              got.pos_ub.astype(np.int64))
        qs, js = got.open_pairs(-(1 << 10), 1 << 10)
        assert np.array_equal(got.exact_pos(qs, js), want_pos[qs, js])
    assert used["n"] >= 6


def test_open_pairs_equal_the_hull(monkeypatch: pytest.MonkeyPatch) -> None:
    """SplitSums.open_pairs (compiled, one pass) gives the pairs whose [S - U, U] leaves a
    range exactly as the hull arrays do, also at thresholds equal to a bound."""
    rng = np.random.default_rng(21)
    x = rng.integers(0, 256, (13, 300))
    w = rng.integers(-128, 128, (40, 300))
    sp = split_sign_sums(x, w, 255)
    assert sp is not None
    lo_b, hi_b = sp.hull()
    his = [int(np.median(hi_b)), int(hi_b.max()), int(hi_b.max()) - 1, int(hi_b.min())]
    los = [int(np.median(lo_b)), int(lo_b.min()), int(lo_b.min()) + 1, int(lo_b.max())]
    seen = set()
    for lo, hi in zip(los, his, strict=True):
        lo, hi = min(lo, 0), max(hi, 0)
        want = np.nonzero((lo_b < lo) | (hi_b > hi))
        seen.add(want[0].size)
        for numba_on in ("0", "1"):
            monkeypatch.setenv("HWSIM_NUMBA", numba_on)
            got = sp.open_pairs(lo, hi)
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert len(seen) > 2  # none, some and many open pairs


@pytest.mark.parametrize("numba_on", ["1", "0"])
def test_finish_ort_and_its_tiles(numba_on: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """finish_ort widens int32 sums, doubles the halved bounds and (compiled) summarises
    them per tile of neurons; open_pairs from the tiles equals the hull arrays' pairs, in
    row-major order, at thresholds equal to a bound, for N not a multiple of the tile, and
    when so many tiles are open that it scans every pair instead."""
    monkeypatch.setenv("HWSIM_NUMBA", numba_on)
    rng = np.random.default_rng(99)
    seen = set()
    for case in range(12):
        q, n = int(rng.integers(1, 30)), int(rng.integers(1, 200))
        s32 = rng.integers(-(1 << 30), 1 << 30, (q, n)).astype(np.int32)
        half = rng.integers(0, 1 << 30, (q, n)).astype(np.int32)
        s32[0, 0], half[0, 0] = -(1 << 31), (1 << 30) - 1  # extremes of both
        want_s, want_u = s32.astype(np.int64), 2 * half.astype(np.int64)
        s64, ub, summary = sign_split.finish_ort(s32, half.copy())
        assert s64.dtype == np.int64 and np.array_equal(s64, want_s), case
        assert np.array_equal(ub.astype(np.int64), want_u), case
        assert (summary is not None) == (numba_on == "1"), case
        sp = sign_split.SplitSums(s64, ub, np.zeros((q, 1)), np.zeros((n, 1)), [], np.float64,
                                  {}, summary)
        if summary is not None:
            assert summary.s_range == (int(want_s.min()), int(want_s.max())), case
        lo_b, hi_b = want_s - want_u, want_u
        for lo, hi in ((int(lo_b.min()), int(hi_b.max())), (int(lo_b.min()) + 1, 0),
                       (0, int(hi_b.max()) - 1), (int(np.quantile(lo_b, 0.001)), 1 << 40),
                       (-(1 << 40), int(np.quantile(hi_b, 0.999))), (0, 0)):
            lo, hi = min(lo, 0), max(hi, 0)
            want = np.nonzero((lo_b < lo) | (hi_b > hi))
            got = sp.open_pairs(lo, hi)
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), case
            seen.add(min(want[0].size, 2))
            if summary is not None:  # the tiles scanned by numpy (numba switched off since)
                monkeypatch.setenv("HWSIM_NUMBA", "0")
                got = sp.open_pairs(lo, hi)
                monkeypatch.setenv("HWSIM_NUMBA", numba_on)
                assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert seen == {0, 1, 2}


def _hot_layer(rng: np.random.Generator, q: int, k: int, n: int) -> tuple[np.ndarray, ...]:
    """uint8 inputs and int8 weights like the benchmark's: a few pairs whose |w| sum
    exceeds 128 (they may leave an int16 pair register), most that cannot."""
    w = rng.integers(-70, 71, (n, k))
    big = rng.random((n, k)) < 0.06
    w[big] = rng.choice(np.array([-128, -127, -100, 100, 127]), int(big.sum()))
    x = rng.integers(0, 256, (q, k))
    x[rng.random((q, k)) < 0.1] = 0
    return x.astype(np.uint8), w.astype(np.int8)


@pytest.mark.parametrize("policy", ["saturate", "wrap"])
def test_simd_pairs_equal_numpy(policy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SIMD pair loop (ragged query blocks of 16, odd K, neurons without hot pairs,
    pre-add registers of 9-16 bits) against the numpy fallback: the same corrections,
    events, event rows and first event; and it is the loop that ran."""
    monkeypatch.setenv("HWSIM_NUMBA", "1")
    monkeypatch.setenv("HWSIM_SIMD", "1")
    if not pre_add_simd.available():
        pytest.skip(f"no SIMD pre-add loop here: {pre_add_simd.why_unavailable()}")
    calls = {"n": 0}
    real = pre_add_simd.evaluate

    def counting(*a, **kw):
        calls["n"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(pre_add_simd, "evaluate", counting)
    rng = np.random.default_rng(404)
    for case in range(10):
        q, k, n = int(rng.integers(1, 40)), int(rng.integers(3, 120)), int(rng.integers(1, 50))
        x, w = _hot_layer(rng, q, k, n)
        w[rng.integers(0, n)] = 1  # a neuron without a hot pair
        spec = MacSpec(32, "wrap", 4, "raw", 2, int(rng.integers(9, 17)), policy, False, 8)
        ox, ow, _ = operands(x.astype(np.int64), 0, w, np.zeros(n, np.int64), "raw")
        got = {}
        for numba_on in ("1", "0"):
            monkeypatch.setenv("HWSIM_NUMBA", numba_on)
            got[numba_on] = pre_add_stage(x, 0, ox, ow, np.abs(ow), spec)
        a, b = got["1"], got["0"]
        for name in ("delta", "dpos", "dneg", "counts"):
            va, vb = getattr(a, name), getattr(b, name)
            assert (va is None) == (vb is None), (case, name)
            assert va is None or np.array_equal(va, vb), (case, name)
        assert (a.first, a.first_value) == (b.first, b.first_value), case
        ra = [r() if callable(r) else r for r in a.rows]
        rb = [r() if callable(r) else r for r in b.rows]
        ra = np.concatenate(ra) if ra else np.zeros((0, 5), np.int64)
        rb = np.concatenate(rb) if rb else np.zeros((0, 5), np.int64)
        assert np.array_equal(ra, rb[np.lexsort((rb[:, 1], rb[:, 0]))]), case
    assert calls["n"] >= 8


def test_simd_pair_loop_self_test_catches_a_wrong_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The self-test compares with numpy: one event too many must fail it."""
    if not pre_add_simd.available():
        pytest.skip(f"no SIMD pre-add loop here: {pre_add_simd.why_unavailable()}")
    real = pre_add_simd.evaluate

    def one_more(*a, **kw):
        d, dn, c, per_neuron = real(*a, **kw)
        c = c.copy()
        c[0, 0] += 1
        return d, dn, c, per_neuron

    monkeypatch.setattr(pre_add_simd, "evaluate", one_more)
    assert "differs" in pre_add_simd._self_test()


def test_failed_simd_self_test_keeps_the_numba_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIMD pair loop that failed its self-test is never used: the numba kernel runs and
    the results equal the numpy fallback's."""
    monkeypatch.setenv("HWSIM_NUMBA", "1")
    monkeypatch.setenv("HWSIM_SIMD", "1")
    if not pre_add_kernel.hot_kernel_available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(pre_add_simd, "_STATE", {"ok": False, "why": "broken on purpose"})
    used = {"simd": 0, "numba": 0}
    real_simd, real_hot = pre_add_simd.evaluate, pre_add_kernel.evaluate_hot

    def simd(*a, **kw):
        used["simd"] += 1
        return real_simd(*a, **kw)

    def hot(*a, **kw):
        used["numba"] += 1
        return real_hot(*a, **kw)

    monkeypatch.setattr(pre_add_simd, "evaluate", simd)
    monkeypatch.setattr(pre_add_kernel, "evaluate_hot", hot)
    x, w = _hot_layer(np.random.default_rng(8), 20, 64, 12)
    spec = MacSpec(32, "wrap", 4, "raw", 2, 16, "saturate", False, 8)
    _check(x, 0, w, np.zeros(12, np.int64), spec, "fallback")
    assert used == {"simd": 0, "numba": 1}
    assert pre_add_simd.why_unavailable() == "broken on purpose"
