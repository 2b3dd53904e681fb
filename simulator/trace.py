"""Trace recorder: per-layer, per-neuron, per-operation and per-cycle tables of a run.

Levels (``--trace LEVEL``): ``off``; ``layer`` and ``neuron`` come from the fast path's
SimResult; ``op`` (every register write) and ``cycle`` (every cycle's activity: fetches and
stalls, each product, adder-tree sums, register writes, requantizer drains and pipeline
flushes) come from the stepwise engine run over the filtered window only.

Rows are streamed to Parquet (pyarrow ParquetWriter) or CSV (pyarrow CSVWriter) in chunks,
written under a temporary name and renamed when complete, with a JSON manifest beside them.
Before anything is written the number of rows is computed exactly from the schedule; a trace
above ``max_rows`` stops with a message asking for a filter, and no partial file is left.

The schema (name ``tempo-hwsim-trace``, version :data:`TRACE_SCHEMA_VERSION`) and the filter
syntax are documented in docs/traces.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .config import HwConfig
from .engine.fast import LayerRun, SimResult
from .engine.stepwise import DrainOp, FlushOp, MacOp, StepwiseRun, Window
from .fixedpoint import Register
from .network import LAYER_NAMES, QuantizedNetwork
from .outputs import ResultSet
from .ranges import RANGE_HELP, RangeError, parse_inclusive
from .units.spike_order import bin_write_steps

TRACE_SCHEMA_NAME = "tempo-hwsim-trace"
TRACE_SCHEMA_VERSION = 1
LEVELS: tuple[str, ...] = ("off", "layer", "neuron", "op", "cycle")
FORMATS: tuple[str, ...] = ("parquet", "csv", "vcd")
#: formats that hold rows of the schema (vcd is a waveform of the op/cycle levels)
TABLE_FORMATS: tuple[str, ...] = ("parquet", "csv")
DEFAULT_MAX_ROWS = 5_000_000
CHUNK_ROWS = 200_000
FILTER_KEYS: tuple[str, ...] = (
    "module", "layer", "path", "neuron", "query", "cycle", "first",
)
#: cycles either side of a layer's first event for a bare ``first`` filter item
DEFAULT_AROUND_FIRST = 8
PATH_NAMES: tuple[str, ...] = ("combined", "excitatory", "inhibitory")

# (column, arrow type, nullable, meaning) -- the one schema of every level.
COLUMNS: tuple[tuple[str, pa.DataType, bool, str], ...] = (
    ("cycle", pa.int64(), False, "clock cycle from the start of the run (0-based)"),
    ("query", pa.int32(), False, "query (input row) index"),
    ("module", pa.int16(), False, "module index"),
    ("layer", pa.string(), False, "feature | output"),
    ("path", pa.string(), False, "weight path: combined | excitatory | inhibitory | ''"),
    ("unit", pa.string(), False, "hardware unit (see docs/traces.md)"),
    ("operation", pa.string(), False, "what the unit did (see docs/traces.md)"),
    ("tile", pa.int32(), False, "lane tile (neuron // mac.lanes), -1 if none"),
    ("step", pa.int32(), False, "step within the tile's accumulation, -1 if none"),
    ("lane", pa.int32(), False, "MAC lane (neuron % mac.lanes), -1 if none"),
    ("neuron", pa.int32(), False, "output neuron of the layer, -1 if none"),
    ("input_index", pa.int32(), False, "first input index the operation consumes, -1 if none"),
    ("input_count", pa.int32(), False, "number of inputs (products) the operation covers"),
    ("operand_a", pa.int64(), True, "first operand (see docs/traces.md)"),
    ("operand_b", pa.int64(), True, "second operand (see docs/traces.md)"),
    ("exact", pa.int64(), True, "exact result before the register narrows it"),
    ("result", pa.int64(), False, "value written / produced"),
    ("width", pa.int16(), True, "width (bits) of the register written, null if none"),
    ("signed", pa.bool_(), True, "that register is signed, null if none"),
    ("overflow", pa.string(), False,
     "'' | wrap | saturate | error | clamp_low | clamp_high | clamp (both, summaries)"),
    ("count", pa.int64(), False, "events (summaries) or weights delivered (fetch rows), else 0"),
)
SCHEMA = pa.schema(
    [pa.field(n, t, nullable=nb) for n, t, nb, _ in COLUMNS],
    metadata={"schema": TRACE_SCHEMA_NAME, "version": str(TRACE_SCHEMA_VERSION)},
)
COLUMN_NAMES: tuple[str, ...] = tuple(c[0] for c in COLUMNS)


class TraceError(ValueError):
    """A trace request that cannot be honoured (bad level, filter, format or size)."""


class TraceLimitError(TraceError):
    """The trace would exceed the row limit."""


# --- filter ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceFilter:
    """A parsed ``--trace-filter``: ranges are inclusive; None = no restriction."""

    modules: tuple[int, ...] | None = None
    layers: tuple[str, ...] | None = None
    paths: tuple[str, ...] | None = None
    neurons: tuple[int, int] | None = None
    queries: tuple[int, int] | None = None
    cycles: tuple[int, int] | None = None
    text: str = ""
    first: int | None = None  # trace +-first cycles around each layer's first event

    def window(self) -> Window:
        return Window(self.queries, self.modules, self.layers, self.neurons, self.cycles)

    def _checked_first(self, expr: str) -> TraceFilter:
        if self.first is not None and self.cycles is not None:
            raise TraceError(f"--trace-filter {expr!r}: 'first' chooses the cycle window "
                             "itself; drop cycle=")
        return self


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


def _parse_range(key: str, value: str, expr: str) -> tuple[int, int]:
    if value.strip() == ":":
        raise TraceError(f"--trace-filter {expr!r}: {key}={value!r} is not {RANGE_HELP}")
    try:
        return parse_inclusive(value)
    except RangeError as e:
        sep = " " if str(e).startswith("is not") else ": "
        raise TraceError(f"--trace-filter {expr!r}: {key}={value!r}{sep}{e}") from None


def parse_filter(expr: str) -> TraceFilter:
    """Parse ``key=value[,key=value...]`` (see docs/traces.md); raises TraceError.

    Keys: module (N, A:B or N|M|...), layer (feature|output), path
    (combined|excitatory|inhibitory), neuron, query, cycle (N, A:B, A:, :B; inclusive).
    """
    text = (expr or "").strip()
    seen: dict[str, Any] = {}
    if not text:
        return TraceFilter()
    for item in text.split(","):
        if not item.strip():
            raise TraceError(f"--trace-filter {expr!r}: empty item (stray comma?)")
        if item.strip().lower() == "first":
            item = f"first={DEFAULT_AROUND_FIRST}"
        if "=" not in item:
            raise TraceError(
                f"--trace-filter {expr!r}: {item.strip()!r} is not key=value; keys: "
                f"{', '.join(FILTER_KEYS)}"
            )
        key, _, value = item.partition("=")
        key = key.strip().lower()
        value = value.strip()
        if key not in FILTER_KEYS:
            raise TraceError(
                f"--trace-filter {expr!r}: unknown key {key!r}; keys: {', '.join(FILTER_KEYS)}"
            )
        if key in seen:
            raise TraceError(f"--trace-filter {expr!r}: {key!r} given twice")
        if key in ("layer", "path"):
            names = tuple(v.strip() for v in value.split("|"))
            allowed = LAYER_NAMES if key == "layer" else PATH_NAMES
            bad = [v for v in names if v not in allowed]
            if bad or not names:
                raise TraceError(
                    f"--trace-filter {expr!r}: {key}={value!r}: choose from "
                    f"{' | '.join(allowed)} (several joined by '|')"
                )
            seen[key] = names
        elif key == "first":
            if not value.isdigit():
                raise TraceError(f"--trace-filter {expr!r}: first={value!r}: give the cycles "
                                 "to trace either side of each layer's first event, e.g. "
                                 "first=16 (or just 'first')")
            seen[key] = int(value)
        elif key == "module":
            mods: set[int] = set()
            for v in value.split("|"):
                lo, hi = _parse_range(key, v, expr)
                mods.update(range(lo, min(hi, lo + (1 << 16)) + 1))
            seen[key] = tuple(sorted(mods))
        else:
            seen[key] = _parse_range(key, value, expr)
    return TraceFilter(
        modules=seen.get("module"),
        layers=seen.get("layer"),
        paths=seen.get("path"),
        neurons=seen.get("neuron"),
        queries=seen.get("query"),
        cycles=seen.get("cycle"),
        text=text,
        first=seen.get("first"),
    )._checked_first(expr)


def check_filter(flt: TraceFilter, net: QuantizedNetwork, queries: int, level: str) -> None:
    """Raise TraceError if the filter selects nothing that exists for this run and level."""
    src = f"--trace-filter {flt.text!r}"
    if flt.modules is not None and min(flt.modules) >= len(net.modules):
        raise TraceError(f"{src}: the model has modules 0..{len(net.modules) - 1}")
    if flt.queries is not None and flt.queries[0] >= queries:
        raise TraceError(f"{src}: the run has queries 0..{queries - 1}")
    if flt.paths is not None:
        if level == "neuron":
            raise TraceError(
                f"{src}: a neuron-level row covers all weight paths of its neuron; a path "
                "filter needs --trace layer, op or cycle"
            )
        have = {p.name for m in net.modules for lay in m.layers for p in lay.paths}
        if not have & set(flt.paths):
            raise TraceError(f"{src}: the model's weight paths are {', '.join(sorted(have))}")
    if flt.neurons is not None:
        if level == "layer":
            raise TraceError(
                f"{src}: layer-level rows are whole layers; a neuron filter needs --trace "
                "neuron, op or cycle"
            )
        biggest = max(lay.out_features for m in net.modules for lay in m.layers)
        if flt.neurons[0] >= biggest:
            raise TraceError(f"{src}: the largest layer has neurons 0..{biggest - 1}")


# --- row buffers ---------------------------------------------------------------------------------


class _Rows:
    """Column-wise accumulation of row blocks; ``take()`` returns an arrow table.

    Each ``add`` only records (value, n) segments; ``take`` fills one array per column.
    """

    def __init__(self) -> None:
        self.segs: list[tuple[int, dict[str, Any]]] = []
        self.rows = 0

    def add(self, n: int, **cols: Any) -> None:
        """Add n rows; each column is a scalar (broadcast), an array of n, or None (null)."""
        if n <= 0:
            return
        unknown = cols.keys() - _COLSET
        if unknown:
            raise KeyError(f"unknown trace columns {sorted(unknown)}")
        for name in _REQUIRED:
            if cols.get(name) is None:
                raise ValueError(f"trace column {name!r} is required")
        self.segs.append((n, cols))
        self.rows += n

    def take(self) -> pa.Table:
        if not self.rows:
            return SCHEMA.empty_table()
        total = self.rows
        arrays = []
        for name, typ, nullable, _ in COLUMNS:
            out = np.empty(total, dtype=_NP[name])
            mask = np.zeros(total, dtype=bool) if nullable else None
            default = _DEFAULTS.get(name)
            pos = 0
            for n, cols in self.segs:
                v = cols.get(name, default)
                if v is None:
                    if mask is None:
                        raise ValueError(f"trace column {name!r} cannot be null")
                    mask[pos : pos + n] = True
                    out[pos : pos + n] = "" if _NP[name] is object else 0
                else:
                    if isinstance(v, np.ndarray) and v.ndim and v.shape != (n,):
                        raise ValueError(f"trace column {name!r}: {v.shape} != ({n},)")
                    out[pos : pos + n] = v
                pos += n
            if mask is not None and not mask.any():
                mask = None
            arrays.append(pa.array(out, type=typ, mask=mask))
        self.segs = []
        self.rows = 0
        return pa.Table.from_arrays(arrays, schema=SCHEMA)


_NULLABLE = frozenset(n for n, _, nb, _ in COLUMNS if nb)
_NP: dict[str, Any] = {
    n: {pa.int64(): np.int64, pa.int32(): np.int32, pa.int16(): np.int16,
        pa.bool_(): np.bool_, pa.string(): object}[t]
    for n, t, _, _ in COLUMNS
}
_COLSET = frozenset(COLUMN_NAMES)
_REQUIRED = ("cycle", "query", "module", "layer", "unit", "operation", "result")
_DEFAULTS: dict[str, Any] = {
    "path": "", "tile": -1, "step": -1, "lane": -1, "neuron": -1, "input_index": -1,
    "input_count": 0, "operand_a": None, "operand_b": None, "exact": None, "width": None,
    "signed": None, "overflow": "", "count": 0,
}


# --- geometry shared by estimation and writing -------------------------------------------------


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


# --- estimation --------------------------------------------------------------------------------


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

    from .engine.fast import _schedule
    from .units.weight_memory import WeightMemory

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


# --- rows from the fast path (layer, neuron) ---------------------------------------------------


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


# --- rows from the stepwise path (op, cycle) ---------------------------------------------------


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


# --- writing -----------------------------------------------------------------------------------


@dataclass
class TraceSummary:
    """What write_trace produced (path is None for level off)."""

    level: str
    format: str
    rows: int
    estimated_rows: int
    path: Path | None
    manifest: Path | None
    filter: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.path is None:
            return "trace: off"
        what = "ops in a waveform" if self.format == "vcd" else "rows"
        return (f"trace: {self.rows:,} {what} ({self.level} level, {self.format}) -> "
                f"{self.path} in {self.seconds:.1f} s")


@dataclass(frozen=True)
class TraceRequest:
    """What trace a run should write: level, filter, format, row limit, and where.

    ``dir`` None = into the run's own result set (the --out folder).
    """

    level: str = "off"
    filter: str = ""
    format: str = "parquet"
    max_rows: int = DEFAULT_MAX_ROWS
    dir: Path | None = None

    def check(self) -> TraceFilter:
        """Validate level, format, filter syntax and limit (no model needed); raise TraceError."""
        if self.level not in LEVELS:
            raise TraceError(f"--trace {self.level!r}: choose one of {', '.join(LEVELS)}")
        if self.format not in FORMATS:
            raise TraceError(
                f"--trace-format {self.format!r}: choose one of {', '.join(FORMATS)}")
        flt = parse_filter(self.filter)
        if flt.first is not None and self.level not in ("op", "cycle"):
            raise TraceError(f"--trace-filter {self.filter!r}: 'first' picks a cycle window; "
                             "it needs --trace op or cycle")
        if self.format == "vcd" and self.level not in ("op", "cycle", "off"):
            raise TraceError(f"--trace-format vcd: a waveform needs --trace op or cycle, not "
                             f"{self.level!r}")
        if self.level == "off":
            if flt.text:
                raise TraceError("--trace-filter needs --trace layer|neuron|op|cycle")
            return flt
        if self.max_rows < 1:
            raise TraceError(f"--max-trace-rows {self.max_rows}: must be >= 1")
        return flt

    def check_before_run(self, net: QuantizedNetwork, cfg: HwConfig, queries: int) -> None:
        """Check the filter against the model and, where the schedule alone decides it (see
        :func:`estimate_rows_before_run`), the row limit - before anything is simulated."""
        flt = self.check()
        if self.level == "off":
            return
        check_filter(flt, net, queries, self.level)
        if self.level in ("op", "cycle"):
            from .engine.stepwise import check_steppable

            check_steppable(cfg)  # op/cycle rows come from the stepwise engine
        est = estimate_rows_before_run(net, cfg, queries, self.level, flt)
        if est is not None and est[1] and est[0] > self.max_rows:
            raise self._limit_error(est[0])

    def _limit_error(self, est: int) -> TraceLimitError:
        return TraceLimitError(
            f"--trace {self.level}: the trace would have {est:,} rows, more than "
            f"--max-trace-rows {self.max_rows:,}; narrow it with --trace-filter (e.g. "
            "'query=0:0,layer=feature,neuron=0:63,cycle=0:5000') or raise "
            "--max-trace-rows; nothing was written"
        )

    def check_size(self, result: SimResult, net: QuantizedNetwork, cfg: HwConfig) -> int:
        """Raise TraceLimitError if the trace would pass ``max_rows`` (nothing written)."""
        flt = self.check()
        if self.level == "off":
            return 0
        check_filter(flt, net, int(result.outputs.shape[0]), self.level)
        est = estimate_rows(result, cfg, self.level, flt, net)
        if est > self.max_rows:
            raise self._limit_error(est)
        return est


def trace_names(level: str, fmt: str) -> tuple[str, str]:
    """(data file, manifest) names of a trace."""
    return f"trace_{level}.{fmt}", f"trace_{level}.json"


TRACE_OWNED = r"trace_(layer|neuron|op|cycle)\.(parquet|csv|json|vcd)"


def write_trace(
    result: SimResult,
    net: QuantizedNetwork,
    cfg: HwConfig,
    input_codes: list[np.ndarray] | None,
    out_dir: str | os.PathLike[str] | ResultSet,
    level: str,
    filter_expr: str = "",
    fmt: str = "parquet",
    max_rows: int = DEFAULT_MAX_ROWS,
    provenance: dict[str, Any] | None = None,
) -> TraceSummary:
    """Write ``DIR/trace_<level>.<fmt>`` and ``DIR/trace_<level>.json`` for a finished run.

    out_dir: a folder (the two files are published together, see simulator.outputs) or an
    open :class:`ResultSet` (the files are staged into it and published by its commit).
    input_codes: per-module int64 (Q, K) input codes (default ``result.input_codes``).
    Raises TraceError for a bad level, format or filter and TraceLimitError (nothing written)
    if the trace would have more than ``max_rows`` rows.
    """
    t0 = time.perf_counter()
    req = TraceRequest(level, filter_expr, fmt, max_rows)
    flt = req.check()
    if level == "off":
        return TraceSummary(level, fmt, 0, 0, None, None, flt.text, 0.0)
    q_total = int(result.outputs.shape[0])
    est = req.check_size(result, net, cfg)
    codes = input_codes if input_codes is not None else result.input_codes
    if fmt == "vcd":
        return _write_waveform(result, net, cfg, codes, out_dir, req, flt, est, provenance, t0)
    if level == "layer":
        chunks = _layer_rows(result, cfg, flt)
    elif level == "neuron":
        chunks = _neuron_level(result, cfg, flt)
    else:
        chunks = itertools.chain.from_iterable(
            _op_level(result, net, cfg, f, level == "cycle", codes)
            for f in resolve_first(flt, result))
    own = not isinstance(out_dir, ResultSet)
    rs = ResultSet(out_dir, option="--trace-dir").open() if own else out_dir
    assert isinstance(rs, ResultSet)
    try:
        data_name, man_name = trace_names(level, fmt)
        final = rs.final_path(data_name)
        written = 0
        with rs.open_file(data_name) as fh:
            writer = _open_writer(fh, fmt)
            try:
                for table in chunks:
                    n = table.num_rows
                    if not n:
                        continue
                    if written + n > max_rows:
                        raise TraceLimitError(
                            f"--trace {level}: more than --max-trace-rows {max_rows:,} rows; "
                            "narrow it with --trace-filter; nothing was written"
                        )
                    writer.write_table(table)
                    written += n
                if written == 0:  # an empty trace still has the schema
                    writer.write_table(SCHEMA.empty_table())
            finally:
                writer.close()
        seconds = time.perf_counter() - t0
        manifest = rs.final_path(man_name)
        summary = TraceSummary(level, fmt, written, est, final, manifest, flt.text, seconds)
        doc = {
            "schema": {"name": TRACE_SCHEMA_NAME, "version": TRACE_SCHEMA_VERSION},
            "level": level,
            "format": fmt,
            "file": final.name,
            "rows": written,
            "filter": flt.text,
            "columns": [{"name": n, "type": str(t), "nullable": nb, "meaning": d}
                        for n, t, nb, d in COLUMNS],
            "config": {"name": cfg.name, "source": cfg.source, "sha256": cfg.sha256},
            "model": {"source": net.source},
            "queries": q_total,
            "provenance": provenance or {},
        }
        rs.write_json(man_name, doc)
        if own:
            rs.commit()
    finally:
        if own:
            rs.close()
    return summary


def _write_waveform(result: SimResult, net: QuantizedNetwork, cfg: HwConfig,
                    codes: list[np.ndarray], out_dir: Any, req: TraceRequest, flt: TraceFilter,
                    est: int, provenance: dict[str, Any] | None, t0: float) -> TraceSummary:
    """``trace_<level>.vcd`` + ``trace_<level>.json`` (simulator/outputs/waveform.py)."""
    from .outputs.waveform import write_vcd

    level = req.level
    own = not isinstance(out_dir, ResultSet)
    rs = ResultSet(out_dir, option="--trace-dir").open() if own else out_dir
    assert isinstance(rs, ResultSet)
    try:
        data_name, man_name = trace_names(level, "vcd")
        final = rs.final_path(data_name)

        def ops() -> Iterator[Any]:
            for f in resolve_first(flt, result):
                run = StepwiseRun(net, cfg, codes, f.window(), reference=result)
                for op in run.ops():
                    if isinstance(op, MacOp) and f.paths is not None and op.path not in f.paths:
                        continue
                    if isinstance(op, FlushOp) and level == "op":
                        continue
                    if f.cycles is not None and not _count_in(op.cycle, op.cycle, f.cycles):
                        continue
                    yield op

        with rs.open_file(data_name) as fh:
            wave = write_vcd(ops(), cfg, fh, f"level {level}, filter {flt.text or '(none)'}")
        manifest = rs.final_path(man_name)
        seconds = time.perf_counter() - t0
        summary = TraceSummary(level, "vcd", wave.ops, est, final, manifest, flt.text, seconds)
        rs.write_json(man_name, {
            "schema": {"name": TRACE_SCHEMA_NAME, "version": TRACE_SCHEMA_VERSION},
            "level": level, "format": "vcd", "file": final.name, "ops": wave.ops,
            "value_changes": wave.changes, "first_cycle": wave.first_cycle,
            "last_cycle": wave.last_cycle, "timescale": "1 ps", "period_ps": wave.period_ps,
            "clock_mhz": cfg.clock.mhz, "filter": flt.text,
            "signals": "see simulator/outputs/waveform.py and docs/traces.md",
            "config": {"name": cfg.name, "source": cfg.source, "sha256": cfg.sha256},
            "model": {"source": net.source}, "queries": int(result.outputs.shape[0]),
            "provenance": provenance or {},
        })
        if own:
            rs.commit()
    finally:
        if own:
            rs.close()
    return summary


class _CsvWriter:
    def __init__(self, sink: Any) -> None:
        import pyarrow.csv as pacsv

        self._w = pacsv.CSVWriter(sink, SCHEMA)

    def write_table(self, table: pa.Table) -> None:
        self._w.write_table(table)

    def close(self) -> None:
        self._w.close()


def _open_writer(sink: Any, fmt: str) -> Any:
    """A chunked writer on an open binary file (created by the result set)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(sink, SCHEMA, compression="zstd")
    return _CsvWriter(sink)


def read_trace(path: str | os.PathLike[str]) -> Any:
    """Read a trace file back as a pandas DataFrame with the schema's dtypes (nullable ints)."""
    import pandas as pd

    p = Path(path)
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(str(p))
    else:
        import pyarrow.csv as pacsv

        opts = pacsv.ConvertOptions(
            column_types={n: t for n, t, _, _ in COLUMNS}, strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        table = pacsv.read_csv(str(p), convert_options=opts)
    mapping = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype(),
               pa.int16(): pd.Int16Dtype(), pa.bool_(): pd.BooleanDtype(),
               pa.string(): pd.StringDtype()}
    return table.to_pandas(types_mapper=mapping.get)


# --- command line ------------------------------------------------------------------------------


def add_trace_arguments(parser: argparse.ArgumentParser, default: str = "off",
                        with_dir: bool = True) -> None:
    """Add --trace, --trace-filter, --trace-format, --max-trace-rows (--trace-dir) options."""
    g = parser.add_argument_group("traces (docs/traces.md)")
    g.add_argument("--trace", choices=LEVELS, default=default,
                   help="trace level: layer/neuron from the fast path, op/cycle stepwise "
                        f"(default {default})")
    g.add_argument("--trace-filter", default="", metavar="EXPR",
                   help="e.g. module=0,layer=feature,neuron=0:63,query=0:9,cycle=0:5000 "
                        "(inclusive ranges)")
    g.add_argument("--trace-around-first", type=int, default=None, metavar="N",
                   help="trace N cycles either side of each layer's first overflow event "
                        "(same as adding first=N to --trace-filter)")
    g.add_argument("--trace-format", choices=FORMATS, default="parquet",
                   help="parquet or csv rows, or vcd (a waveform; --trace op or cycle)")
    g.add_argument("--max-trace-rows", type=int, default=DEFAULT_MAX_ROWS, metavar="N",
                   help=f"stop (writing nothing) above N rows (default {DEFAULT_MAX_ROWS:,})")
    if with_dir:
        g.add_argument("--trace-dir", default=None, metavar="DIR",
                       help="where traces go (default: the --out folder, published with the "
                            "run's result set)")


def trace_request(args: argparse.Namespace) -> TraceRequest:
    """The TraceRequest of ``run``/``demo`` options (validated; raises TraceError)."""
    tdir = getattr(args, "trace_dir", None)
    if tdir is not None and not str(tdir).strip():
        raise TraceError("--trace-dir '': an empty path; give a folder or drop the option")
    expr = getattr(args, "trace_filter", "") or ""
    around = getattr(args, "trace_around_first", None)
    if around is not None:
        if around < 0:
            raise TraceError(f"--trace-around-first {around}: give cycles >= 0, e.g. 16")
        expr = f"{expr},first={around}" if expr.strip() else f"first={around}"
    req = TraceRequest(
        getattr(args, "trace", "off"), expr,
        getattr(args, "trace_format", "parquet"),
        getattr(args, "max_trace_rows", DEFAULT_MAX_ROWS),
        Path(tdir) if tdir else None,
    )
    req.check()
    return req


def check_trace_arguments(args: argparse.Namespace) -> None:
    """Validate the trace options before a (long) run; raises TraceError."""
    trace_request(args)


def trace_dir(args: argparse.Namespace) -> Path:
    """--trace-dir, else the run's --out folder, else traces/run."""
    if args.trace_dir:
        return Path(args.trace_dir)
    if getattr(args, "out", None):
        return Path(args.out)
    return Path("traces") / "run"


def handle_trace(args: argparse.Namespace, run_output: Any) -> TraceSummary | None:
    """Write the trace the ``run`` options ask for; returns its summary (None when off).

    run_output: the runner's RunOutput (``result``; ``net`` and ``cfg`` if it carries them,
    else they are loaded again from --config/--set and --model).
    """
    if getattr(args, "trace", "off") == "off":
        return None
    net = getattr(run_output, "net", None)
    cfg = getattr(run_output, "cfg", None)
    if cfg is None:
        from .config import load_config

        cfg = load_config(args.config, getattr(args, "set", []) or [])
    if net is None:
        from .loaders import load_model

        net = load_model(args.model)
    summary = write_trace(
        run_output.result, net, cfg, None, trace_dir(args), args.trace, trace_request(args).filter,
        args.trace_format, args.max_trace_rows,
        provenance={"run_out": str(getattr(args, "out", ""))},
    )
    return summary


__all__ = [
    "COLUMNS", "LEVELS", "SCHEMA", "TRACE_SCHEMA_VERSION", "TraceError",
    "TraceFilter", "TraceLimitError", "TraceSummary", "add_trace_arguments",
    "TraceRequest", "check_trace_arguments", "estimate_rows", "estimate_rows_before_run",
    "handle_trace", "parse_filter",
    "read_trace", "trace_request", "write_trace",
]
