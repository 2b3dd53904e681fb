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
    assert (st.partial_min, st.partial_max) == (lo, hi)
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
    from simulator.engine.stepwise import simulate_stepwise

    net, x = _net(5)
    with pytest.raises(ConfigError, match="stepwise"):
        simulate_stepwise(net, load_config("int8_fixed_point",
                                           ["schedule.order=\"time_bin\""]), x)


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
