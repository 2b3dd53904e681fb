"""One layer's vectors from a simulation result (docs/vectors.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import HwConfig, LayerHw, requant_clamp
from ..engine import SimResult
from ..network import QuantizedNetwork
from ..ranges import RangeError, parse_inclusive
from ..units.requantizer import (
    fixed_point_multipliers,
    float_multiplier,
    model_multipliers,
    requantize,
)
from ..units.weight_memory import WeightMemory
from .encoding import VectorsError, register_range
from .expectations import (
    FLAG_BITS,
    LANE_DUMP_COLUMNS,
    NO_CYCLE,
    WordExpectations,
    lane_dump,
    word_expectations,
)

ROUNDING_CODES: dict[str, int] = {
    "floor": 0, "ceil": 1, "toward_zero": 2, "half_up": 3, "half_down": 4, "half_even": 5,
    "half_away": 6,
}
POLICY_CODES: dict[str, int] = {"wrap": 0, "saturate": 1, "error": 2}
MIN_SHIFT_BITS = 8
# --- what to write ------------------------------------------------------------------------


@dataclass(frozen=True)
class Vector:
    """One memory image: ``values`` (int64, natural shape) of a ``bits``-bit register."""

    name: str
    description: str
    values: np.ndarray
    bits: int
    signed: bool
    layout: str
    encoding: str = ""  # "" = twos_complement (signed) or unsigned_binary

    @property
    def word_encoding(self) -> str:
        return self.encoding or ("twos_complement" if self.signed else "unsigned_binary")


@dataclass
class LayerVectors:
    """The vectors, parameters and bench settings of one layer of one module."""

    module: int
    layer: str
    queries: tuple[int, int]
    neurons: tuple[int, int]
    k: int
    vectors: list[Vector]
    info: dict[str, Any]
    tb_params: dict[str, int | str]
    tb_reason: str = ""
    checks_codes: bool = True
    codes_note: str = ""
    comparisons: int = 0
    files: list[str] = field(default_factory=list)
    stream_reason: str = ""  # why the clocked datapath cannot run it ("" = it can)
    name: str = ""  # folder name when not m<module>_<layer> (corner sets)
    extra: dict[str, Any] = field(default_factory=dict)  # more manifest fields
    dumps: list[tuple[str, bytes, str]] = field(default_factory=list)  # (name, data, what)

    @property
    def dir(self) -> str:
        return self.name or f"m{self.module}_{self.layer}"

    @property
    def q(self) -> int:
        return self.queries[1] - self.queries[0]

    @property
    def n(self) -> int:
        return self.neurons[1] - self.neurons[0]


def parse_range(text: str, size: int, what: str) -> tuple[int, int]:
    """Inclusive ``A:B``, ``A:``, ``:B``, ``:`` or ``N`` (simulator/ranges.py) -> (start, stop).

    The result is a Python slice (stop = last + 1); an open end runs to ``size``.
    """
    try:
        first, last = parse_inclusive(text, size - 1)
    except RangeError as e:
        raise VectorsError(f"{what} {text!r}: {e}, e.g. 0:7 (both ends included)") from None
    return first, last + 1


def _shift_bits(shift: np.ndarray) -> int:
    bits = MIN_SHIFT_BITS
    while not register_range(bits, True)[0] <= int(shift.min()) <= int(shift.max()) <= (
        register_range(bits, True)[1]
    ):
        bits *= 2
    return bits


def layer_vectors(
    net: QuantizedNetwork,
    cfg: HwConfig,
    res: SimResult,
    module: int,
    layer: str,
    neurons: tuple[int, int],
    query_offset: int = 0,
    timing: bool = False,
    cycles: tuple[int, int] | None = None,
) -> LayerVectors:
    """Collect the vectors of one layer from a simulation result (neurons clipped to N).

    Per-word expectations (event counts and flags) always; with ``timing`` also the cycle of
    every accumulator write, requantizer issue and output word (docs/vectors.md).
    """
    mod = net.modules[module]
    lay = mod.layer(layer)
    path = lay.paths[0]
    hw: LayerHw = cfg.for_layer(layer)
    lr = res.layer(module, layer)
    if layer == "feature":
        x = res.input_codes[module]
        zx, sx = mod.input_zero_point, mod.input_scale
    else:
        x = res.layer(module, "feature").codes
        feat = mod.layer("feature")
        zx, sx = feat.output_zero_point, feat.output_scale
    n_all = lay.out_features
    n0, n1 = neurons[0], min(neurons[1], n_all)
    where = f"module {module} layer {layer!r}"
    if n0 >= n1:
        raise VectorsError(
            f"--neurons {neurons[0]}:{neurons[1] - 1}: {where} has {n_all} neurons "
            f"(0..{n_all - 1}); choose a range inside it"
        )
    q = x.shape[0]
    qs = (query_offset, query_offset + q)
    sel = slice(n0, n1)
    w = path.weight[sel].astype(np.int64)
    zw = path.zero_point[sel].astype(np.int64)
    sw = path.scale[sel]
    acc = lr.acc["combined"][:, sel]
    codes = lr.codes[:, sel]
    rq = hw.requant
    zy, sy = lay.output_zero_point, lay.output_scale
    clamp = requant_clamp(rq)
    # the model's own multipliers under requant.multipliers = "model", else from the scales
    stored_all = model_multipliers(lay, rq, f"m{module}.{lay.name}")
    stored = None if stored_all is None else stored_all.channels(sel)
    # self-check: the exported parameters reproduce the engine's codes
    check, _, _ = requantize(acc, rq.scheme, sx, sw, sy, zy, rq.rounding, clamp,
                             rq.multiplier_bits, rq.shift, stored)
    if not np.array_equal(check, codes):
        raise RuntimeError(f"internal error: {where}: requantizer parameters do not reproduce "
                           "the simulated codes; please report this")
    wb, ws = cfg.weights.bits, cfg.weights.signed
    vecs = [
        Vector("x", "input codes", x, hw.spikes.bits, hw.spikes.signed,
               "row-major [query][input]"),
        Vector("w", "weights", w, wb, ws, "row-major [neuron][input]"),
        Vector("wzp", "weight zero points", zw, wb, True, "[neuron]"),
    ]
    checks_codes, codes_note = True, ""
    rq_info: dict[str, Any] = {
        "scheme": rq.scheme, "rounding": rq.rounding, "clamp": list(clamp),
        "output_bits": rq.output_bits, "output_signed": rq.output_signed,
    }
    shift_bits = MIN_SHIFT_BITS
    if rq.scheme == "fixed_point":
        if stored is not None and stored.m0 is not None and stored.shift is not None:
            m0, shift = stored.m0.astype(np.int64), stored.shift.astype(np.int64)
        else:
            m0, shift = fixed_point_multipliers(sx, sw, sy, rq.multiplier_bits, rq.shift)
        shift_bits = _shift_bits(shift)
        vecs += [
            Vector("m0", "requantizer multiplier M0 (real = M0 * 2^-shift)", m0,
                   rq.multiplier_bits, False, "[neuron]"),
            Vector("shift", "requantizer right shift (negative = left shift)", shift,
                   shift_bits, True, "[neuron]"),
        ]
        rq_info["multiplier_bits"] = rq.multiplier_bits
        rq_info["shift_bits"] = shift_bits
        if int(shift.min()) < -32 or int(shift.max()) > 126:
            checks_codes = False
            codes_note = "shift outside -32..126: the bench checks accumulators only"
    elif rq.scheme in ("fbgemm", "qnnpack"):
        mult = (stored.multiplier if stored is not None and stored.multiplier is not None
                else float_multiplier(rq.scheme, sx, sw, sy)).astype(np.float32)
        vecs.append(Vector("mult", "float32 requantizer multiplier (IEEE-754 binary32 bits)",
                           mult.view(np.uint32).astype(np.int64), 32, False, "[neuron]",
                           "ieee754_binary32"))
        checks_codes = False
        codes_note = f"requant.scheme {rq.scheme!r} is float32: the bench checks accumulators only"
    vecs += [
        Vector("acc", "expected accumulator registers", acc, hw.accumulator.bits, True,
               "row-major [query][neuron]"),
        Vector("y", "expected output codes", codes, rq.output_bits, rq.output_signed,
               "row-major [query][neuron]"),
    ]
    stats = lr.mac["combined"]
    ev = stats.pair_events
    in_sel = (ev[:, 1] >= n0) & (ev[:, 1] < n1)
    acc_events = int(ev[in_sel, 2].sum() + ev[in_sel, 3].sum())
    pre_events = int(ev[in_sel, 4].sum())
    we = word_expectations(net, cfg, res, module, layer, (n0, n1))
    _cross_check(where, we, acc_events, pre_events, lr.unclamped[:, sel], clamp)
    ev_bits = _count_bits(max(int(we.acc_events.max(initial=0)), int(we.pre_events.max(initial=0))))
    words = "row-major [query][neuron]"
    vecs += [
        Vector("acc_ev", "accumulator overflow events per word", we.acc_events, ev_bits, False,
               words),
        Vector("pre_ev", "pre-add overflow events per word", we.pre_events, ev_bits, False, words),
        Vector("flags", "per-word flags: bit0 acc overflow (sticky), bit1 pre-add overflow "
               "(sticky), bit2 clamp low, bit3 clamp high, bit4 first acc event, bit5 first "
               "pre-add event", we.flags, 8, False, words),
    ]
    if timing:
        cyc_bits = _cycle_bits(we)
        vecs += [
            Vector("t_issue", "cycle of each word's requantizer issue", we.issue_cycle,
                   cyc_bits, True, words),
            Vector("t_out", "cycle of each output word (issue + requant.latency)", we.out_cycle,
                   cyc_bits, True, words),
            Vector("t_accw", "cycle of the accumulator write of each (query, tile, step) "
                   "(-1: no such step)", we.acc_write_cycle, cyc_bits, True,
                   "row-major [query][tile][step]"),
        ]
    mac, accu = hw.mac, hw.accumulator
    limits = []
    if hw.spikes.bits > 32 or wb > 32:
        limits.append("spike or weight registers wider than 32 bits")
    tb_reason = "; ".join(limits)
    info = {
        "input_scale": float(sx), "input_zero_point": int(zx),
        "output_scale": float(sy), "output_zero_point": int(zy),
        "hardware": {
            "accumulator": {"bits": accu.bits, "overflow": accu.overflow,
                            "adder_tree_width": accu.adder_tree_width},
            "mac": {"operand": mac.operand, "pre_add_width": mac.pre_add_width,
                    "pre_add_bits": mac.pre_add_bits, "pre_add_overflow": mac.pre_add_overflow},
            "schedule": {"mode": hw.schedule.mode, "dataflow": "output_stationary"},
            "mac_array": {"lanes": mac.lanes},
            "weight_memory": {"banks": cfg.weights.banks, "word_bits": cfg.weights.word_bits,
                              "read_ports": cfg.weights.read_ports,
                              "weights_per_cycle": WeightMemory(cfg.weights).weights_per_cycle},
            "requant_pipeline": {"throughput": rq.throughput, "latency": rq.latency},
            "clock": {"mhz": cfg.clock.mhz},
            "spikes": {"bits": hw.spikes.bits, "signed": hw.spikes.signed},
            "weights": {"bits": wb, "signed": ws},
            "requant": rq_info,
        },
        "overflow_events": {"accumulator": acc_events, "pre_add": pre_events},
        "word_flags": dict(FLAG_BITS),
        "first_events": {"accumulator": _first_entry(we.first_acc, n0, n1 - n0, query_offset),
                         "pre_add": _first_entry(we.first_pre, n0, n1 - n0, query_offset)},
        "clamps": {"low": int(((we.flags >> FLAG_BITS["clamp_low"]) & 1).sum()),
                   "high": int(((we.flags >> FLAG_BITS["clamp_high"]) & 1).sum())},
    }
    if timing:
        info["timing"] = {
            "cycle_origin": "first cycle of the first selected query (as report.json counts "
                            "within the simulated queries)",
            "tiles": [int(we.tiles[0]), int(we.tiles[-1])],  # inclusive
            "steps_per_query": we.steps.tolist(),
            "cycles_per_query": lr.cycles.tolist(),
        }
    params: dict[str, int | str] = {
        "Q": q, "N": n1 - n0, "K": x.shape[1],
        "X_BITS": hw.spikes.bits, "X_SIGNED": int(hw.spikes.signed), "W_BITS": wb,
        "ACC_BITS": accu.bits, "OVERFLOW": POLICY_CODES[accu.overflow],
        "TREE": accu.adder_tree_width, "PRE": mac.pre_add_width, "PRE_BITS": mac.pre_add_bits,
        "PRE_OVERFLOW": POLICY_CODES[mac.pre_add_overflow],
        "RAW": int(mac.operand == "raw"),
        "EVENT_DRIVEN": int(hw.schedule.mode == "event_driven"),
        "CHECK_CODES": int(checks_codes),
        "M0_BITS": rq.multiplier_bits, "SHIFT_BITS": shift_bits,
        "ROUNDING": ROUNDING_CODES[rq.rounding],
        "Y_BITS": rq.output_bits, "Y_SIGNED": int(rq.output_signed),
        "ZX": int(zx), "ZY": int(zy), "CLAMP_LO": clamp[0], "CLAMP_HI": clamp[1],
        "EXP_ACC_EVENTS": acc_events, "EXP_PRE_EVENTS": pre_events,
        "LANES": mac.lanes, "N0": n0, "EV_BITS": ev_bits,
        "N_OUT": n_all, "THROUGHPUT": rq.throughput, "LATENCY": rq.latency,
    }
    comparisons = q * (n1 - n0) * (2 if checks_codes else 1) + 3 * q * (n1 - n0) + 2
    params["COMPARISONS"] = comparisons
    lv = LayerVectors(module, layer, qs, (n0, n1), x.shape[1], vecs, info, params, tb_reason,
                      checks_codes, codes_note, comparisons)
    if cycles is not None:
        data, rows = lane_dump(net, cfg, res, module, layer, (n0, n1), cycles)
        name = f"lanes_{cycles[0]}_{cycles[1] - 1}.csv"  # inclusive, as --cycles was given
        lv.dumps.append((name, data, f"accumulator writes of every lane in cycles "
                         f"{cycles[0]}..{cycles[1] - 1} (inclusive): {rows} rows, columns "
                         f"{', '.join(LANE_DUMP_COLUMNS)}"))
    return lv



def _count_bits(max_count: int) -> int:
    """Width of the per-word event-count files: 16 bits, or 32 when a count needs it."""
    return 16 if max_count < (1 << 16) else 32


def _cycle_bits(we: WordExpectations) -> int:
    top = max(int(we.out_cycle.max(initial=0)), int(we.acc_write_cycle.max(initial=0)))
    return 32 if top < (1 << 31) else 64


def _first_entry(first: tuple[int, int, int, int] | None, n0: int, n: int,
                 q0: int) -> dict[str, int] | None:
    if first is None:
        return None
    q, j, step, cycle = first
    return {"query": q + q0, "neuron": j, "step": step, "cycle": cycle,
            "word": q * n + (j - n0)}


def _cross_check(where: str, we: WordExpectations, acc_events: int, pre_events: int,
                 unclamped: np.ndarray, clamp: tuple[int, int]) -> None:
    """The stepwise replay must agree with the fast path's totals and clamps."""
    low = (unclamped < clamp[0]).astype(np.int64)
    high = (unclamped > clamp[1]).astype(np.int64)
    flags_low = (we.flags >> FLAG_BITS["clamp_low"]) & 1
    flags_high = (we.flags >> FLAG_BITS["clamp_high"]) & 1
    if (int(we.acc_events.sum()) != acc_events or int(we.pre_events.sum()) != pre_events
            or not np.array_equal(low, flags_low) or not np.array_equal(high, flags_high)
            or np.any(we.issue_cycle == NO_CYCLE)):
        raise RuntimeError(f"internal error: {where}: the stepwise replay disagrees with the "
                           "fast path on overflow events or clamps; please report this")
