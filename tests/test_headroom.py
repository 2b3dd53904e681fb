"""report.headroom: 'exact' finds the widest partial sum; 'bound' skips that search only.

Oracle for the partial sums: a plain Python loop over the accumulation order.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config import load_config
from simulator.engine import simulate
from simulator.network import make_combined_network
from simulator.units.mac_array import bits_for_range


def _net(rng: np.random.Generator, k: int, n1: int, n2: int):
    def layer(n: int, kk: int, out_scale: float) -> dict:
        w = rng.integers(-128, 128, (n, kk)).astype(np.int8)
        return dict(weight=w, scale=rng.uniform(1e-3, 1e-2, n), output_scale=out_scale,
                    output_zero_point=int(rng.integers(0, 256)))

    zx = int(rng.integers(0, 40))
    return make_combined_network([dict(input_scale=1 / 255, input_zero_point=zx,
                                       feature=layer(n1, k, 2.0), output=layer(n2, n1, 20.0))])


def _loop_widest(x: np.ndarray, zx: int, w: np.ndarray, tree: int) -> tuple[int, int]:
    lo = hi = 0
    for q in range(x.shape[0]):
        for j in range(w.shape[0]):
            acc = 0
            for k0 in range(0, x.shape[1], tree):
                acc += sum((int(x[q, k]) - zx) * int(w[j, k])
                           for k in range(k0, min(k0 + tree, x.shape[1])))
                lo, hi = min(lo, acc), max(hi, acc)
    return lo, hi


@pytest.mark.parametrize("preset", ["pytorch_fbgemm", "int8_fixed_point"])  # wrap, saturate
def test_exact_headroom_equals_a_loop_and_bound_mode_brackets_it(preset: str) -> None:
    checked = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        net = _net(rng, int(rng.integers(8, 40)), int(rng.integers(4, 20)), 3)
        x = rng.random((4, net.in_features)).astype(np.float32)
        tree = int(rng.choice([1, 2, 4]))
        sets = [f"accumulator.adder_tree_width={tree}"]
        exact = simulate(net, load_config(preset, sets), x)
        bound = simulate(net, load_config(preset, [*sets, "report.headroom=bound"]), x)
        assert np.array_equal(exact.outputs, bound.outputs)
        lay = net.modules[0].layer("feature")
        lo, hi = _loop_widest(exact.input_codes[0], net.modules[0].input_zero_point,
                              lay.paths[0].weight, tree)
        st_e = exact.layer(0, "feature").mac["combined"]
        st_b = bound.layer(0, "feature").mac["combined"]
        assert st_e.partial_exact
        assert st_e.min_safe_acc_bits == bits_for_range(lo, hi)
        assert st_b.min_safe_acc_bits <= st_e.min_safe_acc_bits <= st_b.min_safe_acc_bits_upper
        assert int(st_b.acc_wrap.sum() + st_b.acc_saturate.sum()) == 0
        checked += 1
    assert checked == 6


def test_bound_mode_still_counts_every_event() -> None:
    rng = np.random.default_rng(11)
    net = _net(rng, 64, 32, 5)
    x = rng.random((6, 64)).astype(np.float32)
    sets = ["accumulator.bits=16", "accumulator.overflow=saturate"]
    exact = simulate(net, load_config("int8_fixed_point", sets), x)
    bound = simulate(net, load_config("int8_fixed_point", [*sets, "report.headroom=bound"]), x)
    e = exact.layer(0, "feature").mac["combined"]
    b = bound.layer(0, "feature").mac["combined"]
    assert int(e.acc_saturate.sum()) > 0
    assert np.array_equal(e.acc_saturate, b.acc_saturate)
    assert np.array_equal(exact.outputs, bound.outputs)
    assert b.partial_exact and b.min_safe_acc_bits == e.min_safe_acc_bits


def test_sign_bounds_settle_the_exact_width_for_non_negative_inputs(monkeypatch) -> None:
    """zx = 0 (x' >= 0): the screened path proves the final sums' width from sign bounds
    (sign_split.py) or hands over to the chunked path; either way the width equals a loop,
    in dense and event-driven schedules, also when a prefix runs past the final sums."""
    import simulator.units.acc_screened as scr

    verdicts: list[bool] = []
    real = scr._split_settles

    def spy(split, safe):  # noqa: ANN001, ANN202
        verdicts.append(real(split, safe))
        return verdicts[-1]

    monkeypatch.setattr(scr, "_split_settles", spy)
    for seed in range(24):
        rng = np.random.default_rng(100 + seed)
        k, n1 = int(rng.integers(8, 300)), int(rng.integers(2, 24))
        net = _net(rng, k, n1, 3)
        w = net.modules[0].layer("feature").paths[0].weight
        if seed % 3 == 0:  # positives first, negatives last: prefixes far past the final sums
            w.flags.writeable = True
            w[:] = np.where(np.arange(k) < k // 2, np.abs(w.astype(np.int16)),
                            -np.abs(w.astype(np.int16))).clip(-128, 127).astype(np.int8)
        module = net.modules[0]
        object.__setattr__(module, "input_zero_point", 0)
        x = rng.random((5, k)).astype(np.float32)
        x[rng.random(x.shape) < 0.3] = 0.0
        tree = int(rng.choice([1, 2, 4]))
        mode = "event_driven" if seed % 2 else "dense"
        sets = [f"accumulator.adder_tree_width={tree}", f"schedule.mode={mode}"]
        res = simulate(net, load_config("pytorch_fbgemm", sets), x)
        codes = res.input_codes[0]
        active = [[kk for kk in range(k) if mode == "dense" or codes[q, kk] != 0]
                  for q in range(codes.shape[0])]
        lo = hi = 0
        for q, ks in enumerate(active):
            for j in range(w.shape[0]):
                acc = 0
                for s0 in range(0, len(ks), tree):
                    acc += sum(int(codes[q, kk]) * int(w[j, kk]) for kk in ks[s0:s0 + tree])
                    lo, hi = min(lo, acc), max(hi, acc)
        st = res.layer(0, "feature").mac["combined"]
        assert st.partial_exact and st.min_safe_acc_bits == bits_for_range(lo, hi), seed
    assert True in verdicts and False in verdicts  # both outcomes were exercised


def test_event_driven_width_from_every_prefix_equals_a_loop(monkeypatch) -> None:
    """Event-driven, no possible event, zx != 0: the width is settled by the dense every-prefix
    pass when no prefix leaves the final sums' width, else by the event-driven evaluation;
    both equal a loop over the event-driven checkpoints."""
    import simulator.units.acc_chunked as ch
    import simulator.units.acc_screened as sc

    outcomes: list[bool] = []
    real = ch._every_prefix_inside
    # the chunk-prefix screen (prefix_screen.py) settles most of these first: off here
    monkeypatch.setattr(sc, "prefix_bounds", lambda *a, **k: None)

    def spy(*a, **k):  # noqa: ANN002, ANN003, ANN202
        res = real(*a, **k)
        outcomes.append(res is not None)
        return res

    monkeypatch.setattr(ch, "_every_prefix_inside", spy)
    for seed in range(16):
        rng = np.random.default_rng(300 + seed)
        k, n1 = int(rng.integers(8, 200)), int(rng.integers(2, 20))
        net = _net(rng, k, n1, 3)
        w = net.modules[0].layer("feature").paths[0].weight
        if seed % 2:  # positives first, negatives last: prefixes far past the final sums
            w.flags.writeable = True
            w[:] = np.where(np.arange(k) < k // 2, np.abs(w.astype(np.int16)),
                            -np.abs(w.astype(np.int16))).clip(-128, 127).astype(np.int8)
        zx = int(rng.integers(5, 80))
        object.__setattr__(net.modules[0], "input_zero_point", zx)
        x = rng.random((4, k)).astype(np.float32)
        x[rng.random(x.shape) < 0.3] = 0.0  # quantized to zx: skipped
        tree = int(rng.choice([1, 2, 4]))
        preset = "int8_fixed_point" if seed % 4 < 2 else "pytorch_fbgemm"
        sets = [f"accumulator.adder_tree_width={tree}", "schedule.mode=event_driven"]
        res = simulate(net, load_config(preset, sets), x)
        codes = res.input_codes[0].astype(np.int64)
        lo = hi = 0
        for q in range(codes.shape[0]):
            ks = [kk for kk in range(k) if codes[q, kk] != zx]
            for j in range(w.shape[0]):
                acc = 0
                for s0 in range(0, len(ks), tree):
                    acc += sum((int(codes[q, kk]) - zx) * int(w[j, kk]) for kk in ks[s0:s0 + tree])
                    lo, hi = min(lo, acc), max(hi, acc)
        st = res.layer(0, "feature").mac["combined"]
        assert st.min_safe_acc_bits == bits_for_range(lo, hi), seed
    assert True in outcomes and False in outcomes  # both ways were taken
