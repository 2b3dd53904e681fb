"""Rows of the ``layer`` and ``neuron`` levels, taken from the fast path's SimResult
(overflow event counts per neuron and pair, clamps, accumulators and output codes)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from ..config import HwConfig
from ..engine.fast import LayerRun, SimResult
from .filters import TraceFilter
from .geometry import (
    _count_in,
    _in_cycles,
    _layer_geometry,
    _layer_starts,
    _LayerGeo,
    _neuron_lo_hi,
    _paths,
    _queries,
    _selected,
)
from .rows import _Rows
from .schema import CHUNK_ROWS


def _pair_counts(lr: LayerRun, pname: str, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-neuron (acc wrap, acc saturate, pre-add) events of one query."""
    n = lr.codes.shape[1]
    out = [np.zeros(n, np.int64) for _ in range(3)]
    pe = getattr(lr.mac[pname], "pair_events", None)
    if pe is not None and pe.size:  # rows sorted by (query, neuron)
        lo, hi = np.searchsorted(pe[:, 0], [q, q + 1])
        rows = pe[lo:hi]
        for i in range(3):
            out[i][rows[:, 1]] = rows[:, 2 + i]
    return out[0], out[1], out[2]


def _layer_rows(result: SimResult, cfg: HwConfig, flt: TraceFilter) -> Iterator[pa.Table]:
    starts = _layer_starts(result)
    rows = _Rows()
    for q in _queries(result, flt):  # queries outer, layers inner: cycle order
        for lr in _selected(result, flt):
            hw = cfg.for_layer(lr.layer)
            pre = hw.mac.pre_add_width > 1
            rq_unit = "combiner" if hw.requant.scheme == "seed_floor_divide" else "requantizer"
            start = int(starts[(lr.module, lr.layer)][q])
            if not _count_in(start, start, flt.cycles):
                continue
            common = dict(cycle=start, query=q, module=lr.module, layer=lr.layer)
            for _, pname in _paths(lr, flt):
                w, s, p = _pair_counts(lr, pname, q)
                ev = int(w.sum() + s.sum())
                rows.add(1, **common, path=pname, unit="mac_array", operation="layer",
                         input_count=int(lr.k_active[q]), operand_a=int(lr.k_active[q]),
                         operand_b=int(lr.stalls[q]), result=int(lr.cycles[q]),
                         width=hw.accumulator.bits, signed=True,
                         overflow=hw.accumulator.overflow if ev else "", count=ev)
                if pre:
                    pv = int(p.sum())
                    rows.add(1, **common, path=pname, unit="pre_add", operation="layer",
                             input_count=int(lr.k_active[q]), result=int(lr.cycles[q]),
                             width=hw.mac.pre_add_bits, signed=True,
                             overflow=hw.mac.pre_add_overflow if pv else "", count=pv)
            codes = lr.codes[q]
            low = int((lr.unclamped[q] < codes).sum())
            high = int((lr.unclamped[q] > codes).sum())
            kind = "clamp" if low and high else ("clamp_low" if low else
                                                 ("clamp_high" if high else ""))
            rows.add(1, **common, unit=rq_unit, operation="layer", operand_a=int(codes.min()),
                     operand_b=int(codes.max()), result=int(codes.size),
                     width=hw.requant.output_bits, signed=hw.requant.output_signed,
                     overflow=kind, count=low + high)
        if rows.rows >= CHUNK_ROWS:
            yield rows.take()
    yield rows.take()


def _neuron_rows(geo: _LayerGeo, lr: LayerRun, q: int, lo: int, hi: int, flt: TraceFilter,
                 rows: _Rows | None = None, cfg: HwConfig | None = None) -> int:
    """One row per neuron of one (query, layer), at its requantizer issue cycle; returns
    how many rows (and adds them to ``rows`` if given)."""
    if lo > hi:
        return 0
    j = np.arange(lo, hi + 1)
    t = j // geo.lanes
    lane = j % geo.lanes
    drain = geo.tile_start[t] + geo.paths * geo.steps * geo.cps[t] + lane // geo.thr
    keep = _in_cycles(drain, flt)
    if rows is None or not keep.any():
        return int(keep.sum())
    assert cfg is not None
    hw = cfg.for_layer(lr.layer)
    jj = j[keep]
    split = hw.requant.scheme == "seed_floor_divide"
    n = lr.codes.shape[1]
    kinds = np.full(jj.size, "", dtype=object)
    count = np.zeros(jj.size, np.int64)
    for name, policy_key in (("acc", "accumulator"), ("pre_add", "pre_add")):
        tot = np.zeros(n, np.int64)
        for pname in lr.mac:
            w, s, p = _pair_counts(lr, pname, q)
            tot += (w + s) if name == "acc" else p
        policy = hw.accumulator.overflow if policy_key == "accumulator" else (
            hw.mac.pre_add_overflow)
        ev = tot[jj]
        count += ev
        kinds = np.where(ev > 0, kinds + f"|{name}_{policy}", kinds)
    u = lr.unclamped[q, jj]
    code = lr.codes[q, jj]
    clamp = np.where(u < code, "|clamp_low", np.where(u > code, "|clamp_high", ""))
    count += clamp != ""
    kinds = np.char.lstrip((kinds + clamp).astype(str), "|")
    a = lr.acc["excitatory" if split else "combined"][q, jj]
    b = lr.acc["inhibitory"][q, jj] if split else None
    rows.add(jj.size, cycle=drain[keep], query=q, module=lr.module, layer=lr.layer,
             unit="neuron", operation="output", tile=t[keep], step=geo.steps - 1,
             lane=lane[keep], neuron=jj, input_index=0 if geo.k_active else -1,
             input_count=geo.k_active, operand_a=a, operand_b=b, exact=u, result=code,
             width=hw.requant.output_bits, signed=hw.requant.output_signed, overflow=kinds,
             count=count)
    return int(jj.size)


def _neuron_level(result: SimResult, cfg: HwConfig, flt: TraceFilter) -> Iterator[pa.Table]:
    starts = _layer_starts(result)
    layers = _selected(result, flt)
    blocks: list[pa.Table] = []
    n_rows = 0
    for q in _queries(result, flt):  # queries outer, layers inner; rows sorted by cycle
        for lr in layers:
            lo, hi = _neuron_lo_hi(lr.codes.shape[1], flt)
            rows = _Rows()
            geo = _layer_geometry(lr, q, int(starts[(lr.module, lr.layer)][q]))
            _neuron_rows(geo, lr, q, lo, hi, flt, rows=rows, cfg=cfg)
            if rows.rows:
                n_rows += rows.rows
                blocks.append(rows.take().sort_by("cycle"))
            if n_rows >= CHUNK_ROWS:
                yield pa.concat_tables(blocks)
                blocks, n_rows = [], 0
    if blocks:
        yield pa.concat_tables(blocks)
