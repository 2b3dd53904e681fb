"""The narrow-accumulator fast paths agree bit for bit with the stepwise engine.

The chunked path (simulator/units/acc_chunked.py, partial_sums.py, chunk_stepper.py) proves
most K-chunks event-free and steps only the others. These tests run it against the stepwise
engine (the reference) on random configurations with chunks cut much shorter than in
production (so that chunk edges, crossings at chunk ends and the checkpoint before a chunk in
event_driven mode are hit often), with both stepping implementations (numba and the numpy
fallback, HWSIM_NUMBA=0), and on hand-made edge cases: partial sums exactly at the register's
max and min, a chunk ending exactly on a crossing, K not a multiple of the chunk, every input
at the zero point, saturate-then-recover, wrap both ways within one chunk, multi-module
models. compare_with_fast checks outputs, predictions, accumulators, per-neuron and per-pair
events, first events, min_safe_acc_bits, max_abs_acc, clamps and cycles.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_stepwise import _combined_net, _split_net

from simulator.config import load_config
from simulator.engine import simulate
from simulator.engine.stepwise import compare_with_fast, simulate_stepwise
from simulator.network import make_combined_network
from simulator.units import acc_chunked, acc_screened, chunk_stepper

N_CASES = 400
_REAL_EVENTS_DENSE = acc_chunked.events_dense
STEPPERS = ["numba", "numpy"]


@pytest.fixture(params=STEPPERS)
def stepper(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the compiled stepping loop and with the numpy fallback."""
    if request.param == "numba":
        monkeypatch.setenv("HWSIM_NUMBA", "1")
        if not chunk_stepper.numba_enabled():
            pytest.skip("numba is not installed")
    else:
        monkeypatch.setenv("HWSIM_NUMBA", "0")
        assert not chunk_stepper.numba_enabled()
    return str(request.param)


def _short_chunks(monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
    """Chunks of 1..4 adder-tree steps instead of ~K/24 inputs; the whole-pair mode (one
    chunk, used when events are dense) forced on or off, or left to the heuristic."""
    m = int(rng.integers(1, 5))
    monkeypatch.setattr(acc_chunked, "chunk_size", lambda k, g: m * g)
    mode = int(rng.integers(3))
    real = _REAL_EVENTS_DENSE
    monkeypatch.setattr(acc_chunked, "events_dense",
                        real if mode == 0 else (lambda *a: mode == 1))


def _count_results(monkeypatch: pytest.MonkeyPatch, name: str, real) -> dict[str, int]:
    """Replace acc_chunked.<name> by ``real`` counting the calls that returned a result
    (not None, and not False)."""
    used = {"n": 0}

    def counting(*a, **kw):
        r = real(*a, **kw)
        used["n"] += r is not None and r is not False
        return r

    monkeypatch.setattr(acc_chunked, name, counting)
    return used


def chunked_case(seed: int) -> tuple[object, object, np.ndarray, list[str]]:
    """A random configuration that the chunked path handles (no pre-add, wrap|saturate)."""
    rng = np.random.default_rng(50_000 + seed)
    split = rng.random() < 0.2
    k = int(rng.integers(1, 70)) if rng.random() < 0.8 else int(rng.integers(100, 200))
    n1, n2 = int(rng.integers(1, 14)), int(rng.integers(1, 6))
    mods = int(rng.integers(1, 3))
    q = int(rng.integers(1, 5))
    zx = 0 if split else int(rng.choice([0, 0, 128, int(rng.integers(0, 256))]))
    event = rng.random() < 0.4
    raw = not event and not split and rng.random() < 0.3
    sets = [
        f"accumulator.bits={int(rng.integers(6, 24))}",
        f"accumulator.overflow={rng.choice(['wrap', 'saturate'])}",
        f"accumulator.adder_tree_width={int(rng.choice([1, 1, 2, 3, 4]))}",
        f"mac.lanes={int(rng.integers(1, 9))}",
        f"mac.operand={'raw' if raw else 'offset'}",
        f"schedule.mode={'event_driven' if event else 'dense'}",
        f"report.headroom={'exact' if rng.random() < 0.8 else 'bound'}",
    ]
    if rng.random() < 0.3:
        sets.append(f"layers.output.accumulator.bits={int(rng.integers(8, 33))}")
    if split:
        net = _split_net(rng, k, n1, n2, mods)
        cfg = load_config("seed_tutorial", sets)
    else:
        net = _combined_net(rng, k, n1, n2, mods, zx, zw=rng.random() < 0.2)
        cfg = load_config("pytorch_fbgemm", sets)
    x = rng.integers(0, 256, (q, k))
    if event or rng.random() < 0.3:
        x = np.where(rng.random((q, k)) < rng.uniform(0.2, 0.95), zx, x)
    if rng.random() < 0.05:  # every input at the zero point
        x[:] = zx
    return net, cfg, x.astype(np.uint8), sets


@pytest.mark.slow  # ~30 s per stepping implementation on 2 cores
@pytest.mark.parametrize("part", range(4))
def test_chunked_path_equals_stepwise(part: int, stepper: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    events = stepped = 0
    for seed in range(part, N_CASES, 4):
        rng = np.random.default_rng(seed)
        _short_chunks(monkeypatch, rng)
        net, cfg, x, sets = chunked_case(seed)
        fast = simulate(net, cfg, x, batch=2 if seed % 5 == 0 else 64)
        step = simulate_stepwise(net, cfg, x)
        diffs = compare_with_fast(fast, step)
        assert not diffs, f"seed {seed} ({stepper}) {sets}: " + "; ".join(diffs[:6])
        for lr in fast.layers:
            for s in lr.mac.values():
                events += int(s.acc_wrap.sum() + s.acc_saturate.sum())
                stepped += s.ordered_pairs
    assert events > 100 and stepped > 100  # the cases do reach the stepped chunks


@pytest.mark.parametrize("whole_pairs", [False, True])
def test_production_chunk_size_on_longer_k(stepper: str, whole_pairs: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The unpatched chunk size (several chunks once K is in the hundreds), and whole pairs."""
    monkeypatch.setattr(acc_chunked, "events_dense", lambda *a: whole_pairs)
    for seed in range(12):
        rng = np.random.default_rng(900 + seed)
        k = int(rng.integers(300, 700))
        net = _combined_net(rng, k, 6, 3, 1, int(rng.integers(0, 256)), zw=False)
        sets = [f"accumulator.bits={int(rng.integers(14, 22))}",
                f"accumulator.overflow={rng.choice(['wrap', 'saturate'])}",
                f"accumulator.adder_tree_width={int(rng.choice([1, 4]))}",
                f"schedule.mode={rng.choice(['dense', 'event_driven'])}"]
        cfg = load_config("pytorch_fbgemm", sets)
        x = rng.integers(0, 256, (2, k)).astype(np.uint8)
        diffs = compare_with_fast(simulate(net, cfg, x), simulate_stepwise(net, cfg, x))
        assert not diffs, f"seed {seed} {sets}: " + "; ".join(diffs[:4])


@pytest.mark.slow  # ~30-50 s per part on 2 cores, numba's first compilation included
@pytest.mark.parametrize("part", range(2))
def test_tile_stepper_equals_stepwise(part: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole pairs stepped in tiles (the compiled dense-events path): small, ragged tiles,
    float32 and float64 registers (wide accumulators), tracked partial sums, every mode."""
    from simulator.units import tile_stepper

    monkeypatch.setenv("HWSIM_NUMBA", "1")
    monkeypatch.setenv("HWSIM_SIMD", "0")  # the float tiles (tests/test_tile_simd.py: SIMD)
    if not tile_stepper.tiles_available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(acc_chunked, "events_dense", lambda *a: True)
    calls = {"tiles": 0, "f64": 0, "fused": 0}
    real_step = tile_stepper.step_tiles

    def counting(*a, **kw):
        calls["tiles"] += 1
        calls["f64"] += a[7] is np.float64
        live, track = a[3], a[6]  # fused steps: dense G <= 4, a live pair not tracked
        calls["fused"] += 0 < a[8] <= 4 and bool((live & ~track).any())
        return real_step(*a, **kw)

    monkeypatch.setattr(tile_stepper, "step_tiles", counting)
    for seed in range(part, 80, 2):
        rng = np.random.default_rng(7_000 + seed)
        monkeypatch.setattr(tile_stepper, "QUERY_BLOCK", int(rng.choice([1, 2, 3, 8])))
        monkeypatch.setattr(tile_stepper, "NEURON_BLOCK", int(rng.choice([1, 4, 5, 256])))
        net, cfg, x, sets = chunked_case(10_000 + seed)
        if seed % 3 == 0:  # a wide register: float64 tiles
            sets = [*sets, f"accumulator.bits={int(rng.integers(25, 40))}"]
            cfg = load_config(cfg.name, sets)
        diffs = compare_with_fast(simulate(net, cfg, x), simulate_stepwise(net, cfg, x))
        assert not diffs, f"seed {seed} {sets}: " + "; ".join(diffs[:6])
    assert calls["tiles"] > 20 and calls["f64"] > 0 and calls["fused"] > 5


def test_wrap_stream_equals_stepwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrap, dense schedule: chunk statistics streamed one chunk at a time for all queries
    (simulator/units/wrap_stream.py), short chunks so that many chunks are flagged."""
    from simulator.units import wrap_stream

    monkeypatch.setenv("HWSIM_NUMBA", "1")
    monkeypatch.setenv("HWSIM_SIMD", "0")  # else most-pairs wrap runs in SIMD tiles
    if not chunk_stepper.numba_enabled():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(acc_chunked, "events_dense", lambda *a: False)
    used = _count_results(monkeypatch, "evaluate_wrap_streamed",
                          wrap_stream.evaluate_wrap_streamed)
    for seed in range(40):
        rng = np.random.default_rng(8_000 + seed)
        m = int(rng.integers(1, 5))
        monkeypatch.setattr(acc_chunked, "chunk_size", lambda k, g, m=m: m * g)
        net, cfg, x, sets = chunked_case(20_000 + seed)
        sets = [*sets, "accumulator.overflow=wrap", "schedule.mode=dense"]
        cfg = load_config(cfg.name, sets)
        diffs = compare_with_fast(simulate(net, cfg, x), simulate_stepwise(net, cfg, x))
        assert not diffs, f"seed {seed} {sets}: " + "; ".join(diffs[:6])
    assert used["n"] > 10


# --- hand-made edge cases ---------------------------------------------------------------------


def _one_layer_net(w: np.ndarray, zx: int = 0, modules: int = 1):
    """Feature weights ``w`` (N, K) as given; a small output layer."""
    n, k = w.shape
    mods = []
    for m in range(modules):
        mods.append({
            "input_scale": 1 / 255, "input_zero_point": zx,
            "feature": {"weight": w.astype(np.int8), "scale": np.full(n, 0.01),
                        "output_scale": 0.5 + m, "output_zero_point": 10},
            "output": {"weight": np.ones((2, n), np.int8), "scale": np.full(2, 0.01),
                       "output_scale": 0.3, "output_zero_point": 3},
        })
    return make_combined_network(mods)


def _check(net, sets: list[str], x: np.ndarray, chunk: int | None,
           monkeypatch: pytest.MonkeyPatch):
    if chunk is not None:
        monkeypatch.setattr(acc_chunked, "chunk_size", lambda k, g: chunk)
    cfg = load_config("pytorch_fbgemm", sets)
    fast = simulate(net, cfg, x.astype(np.uint8))
    step = simulate_stepwise(net, cfg, x.astype(np.uint8))
    diffs = compare_with_fast(fast, step)
    assert not diffs, "; ".join(diffs[:6])
    return fast.layer(0, "feature").mac["combined"]


BASE8 = ["accumulator.bits=8", "accumulator.adder_tree_width=1", "mac.lanes=1"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 8])
def test_partial_sum_exactly_at_max_and_min(chunk: int, stepper: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # products 127 (P = 127 = max), -255 (P = -128 = min), 0, 0: no event at all
    x = np.array([[127, 255, 0, 0]])
    w = np.array([[1, -1, 1, 1]])
    for pol in ("wrap", "saturate"):
        st = _check(_one_layer_net(w), [*BASE8, f"accumulator.overflow={pol}"], x, chunk,
                    monkeypatch)
        assert int(st.acc_wrap.sum() + st.acc_saturate.sum()) == 0
        assert st.min_safe_acc_bits == 8
    # one more product of -1 crosses: exactly one event
    x = np.array([[127, 255, 1, 0]])
    w = np.array([[1, -1, -1, 1]])
    for pol in ("wrap", "saturate"):
        st = _check(_one_layer_net(w), [*BASE8, f"accumulator.overflow={pol}"], x, chunk,
                    monkeypatch)
        assert int(st.acc_wrap.sum() + st.acc_saturate.sum()) == 1
        assert st.first == (0, 0, 2)
        assert st.min_safe_acc_bits == 9


@pytest.mark.parametrize("where", [3, 4, 7])
def test_chunk_ending_exactly_on_a_crossing(where: int, stepper: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 4: the crossing product is the last of chunk 0, the first of chunk 1, ..."""
    k = 11  # not a multiple of the chunk
    x = np.full((1, k), 1)
    w = np.zeros((2, k), int)
    w[:, :where] = 15  # P climbs to 15 * where <= 105 ...
    w[0, where] = 127  # ... and crosses 127 exactly at input ``where``
    w[1, where] = -127
    x[0, where] = 1
    for pol in ("wrap", "saturate"):
        st = _check(_one_layer_net(w), [*BASE8, f"accumulator.overflow={pol}"], x, 4,
                    monkeypatch)
        assert int(st.acc_wrap.sum() + st.acc_saturate.sum()) >= 1


def test_event_driven_every_input_at_zero_point(stepper: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    w = rng.integers(-128, 128, (5, 40))
    for zx in (0, 77):
        x = np.full((3, 40), zx)
        st = _check(_one_layer_net(w, zx), [*BASE8, "schedule.mode=event_driven",
                                            "accumulator.adder_tree_width=4"], x, 8, monkeypatch)
        assert int(st.acc_wrap.sum() + st.acc_saturate.sum()) == 0
        assert st.min_safe_acc_bits == 2


def test_saturate_then_recover(stepper: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # up past max (clipped twice), back down inside, then below min, then back inside
    seq_x = np.array([[100, 100, 100, 200, 200, 200, 200, 50, 100]])
    seq_w = np.array([[1, 1, 1, -1, -1, -1, -1, 1, 1]])
    st = _check(_one_layer_net(seq_w), [*BASE8, "accumulator.overflow=saturate"], seq_x, 3,
                monkeypatch)
    assert int(st.acc_saturate.sum()) == 5  # 200, 227 > 127; -273, -328, -328 < -128


def test_wrap_both_directions_within_one_chunk(stepper: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.array([[120, 120, 250, 250, 120, 120, 0, 0]])
    w = np.array([[1, 1, -1, -1, 1, 1, 1, 1]])
    st = _check(_one_layer_net(w), [*BASE8, "accumulator.overflow=wrap"], x, 8, monkeypatch)
    # P: 120, 240 (up), -10 (down), -260 (down), -140, -20 (up): 4 window changes
    assert int(st.acc_wrap.sum()) == 4


def test_multi_module_edges(stepper: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    w = rng.integers(-128, 128, (7, 33))
    net = _one_layer_net(w, 5, modules=3)
    x = rng.integers(0, 256, (4, 33))
    for pol in ("wrap", "saturate"):
        _check(net, ["accumulator.bits=14", f"accumulator.overflow={pol}",
                     "accumulator.adder_tree_width=2", "schedule.mode=event_driven"], x, 4,
               monkeypatch)


# --- the benchmark's reference check can fail -----------------------------------------------


def test_bench_reference_check_catches_a_wrong_result() -> None:
    from simulator.engine.reference import reference_check

    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, (6, 50))
    net = _one_layer_net(w, 0)
    cfg = load_config("pytorch_fbgemm", ["accumulator.bits=14", "accumulator.overflow=wrap"])
    x = rng.integers(0, 256, (3, 50)).astype(np.uint8)
    res = simulate(net, cfg, x)
    assert reference_check(net, cfg, res, 8) == []
    st = res.layer(0, "feature").mac["combined"]
    assert st.pair_events.size  # there are events to get wrong
    res.layer(0, "feature").acc["combined"][1, 2] += 1
    st.pair_events[0, 2] += 1
    diffs = reference_check(net, cfg, res, 8)
    assert any("accumulator of neuron 2" in d for d in diffs)
    assert any("events of neuron" in d for d in diffs)


# --- every pair to the streamed pass (no full absolute-sum product) ---------------------------


@pytest.mark.parametrize("seed", range(10))
def test_every_pair_streamed_equals_stepwise(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """When most sampled pairs are live, acc_chunked hands every pair to the streamed pass
    (or, event-driven with no event possible, the every-prefix pass) without the full A
    product. Forced here (MOST_LIVE = 0) on >= 64 queries: narrow wrap in the dense schedule,
    and 32-bit runs whose exact headroom needs the streamed pass, in both schedules."""
    from simulator.bench import bench_inputs, bench_network

    monkeypatch.setenv("HWSIM_NUMBA", "1")
    if not chunk_stepper.numba_enabled():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(acc_chunked, "MOST_LIVE", 0.0)
    monkeypatch.setattr(acc_chunked, "EVENTS_EVERYWHERE", 2.0)  # not the every-pair tiles
    # the 32-bit runs: the chunk-prefix screen (prefix_screen.py) would settle them first
    monkeypatch.setattr(acc_screened, "prefix_bounds", lambda *a, **k: None)
    taken = _count_results(monkeypatch, "_most_pairs_live", acc_chunked._most_pairs_live)
    rng = np.random.default_rng(90_000 + seed)
    k, n1, places = int(rng.integers(40, 140)), int(rng.integers(8, 48)), int(rng.integers(2, 12))
    net = bench_network(k, n1, places, seed=seed)
    x = bench_inputs(int(rng.integers(64, 90)), k, seed=seed)
    g = int(rng.choice([1, 2, 4]))
    bits = int(rng.integers(12, 20))
    for sets in ([f"accumulator.bits={bits}", "accumulator.overflow=wrap",
                  f"accumulator.adder_tree_width={g}"],
                 [f"accumulator.adder_tree_width={g}"],
                 [f"accumulator.adder_tree_width={g}", "schedule.mode=event_driven"]):
        cfg = load_config("pytorch_fbgemm", sets)
        before = taken["n"]
        diffs = compare_with_fast(simulate(net, cfg, x), simulate_stepwise(net, cfg, x))
        assert not diffs, f"seed {seed} {sets}: " + "; ".join(diffs[:6])
        if sets[0].startswith("accumulator.bits"):
            assert taken["n"] > before, sets  # the wrap run took the path
    assert taken["n"] >= 2


@pytest.mark.parametrize("sign", [1, -1])
def test_streamed_width_when_the_extreme_is_one_past_a_power_of_two(
        sign: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The widest partial sum sits one past -2**13 (or 2**13 - 1) at one checkpoint inside the
    streamed pass's flagged chunks, while the final sums need only 8 bits: min_safe_acc_bits
    must be exactly 15 (14 would hold a value one closer to zero)."""
    monkeypatch.setenv("HWSIM_NUMBA", "1")
    if not chunk_stepper.numba_enabled():
        pytest.skip("numba is not installed")
    from simulator.units import wrap_stream

    used = _count_results(monkeypatch, "evaluate_wrap_streamed",
                          wrap_stream.evaluate_wrap_streamed)
    monkeypatch.setattr(acc_chunked, "events_dense", lambda *a: False)  # not whole-pair tiles
    # x = 1: the partial sums reach -8193 (14 bits hold -8192) or +8192 (14 bits: 8191)
    row = [-127] * 64 + [-65] + [127] * 65 if sign > 0 else [127] * 64 + [64] + [-127] * 65
    w = np.array([row, row])
    net = _one_layer_net(w)
    x = np.ones((4, w.shape[1]))
    st = _check(net, ["accumulator.adder_tree_width=1", "mac.lanes=1"], x, None, monkeypatch)
    assert used["n"] > 0
    assert st.min_safe_acc_bits == 15


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("policy", ["wrap", "saturate"])
def test_tiles_width_from_the_streamed_pass(sign: int, policy: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole-pair tiles on a narrow register no longer track partial sums: the width comes
    from the streamed pass with an unbounded register (acc_chunked._partial_range). The
    widest partial sum sits one past a power of two; min_safe_acc_bits must be exactly 15,
    with events on the 12-bit register. (The SIMD tiles track partial sums themselves:
    tests/test_tile_simd.py.)"""
    monkeypatch.setenv("HWSIM_NUMBA", "1")
    monkeypatch.setenv("HWSIM_SIMD", "0")
    if not chunk_stepper.numba_enabled():
        pytest.skip("numba is not installed")
    used = _count_results(monkeypatch, "_partial_range", acc_chunked._partial_range)
    monkeypatch.setattr(acc_chunked, "events_dense", lambda *a: True)  # whole-pair tiles
    row = [-127] * 64 + [-65] + [127] * 65 if sign > 0 else [127] * 64 + [64] + [-127] * 65
    net = _one_layer_net(np.array([row, row, row]))
    x = np.ones((4, len(row)))
    st = _check(net, ["accumulator.adder_tree_width=1", "mac.lanes=1", "accumulator.bits=12",
                      f"accumulator.overflow={policy}"], x, None, monkeypatch)
    assert used["n"] > 0
    assert st.min_safe_acc_bits == 15
    assert (st.acc_wrap.sum() if policy == "wrap" else st.acc_saturate.sum()) > 0
