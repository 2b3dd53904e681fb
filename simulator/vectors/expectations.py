"""Per-word expectations and cycle timing of one layer, from the stepwise engine.

The stepwise engine (simulator/engine/stepwise.py) replays the selected queries and neurons of
one layer on the same output-stationary schedule as the fast path (docs/schedule.md), with the
fast-path result as its reference (layer inputs and cycle bases), so only the tiles that hold
selected neurons are stepped. From its ops we collect, for every output word (query, neuron):

* ``acc_events``: accumulator additions whose exact value left the register (wrap or
  saturate events), ``pre_events``: pre-add sums that left the pre-add register;
* ``flags`` (one 8-bit word): bit 0 accumulator overflow (sticky: any event), bit 1 pre-add
  overflow (sticky), bit 2 clamped low, bit 3 clamped high, bit 4 this word holds the first
  accumulator event of the vector set in schedule order (query, tile, step, lane), bit 5 the
  same for the first pre-add event;
* timing: the cycle of the word's first accumulator event, of its requantizer issue and of
  its output word (issue + ``requant.latency``); per (query, tile, step) the cycle of the
  accumulator write of every busy lane.

Cycles count from the first cycle of query 0 of the simulated batch, as report.json does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import HwConfig
from ..engine import SimResult
from ..engine.stepwise import DrainOp, MacOp, StepwiseRun, Window
from ..network import QuantizedNetwork

FLAG_ACC_OVERFLOW = 1 << 0
FLAG_PRE_OVERFLOW = 1 << 1
FLAG_CLAMP_LOW = 1 << 2
FLAG_CLAMP_HIGH = 1 << 3
FLAG_FIRST_ACC = 1 << 4
FLAG_FIRST_PRE = 1 << 5
FLAG_BITS: dict[str, int] = {
    "acc_overflow": 0, "pre_add_overflow": 1, "clamp_low": 2, "clamp_high": 3,
    "first_acc_event": 4, "first_pre_add_event": 5,
}
NO_CYCLE = -1


@dataclass
class WordExpectations:
    """Expectations per output word of one layer; arrays (Q, N) unless noted.

    acc_events / pre_events: int64 event counts. flags: int64 bit set (FLAG_*).
    first_acc_cycle: int64 cycle of the word's first accumulator event (NO_CYCLE if none).
    issue_cycle / out_cycle: int64 requantizer issue cycle and output-word cycle.
    acc_write_cycle: int64 (Q, T, S) cycle of the accumulator write of step s of tile t
    (T tiles holding selected neurons, S = the most steps of any query; NO_CYCLE pads).
    tiles: int64 (T,) the tile index of each row of acc_write_cycle.
    first_acc / first_pre: (query, neuron, step, cycle) of the first event among the
    selected words (query within the batch, neuron within the layer), or None.
    """

    acc_events: np.ndarray
    pre_events: np.ndarray
    flags: np.ndarray
    first_acc_cycle: np.ndarray
    issue_cycle: np.ndarray
    out_cycle: np.ndarray
    acc_write_cycle: np.ndarray
    tiles: np.ndarray
    first_acc: tuple[int, int, int, int] | None
    first_pre: tuple[int, int, int, int] | None
    steps: np.ndarray  # int64 (Q,) steps per tile of each query


def word_expectations(
    net: QuantizedNetwork,
    cfg: HwConfig,
    res: SimResult,
    module: int,
    layer: str,
    neurons: tuple[int, int],
) -> WordExpectations:
    """Step the selected neurons (start, stop) of one layer over all queries of ``res``."""
    n0, n1 = neurons
    q = res.input_codes[module].shape[0]
    n = n1 - n0
    lanes = cfg.for_layer(layer).mac.lanes
    latency = cfg.for_layer(layer).requant.latency
    win = Window(queries=(0, q - 1), modules=(module,), layers=(layer,), neurons=(n0, n1 - 1))
    run = StepwiseRun(net, cfg, res.input_codes, win, reference=res)
    acc_ev = np.zeros((q, n), np.int64)
    pre_ev = np.zeros((q, n), np.int64)
    first_cyc = np.full((q, n), NO_CYCLE, np.int64)
    first_pre_cyc = np.full((q, n), NO_CYCLE, np.int64)
    first_step = np.full((q, n), NO_CYCLE, np.int64)
    first_pre_step = np.full((q, n), NO_CYCLE, np.int64)
    issue = np.full((q, n), NO_CYCLE, np.int64)
    clamp_lo = np.zeros((q, n), bool)
    clamp_hi = np.zeros((q, n), bool)
    t_first, t_last = n0 // lanes, (n1 - 1) // lanes
    writes: dict[tuple[int, int, int], int] = {}
    steps = np.zeros(q, np.int64)
    for op in run.ops():
        if isinstance(op, MacOp):
            sel = (op.neurons >= n0) & (op.neurons < n1)
            cols = op.neurons[sel] - n0
            writes[(op.query, op.tile - t_first, op.step)] = op.cycle
            steps[op.query] = max(int(steps[op.query]), op.step + 1)
            hit = op.acc_kind[sel] != ""
            new = hit & (acc_ev[op.query, cols] == 0)
            first_cyc[op.query, cols[new]] = op.cycle
            first_step[op.query, cols[new]] = op.step
            acc_ev[op.query, cols] += hit
            if op.pre_kind is not None:
                pcount = (op.pre_kind[sel] != "").sum(axis=1)
                pnew = (pcount > 0) & (pre_ev[op.query, cols] == 0)
                first_pre_cyc[op.query, cols[pnew]] = op.cycle
                first_pre_step[op.query, cols[pnew]] = op.step
                pre_ev[op.query, cols] += pcount
        elif isinstance(op, DrainOp):
            sel = (op.neurons >= n0) & (op.neurons < n1)
            cols = op.neurons[sel] - n0
            issue[op.query, cols] = op.cycle
            clamp_lo[op.query, cols] = op.clamp_kind[sel] == "clamp_low"
            clamp_hi[op.query, cols] = op.clamp_kind[sel] == "clamp_high"
    if np.any(issue == NO_CYCLE):
        raise RuntimeError("internal error: the stepwise replay missed output words; please "
                           "report this")
    n_tiles = t_last - t_first + 1
    s_max = int(steps.max()) if steps.size else 0
    acc_write = np.full((q, n_tiles, s_max), NO_CYCLE, np.int64)
    for (qq, t, s), c in writes.items():
        acc_write[qq, t, s] = c
    flags = (np.where(acc_ev > 0, FLAG_ACC_OVERFLOW, 0) | np.where(pre_ev > 0, FLAG_PRE_OVERFLOW, 0)
             | np.where(clamp_lo, FLAG_CLAMP_LOW, 0) | np.where(clamp_hi, FLAG_CLAMP_HIGH, 0))
    first_acc = _first(first_cyc, first_step, n0)
    first_pre = _first(first_pre_cyc, first_pre_step, n0)
    if first_acc is not None:
        flags[first_acc[0], first_acc[1] - n0] |= FLAG_FIRST_ACC
    if first_pre is not None:
        flags[first_pre[0], first_pre[1] - n0] |= FLAG_FIRST_PRE
    return WordExpectations(acc_ev, pre_ev, flags.astype(np.int64), first_cyc, issue,
                            issue + latency, acc_write, np.arange(t_first, t_last + 1),
                            first_acc, first_pre, steps)


def _first(cycles: np.ndarray, steps: np.ndarray, n0: int) -> tuple[int, int, int, int] | None:
    """Earliest (cycle, then lowest neuron = lane) event word: schedule order."""
    qs, js = np.nonzero(cycles != NO_CYCLE)
    if qs.size == 0:
        return None
    order = np.lexsort((js, cycles[qs, js]))
    i = int(order[0])
    qq, jj = int(qs[i]), int(js[i])
    return qq, jj + n0, int(steps[qq, jj]), int(cycles[qq, jj])


LANE_DUMP_COLUMNS: tuple[str, ...] = (
    "cycle", "query", "tile", "step", "lane", "neuron", "tree", "acc_before", "acc_exact",
    "acc_after", "event",
)


def lane_dump(
    net: QuantizedNetwork,
    cfg: HwConfig,
    res: SimResult,
    module: int,
    layer: str,
    neurons: tuple[int, int],
    cycles: tuple[int, int],
) -> tuple[bytes, int]:
    """CSV of every busy lane's accumulator write in cycles [start, stop) (a Python slice:
    ``--cycles A:B``, inclusive, arrives here as (A, B + 1)).

    One row per (cycle, lane) with an accumulator write: the adder-tree value, the register
    before, the exact sum, the register after the policy, and the event ("" or the policy).
    Lanes idle in a cycle (fetch stalls, drain, flush) have no row. Returns (bytes, rows).
    """
    n0, n1 = neurons
    q = res.input_codes[module].shape[0]
    win = Window(queries=(0, q - 1), modules=(module,), layers=(layer,), neurons=(n0, n1 - 1),
                 cycles=(cycles[0], cycles[1] - 1))
    lanes = cfg.for_layer(layer).mac.lanes
    lines = [",".join(LANE_DUMP_COLUMNS)]
    for op in StepwiseRun(net, cfg, res.input_codes, win, reference=res).ops():
        if not isinstance(op, MacOp) or not cycles[0] <= op.cycle < cycles[1]:
            continue
        for i, j in enumerate(op.neurons.tolist()):
            if n0 <= j < n1:
                lines.append(",".join(str(v) for v in (
                    op.cycle, op.query, op.tile, op.step, j % lanes, j, int(op.tree[i]),
                    int(op.acc_before[i]), int(op.acc_exact[i]), int(op.acc_after[i]),
                    op.acc_kind[i])))
    return ("\n".join(lines) + "\n").encode(), len(lines) - 1
