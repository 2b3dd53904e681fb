"""Waveforms: the stepwise engine's ops as a VCD file (``--trace op|cycle --trace-format vcd``).

Written with pyvcd (readable by GTKWave and Surfer). One clock cycle of the schedule is one
period of ``clock.mhz`` (timescale 1 ps, the period rounded to whole picoseconds; the exact
period is in the header comment). Signals (scope ``hwsim``):

* ``clk`` (a 50 % clock), ``cycle`` (64-bit), ``query``, ``module``, ``layer``
  (0 feature, 1 output), ``tile``, ``step``, ``mac_valid`` (an accumulator write this cycle),
  ``drain_valid`` (requantizer issue), ``flush`` (requantizer pipeline flush);
* per lane ``lane<i>`` (i = neuron mod ``mac.lanes``): ``valid`` (the lane writes its
  accumulator), ``neuron``, ``tree`` (adder-tree output), ``acc`` (register after the write,
  ``accumulator.bits`` two's complement), ``x<k>`` / ``w<k>`` (the operands x - zx and w - zw
  of tree slot k, up to 8 slots), ``overflow`` (strobe: this write was an accumulator event),
  ``pre_overflow`` (strobe: a pre-add event), ``rq_valid``, ``code`` (output code),
  ``clamp_low`` / ``clamp_high`` (strobes at the requantizer issue).

Strobes and valids are high for exactly the cycle of the event. Values hold between writes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..config import HwConfig
from ..engine.stepwise import DrainOp, FlushOp, MacOp, Op

MAX_OPERAND_SLOTS = 8
LAYER_CODES: dict[str, int] = {"feature": 0, "output": 1}


@dataclass(frozen=True)
class WaveformSummary:
    """What a waveform holds: ops written, value changes, first and last cycle, period."""

    ops: int
    changes: int
    first_cycle: int | None
    last_cycle: int | None
    period_ps: int


def clock_period_ps(mhz: float) -> int:
    """One cycle at ``mhz`` in whole picoseconds (at least 2, so the clock can toggle)."""
    return max(2, int(round(1e6 / mhz)))


def write_vcd(ops: Iterable[Op], cfg: HwConfig, sink: BinaryIO,
              comment: str = "") -> WaveformSummary:
    """Write the ops (in cycle order, as StepwiseRun.ops yields them) as VCD to ``sink``."""
    from vcd import VCDWriter  # pyvcd: an optional dependency, imported when asked for

    period = clock_period_ps(cfg.clock.mhz)
    text = io.TextIOWrapper(sink, encoding="ascii", newline="\n", write_through=False)
    lanes = max(cfg.for_layer(n).mac.lanes for n in LAYER_CODES)
    slots = min(MAX_OPERAND_SLOTS, max(cfg.for_layer(n).accumulator.adder_tree_width
                                       for n in LAYER_CODES))
    acc_bits = max(cfg.for_layer(n).accumulator.bits for n in LAYER_CODES)
    out_bits = max(cfg.for_layer(n).requant.output_bits for n in LAYER_CODES) + 1
    head = (f"tempo-hwsim waveform: clock {cfg.clock.mhz:g} MHz, one cycle = {period} ps "
            f"(exact {1e6 / cfg.clock.mhz:.6g} ps); {comment}")
    n_ops = 0
    changes = 0
    first = last = None
    with VCDWriter(text, timescale="1 ps", date="", comment=head,
                   version="tempo-hwsim") as vcd:
        def var(scope: str, name: str, size: int, init: Any = 0) -> Any:
            kind = "wire" if size == 1 else "integer" if size == 64 else "reg"
            return vcd.register_var(scope, name, kind, size=size, init=init)

        top = "hwsim"
        clk = var(top, "clk", 1)
        sig = {n: var(top, n, 64 if n == "cycle" else 32) for n in
               ("cycle", "query", "module", "layer", "tile", "step")}
        strobes_top = {n: var(top, n, 1) for n in ("mac_valid", "drain_valid", "flush")}
        lane_sig: list[dict[str, Any]] = []
        for i in range(lanes):
            sc = f"{top}.lane{i}"
            d = {"valid": var(sc, "valid", 1), "neuron": var(sc, "neuron", 32),
                 "tree": var(sc, "tree", 64), "acc": var(sc, "acc", acc_bits),
                 "overflow": var(sc, "overflow", 1), "pre_overflow": var(sc, "pre_overflow", 1),
                 "rq_valid": var(sc, "rq_valid", 1), "code": var(sc, "code", out_bits),
                 "clamp_low": var(sc, "clamp_low", 1), "clamp_high": var(sc, "clamp_high", 1)}
            for k in range(slots):
                d[f"x{k}"] = var(sc, f"x{k}", 32)
                d[f"w{k}"] = var(sc, f"w{k}", 32)
            lane_sig.append(d)
        high: list[Any] = []  # strobes raised in the current cycle
        cur: int | None = None

        def change(t: int, v: Any, value: Any) -> None:
            nonlocal changes
            vcd.change(v, t, value)
            changes += 1

        def advance(cycle: int) -> None:
            """Close cycle ``cur`` (strobes low, clock low at mid-period) up to ``cycle``."""
            nonlocal cur
            if cur is not None and cycle > cur:
                t_end = (cur + 1) * period
                change(cur * period + period // 2, clk, 0)
                for v in high:
                    change(t_end, v, 0)
                high.clear()
            if cur != cycle:
                change(cycle * period, clk, 1)
                change(cycle * period, sig["cycle"], cycle)
                cur = cycle

        def strobe(t: int, v: Any) -> None:
            change(t, v, 1)
            high.append(v)

        for op in ops:
            n_ops += 1
            c = op.cycle
            advance(c)
            first = c if first is None else first
            last = c
            t = c * period
            lanes_l = cfg.for_layer(op.layer).mac.lanes
            change(t, sig["query"], op.query)
            change(t, sig["module"], op.module)
            change(t, sig["layer"], LAYER_CODES.get(op.layer, 0))
            if isinstance(op, MacOp):
                change(t, sig["tile"], op.tile)
                change(t, sig["step"], op.step)
                strobe(t, strobes_top["mac_valid"])
                for i, j in enumerate(op.neurons.tolist()):
                    d = lane_sig[j % lanes_l]
                    strobe(t, d["valid"])
                    change(t, d["neuron"], j)
                    change(t, d["tree"], int(op.tree[i]))
                    change(t, d["acc"], int(op.acc_after[i]))
                    for k in range(min(slots, op.x_op.size)):
                        change(t, d[f"x{k}"], int(op.x_op[k]))
                        change(t, d[f"w{k}"], int(op.w_op[i, k]))
                    if op.acc_kind[i]:
                        strobe(t, d["overflow"])
                    if op.pre_kind is not None and any(op.pre_kind[i]):
                        strobe(t, d["pre_overflow"])
            elif isinstance(op, DrainOp):
                change(t, sig["tile"], op.tile)
                strobe(t, strobes_top["drain_valid"])
                for i, j in enumerate(op.neurons.tolist()):
                    d = lane_sig[j % lanes_l]
                    strobe(t, d["rq_valid"])
                    change(t, d["neuron"], j)
                    change(t, d["code"], int(op.codes[i]))
                    if op.clamp_kind[i] == "clamp_low":
                        strobe(t, d["clamp_low"])
                    elif op.clamp_kind[i] == "clamp_high":
                        strobe(t, d["clamp_high"])
            elif isinstance(op, FlushOp):
                strobe(t, strobes_top["flush"])
        if cur is not None:
            advance(cur + 1)
    text.flush()
    text.detach()
    return WaveformSummary(n_ops, changes, first, last, period)
