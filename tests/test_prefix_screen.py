"""The chunk-prefix screen (simulator/units/prefix_screen.py): exact sums, bounds that hold for
every index-order prefix, and ``min_safe_acc_bits`` equal to the stepwise engine's when the
screen settles a layer (or hands it on)."""

from __future__ import annotations

import numpy as np
import pytest
from test_overflow_paths import _check, _one_layer_net

from simulator import kernels, kernels_ort
from simulator.bench import bench_inputs, bench_network
from simulator.config import load_config
from simulator.engine import simulate
from simulator.engine.stepwise import compare_with_fast, simulate_stepwise
from simulator.fixedpoint import Register
from simulator.units import acc_screened, chunk_stepper, chunk_sums, prefix_screen
from simulator.units.accumulator import bits_for_range, range_of


def _operands(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    q, n, k = int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.integers(1, 300))
    regime = rng.integers(3)
    lo, hi = ((0, 256), (-255, 1), (-128, 128))[regime]
    ox = rng.integers(lo, hi, (q, k)).astype(np.int16)
    ox[rng.random(ox.shape) < 0.2] = 0
    ow = rng.integers(-128, 128, (n, k)).astype(np.int8)
    return ox, ow


def _settle_outcomes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The verdicts of acc_screened._prefixes_settle, in call order (a spy)."""
    outcomes: list[bool] = []
    real = acc_screened._prefixes_settle

    def spy(*a, **k):  # noqa: ANN002, ANN003, ANN202
        r = real(*a, **k)
        outcomes.append(r)
        return r

    monkeypatch.setattr(acc_screened, "_prefixes_settle", spy)
    return outcomes


def _ranges(ox: np.ndarray, ow: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    return ((min(int(ox.min()), 0), max(int(ox.max()), 0)),
            (min(int(ow.min()), 0), max(int(ow.max()), 0)))


def _grid(pb: prefix_screen.PrefixBounds) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) (Q, N) of a screen that lists every pair (row-major)."""
    q, n = pb.sums.shape
    assert pb.qs.tolist() == np.repeat(np.arange(q), n).tolist()
    assert pb.js.tolist() == np.tile(np.arange(n), q).tolist()
    return pb.lo.reshape(q, n), pb.hi.reshape(q, n)


@pytest.mark.parametrize("seed", range(40))
def test_bounds_hold_for_every_prefix(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """sums equal an int64 product; lo / hi enclose every prefix of a cumulative sum; the
    numpy and the compiled kernels give the same arrays (buffer blocks of 1..Q queries).
    Without ``every_pair``, the pairs left out have every prefix inside the final sums'
    width; in one block of queries the pairs listed are exactly those whose bounds leave that
    width (an earlier block, judged by the narrower width of the sums so far, may list more).
    """
    rng = np.random.default_rng(7_000 + seed)
    ox, ow = _operands(rng)
    xr, wr = _ranges(ox, ow)
    chunks = int(rng.integers(1, 60))
    monkeypatch.setattr(prefix_screen, "BUFFER_BYTES", int(rng.integers(1, 1 << 16)))
    # compiled: bounds per tile of neurons (then per pair of the flagged tiles) or per pair
    monkeypatch.setattr(prefix_screen, "PER_PAIR_MAX", 0 if seed % 2 else 1 << 40)
    prefix = np.cumsum(ox.astype(np.int64)[:, None, :] * ow.astype(np.int64)[None], axis=2)
    got = []
    for numba_on in ("0", "1"):
        monkeypatch.setenv("HWSIM_NUMBA", numba_on)
        pb = prefix_screen.prefix_bounds(ox, ow, xr, wr, None, chunks, every_pair=True)
        assert pb is not None
        np.testing.assert_array_equal(pb.sums, ox.astype(np.int64) @ ow.astype(np.int64).T)
        lo, hi = _grid(pb)
        assert (lo <= prefix.min(axis=2)).all() and (hi >= prefix.max(axis=2)).all()
        got.append((lo, hi))
        few = prefix_screen.prefix_bounds(ox, ow, xr, wr, None, chunks)
        assert few is not None
        np.testing.assert_array_equal(few.sums, pb.sums)
        assert pb.sums_range == few.sums_range == range_of(pb.sums)
        reg = Register(bits_for_range(*range_of(pb.sums)), True)
        out = (lo < reg.min) | (hi > reg.max)
        listed = np.zeros(out.shape, dtype=bool)
        listed[few.qs, few.js] = True
        assert few.qs.size == listed.sum()  # each pair once
        assert (listed >= out).all()  # an early block's narrower width may list a few more
        with monkeypatch.context() as one_block:
            one_block.setattr(prefix_screen, "BUFFER_BYTES", 1 << 40)
            whole = prefix_screen.prefix_bounds(ox, ow, xr, wr, None, chunks)
        assert whole is not None  # one block: exactly the pairs whose bounds leave the width
        assert (whole.qs.tolist(), whole.js.tolist()) == tuple(v.tolist() for v in np.nonzero(out))
        np.testing.assert_array_equal(few.lo, lo[few.qs, few.js])
        np.testing.assert_array_equal(few.hi, hi[few.qs, few.js])
        inside = ~listed
        assert (prefix.min(axis=2)[inside] >= reg.min).all()
        assert (prefix.max(axis=2)[inside] <= reg.max).all()
    if chunk_stepper.numba_enabled():
        np.testing.assert_array_equal(got[0][0], got[1][0])
        np.testing.assert_array_equal(got[0][1], got[1][1])
    if kernels_ort.available():  # chunk sums from one batched ONNX Runtime product
        ran = []
        real = kernels_ort.run_batched
        monkeypatch.setattr(kernels_ort, "run_batched",
                            lambda *a: ran.append(1) or real(*a))
        monkeypatch.setattr(kernels, "ORT_MIN_PRODUCTS", 0)
        monkeypatch.setenv("HWSIM_MATMUL", "auto")
        for numba_on in ("0", "1"):  # int32 prefixes from the int32 chunk sums
            monkeypatch.setenv("HWSIM_NUMBA", numba_on)
            pb = prefix_screen.prefix_bounds(ox, ow, xr, wr, {}, chunks, every_pair=True)
            assert pb is not None
            np.testing.assert_array_equal(pb.sums, ox.astype(np.int64) @ ow.astype(np.int64).T)
            lo, hi = _grid(pb)
            np.testing.assert_array_equal(lo, got[-1][0])
            np.testing.assert_array_equal(hi, got[-1][1])
            few = prefix_screen.prefix_bounds(ox, ow, xr, wr, {}, chunks)
            assert few is not None
            listed = np.zeros(lo.shape, dtype=bool)
            listed[few.qs, few.js] = True
            reg = Register(bits_for_range(*range_of(pb.sums)), True)
            assert (listed >= ((lo < reg.min) | (hi > reg.max))).all()
        fits = kernels_ort.zero_point(*xr) is not None and kernels_ort.zero_point(*wr) is not None
        edges = chunk_sums.chunk_edges(ox.shape[1], chunks)
        equal = bool(np.all(np.diff(edges)[:-1] == np.diff(edges).max(initial=1)))
        assert bool(ran) == (fits and equal and ox.size > 0 and ow.size > 0)


@pytest.mark.parametrize("shape", [(0, 3, 5), (2, 0, 5), (2, 3, 0)])
def test_empty_operands(shape: tuple[int, int, int]) -> None:
    q, n, k = shape
    for every in (False, True):
        pb = prefix_screen.prefix_bounds(np.zeros((q, k), np.int16), np.zeros((n, k), np.int8),
                                         (0, 0), (0, 0), every_pair=every)
        assert pb is not None and pb.sums.shape == (q, n) and not pb.sums.any()
        assert pb.qs.size == pb.js.size == pb.lo.size == pb.hi.size == (q * n if every else 0)
        assert not pb.lo.any() and not pb.hi.any()


def test_bounds_are_the_chunk_prefix_bounds() -> None:
    """One query, one neuron, chunks of 2: hi = max_c min(P(a_c) + up_c, P(a_c+1) + down_c)
    and lo = min_c max(P(a_c) - down_c, P(a_c+1) - up_c) exactly (prefixes 6, 1, 1, 3)."""
    ox = np.array([[3, 1, 0, 2]], dtype=np.int16)
    ow = np.array([[2, -5, 4, 1]], dtype=np.int8)
    pb = prefix_screen.prefix_bounds(ox, ow, (0, 3), (-5, 4), None, 2, every_pair=True)
    assert pb is not None
    # chunk 0: P 0 -> 1, up 3 * 2, down 3 * 5: hi min(6, 16), lo max(-15, -5);
    # chunk 1: P 1 -> 3, up 2 * 5, down 0: hi min(11, 3), lo max(1, -7)
    assert pb.sums.tolist() == [[3]] and pb.hi.tolist() == [6.0]
    assert pb.lo.tolist() == [-5.0]
    few = prefix_screen.prefix_bounds(ox, ow, (0, 3), (-5, 4), None, 2)
    assert few is not None and few.qs.tolist() == [0]  # 6 and -5 leave 3 bits [-4, 3]


@pytest.mark.parametrize("per_pair_max", [0, 1 << 40])
@pytest.mark.parametrize("numba_on", ["1", "0"])
@pytest.mark.parametrize("side", ["top", "bottom"])
def test_separable_bound_exact_at_the_edge(side: str, numba_on: str, per_pair_max: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """x' = 1, three chunks of 2 inputs. top: weights 0 0 | 8 -1 | 0 -1 (prefixes 0 0 8 7
    7 6; final 6: 4 bits, max 7): the separable bounds are exact here, top = min(max(M, 0) +
    up, max(M, S) + down) = 7 + 1 = 8 (M = 7, the inner prefix P(a_2)), one past the width,
    and bottom stays inside, so the pair must be listed; bottom: 0 0 | -9 1 | 0 1 (a prefix
    at -9, under the 4-bit min), mirrored. An inner prefix max / min off by one drops it."""
    monkeypatch.setenv("HWSIM_NUMBA", numba_on)
    monkeypatch.setattr(prefix_screen, "PER_PAIR_MAX", per_pair_max)
    row = [0, 0, 8, -1, 0, -1] if side == "top" else [0, 0, -9, 1, 0, 1]
    ow = np.array([row], dtype=np.int8)
    ox = np.ones((1, 6), dtype=np.int16)
    pb = prefix_screen.prefix_bounds(ox, ow, (0, 1), (-9, 8), None, 3)
    assert pb is not None and pb.qs.tolist() == [0] and pb.js.tolist() == [0]
    if side == "top":
        assert pb.hi.tolist() == [8.0]
    else:
        assert pb.lo.tolist() == [-9.0]


def test_exact_prefix_range_equals_a_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    ox, ow = rng.integers(-200, 200, (5, 37)), rng.integers(-128, 128, (4, 37))
    qs, js = np.array([0, 0, 3, 4, 2]), np.array([1, 3, 0, 2, 2])
    monkeypatch.setattr(prefix_screen, "PAIRS_PER_BATCH", 40)  # two pairs per batch
    for numba_on in ("0", "1"):  # numpy batches, the compiled loop
        monkeypatch.setenv("HWSIM_NUMBA", numba_on)
        lo, hi = prefix_screen.exact_prefix_range(ox, ow, qs, js)
        for i, (q, j) in enumerate(zip(qs.tolist(), js.tolist(), strict=True)):
            run, seen = 0, []
            for kk in range(37):
                run += int(ox[q, kk]) * int(ow[j, kk])
                seen.append(run)
            assert (lo[i], hi[i]) == (min(seen), max(seen))


@pytest.mark.parametrize("seed", range(24))
def test_exact_headroom_equals_stepwise(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """32-bit runs (no event possible) whose feature-layer inputs have x' < 0 (zx > 0): the
    screen settles the width or hands the layer on; either way min_safe_acc_bits, the
    partial-sum range and every output equal the stepwise engine's, dense (G = 1, 2, 4) and
    event-driven."""
    outcomes = _settle_outcomes(monkeypatch)
    if seed % 3 == 0:
        monkeypatch.setenv("HWSIM_NUMBA", "0")
    if seed % 3 == 1:  # every product through ONNX Runtime where it applies
        monkeypatch.setattr(kernels, "ORT_MIN_PRODUCTS", 0)
    if seed % 5 == 4:  # any open pair: the chunked path takes the layer
        monkeypatch.setattr(acc_screened, "PREFIX_SCAN_ALWAYS", 0)
        monkeypatch.setattr(acc_screened, "PREFIX_SCAN_MAX_FRACTION", 0.0)
    rng = np.random.default_rng(8_000 + seed)
    k, n1, places = int(rng.integers(20, 160)), int(rng.integers(4, 40)), int(rng.integers(2, 9))
    net = bench_network(k, n1, places, seed=seed)
    zx = int(rng.integers(1, 200))
    object.__setattr__(net.modules[0], "input_zero_point", zx)
    x = bench_inputs(int(rng.integers(3, 30)), k, seed=seed)
    g = int(rng.choice([1, 2, 4]))
    sets = [f"accumulator.adder_tree_width={g}"]
    if seed % 2:
        sets.append("schedule.mode=event_driven")
    cfg = load_config("pytorch_fbgemm" if seed % 4 < 2 else "int8_fixed_point", sets)
    fast, step = simulate(net, cfg, x), simulate_stepwise(net, cfg, x)
    diffs = compare_with_fast(fast, step)
    assert not diffs, f"seed {seed} {sets}: " + "; ".join(diffs[:6])
    assert outcomes, "the screen was not consulted"


@pytest.mark.parametrize("seed", range(16))
def test_ort_screen_of_nonnegative_inputs_equals_stepwise(seed: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With ONNX Runtime, inputs x' >= 0 (zx = 0, the feature layer) take the chunk-prefix
    screen too (acc_screened._ort_screen), in few chunks (SCREEN_ELEMENTS) and with one
    session per chunk (BATCHED_MAX = 0) or one batched call: min_safe_acc_bits, the
    partial-sum range and every output equal the stepwise engine's."""
    if not kernels_ort.available():
        pytest.skip(f"onnxruntime: {kernels_ort.why_unavailable()}")
    outcomes = _settle_outcomes(monkeypatch)
    monkeypatch.setattr(kernels, "ORT_MIN_PRODUCTS", 0)
    monkeypatch.setenv("HWSIM_MATMUL", "auto")
    if seed % 2:
        monkeypatch.setattr(chunk_sums, "BATCHED_MAX", 0)
    if seed % 3:
        monkeypatch.setattr(prefix_screen, "SCREEN_ELEMENTS", _chunk_budget(seed))
    rng = np.random.default_rng(9_000 + seed)
    k, n1, places = int(rng.integers(20, 200)), int(rng.integers(4, 60)), int(rng.integers(2, 9))
    net = bench_network(k, n1, places, seed=seed)
    x = bench_inputs(int(rng.integers(3, 30)), k, seed=seed)
    sets = [f"accumulator.adder_tree_width={int(rng.choice([1, 2, 4]))}"]
    if seed % 4 == 1:
        sets.append("schedule.mode=event_driven")
    cfg = load_config("pytorch_fbgemm" if seed % 4 < 2 else "int8_fixed_point", sets)
    fast, step = simulate(net, cfg, x), simulate_stepwise(net, cfg, x)
    diffs = compare_with_fast(fast, step)
    assert not diffs, f"seed {seed} {sets}: " + "; ".join(diffs[:6])
    assert len(outcomes) == 2, "the screen did not take both layers"


def _chunk_budget(seed: int) -> int:
    """A chunk-sum budget (prefix_screen.SCREEN_ELEMENTS) of a few chunks for the feature
    layers above (at most 30 queries x 60 neurons): 2 or more, 5 or more."""
    return 2 * 30 * 60 if seed % 3 == 1 else 5 * 30 * 60


@pytest.mark.parametrize("batched_max", [0, 1 << 40])
def test_ort_chunk_sums_are_exact(batched_max: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunk sums from one batched ONNX Runtime call and from one session per chunk
    (written in place by I/O binding) equal float64 products chunk by chunk, for x' of
    either sign, a short last chunk and blocks of queries."""
    if not kernels_ort.available():
        pytest.skip(f"onnxruntime: {kernels_ort.why_unavailable()}")
    monkeypatch.setattr(kernels, "ORT_MIN_PRODUCTS", 0)
    monkeypatch.setenv("HWSIM_MATMUL", "auto")
    monkeypatch.setattr(chunk_sums, "BATCHED_MAX", batched_max)
    rng = np.random.default_rng(17)
    for lo, hi in ((0, 256), (-255, 1), (-100, 150)):
        q, k, n = 9, 301, 13
        ox = rng.integers(lo, hi, (q, k)).astype(np.int16)
        ow = rng.integers(-128, 128, (n, k)).astype(np.int8)
        edges = chunk_sums.chunk_edges(k, 4)
        xr, wr = _ranges(ox, ow)
        sums = chunk_sums.ort_chunk_sums(ox, ow, xr, wr, edges, {})
        assert sums is not None
        got = sums(2, 8)
        for c in range(edges.size - 1):
            a, b = int(edges[c]), int(edges[c + 1])
            want = ox[2:8, a:b].astype(np.float64) @ ow[:, a:b].T.astype(np.float64)
            assert got.dtype == np.int32 and np.array_equal(got[c], want), (lo, c)


def test_screen_settles_a_bench_shaped_output_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The screen settles the output layer of a bench-shaped net (x' <= 0) and the result
    equals the stepwise engine's (handing a layer on is pinned down by the edge test below)."""
    outcomes = _settle_outcomes(monkeypatch)
    net = bench_network(300, 600, 40, seed=3)
    x = bench_inputs(20, 300, seed=3)
    cfg = load_config("pytorch_fbgemm")
    fast = simulate(net, cfg, x)
    assert True in outcomes  # settled by the screen
    assert not compare_with_fast(fast, simulate_stepwise(net, cfg, x))


@pytest.mark.parametrize("past", [False, True])
def test_prefix_at_the_edge_of_the_final_width(past: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """x' = -1; products -127 * 64, -64 (P = -8192 = the 14-bit min), then +-1 pairs; the
    final sums are -8192 (14 bits). In one net the pairs go up first (every prefix >= -8192:
    the scan settles 14 bits); in the other down first (a prefix at -8193: 15 bits, the scan
    must not settle it)."""
    outcomes = _settle_outcomes(monkeypatch)
    tail = [1, -1] * 20 if past else [-1, 1] * 20
    row = [127] * 64 + [64] + tail
    net = _one_layer_net(np.array([row, row]), zx=2)
    x = np.ones((3, len(row)))  # codes 1: x' = -1
    st = _check(net, ["accumulator.adder_tree_width=1", "mac.lanes=1"], x, None, monkeypatch)
    assert outcomes and outcomes[0] is (not past)
    assert st.min_safe_acc_bits == (15 if past else 14)
