"""The run report (``report.json``): schema, construction and a human summary.

Schema ``tempo-hwsim-report`` version 1; every field is described in docs/reports.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import __version__
from .config import HwConfig
from .energy import energy_block
from .engine.fast import LayerRun, SimResult
from .fixedpoint import Register
from .network import QuantizedNetwork
from .units.weight_memory import WeightMemory

REPORT_SCHEMA = {"name": "tempo-hwsim-report", "version": 1}
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 100.0)


def nonzero_pairs(counts: np.ndarray) -> list[list[int]]:
    """[[index, count], ...] for every non-zero entry of a per-neuron count vector."""
    c = np.asarray(counts).ravel()
    idx = np.flatnonzero(c)
    return [[int(i), int(c[i])] for i in idx]


def per_neuron_events(lr: LayerRun) -> dict[str, list[list[int]]]:
    """Per-neuron event counts of one layer, as compact [neuron, count] lists (non-zero only).

    acc: accumulator wrap + saturate events; pre_add: pre-add register events; clamp_low /
    clamp_high: requantizer clamps (all summed over queries and weight paths).
    """
    st = list(lr.mac.values())
    n = int(lr.codes.shape[1])
    acc = np.zeros(n, dtype=np.int64)
    pre = np.zeros(n, dtype=np.int64)
    for s in st:
        acc += s.acc_wrap + s.acc_saturate
        pre += s.pre_add_events
    return {
        "acc": nonzero_pairs(acc),
        "pre_add": nonzero_pairs(pre),
        "clamp_low": nonzero_pairs(lr.clamp.low),
        "clamp_high": nonzero_pairs(lr.clamp.high),
    }


def per_query_events(lr: LayerRun) -> dict[str, list[list[int]]]:
    """Per-query event counts of one layer, as compact [query, count] lists (non-zero only):
    acc (wrap + saturate), pre_add, clamp (requantizer codes outside the clamp range)."""
    q = int(lr.codes.shape[0])
    acc = np.zeros(q, dtype=np.int64)
    pre = np.zeros(q, dtype=np.int64)
    for s in lr.mac.values():
        a, p = s.per_query_counts(q)
        acc += a
        pre += p
    clamped = (lr.unclamped != lr.codes).sum(axis=1).astype(np.int64)
    return {"acc": nonzero_pairs(acc), "pre_add": nonzero_pairs(pre),
            "clamp": nonzero_pairs(clamped)}


def acc_abs_percentiles(lr: LayerRun) -> dict[str, int]:
    """Percentiles of |final accumulator register value| over all (query, neuron, path)."""
    vals = [np.abs(a).ravel() for a in lr.acc.values() if a.size]
    if not vals:
        return {}
    v = np.concatenate(vals) if len(vals) > 1 else vals[0]
    ranks = [min(v.size - 1, int(np.ceil(p / 100.0 * v.size)) - 1) for p in PERCENTILES]
    part = np.partition(v, sorted({max(r, 0) for r in ranks}))
    return {f"{p:g}": int(part[max(r, 0)]) for p, r in zip(PERCENTILES, ranks, strict=True)}


def _first_event(
    lr: LayerRun, query_base: np.ndarray, layer_base: np.ndarray
) -> dict[str, Any] | None:
    """Earliest accumulator or pre-add event of a layer, else its first requantizer clamp."""
    cands: list[tuple[int, int, dict[str, Any]]] = []
    for pi, (pname, st) in enumerate(lr.mac.items()):
        acc_kind = "acc_wrap" if int(st.acc_wrap.sum()) else "acc_saturate"
        # a pre-add sum overflows in the same cycle as, and before, its accumulator addition
        for rank, ev, kind in (
            (0, getattr(st, "first_pre_add", None), "pre_add_overflow"),
            (1, st.first, acc_kind),
        ):
            if ev is None:
                continue
            q, j, step = (int(v) for v in ev)
            tile = j // lr.schedule.lanes
            steps_q = int(lr.schedule.steps(lr.k_active[q : q + 1])[0])
            cyc = int(query_base[q] + layer_base[q]) + lr.schedule.event_offset(
                steps_q, tile, step, pi
            )
            cands.append((cyc, rank, {"cycle": cyc, "query": q, "neuron": j, "step": step,
                                      "path": pname, "kind": kind}))
    if cands:
        return min(cands, key=lambda c: (c[0], c[1]))[2]
    best: dict[str, Any] | None = None
    if lr.clamp.first is not None:
        q, j = (int(v) for v in lr.clamp.first)
        low = int(lr.unclamped[q, j]) < int(lr.codes[q, j])
        tile = j // lr.schedule.lanes
        steps_q = int(lr.schedule.steps(lr.k_active[q : q + 1])[0])
        last = lr.schedule.paths - 1
        cyc = int(query_base[q] + layer_base[q]) + lr.schedule.event_offset(
            steps_q, tile, steps_q - 1, last
        ) + 1
        kind = "requant_clamp_low" if low else "requant_clamp_high"
        best = {"cycle": cyc, "query": q, "neuron": j, "step": None, "path": None, "kind": kind}
    return best


def build_report(
    result: SimResult,
    net: QuantizedNetwork,
    cfg: HwConfig,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """Assemble the JSON-serialisable report of one run."""
    q = int(result.outputs.shape[0])
    per_query = result.cycles_per_query
    query_base = np.concatenate([[0], np.cumsum(per_query)[:-1]]).astype(np.int64)
    layer_base = np.zeros(q, dtype=np.int64)
    wmem = WeightMemory(cfg.weights)
    layers: dict[str, Any] = {}
    overflow: dict[str, Any] = {}
    cyc_layers: dict[str, Any] = {}
    bytes_total = 0
    for lr in result.layers:
        st_all = list(lr.mac.values())
        wraps = int(sum(int(s.acc_wrap.sum()) for s in st_all))
        sats = int(sum(int(s.acc_saturate.sum()) for s in st_all))
        pre = int(sum(int(s.pre_add_events.sum()) for s in st_all))
        pmin = min(s.partial_min for s in st_all)
        pmax = max(s.partial_max for s in st_all)
        safe_bits = max(s.min_safe_acc_bits for s in st_all)
        safe_exact = all(s.partial_exact for s in st_all)
        safe_upper = max(s.min_safe_acc_bits_upper for s in st_all)
        max_abs = max(s.max_abs_acc for s in st_all)
        first = _first_event(lr, query_base, layer_base)
        n_out = int(lr.codes.shape[1])
        per_neuron = sum(s.acc_wrap + s.acc_saturate for s in st_all)
        reg_hi = (1 << (lr.acc_bits - 1)) - 1
        overflow[lr.key] = {
            "acc_wrap": wraps,
            "acc_saturate": sats,
            "pre_add_overflow": pre,
            "requant_clamp_low": int(lr.clamp.low.sum()),
            "requant_clamp_high": int(lr.clamp.high.sum()),
            "max_abs_acc": max_abs,
            "partial_sum_range": [pmin, pmax],
            "acc_bits": lr.acc_bits,
            "headroom_bits": lr.acc_bits - safe_bits,
            "min_safe_acc_bits": safe_bits,
            "min_safe_acc_bits_exact": safe_exact,
            "min_safe_acc_bits_upper": safe_upper,
            "neurons_with_acc_events": int(np.count_nonzero(per_neuron)),
            "first": first,
            "acc_register_range": [-reg_hi - 1, reg_hi],
            "acc_abs_percentiles": acc_abs_percentiles(lr),
            "per_neuron": per_neuron_events(lr),
            "per_query": per_query_events(lr),
        }
        neuro = getattr(lr, "neuromorphic_report", None)  # engine/neuromorphic.py layers
        if neuro is not None:
            overflow[lr.key]["neuromorphic"] = neuro()
            if overflow[lr.key]["neuromorphic"]["first"] is not None:
                overflow[lr.key]["first"] = overflow[lr.key]["neuromorphic"]["first"]
        macs = int(sum(n_out * lr.k_active.sum() for _ in lr.mac))
        nbytes = int(sum(int(wmem.bytes_read(n_out * lr.k_active).sum()) for _ in lr.mac))
        bytes_total += nbytes
        layers[lr.key] = {
            "in_features": int(lr.k_active.size and result.input_codes[0].shape[1])
            if lr.layer == "feature"
            else int(net.modules[lr.module].layer("feature").out_features),
            "out_features": n_out,
            "paths": list(lr.mac),
            "acc_bits": lr.acc_bits,
            "output_code_range": [int(lr.codes.min()), int(lr.codes.max())],
            "macs": macs,
            "weight_bytes_read": nbytes,
            "ordered_pairs": int(sum(s.ordered_pairs for s in st_all)),
        }
        cyc_layers[lr.key] = {
            "total": int(lr.cycles.sum()),
            "per_query_mean": float(lr.cycles.mean()),
            "stall": int(lr.stalls.sum()),
        }
        layer_base = layer_base + lr.cycles
    total_cycles = int(per_query.sum())
    mhz = cfg.clock.mhz
    in_clamp = result.input_clamp
    return {
        "schema": dict(REPORT_SCHEMA),
        "tool": {"name": "tempo-hwsim", "version": __version__},
        "config": {"name": cfg.name, "source": cfg.source, "sha256": cfg.sha256},
        "model": {
            "source": net.source,
            "sha256": provenance.get("model_sha256"),
            "layout": net.layout,
            "modules": len(net.modules),
            "in_features": net.in_features,
            "places": net.places,
        },
        "input": {
            "source": provenance.get("input_source"),
            "sha256": provenance.get("input_sha256"),
            "dtype": provenance.get("input_dtype"),
            "clamp_low": int(sum(c[0] for c in in_clamp)),
            "clamp_high": int(sum(c[1] for c in in_clamp)),
            **input_clamp_block(result, net, cfg),
        },
        "queries": q,
        "layers": layers,
        "overflow": overflow,
        "cycles": {
            "total": total_cycles,
            "per_query": [int(c) for c in per_query],
            "per_layer": cyc_layers,
            "stall": int(sum(int(lr.stalls.sum()) for lr in result.layers)),
            "clock_mhz": mhz,
            "time_us": total_cycles / mhz,
        },
        "memory": {
            "weight_capacity_bytes": wmem.capacity_bytes,
            "weight_bytes_per_module": [
                net.weight_bytes(i, cfg.weights.bits) for i in range(len(net.modules))
            ],
            "weights_per_cycle": wmem.weights_per_cycle,
            "weight_bytes_read": bytes_total,
        },
        "energy": energy_block(result, cfg),
        "notes": list(result.notes),
    }


def input_clamp_block(result: SimResult, net: QuantizedNetwork, cfg: HwConfig) -> dict[str, Any]:
    """Input values the spike quantizer clamped (module 0's quantizer: every module shares it
    in VPRTempoQuant), out of all values, and the float range it represents."""
    codes = result.input_codes[0]
    spikes = cfg.for_layer("feature").spikes
    reg = Register(spikes.bits, spikes.signed)
    m0 = net.modules[0]
    low, high = result.input_clamp[0] if result.input_clamp else (0, 0)
    return {
        "values": int(codes.size),
        "clamped_low": int(low),
        "clamped_high": int(high),
        "quantizer_range": [(reg.min - m0.input_zero_point) * m0.input_scale,
                            (reg.max - m0.input_zero_point) * m0.input_scale],
    }


def input_warning_lines(report: dict[str, Any]) -> list[str]:
    """``hwsim: warning:`` lines for a legal run that is almost surely a mistake."""
    inp = report.get("input", {})
    n = int(inp.get("clamped_low", 0)) + int(inp.get("clamped_high", 0))
    if not n:
        return []
    lo, hi = inp.get("quantizer_range", [0.0, 1.0])
    return [
        f"hwsim: warning: {inp.get('source')}: {n:,} of {int(inp.get('values', 0)):,} input "
        f"values outside [{lo:.3g}, {hi:.3g}] were clamped by the input quantizer "
        f"({int(inp.get('clamped_low', 0)):,} low, {int(inp.get('clamped_high', 0)):,} high); "
        "scale images to [0, 1] (e.g. divide 0..255 pixels by 255)"
    ]


def compare_outputs(a: SimResult, b: SimResult, name_b: str) -> dict[str, Any]:
    """How many output codes and argmaxes of ``a`` differ from ``b``."""
    diff = a.outputs != b.outputs
    delta = np.abs(a.outputs - b.outputs)
    return {
        "reference": name_b,
        "codes_total": int(a.outputs.size),
        "codes_differing": int(diff.sum()),
        "max_abs_code_difference": int(delta.max(initial=0)),
        "argmax_differing": int((a.predictions != b.predictions).sum()),
        "queries": int(a.outputs.shape[0]),
    }


# neuromorphic event kinds not added by overflow_event_total: the Dense wraps are already the
# layer's acc_wrap; below_vth is a threshold loss and code clamps are the requantizer clamps
_NEURO_NOT_OVERFLOW = ("dense_dot_wrap", "dense_shift_wrap", "below_vth", "code_clamp_low",
                       "code_clamp_high")


def overflow_event_total(report: dict[str, Any]) -> int:
    """Every register overflow of a run: accumulator and pre-add events, plus the
    neuromorphic datapath's product, u and v events (for --fail-on-overflow)."""
    total = 0
    for ov in report["overflow"].values():
        total += ov["acc_wrap"] + ov["acc_saturate"] + ov["pre_add_overflow"]
        for kind, ev in ov.get("neuromorphic", {}).get("events", {}).items():
            if kind not in _NEURO_NOT_OVERFLOW:
                total += ev["count"]
    return total


def overflow_lines(report: dict[str, Any]) -> list[str]:
    """One line per layer: accumulator events, clamps, register width and width needed."""
    lines = []
    for key, ov in report["overflow"].items():
        ev = ov["acc_wrap"] + ov["acc_saturate"] + ov["pre_add_overflow"]
        lines.append(
            f"{key:>12}: acc events {ev:,} (wrap {ov['acc_wrap']:,}, saturate "
            f"{ov['acc_saturate']:,}, pre-add {ov['pre_add_overflow']:,})  clamp low/high "
            f"{ov['requant_clamp_low']:,}/{ov['requant_clamp_high']:,}  acc {ov['acc_bits']} bits,"
            f" needs {ov['min_safe_acc_bits']}"
            + ("" if ov.get("min_safe_acc_bits_exact", True)
               else f"..{ov['min_safe_acc_bits_upper']} (report.headroom=bound)")
            + f" (headroom {ov['headroom_bits']:+d})"
        )
        if "neuromorphic" in ov:
            evs = ov["neuromorphic"]["events"]
            lines.append(f"{'':>12}  neuromorphic events: " + ", ".join(
                f"{k} {v['count']:,}" for k, v in evs.items()))
    return lines


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A short human summary of a report."""
    lines = [
        f"config {report['config']['name']}  model {report['model']['source']} "
        f"({report['model']['layout']}, {report['model']['modules']} module(s), "
        f"{report['model']['places']} places)  queries {report['queries']}",
    ]
    cyc = report["cycles"]
    lines.append(
        f"cycles: total {cyc['total']:,}  per query {cyc['total'] / max(report['queries'], 1):,.0f}"
        f"  stall {cyc['stall']:,}  ({cyc['time_us']:,.1f} us at {cyc['clock_mhz']:g} MHz)"
    )
    lines += overflow_lines(report)
    if "comparison" in report:
        c = report["comparison"]
        lines.append(
            f"vs {c['reference']}: {c['codes_differing']:,} of {c['codes_total']:,} codes differ "
            f"(max |diff| {c['max_abs_code_difference']}), argmax differs on "
            f"{c['argmax_differing']} of {c['queries']} queries"
        )
    if "compare_with_codes" in report:
        c = report["compare_with_codes"]
        lines.append(
            f"vs {c['source']}: {c['codes_differing']:,} of {c['codes_total']:,} codes differ "
            f"(max |diff| {c['max_abs_code_difference']}), argmax differs on "
            f"{c['argmax_differing']} of {c['queries']} queries"
        )
    return lines

