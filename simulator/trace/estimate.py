"""Exact row counts of a trace, computed from the schedule before anything is written
(after the fast path, or before the run where the schedule alone decides it)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..config import HwConfig
from ..engine.fast import SimResult
from ..network import QuantizedNetwork
from .fast_levels import _neuron_rows
from .filters import TraceFilter
from .geometry import (
    _bin_steps,
    _count_in,
    _layer_geometry,
    _layer_starts,
    _LayerGeo,
    _neuron_lo_hi,
    _paths,
    _queries,
    _selected,
    resolve_first,
)


def estimate_rows(result: SimResult, cfg: HwConfig, level: str, flt: TraceFilter,
                  net: QuantizedNetwork | None = None) -> int:
    """Exact number of rows ``write_trace`` will produce (computed from the schedule; with
    ``schedule.order = "time_bin"`` also from the layer inputs, and, for event_driven layers,
    ``net``'s zero points)."""
    if level == "off":
        return 0
    if flt.first is not None:
        return sum(estimate_rows(result, cfg, level, f, net) for f in resolve_first(flt, result))
    starts = _layer_starts(result)
    total = 0
    for lr in _selected(result, flt):
        hw = cfg.for_layer(lr.layer)
        pre = hw.mac.pre_add_width > 1
        paths = _paths(lr, flt)
        n = lr.codes.shape[1]
        lo, hi = _neuron_lo_hi(n, flt)
        for q in _queries(result, flt):
            start = int(starts[(lr.module, lr.layer)][q])
            if level == "layer":
                if _count_in(start, start, flt.cycles):
                    total += len(paths) * (2 if pre else 1) + 1
                continue
            geo = _layer_geometry(lr, q, start, _bin_steps(result, net, cfg, lr, q)
                                  if level in ("op", "cycle") else None)
            if level == "neuron":
                total += _neuron_rows(geo, lr, q, lo, hi, flt)
                continue
            total += _op_rows_estimate(geo, paths, lo, hi, flt, pre, level == "cycle")
    return total


def estimate_rows_before_run(net: QuantizedNetwork, cfg: HwConfig, queries: int, level: str,
                             flt: TraceFilter) -> tuple[int, bool] | None:
    """Rows of the trace from the schedule alone, before simulating: (rows, exact).

    With every layer ``dense`` the count is exact (every input is active); with
    ``event_driven`` layers and no cycle window it is an upper bound (fewer active inputs
    only remove steps); with event-driven layers and a cycle window it cannot be known
    before the run (None).
    """
    if level != "off" and flt.first is not None:
        return None  # the window follows the first event: known once the fast path has run
    from types import SimpleNamespace

    from ..engine.fast import _schedule
    from ..units.weight_memory import WeightMemory

    if level == "off" or queries < 1:
        return 0, True
    event = any(cfg.for_layer(lay.name).schedule.mode != "dense"
                for m in net.modules for lay in m.layers)
    if event and flt.cycles is not None:
        return None
    if level in ("op", "cycle") and any(cfg.for_layer(lay.name).schedule.order == "time_bin"
                                        for m in net.modules for lay in m.layers):
        return None  # bin writes per step depend on the input codes
    wmem = WeightMemory(cfg.weights)
    layers = []
    for mi, mod in enumerate(net.modules):
        for lay in mod.layers:
            sched = _schedule(cfg.for_layer(lay.name), lay, wmem)
            k = np.full(queries, lay.in_features, np.int64)
            cycles, _ = sched.cycles(k)
            layers.append(SimpleNamespace(
                module=mi, layer=lay.name, schedule=sched, k_active=k, cycles=cycles,
                codes=np.empty((0, lay.out_features), np.int64),
                mac={p.name: None for p in lay.paths},
            ))
    stub = SimpleNamespace(
        layers=layers, outputs=np.empty((queries, 0), np.int64),
        cycles_per_query=np.sum([lr.cycles for lr in layers], axis=0).astype(np.int64),
    )
    return estimate_rows(stub, cfg, level, flt), not event  # type: ignore[arg-type]


def _tile_ranges(geo: _LayerGeo, lo: int, hi: int) -> Iterator[tuple[int, int, int, int]]:
    """(tile, first neuron, busy lanes, lanes inside [lo, hi]) for tiles touching [lo, hi]."""
    if lo > hi:
        return
    for t in range(lo // geo.lanes, min(hi // geo.lanes, geo.sizes.size - 1) + 1):
        n0 = t * geo.lanes
        n = int(geo.sizes[t])
        sel = max(0, min(hi, n0 + n - 1) - max(lo, n0) + 1)
        yield t, n0, n, sel


def _op_rows_estimate(geo: _LayerGeo, paths: list[tuple[int, str]], lo: int, hi: int,
                      flt: TraceFilter, pre: bool, cycle_level: bool) -> int:
    win = flt.cycles
    total = 0
    for t, n0, n, sel in _tile_ranges(geo, lo, hi):
        c = int(geo.cps[t])
        ts = int(geo.tile_start[t])
        for pi, _ in paths:
            ps = ts + pi * geo.steps * c
            # steps whose addition cycle (ps + (s+1)c - 1) lies in the window
            s_lo, s_hi = 0, geo.steps - 1
            if win is not None:
                s_lo = max(s_lo, -(-(win[0] - ps + 1) // c) - 1)
                s_hi = min(s_hi, (win[1] - ps + 1) // c - 1)
            if s_lo <= s_hi:
                mac_hi = min(s_hi, geo.mac_steps - 1)
                n_mac = max(0, mac_hi - s_lo + 1)
                n_add = s_hi - s_lo + 1
                if geo.bin_steps is not None:  # time_bin: one write per non-empty bin
                    n_add = int(((geo.bin_steps >= s_lo) & (geo.bin_steps <= s_hi)).sum())
                total += sel * n_add  # accumulator additions
                if n_mac:
                    inputs = n_mac * geo.g
                    groups = n_mac * (geo.g // geo.p)
                    if mac_hi == geo.mac_steps - 1:  # the last step may be partial
                        m_last = geo.k_active - (geo.mac_steps - 1) * geo.g
                        inputs -= geo.g - m_last
                        groups -= geo.g // geo.p - (-(-m_last // geo.p))
                    if pre:
                        total += sel * groups
                    if cycle_level:
                        total += sel * (inputs + n_mac)  # products and tree sums
            if cycle_level:  # one fetch/stall row per cycle of the tile's path phase
                total += _count_in(ps, ps + geo.steps * c - 1, win)
        d0 = ts + geo.paths * geo.steps * c
        for lane in range(max(lo, n0) - n0, min(hi, n0 + n - 1) - n0 + 1):
            total += _count_in(d0 + lane // geo.thr, d0 + lane // geo.thr, win)
    if cycle_level:
        end = int(geo.tile_start[-1]) + geo.paths * geo.steps * int(geo.cps[-1]) + -(
            -int(geo.sizes[-1]) // geo.thr)
        total += _count_in(end, end + geo.latency - 1, win)
    return total
