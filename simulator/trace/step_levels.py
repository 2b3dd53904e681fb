"""Rows of the ``op`` and ``cycle`` levels, from the stepwise engine run over the filter's
window: weight fetches and stalls, products, pre-adds, adder-tree sums, accumulator writes,
requantizer/combiner drains and pipeline flushes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from ..config import HwConfig
from ..engine.fast import SimResult
from ..engine.stepwise import DrainOp, FlushOp, MacOp, StepwiseRun
from ..network import QuantizedNetwork
from .filters import TraceFilter
from .geometry import _count_in, _in_cycles
from .rows import _Rows
from .schema import CHUNK_ROWS


def _op_level(result: SimResult, net: QuantizedNetwork, cfg: HwConfig, flt: TraceFilter,
              cycle_level: bool, codes: list[np.ndarray]) -> Iterator[pa.Table]:
    run = StepwiseRun(net, cfg, codes, flt.window(), reference=result)
    rows = _Rows()
    for op in run.ops():
        if isinstance(op, MacOp):
            if flt.paths is None or op.path in flt.paths:
                _mac_rows(op, rows, flt, cycle_level)
        elif isinstance(op, DrainOp):
            _drain_rows(op, rows, flt, cfg)
        elif cycle_level:
            assert isinstance(op, FlushOp)
            if _count_in(op.cycle, op.cycle, flt.cycles):
                rows.add(1, cycle=op.cycle, query=op.query, module=op.module, layer=op.layer,
                         unit="requantizer", operation="flush", step=op.index, result=0)
        if rows.rows >= CHUNK_ROWS:
            yield rows.take()
    yield rows.take()


def _lanes_sel(neurons: np.ndarray, flt: TraceFilter) -> np.ndarray:
    if flt.neurons is None:
        return np.ones(neurons.size, dtype=bool)
    return (neurons >= flt.neurons[0]) & (neurons <= flt.neurons[1])


def _mac_rows(op: MacOp, rows: _Rows, flt: TraceFilter, cycle_level: bool) -> None:
    sel = _lanes_sel(op.neurons, flt)
    lanes_n = op.neurons.size
    base = dict(query=op.query, module=op.module, layer=op.layer, path=op.path, tile=op.tile,
                step=op.step)
    if cycle_level:  # weight fetch: first_cycle .. cycle, the last one feeds this step
        c = op.cycle - op.first_cycle + 1
        need = lanes_n * max(op.inputs.size, 1 if op.kind == "correction" else 0)
        cyc = np.arange(op.first_cycle, op.cycle + 1)
        got = np.clip(need - np.arange(c) * op.weights_per_cycle, 0, op.weights_per_cycle)
        keep = _in_cycles(cyc, flt)
        if keep.any():
            ops = np.where(cyc == op.cycle, "fetch", "stall")
            rows.add(int(keep.sum()), **base, cycle=cyc[keep], unit="weight_memory",
                     operation=ops[keep], input_index=int(op.inputs[0]) if op.inputs.size
                     else -1, input_count=op.inputs.size, result=got[keep], count=got[keep])
    if not (sel.any() and _count_in(op.cycle, op.cycle, flt.cycles)):
        return
    li = np.flatnonzero(sel)
    lane = li  # lane i of the tile holds neurons[i]
    neu = op.neurons[li]
    m = op.inputs.size
    first_in = int(op.inputs[0]) if m else -1
    common = dict(base, cycle=op.cycle)
    if cycle_level and m:
        rows.add(li.size * m, **common, unit="multiplier", operation="multiply",
                 lane=np.repeat(lane, m), neuron=np.repeat(neu, m),
                 input_index=np.tile(op.inputs, li.size), input_count=1,
                 operand_a=np.tile(op.x_op, li.size), operand_b=op.w_op[li].ravel(),
                 exact=op.products[li].ravel(), result=op.products[li].ravel())
    if op.pre_exact is not None:
        g = op.pre_exact.shape[1]
        p = op.pre_add_width
        gi = np.arange(g)
        first = op.inputs[np.minimum(gi * p, m - 1)]
        cnt = np.minimum(p, m - gi * p)
        rows.add(li.size * g, **common, unit="pre_add", operation="pre_add",
                 lane=np.repeat(lane, g), neuron=np.repeat(neu, g),
                 input_index=np.tile(first, li.size), input_count=np.tile(cnt, li.size),
                 exact=op.pre_exact[li].ravel(), result=op.pre_value[li].ravel(),
                 width=op.pre_add_bits, signed=True,
                 overflow=op.pre_kind[li].ravel() if op.pre_kind is not None else "")
    if cycle_level and op.kind == "mac":
        rows.add(li.size, **common, unit="adder_tree", operation="tree_sum", lane=lane,
                 neuron=neu, input_index=first_in, input_count=m, exact=op.tree[li],
                 result=op.tree[li])
    if op.bin_adds is not None:  # time_bin: one write per bin closing in this step
        for a in op.bin_adds:
            rows.add(li.size, **common, unit="accumulator", operation="add_bin", lane=lane,
                     neuron=neu, input_index=a.first_input, input_count=a.input_count,
                     operand_a=a.acc_before[li], operand_b=a.bin_sum[li],
                     exact=a.acc_exact[li], result=a.acc_after[li], width=op.acc_bits,
                     signed=True, overflow=a.acc_kind[li])
        return
    rows.add(li.size, **common, unit="accumulator",
             operation="add" if op.kind == "mac" else "add_correction", lane=lane, neuron=neu,
             input_index=first_in, input_count=m, operand_a=op.acc_before[li],
             operand_b=op.tree[li], exact=op.acc_exact[li], result=op.acc_after[li],
             width=op.acc_bits, signed=True, overflow=op.acc_kind[li])


def _drain_rows(op: DrainOp, rows: _Rows, flt: TraceFilter, cfg: HwConfig) -> None:
    if not _count_in(op.cycle, op.cycle, flt.cycles):
        return
    sel = _lanes_sel(op.neurons, flt)
    if not sel.any():
        return
    hw = cfg.for_layer(op.layer)
    split = bool(op.scaled)
    li = np.flatnonzero(sel)
    lanes = cfg.for_layer(op.layer).mac.lanes
    a = op.scaled["excitatory"][li] if split else op.acc["combined"][li]
    b = op.scaled["inhibitory"][li] if split else None
    rows.add(li.size, cycle=op.cycle, query=op.query, module=op.module, layer=op.layer,
             unit="combiner" if split else "requantizer",
             operation="combine" if split else "requantize", tile=op.tile,
             lane=op.neurons[li] % lanes, neuron=op.neurons[li], operand_a=a, operand_b=b,
             exact=op.unclamped[li], result=op.codes[li], width=hw.requant.output_bits,
             signed=hw.requant.output_signed, overflow=op.clamp_kind[li])
