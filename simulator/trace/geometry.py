"""Schedule geometry shared by row estimates and row generators: where each (query,
layer, tile) starts in absolute cycles, which layers, queries, paths and neurons a filter
keeps, and the cycle window of a ``first`` filter."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..config import HwConfig
from ..engine.fast import LayerRun, SimResult
from ..fixedpoint import Register
from ..network import QuantizedNetwork
from ..units.spike_order import bin_write_steps
from .filters import TraceFilter
from .schema import TraceError


@dataclass
class _LayerGeo:
    """Per-layer timing of one query: where each tile's phases start (absolute cycles)."""

    start: int
    steps: int  # steps per tile and path (incl. the raw correction step)
    mac_steps: int  # steps with products
    k_active: int
    lanes: int
    g: int
    p: int
    thr: int
    latency: int
    paths: int
    sizes: np.ndarray  # lanes busy per tile
    cps: np.ndarray  # cycles per step per tile
    tile_start: np.ndarray  # absolute first cycle of each tile
    bw: int
    bin_steps: np.ndarray | None = None  # time_bin: step of each bin's accumulator write


def _layer_geometry(lr: LayerRun, q: int, start: int,
                    bin_steps: np.ndarray | None = None) -> _LayerGeo:
    s = lr.schedule
    k_act = int(lr.k_active[q])
    steps = int(s.steps(np.array([k_act]))[0])
    sizes = s.tile_sizes
    cps = s.cycles_per_step
    drain = -(-sizes // s.requant_throughput)
    span = s.paths * steps * cps + drain
    tile_start = start + np.concatenate([[0], np.cumsum(span)[:-1]]).astype(np.int64)
    return _LayerGeo(
        start, steps, steps - s.extra_steps, k_act, s.lanes, s.tree_width, s.pre_add_width,
        s.requant_throughput, s.requant_latency, s.paths, sizes, cps, tile_start,
        s.weights_per_cycle, bin_steps,
    )


def _bin_steps(result: SimResult, net: QuantizedNetwork | None, cfg: HwConfig, lr: LayerRun,
               q: int) -> np.ndarray | None:
    """``schedule.order = "time_bin"``: the steps of the layer's bin writes for query q."""
    hw = cfg.for_layer(lr.layer)
    if hw.schedule.order != "time_bin":
        return None
    if lr.layer == "feature":
        x = result.input_codes[lr.module][q]
    else:
        x = result.layer(lr.module, "feature").codes[q]
    if hw.schedule.mode == "event_driven":
        if net is None:
            raise TraceError("internal error: a time_bin trace estimate needs the network")
        mod = net.modules[lr.module]
        zx = (mod.input_zero_point if lr.layer == "feature"
              else mod.layer("feature").output_zero_point)
        x = x[x != zx]
    return bin_write_steps(x, hw.schedule.time_bins, Register(hw.spikes.bits, hw.spikes.signed),
                           hw.accumulator.adder_tree_width)


def _layer_starts(result: SimResult) -> dict[tuple[int, str], np.ndarray]:
    """Absolute first cycle of every (module, layer) for every query."""
    base = np.concatenate([[0], np.cumsum(result.cycles_per_query)[:-1]]).astype(np.int64)
    out = {}
    acc = base.copy()
    for lr in result.layers:
        out[(lr.module, lr.layer)] = acc.copy()
        acc = acc + lr.cycles
    return out


def _count_in(lo: int, hi: int, win: tuple[int, int] | None) -> int:
    """Integers of [lo, hi] inside the window."""
    if win is not None:
        lo, hi = max(lo, win[0]), min(hi, win[1])
    return max(0, hi - lo + 1)


def _selected(result: SimResult, flt: TraceFilter) -> list[LayerRun]:
    """The layer runs the filter keeps, in run order."""
    out = []
    for lr in result.layers:
        if flt.modules is not None and lr.module not in flt.modules:
            continue
        if flt.layers is not None and lr.layer not in flt.layers:
            continue
        out.append(lr)
    return out


def _queries(result: SimResult, flt: TraceFilter) -> range:
    q = result.outputs.shape[0]
    if flt.queries is None:
        return range(q)
    return range(flt.queries[0], min(flt.queries[1], q - 1) + 1)


def _paths(lr: LayerRun, flt: TraceFilter) -> list[tuple[int, str]]:
    return [(i, p) for i, p in enumerate(lr.mac) if flt.paths is None or p in flt.paths]


def _neuron_lo_hi(n: int, flt: TraceFilter) -> tuple[int, int]:
    if flt.neurons is None:
        return 0, n - 1
    return flt.neurons[0], min(flt.neurons[1], n - 1)


def _in_cycles(c: np.ndarray, flt: TraceFilter) -> np.ndarray:
    if flt.cycles is None:
        return np.ones(np.shape(c), dtype=bool)
    return (c >= flt.cycles[0]) & (c <= flt.cycles[1])


def resolve_first(flt: TraceFilter, result: SimResult) -> list[TraceFilter]:
    """A ``first`` filter as one filter per selected layer: that layer (and module) and the
    cycles [c - first, c + first] around its first accumulator or pre-add event (the same
    cycle as report.json's ``first``); layers without an event are left out."""
    if flt.first is None:
        return [flt]
    starts = _layer_starts(result)
    out = []
    for lr in _selected(result, flt):
        best: int | None = None
        for pi, st in enumerate(lr.mac.values()):
            for ev in (getattr(st, "first_pre_add", None), st.first):
                if ev is None:
                    continue
                q, j, step = (int(v) for v in ev)
                if flt.queries is not None and not flt.queries[0] <= q <= flt.queries[1]:
                    continue
                steps_q = int(lr.schedule.steps(lr.k_active[q : q + 1])[0])
                cyc = int(starts[(lr.module, lr.layer)][q]) + lr.schedule.event_offset(
                    steps_q, j // lr.schedule.lanes, step, pi)
                best = cyc if best is None else min(best, cyc)
        if best is not None:
            out.append(dataclasses.replace(
                flt, modules=(lr.module,), layers=(lr.layer,),
                cycles=(max(0, best - flt.first), best + flt.first), first=None))
    return out
