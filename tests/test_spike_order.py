"""schedule.order = time | time_bin against a plain Python loop over the accumulation order.

The loop takes each query's inputs in the configured order, sums adder-tree groups (or time
bins) exactly and applies the accumulator's policy at every addition, tracking the unbounded
partial sums for min_safe_acc_bits.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config import ConfigError, load_config
from simulator.engine import simulate
from simulator.network import make_combined_network
from simulator.units.mac_array import bits_for_range


def _net(seed: int, k: int = 40, n1: int = 24, n2: int = 6):
    rng = np.random.default_rng(seed)

    def layer(n: int, kk: int, sy: float) -> dict:
        return dict(weight=rng.integers(-128, 128, (n, kk)).astype(np.int8),
                    scale=rng.uniform(2e-3, 1e-2, n), output_scale=sy,
                    output_zero_point=int(rng.integers(0, 256)))

    zx = int(rng.integers(0, 30))
    net = make_combined_network([dict(input_scale=1 / 255, input_zero_point=zx,
                                      feature=layer(n1, k, 0.05), output=layer(n2, n1, 0.2))])
    return net, rng.integers(0, 256, (12, k)).astype(np.uint8)


def _loop(x: np.ndarray, zx: int, w: np.ndarray, order: str, tree: int, bins: int, bits: int,
          policy: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    lo_r, hi_r = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    q, k = x.shape
    acc = np.zeros((q, w.shape[0]), np.int64)
    events = np.zeros(w.shape[0], np.int64)
    lo = hi = 0
    for qi in range(q):
        idx = sorted(range(k), key=lambda i: (-int(x[qi, i]), i))
        if order == "time":
            groups = [idx[s : s + tree] for s in range(0, k, tree)]
        else:
            groups = [[i for i in idx if (255 - int(x[qi, i])) * bins // 256 == b]
                      for b in range(bins)]
            groups = [g for g in groups if g]
        for j in range(w.shape[0]):
            a = run = 0
            for g in groups:
                s = sum((int(x[qi, i]) - zx) * int(w[j, i]) for i in g)
                run += s
                lo, hi = min(lo, run), max(hi, run)
                a += s
                if not lo_r <= a <= hi_r:
                    events[j] += 1
                    if policy == "wrap":
                        a = (a - lo_r) % (1 << bits) + lo_r
                    else:
                        a = min(max(a, lo_r), hi_r)
            acc[qi, j] = a
    return acc, events, lo, hi


@pytest.mark.parametrize("order,tree,policy", [("time", 1, "saturate"), ("time", 4, "wrap"),
                                               ("time_bin", 1, "saturate"),
                                               ("time_bin", 2, "wrap")])
def test_order_equals_a_python_loop(order: str, tree: int, policy: str) -> None:
    net, x = _net(3)
    zx = net.modules[0].input_zero_point
    w = net.modules[0].layer("feature").paths[0].weight
    _, _, lo, hi = _loop(x, zx, w, order, tree, 4, 64, policy)
    bits = bits_for_range(lo, hi) - 2  # two bits short: events happen
    cfg = load_config("int8_fixed_point", [
        f"schedule.order=\"{order}\"", "schedule.time_bins=4",
        f"accumulator.adder_tree_width={tree}", f"accumulator.overflow=\"{policy}\"",
        f"layers.feature.accumulator.bits={bits}"])
    res = simulate(net, cfg, x)
    lr = res.layer(0, "feature")
    acc, events, lo2, hi2 = _loop(x, zx, w, order, tree, 4, bits, policy)
    st = lr.mac["combined"]
    assert np.array_equal(lr.acc["combined"], acc)
    assert np.array_equal(st.acc_wrap + st.acc_saturate, events) and events.sum() > 0
    # the reported range is exact wherever it decides the width (docs/reports.md): its ends
    # are real partial sums inside [lo, hi], and it needs exactly the loop's width
    assert lo <= st.partial_min <= 0 <= st.partial_max <= hi
    assert bits_for_range(st.partial_min, st.partial_max) == bits_for_range(lo, hi)
    assert st.min_safe_acc_bits == bits + 2
    assert st.first is not None


def test_time_order_changes_width_and_results_only_with_saturation() -> None:
    net, x = _net(4)
    idx = simulate(net, load_config("int8_fixed_point"), x)
    tim = simulate(net, load_config("int8_fixed_point", ["schedule.order=\"time\""]), x)
    assert np.array_equal(idx.outputs, tim.outputs)  # 32 bits: no event, same sums
    assert np.array_equal(idx.cycles_per_query, tim.cycles_per_query)


def test_order_config_errors() -> None:
    with pytest.raises(ConfigError, match="schedule.order"):
        load_config("int8_fixed_point", ["schedule.order=\"spike\""])
    with pytest.raises(ConfigError, match="time_bin"):
        load_config("x86_avx2_fbgemm", ["schedule.order=\"time_bin\""])
    with pytest.raises(ConfigError, match="time_bin"):
        load_config("int8_fixed_point", ["schedule.order=\"time_bin\"", "mac.operand=raw"])


@pytest.mark.parametrize("seed,tree,pre,policy,mode", [
    (11, 1, 1, "saturate", "dense"), (12, 4, 2, "saturate", "event_driven"),
    (13, 3, 1, "wrap", "dense"), (14, 2, 2, "error", "dense")])
def test_time_order_stepwise_equals_fast(seed: int, tree: int, pre: int, policy: str,
                                         mode: str) -> None:
    """Both engines in time order: outputs, events per neuron and pair, first events, cycles."""
    from simulator.engine.stepwise import compare_with_fast, simulate_stepwise
    from simulator.fixedpoint import RegisterOverflowError

    net, x = _net(seed)
    ov = ["schedule.order=\"time\"", f"accumulator.adder_tree_width={tree}",
          f"mac.pre_add_width={pre}", "mac.pre_add_bits=15", f"accumulator.overflow=\"{policy}\"",
          f"schedule.mode=\"{mode}\"", "mac.lanes=5", "layers.feature.accumulator.bits=16"]
    cfg = load_config("int8_fixed_point", ov)
    if policy == "error":
        with pytest.raises(RegisterOverflowError) as fast_err:
            simulate(net, cfg, x)
        with pytest.raises(RegisterOverflowError) as step_err:
            simulate_stepwise(net, cfg, x)
        assert str(fast_err.value) == str(step_err.value)
        return
    fast = simulate(net, cfg, x)
    st = fast.layer(0, "feature").mac["combined"]
    assert int((st.acc_wrap + st.acc_saturate).sum()) > 0
    assert compare_with_fast(fast, simulate_stepwise(net, cfg, x)) == []


# --- time_bin in the stepwise engine ------------------------------------------------------------

def _time_bin_case(seed: int) -> tuple:
    """A random stepwise case (tests/test_stepwise.py) switched to time_bin order."""
    from test_stepwise import random_case

    net, cfg, x, sets = random_case(seed)
    rng = np.random.default_rng(500 + seed)
    keep = [v for v in sets if not v.startswith(("mac.operand", "mac.pre_add_width",
                                                 "accumulator.adder_tree_width"))]
    bins = int(rng.choice([1, 2, 3, 5, 8, 64, 256]))
    keep += ["schedule.order=\"time_bin\"", f"schedule.time_bins={bins}", "mac.operand=offset",
             "mac.pre_add_width=1", f"accumulator.adder_tree_width={int(rng.integers(1, 6))}"]
    if rng.random() < 0.3:  # all inputs of a query in one bin / at the zero point
        x = x.copy()
        x[0] = x[0, 0]
    return net, load_config(cfg.source, keep), x, keep


@pytest.mark.parametrize("chunk", range(4))
def test_time_bin_stepwise_equals_fast_random(chunk: int) -> None:
    """time_bin: both engines give the same outputs, accumulators, events per neuron and
    pair, first events, min_safe_acc_bits, clamps and cycles on random configs."""
    from simulator.engine.stepwise import compare_with_fast, simulate_stepwise

    events = shared = 0
    for seed in range(chunk, 64, 4):
        net, cfg, x, sets = _time_bin_case(seed)
        fast = simulate(net, cfg, x, batch=2 if seed % 3 == 0 else 128)
        diffs = compare_with_fast(fast, simulate_stepwise(net, cfg, x))
        assert not diffs, f"seed {seed} {sets}: " + "; ".join(diffs[:6])
        events += sum(int(s.acc_wrap.sum() + s.acc_saturate.sum())
                      for lr in fast.layers for s in lr.mac.values())
        for lr in fast.layers:  # several bins closing in one step
            steps = [_write_steps(net, cfg, fast, lr, q) for q in range(x.shape[0])]
            shared += sum(int((np.diff(s) == 0).any()) for s in steps)
    assert events > 0 and shared > 0


def _write_steps(net, cfg, res, lr, q: int) -> np.ndarray:
    from simulator.trace import _bin_steps

    return _bin_steps(res, net, cfg, lr, q)


@pytest.mark.parametrize("seed", range(12))
def test_time_bin_error_policy_same_event(seed: int) -> None:
    """``error`` in time_bin order: both engines stop at the same event with the same words."""
    from test_stepwise import _combined_net

    from simulator.engine.stepwise import simulate_stepwise
    from simulator.fixedpoint import RegisterOverflowError

    rng = np.random.default_rng(2000 + seed)
    k = int(rng.integers(4, 40))
    net = _combined_net(rng, k, int(rng.integers(1, 12)), 3, 1, int(rng.integers(0, 256)), False)
    layer = rng.choice(["feature", "output"])
    cfg = load_config("pytorch_fbgemm", [
        "schedule.order=\"time_bin\"", f"schedule.time_bins={int(rng.choice([1, 3, 8, 256]))}",
        f"layers.{layer}.accumulator.overflow=error",
        f"layers.{layer}.accumulator.bits={int(rng.integers(10, 18))}",
        f"accumulator.adder_tree_width={int(rng.integers(1, 5))}",
        f"mac.lanes={int(rng.integers(1, 5))}", "accumulator.overflow=wrap",
        f"schedule.mode={rng.choice(['dense', 'event_driven'])}"])
    x = rng.integers(0, 256, (3, k)).astype(np.uint8)
    errs = []
    for run in (simulate, simulate_stepwise):
        try:
            run(net, cfg, x)
            errs.append(None)
        except RegisterOverflowError as exc:
            errs.append(str(exc))
    assert errs[0] == errs[1]


def test_time_bin_edge_cases_stepwise() -> None:
    """One bin for everything, a query entirely at the zero point (event_driven: no step),
    and 256 bins (most empty): both engines agree."""
    from simulator.engine.stepwise import compare_with_fast, simulate_stepwise

    net, x = _net(21, k=12, n1=7, n2=3)
    zx = net.modules[0].input_zero_point
    x = x[:4].copy()
    x[1] = zx  # nothing to accumulate in event_driven mode
    x[2] = 200  # every input in one bin
    for bins, mode in ((1, "dense"), (256, "event_driven"), (7, "event_driven"), (256, "dense")):
        cfg = load_config("int8_fixed_point", [
            "schedule.order=\"time_bin\"", f"schedule.time_bins={bins}",
            f"schedule.mode=\"{mode}\"", "accumulator.adder_tree_width=3", "mac.lanes=2",
            "accumulator.overflow=\"saturate\"", "layers.feature.accumulator.bits=15"])
        fast = simulate(net, cfg, x)
        assert compare_with_fast(fast, simulate_stepwise(net, cfg, x)) == [], (bins, mode)


def test_time_bin_op_trace(tmp_path) -> None:
    """Op and cycle traces in time_bin order: one accumulator write per non-empty bin, each
    exact = before + bin sum; the last write is the fast path's accumulator; the bin sums
    add up to the exact dot product; events match the fast path's pair counts."""
    from simulator.trace import read_trace, write_trace
    from simulator.units.spike_order import time_bin_of

    net, x = _net(8, k=20, n1=9, n2=4)
    x = x[:3]
    cfg = load_config("int8_fixed_point", [
        "schedule.order=\"time_bin\"", "schedule.time_bins=5", "schedule.mode=\"event_driven\"",
        "accumulator.adder_tree_width=3", "mac.lanes=4", "accumulator.overflow=\"saturate\"",
        "layers.feature.accumulator.bits=15", "weights.banks=1", "weights.word_bits=16"])
    res = simulate(net, cfg, x)
    for level in ("op", "cycle"):
        s = write_trace(res, net, cfg, None, tmp_path / level, level, "layer=feature", "csv")
        df = read_trace(s.path)
        assert len(df) == s.rows == s.estimated_rows > 0
        assert df["cycle"].is_monotonic_increasing
    adds = df[df.operation == "add_bin"]
    assert set(df[df.unit == "accumulator"].operation) == {"add_bin"}
    assert ((adds.operand_a + adds.operand_b) == adds.exact).all()
    mod = net.modules[0]
    zx = mod.input_zero_point
    w = mod.layer("feature").paths[0].weight.astype(np.int64)
    st = res.layer(0, "feature").mac["combined"]
    for q in range(3):
        act = np.flatnonzero(x[q] != zx)
        b = time_bin_of(x[q, act][None], 5, _reg(cfg))[0]
        for j in range(9):
            rows = adds[(adds["query"] == q) & (adds.neuron == j)]
            assert len(rows) == len(set(b.tolist()))
            assert list(rows.input_count) == [int((b == v).sum()) for v in sorted(set(b))]
            exact = int(((x[q, act].astype(np.int64) - zx) * w[j, act]).sum())
            assert int(rows.operand_b.sum()) == exact
            assert int(rows.result.iloc[-1]) == int(res.layer(0, "feature").acc["combined"][q, j])
    ev = adds[adds.overflow != ""].groupby(["query", "neuron"]).size()
    pe = st.pair_events
    assert {(int(r[0]), int(r[1])): int(r[2] + r[3]) for r in pe} == {
        (int(k[0]), int(k[1])): int(v) for k, v in ev.items()} and len(ev) > 0
    # the write happens in the cycle of the step that holds the bin's last input
    fetch = df[df.operation == "fetch"]
    assert set(adds.cycle) <= set(fetch.cycle)
    # the row limit: unknown before the run, exact after it
    import simulator.trace as tr

    flt = tr.parse_filter("layer=feature")
    assert tr.estimate_rows_before_run(net, cfg, 3, "cycle", flt) is None
    assert tr.TraceRequest("cycle", "layer=feature", "csv", 10**6).check_size(
        res, net, cfg) == len(df)
    with pytest.raises(tr.TraceLimitError):
        tr.TraceRequest("cycle", "layer=feature", "csv", len(df) - 1).check_size(res, net, cfg)
    pytest.importorskip("vcd")
    v = write_trace(res, net, cfg, None, tmp_path / "vcd", "cycle", "layer=feature", "vcd")
    assert v.path.read_text().count("$var") > 0


def _reg(cfg):
    from simulator.fixedpoint import Register

    sp = cfg.for_layer("feature").spikes
    return Register(sp.bits, sp.signed)


def test_time_bin_error_value_is_the_steps_first_write() -> None:
    """Three bins close in one step and the lane overflows in the 2nd and 3rd: the error
    names the 2nd bin's exact sum (250*127 + 240*127 = 62230), from both engines."""
    from simulator.engine.stepwise import simulate_stepwise
    from simulator.fixedpoint import RegisterOverflowError

    w1 = np.full((1, 4), 127, np.int8)
    net = make_combined_network([dict(
        input_scale=1 / 255, input_zero_point=0,
        feature=dict(weight=w1, scale=np.full(1, 1e-3), output_scale=1.0, output_zero_point=0),
        output=dict(weight=np.ones((1, 1), np.int8), scale=np.full(1, 1e-3), output_scale=1.0,
                    output_zero_point=0))])
    x = np.array([[230, 250, 220, 240]], np.uint8)
    cfg = load_config("int8_fixed_point", [
        "schedule.order=\"time_bin\"", "schedule.time_bins=256",
        "accumulator.adder_tree_width=4", "mac.lanes=1",
        "layers.feature.accumulator.overflow=\"error\"", "layers.feature.accumulator.bits=16"])
    msgs = []
    for run in (simulate, simulate_stepwise):
        with pytest.raises(RegisterOverflowError) as err:
            run(net, cfg, x)
        msgs.append(str(err.value))
    assert msgs[0] == msgs[1] and "62230" in msgs[0], msgs
