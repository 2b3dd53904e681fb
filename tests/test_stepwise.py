"""The stepwise (cycle-by-cycle) path agrees bit for bit with the fast path.

Random small models (combined and split layouts, one or two modules, non-zero weight zero
points) and random configs (accumulator widths and policies, adder-tree widths, pre-add
stages, raw/offset operands, lanes, weight-memory bandwidths that stall, requantizer
throughput and latency, dense and event_driven schedules) are run both ways;
:func:`compare_with_fast` lists every difference in outputs, accumulators, per-neuron and
per-pair overflow counts, first events, min_safe_acc_bits, max_abs_acc, clamps, cycles and
stalls. Zero differences is the only pass.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config import load_config
from simulator.engine import simulate
from simulator.engine.schedule import TileSchedule
from simulator.engine.stepwise import (
    DrainOp,
    FlushOp,
    MacOp,
    StepwiseRun,
    Window,
    compare_with_fast,
    simulate_stepwise,
)
from simulator.fixedpoint import RegisterOverflowError
from simulator.network import Layer, Module, QuantizedNetwork, WeightPath, make_combined_network

N_CASES = 400


def _weights(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    style = rng.integers(4)
    if style == 0:
        w = rng.integers(-128, 128, (n, k))
    elif style == 1:  # extremes: large same-sign sums
        w = rng.choice(np.array([-128, 127, 127, 0]), (n, k))
    elif style == 2:  # sparse
        w = rng.integers(-128, 128, (n, k)) * (rng.random((n, k)) < 0.3)
    else:
        w = rng.integers(-20, 21, (n, k))
    return w.astype(np.int8)


def _combined_net(rng: np.random.Generator, k: int, n1: int, n2: int, mods: int,
                  zx: int, zw: bool) -> QuantizedNetwork:
    modules = []
    for _ in range(mods):
        layers = {}
        for name, (n, kk) in (("feature", (n1, k)), ("output", (n2, n1))):
            w = _weights(rng, n, kk)
            sw = rng.uniform(0.002, 0.02, n)
            sx = 0.01
            typical = max(1.0, np.sqrt(kk) * 60 * 60)
            sy = float(sx * sw.mean() * typical / rng.uniform(20, 200))
            layers[name] = {
                "weight": w, "scale": sw, "output_scale": sy,
                "output_zero_point": int(rng.integers(0, 256)),
                "zero_point": rng.integers(-3, 4, n) if zw else 0,
            }
        modules.append({"input_scale": 0.01, "input_zero_point": zx, **layers})
    return make_combined_network(modules)


def _split_net(rng: np.random.Generator, k: int, n1: int, n2: int, mods: int) -> QuantizedNetwork:
    modules = []
    for _ in range(mods):
        layers = []
        for name, (n, kk) in (("feature", (n1, k)), ("output", (n2, n1))):
            exc = np.abs(_weights(rng, n, kk).astype(np.int64)).clip(0, 127).astype(np.int8)
            inh = (-np.abs(_weights(rng, n, kk).astype(np.int64))).clip(-128, 0).astype(np.int8)
            ones = np.ones(n)
            zeros = np.zeros(n, dtype=np.int64)
            f = rng.choice(np.array([1.0, 2.0, 3.0, 1.5, 7.0, 0.75]), 4)
            layers.append(Layer(name, (WeightPath("excitatory", exc, ones, zeros),
                                       WeightPath("inhibitory", inh, ones.copy(), zeros.copy())),
                                factors=f))
        modules.append(Module(1.0 / 255.0, 0, tuple(layers)))
    net = QuantizedNetwork("split", tuple(modules), {}, "<split>")
    net.validate()
    return net


def random_case(seed: int) -> tuple[QuantizedNetwork, object, np.ndarray, list[str]]:
    """(net, cfg, uint8 input codes, overrides) for one random case."""
    rng = np.random.default_rng(seed)
    split = rng.random() < 0.3
    k = int(rng.integers(1, 41)) if rng.random() < 0.85 else int(rng.integers(100, 260))
    n1 = int(rng.integers(1, 25))
    n2 = int(rng.integers(1, 10))
    mods = int(rng.integers(1, 3))
    q = int(rng.integers(1, 7))
    zx = 0 if split else int(rng.choice([0, 0, 128, int(rng.integers(0, 256))]))
    event = rng.random() < 0.35
    raw = not event and not split and rng.random() < 0.4
    p = int(rng.choice([1, 1, 2, 2, 3, 4]))
    g = p * int(rng.integers(1, 4))
    sets = [
        f"accumulator.bits={int(rng.integers(4, 33))}",
        f"accumulator.overflow={rng.choice(['wrap', 'saturate'])}",
        f"accumulator.adder_tree_width={g}",
        f"mac.lanes={int(rng.integers(1, 9))}",
        f"mac.pre_add_width={p}",
        f"mac.pre_add_bits={int(rng.integers(6, 17))}",
        f"mac.pre_add_overflow={rng.choice(['wrap', 'saturate'])}",
        f"mac.operand={'raw' if raw else 'offset'}",
        f"weights.banks={int(rng.integers(1, 4))}",
        f"weights.word_bits={int(rng.choice([8, 16, 24, 64, 512]))}",
        f"requant.throughput={int(rng.integers(1, 5))}",
        f"requant.latency={int(rng.integers(0, 5))}",
        f"schedule.mode={'event_driven' if event else 'dense'}",
    ]
    if rng.random() < 0.3:  # a different accumulator for the output layer
        sets.append(f"layers.output.accumulator.bits={int(rng.integers(6, 33))}")
    if split:
        net = _split_net(rng, k, n1, n2, mods)
        cfg = load_config("seed_tutorial", sets)
    else:
        net = _combined_net(rng, k, n1, n2, mods, zx, zw=rng.random() < 0.2)
        cfg = load_config("pytorch_fbgemm", sets)
    x = rng.integers(0, 256, (q, k))
    if event or rng.random() < 0.3:  # many inputs at the zero point
        x = np.where(rng.random((q, k)) < 0.5, zx, x)
    return net, cfg, x.astype(np.uint8), sets


@pytest.mark.parametrize("chunk", range(8))
def test_stepwise_equals_fast(chunk: int) -> None:
    events = 0
    for seed in range(chunk, N_CASES, 8):
        net, cfg, x, sets = random_case(seed)
        fast = simulate(net, cfg, x, batch=2 if seed % 3 == 0 else 128)  # batch merging too
        step = simulate_stepwise(net, cfg, x)
        diffs = compare_with_fast(fast, step)
        assert not diffs, f"seed {seed} {sets}: " + "; ".join(diffs[:6])
        events += sum(int(s.acc_wrap.sum() + s.acc_saturate.sum() + s.pre_add_events.sum())
                      for lr in fast.layers for s in lr.mac.values())
    assert events > 0  # the cases do exercise overflow


def test_cases_cover_the_space() -> None:
    """The random cases hit every kind of event and every mode at least once."""
    seen: set[str] = set()
    for seed in range(N_CASES):
        net, cfg, x, sets = random_case(seed)
        fast = simulate(net, cfg, x)
        seen.add(net.layout)
        seen.add(cfg.schedule.mode)
        seen.add(cfg.mac.operand)
        if cfg.mac.pre_add_width > 1:
            seen.add("pre_add")
        for lr in fast.layers:
            if lr.stalls.sum():
                seen.add("stall")
            for s in lr.mac.values():
                if s.acc_wrap.sum():
                    seen.add("wrap")
                if s.acc_saturate.sum():
                    seen.add("saturate")
                if s.pre_add_events.sum():
                    seen.add("pre_add_event")
                if s.ordered_pairs:
                    seen.add("ordered")
            if lr.clamp.low.sum() + lr.clamp.high.sum():
                seen.add("clamp")
    want = {"combined", "split", "dense", "event_driven", "raw", "offset", "pre_add", "stall",
            "wrap", "saturate", "pre_add_event", "ordered", "clamp"}
    assert want <= seen, want - seen


@pytest.mark.parametrize("seed", range(24))
def test_error_policy_stops_at_the_same_event(seed: int) -> None:
    """``error`` raises the same first event (query, neuron, step, value) on both paths.

    One module and the combined layout, the error policy on one layer: the fast path then
    meets events in schedule order too (see the report on cross-layer ordering)."""
    rng = np.random.default_rng(1000 + seed)
    k = int(rng.integers(4, 30))
    net = _combined_net(rng, k, int(rng.integers(1, 12)), 3, 1, int(rng.integers(0, 256)), False)
    layer = rng.choice(["feature", "output"])
    p = int(rng.choice([1, 2]))
    sets = [
        f"layers.{layer}.accumulator.overflow=error",
        f"layers.{layer}.accumulator.bits={int(rng.integers(10, 20))}",
        f"accumulator.adder_tree_width={2 * p}",
        f"mac.pre_add_width={p}",
        f"mac.lanes={int(rng.integers(1, 5))}",
        "accumulator.overflow=wrap",
    ]
    if p > 1 and rng.random() < 0.5:
        sets += [f"layers.{layer}.mac.pre_add_overflow=error", "mac.pre_add_bits=12",
                 "mac.operand=raw"]
    cfg = load_config("pytorch_fbgemm", sets)
    x = rng.integers(0, 256, (3, k)).astype(np.uint8)
    errs = []
    for run in (simulate, simulate_stepwise):
        try:
            run(net, cfg, x)
            errs.append(None)
        except RegisterOverflowError as exc:
            errs.append(str(exc))
    assert errs[0] == errs[1]


def test_ops_cover_every_cycle_once() -> None:
    """Mac steps (fetch + add), drains and flushes tile the timeline without gaps."""
    for seed in (3, 11, 42):
        net, cfg, x, _ = random_case(seed)
        run = StepwiseRun(net, cfg, [x.astype(np.int64)] * len(net.modules))
        covered = []
        for op in run.ops():
            if isinstance(op, MacOp):
                covered.extend(range(op.first_cycle, op.cycle + 1))
            else:
                assert isinstance(op, DrainOp | FlushOp)
                covered.append(op.cycle)
        total = int(run.result.cycles_per_query.sum())
        assert covered == list(range(total))


def test_window_with_reference_matches_full_run() -> None:
    """A windowed run driven by the fast result yields exactly the full run's ops there."""
    net, cfg, x, _ = random_case(7)
    codes = [x.astype(np.int64)] * len(net.modules)
    fast = simulate(net, cfg, x)
    total = int(fast.cycles_per_query.sum())
    win = Window(queries=(0, x.shape[0] - 1), cycles=(total // 3, total // 2), neurons=(0, 5))

    def key(op: object) -> tuple:
        if isinstance(op, MacOp):
            return ("mac", op.query, op.module, op.layer, op.path, op.tile, op.step, op.cycle,
                    op.acc_after.tobytes())
        if isinstance(op, DrainOp):
            return ("drain", op.query, op.module, op.layer, op.cycle, op.codes.tobytes())
        return ("flush", op.cycle)

    full = [key(o) for o in StepwiseRun(net, cfg, codes, Window(cycles=win.cycles)).ops()]
    part = [key(o) for o in StepwiseRun(net, cfg, codes, win, reference=fast).ops()]
    full_tiles = {k for k in full}
    assert set(part) <= full_tiles
    assert [k for k in full if k[0] == "flush"] == [k for k in part if k[0] == "flush"]


def test_cycle_formula_worked_example() -> None:
    """docs/schedule.md's worked example: K=10, N=5, lanes 2, G=4, 8 weights/cycle."""
    s = TileSchedule(n_out=5, lanes=2, tree_width=4, pre_add_width=1, weights_per_cycle=8,
                     requant_throughput=1, requant_latency=3, paths=1, extra_steps=0)
    cycles, stalls = s.cycles(np.array([10]))
    # tiles of 2, 2, 1 lanes; 3 steps each; 1, 1, 1 cycles per step; drains 2 + 2 + 1
    assert int(cycles[0]) == 3 * 3 + 5 + 3
    assert int(stalls[0]) == 0
    s2 = TileSchedule(5, 2, 4, 1, 3, 1, 3, 1, 0)
    cycles, stalls = s2.cycles(np.array([10]))
    # 3 weights/cycle: steps cost ceil(8/3)=3, 3, ceil(4/3)=2 cycles
    assert int(cycles[0]) == 3 * (3 + 3 + 2) + 5 + 3
    assert int(stalls[0]) == 3 * (2 + 2 + 1)
