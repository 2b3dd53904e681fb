"""Fast (vectorised) execution of a whole network on a hardware config.

Bit-exact with the unit models: outputs, accumulator values, overflow counts and cycle totals
are the same as a cycle-by-cycle run would give. Queries are processed in batches so memory
stays bounded and a progress bar can show long runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..config import ConfigError, HwConfig, LayerHw, requant_clamp
from ..fixedpoint import Register, RegisterOverflowError
from ..network import Layer, ModelError, Module, QuantizedNetwork
from ..units.combiner import combine
from ..units.mac_array import LaneStats, MacSpec
from ..units.offset_inputs import count_active
from ..units.readout import join_modules
from ..units.requantizer import (
    ClampEvents,
    fixed_point_multipliers,
    model_multipliers,
    requantize,
    seed_floor_divide,
)
from ..units.spike_buffer import negative_codes_fix, quantize_spikes, signedness_notes
from ..units.spike_order import accumulate_in_order
from ..units.weight_memory import WeightMemory
from .schedule import TileSchedule


class InputError(ValueError):
    """Input spikes that do not fit the model or the config."""


@dataclass
class LayerRun:
    """Everything one layer of one module produced over all queries.

    acc[path]:    int64 (Q, N) accumulator register value after the last step.
    scaled[path]: int64 (Q, N) per-path requantized values (split layout), else absent.
    codes:        int64 (Q, N) layer output codes (input of the next layer).
    unclamped:    int64 (Q, N) codes before the final clamp/clip.
    cycles/stalls/k_active: int64 (Q,).
    """

    module: int
    layer: str
    acc: dict[str, np.ndarray]
    scaled: dict[str, np.ndarray]
    codes: np.ndarray
    unclamped: np.ndarray
    mac: dict[str, LaneStats]
    clamp: ClampEvents
    cycles: np.ndarray
    stalls: np.ndarray
    k_active: np.ndarray
    schedule: TileSchedule
    acc_bits: int
    out_range: tuple[int, int]

    @property
    def key(self) -> str:
        return f"{self.module}/{self.layer}"


@dataclass
class SimResult:
    """Outputs of a run.

    outputs: int64 (Q, places), each module's final codes, modules concatenated in order.
    scores: int64 (Q, places), the readout's joined codes (see units/readout.py).
    predictions: int64 (Q,), argmax of scores.
    """

    outputs: np.ndarray
    predictions: np.ndarray
    input_codes: list[np.ndarray]
    input_clamp: list[tuple[int, int]]
    layers: list[LayerRun]
    cycles_per_query: np.ndarray
    scores: np.ndarray
    notes: list[str] = field(default_factory=list)

    def layer(self, module: int, name: str) -> LayerRun:
        for lr in self.layers:
            if lr.module == module and lr.layer == name:
                return lr
        raise KeyError(f"{module}/{name}")


def check_fit(net: QuantizedNetwork, cfg: HwConfig) -> None:
    """Raise ConfigError/ModelError if the model cannot run on the config as written."""
    WeightMemory(cfg.weights).check_fits(net, cfg.source)
    for lname in ("feature", "output"):
        hw = cfg.for_layer(lname)
        seed = hw.requant.scheme == "seed_floor_divide"
        if seed != (net.layout == "split"):
            raise ConfigError(
                f"{cfg.source}: 'requant.scheme' = {hw.requant.scheme!r} (layer {lname!r}) does "
                f"not fit the model's {net.layout!r} layout ({net.source}); the split layout "
                "needs 'seed_floor_divide', the combined layout one of fbgemm, qnnpack, "
                "fixed_point, two_stage, float64, dequant_quant"
            )
        if hw.mac.operand == "raw" and hw.schedule.mode == "event_driven":
            raise ConfigError(
                f"{cfg.source}: layer {lname!r}: 'mac.operand' = 'raw' cannot skip inputs; "
                "with schedule.mode = 'event_driven' use mac.operand = 'offset'"
            )
        if hw.accumulator.adder_tree_width % hw.mac.pre_add_width:
            raise ConfigError(
                f"{cfg.source}: layer {lname!r}: 'accumulator.adder_tree_width' "
                f"({hw.accumulator.adder_tree_width}) must be a multiple of 'mac.pre_add_width' "
                f"({hw.mac.pre_add_width})"
            )
    for mi, mod in enumerate(net.modules):
        for lay in mod.layers:
            for p in lay.paths:
                if p.bias is not None and np.any(p.bias != 0):
                    raise ModelError(
                        f"{net.source}: module {mi} layer {lay.name!r} has a non-zero bias; "
                        "VPRTempo layers have none and no requantizer here models one"
                    )
    for mi, mod in enumerate(net.modules):  # a fixed shift must suit every channel's multiplier
        sx = mod.input_scale
        for lay in mod.layers:
            rq = cfg.for_layer(lay.name).requant
            try:
                model_multipliers(lay, rq, f"m{mi}.{lay.name}")
            except ConfigError as exc:
                raise ConfigError(f"{cfg.source}: layer {lay.name!r} of {net.source}: {exc}"
                                  ) from None
            if rq.scheme == "fixed_point" and rq.shift != "auto" and rq.multipliers == "scales":
                try:
                    fixed_point_multipliers(sx, lay.paths[0].scale, lay.output_scale,
                                            rq.multiplier_bits, rq.shift)
                except ConfigError as exc:
                    raise ConfigError(
                        f"{cfg.source}: module {mi} layer {lay.name!r} of {net.source}: {exc}"
                    ) from None
            sx = lay.output_scale
    # layer-to-layer register fit: the feature layer's output must fit the output layer's input
    out_lo, out_hi = _layer_out_range(cfg.for_layer("feature"))
    reg = _spike_register(cfg.for_layer("output"))
    if not reg.contains(out_lo, out_hi):
        raise ConfigError(
            f"{cfg.source}: the feature layer's output codes span {out_lo}..{out_hi} but the "
            f"output layer's spike register ({reg.describe()}) cannot hold them; widen "
            "'layers.output.spikes.bits'"
        )


def _spike_register(hw: LayerHw) -> Register:
    return Register(hw.spikes.bits, hw.spikes.signed)


def _layer_out_range(hw: LayerHw) -> tuple[int, int]:
    if hw.requant.scheme == "seed_floor_divide":
        if hw.combiner.clip_high == "input_max":  # never above the network's input register
            hi = _spike_register(hw).max
        elif hw.combiner.clip_high == "register":
            hi = Register(hw.requant.output_bits, hw.requant.output_signed).max
        else:
            hi = int(hw.combiner.clip_high)
        return hw.combiner.clip_low, hi
    return requant_clamp(hw.requant)


def prepare_inputs(
    net: QuantizedNetwork, cfg: HwConfig, inputs: np.ndarray, source: str = "input"
) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Turn an input array into per-module int64 codes (Q, K).

    float (any float dtype): spikes before the model's input quantizer, quantized per module.
    unsigned integers: already-quantized codes, used as they are for every module.
    """
    x = np.asarray(inputs)
    if x.ndim != 2:
        raise InputError(f"{source}: must be 2-D (queries, inputs), found shape {x.shape}")
    if x.shape[1] != net.in_features:
        raise InputError(
            f"{source}: has {x.shape[1]} inputs per query but the model ({net.source}) takes "
            f"{net.in_features}"
        )
    if x.shape[0] == 0:
        raise InputError(f"{source}: has no queries")
    hw = cfg.for_layer("feature")
    reg = _spike_register(hw)
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            bad = int(np.flatnonzero(~np.isfinite(x).ravel())[0])
            raise InputError(
                f"{source}: NaN or infinite spike at query {bad // x.shape[1]}, "
                f"input {bad % x.shape[1]}"
            )
        codes, clamps = [], []
        for mod in net.modules:
            c, ev = quantize_spikes(
                x, mod.input_scale, mod.input_zero_point, reg, hw.spikes.quantizer,
                hw.spikes.rounding,
            )
            codes.append(c)
            clamps.append((ev.clamp_low, ev.clamp_high))
        return codes, clamps
    if x.dtype.kind in "ui" and x.dtype.kind != "b":
        if x.dtype == np.int8 and net.metadata.get("activation_offset"):  # TFLite int8 codes
            x = x.astype(np.int64) + int(net.metadata["activation_offset"])
        lo, hi = int(x.min()), int(x.max())
        if not reg.contains(lo, hi):
            raise InputError(
                f"{source}: input codes span {lo}..{hi} but the spike register "
                f"('spikes.bits' = {hw.spikes.bits}) holds {reg.describe()}; "
                + (negative_codes_fix() if lo < 0 <= reg.min else "widen spikes.bits")
            )
        zps = {m.input_zero_point for m in net.modules}
        scales = {m.input_scale for m in net.modules}
        if len(zps) > 1 or len(scales) > 1:
            raise InputError(
                f"{source}: integer codes are ambiguous because the model's modules quantize "
                "their input differently; give float spikes in [0, 1] instead"
            )
        c = x.astype(np.int64)
        return [c] * len(net.modules), [(0, 0)] * len(net.modules)
    raise InputError(
        f"{source}: dtype {x.dtype} is not supported; give float spikes in [0, 1] or uint8 codes"
    )


def _mac_spec(hw: LayerHw, event_driven: bool) -> MacSpec:
    return MacSpec(
        acc_bits=hw.accumulator.bits,
        overflow=hw.accumulator.overflow,
        adder_tree_width=hw.accumulator.adder_tree_width,
        operand=hw.mac.operand,
        pre_add_width=hw.mac.pre_add_width,
        pre_add_bits=hw.mac.pre_add_bits,
        pre_add_overflow=hw.mac.pre_add_overflow,
        event_driven=event_driven,
        lanes=hw.mac.lanes,
    )


def _schedule(hw: LayerHw, lay: Layer, wmem: WeightMemory) -> TileSchedule:
    return TileSchedule(
        n_out=lay.out_features,
        lanes=hw.mac.lanes,
        tree_width=hw.accumulator.adder_tree_width,
        pre_add_width=hw.mac.pre_add_width,
        weights_per_cycle=wmem.weights_per_cycle,
        requant_throughput=hw.requant.throughput,
        requant_latency=hw.requant.latency,
        paths=len(lay.paths),
        extra_steps=1 if hw.mac.operand == "raw" else 0,
    )


@dataclass(frozen=True)
class AccumulateHw:
    """Every hardware key the accumulate step of a layer reads, and nothing else.

    spec: the MAC array (accumulator.bits/overflow/adder_tree_width, mac.operand/lanes/
    pre_add_*, schedule.mode = event_driven); order/time_bins: schedule.order and
    schedule.time_bins (units/spike_order.py); in_reg: the input spike register
    (spikes.bits/signed, used by the time_bin order); exact_headroom: report.headroom = exact.
    Frozen and hashable: equal values give bit-identical accumulate results for equal inputs.
    """

    spec: MacSpec
    order: str
    time_bins: int
    in_reg: Register
    exact_headroom: bool = True


def accumulate_hw(hw: LayerHw, exact_headroom: bool = True) -> AccumulateHw:
    """The part of ``hw`` that :func:`accumulate_layer` depends on."""
    return AccumulateHw(
        _mac_spec(hw, hw.schedule.mode == "event_driven"), hw.schedule.order,
        hw.schedule.time_bins, _spike_register(hw), exact_headroom,
    )


@dataclass
class LayerAcc:
    """The accumulate step of one layer over a batch of queries (before the requantizer).

    acc[path]: int64 (Q, N) accumulator register values after the last step.
    mac[path]: overflow accounting; an ``error``-policy event is deferred in ``mac[p].error``
        (the caller raises the earliest one, see _raise_earliest_error).
    k_active: int64 (Q,) inputs streamed per query (non-zero-point inputs when event_driven).
    """

    acc: dict[str, np.ndarray]
    mac: dict[str, LaneStats]
    k_active: np.ndarray


def accumulate_layer(
    lay: Layer,
    x: np.ndarray,
    zx: int,
    ahw: AccumulateHw,
    query_offset: int = 0,
) -> LayerAcc:
    """Accumulators of every path of ``lay`` for a batch. x: int64 (Q, K) codes, zero point zx.

    Reads only x, zx, the paths' weights and zero points and ``ahw``.
    """
    acc: dict[str, np.ndarray] = {}
    stats: dict[str, LaneStats] = {}
    for p in lay.paths:
        acc[p.name], stats[p.name] = accumulate_in_order(  # schedule.order: units/spike_order
            x, zx, p.weight, p.zero_point, ahw.spec, ahw.order, ahw.time_bins, ahw.in_reg,
            query_offset=query_offset, defer_errors=True, exact_headroom=ahw.exact_headroom,
        )
    if ahw.spec.event_driven:
        k_active = count_active(x, zx)
    else:
        k_active = np.full(x.shape[0], x.shape[1], np.int64)
    return LayerAcc(acc, stats, k_active)


def finish_layer(
    mi: int,
    lay: Layer,
    la: LayerAcc,
    sx: float,
    input_max: np.ndarray,
    hw: LayerHw,
    wmem: WeightMemory,
) -> LayerRun:
    """Requantizer (or split-layout divider and combiner), clamps and cycles after ``la``.

    sx: the layer input's scale; input_max: int64 (Q,) largest input code of the module's
    input per query (combiner.clip_high = input_max). Reads hw.requant, hw.combiner and the
    schedule's cycle keys (mac.lanes/operand/pre_add_width, accumulator.adder_tree_width,
    requant.throughput/latency, the weight memory).
    """
    acc, q = la.acc, la.k_active.shape[0]
    sched = _schedule(hw, lay, wmem)
    cycles, stalls = sched.cycles(la.k_active)
    rq = hw.requant
    scaled: dict[str, np.ndarray] = {}
    if rq.scheme == "seed_floor_divide":
        f = lay.factors
        assert f is not None
        scaled["excitatory"] = seed_floor_divide(acc["excitatory"], f, rq.exc_divisors, 0, 0)
        scaled["inhibitory"] = seed_floor_divide(
            acc["inhibitory"], f, rq.inh_divisors, rq.inh_pre_offset, rq.inh_post_offset
        )
        cb = hw.combiner
        out_reg = Register(rq.output_bits, rq.output_signed)
        if cb.clip_high == "input_max":
            hi = input_max
        elif cb.clip_high == "register":
            hi = np.full(q, out_reg.max, dtype=np.int64)
        else:
            hi = np.full(q, int(cb.clip_high), dtype=np.int64)
        codes, unclamped, clamp = combine(
            scaled["excitatory"], scaled["inhibitory"], f, cb.exc_divisor, cb.inh_divisor,
            cb.inh_offset, cb.scale, cb.zero_point, cb.cast_rounding, cb.clip_low, hi,
        )
        out_range = (cb.clip_low, int(hi.max()) if hi.size else 0)
    else:
        p = lay.paths[0]
        reg = Register(hw.accumulator.bits, True)  # holds every accumulator value
        codes, unclamped, clamp = requantize(
            acc["combined"], rq.scheme, sx, p.scale, lay.output_scale, lay.output_zero_point,
            rq.rounding, requant_clamp(rq), rq.multiplier_bits, rq.shift,
            model_multipliers(lay, rq, f"m{mi}.{lay.name}"), (reg.min, reg.max),
        )
        out_range = requant_clamp(rq)
    return LayerRun(
        mi, lay.name, acc, scaled, codes, unclamped, la.mac, clamp, cycles, stalls, la.k_active,
        sched, hw.accumulator.bits, out_range,
    )


def run_layer(
    mi: int,
    mod: Module,
    lay: Layer,
    x: np.ndarray,
    zx: int,
    sx: float,
    input_max: np.ndarray,
    hw: LayerHw,
    wmem: WeightMemory,
    query_offset: int = 0,
    exact_headroom: bool = True,
) -> LayerRun:
    """Run one layer for a batch of queries. x: int64 (Q, K) codes with zero point zx.

    The same as ``finish_layer(accumulate_layer(...))``; the split lets a sweep reuse the
    accumulators of points that differ only in the requantizer (exploration/reuse.py).
    """
    la = accumulate_layer(lay, x, zx, accumulate_hw(hw, exact_headroom), query_offset)
    return finish_layer(mi, lay, la, sx, input_max, hw, wmem)


def simulate(
    net: QuantizedNetwork,
    cfg: HwConfig,
    inputs: np.ndarray,
    batch: int = 512,
    progress: Callable[[int], None] | None = None,
    source: str = "input",
) -> SimResult:
    """Run ``inputs`` (float spikes or uint8 codes, (Q, K)) through ``net`` on ``cfg``.

    ``progress(n)`` is called after each batch with the number of queries done in it.
    """
    net.validate()
    check_fit(net, cfg)
    codes_per_module, clamps = prepare_inputs(net, cfg, inputs, source)
    q_total = codes_per_module[0].shape[0]
    wmem = WeightMemory(cfg.weights)
    batches: list[list[LayerRun]] = []
    for start in range(0, q_total, batch):
        stop = min(start + batch, q_total)
        runs: list[LayerRun] = []
        for mi, mod in enumerate(net.modules):
            x = codes_per_module[mi][start:stop]
            input_max = x.max(axis=1)
            zx, sx = mod.input_zero_point, mod.input_scale
            for lay in mod.layers:
                hw = cfg.for_layer(lay.name)
                lr = run_layer(mi, mod, lay, x, zx, sx, input_max, hw, wmem, start,
                               cfg.report.headroom == "exact")
                runs.append(lr)
                x, zx, sx = lr.codes, lay.output_zero_point, lay.output_scale
        _raise_earliest_error(runs, net, cfg)
        batches.append(runs)
        if progress is not None:
            progress(stop - start)
    layers = [_merge([b[i] for b in batches], batch) for i in range(len(batches[0]))]
    return assemble_result(net, cfg, layers, codes_per_module, clamps)


def assemble_result(
    net: QuantizedNetwork,
    cfg: HwConfig,
    layers: list[LayerRun],
    codes_per_module: list[np.ndarray],
    clamps: list[tuple[int, int]],
) -> SimResult:
    """The SimResult of merged layer runs: output codes of the modules side by side, the
    readout join (``readout.concat``), argmax predictions (int64) and cycles per query."""
    final = [lr.codes for lr in layers if lr.layer == "output"]
    outputs = np.concatenate(final, axis=1)
    scores = join_modules(
        final,
        [m.layer("output").output_scale for m in net.modules],
        [m.layer("output").output_zero_point for m in net.modules],
        cfg.readout.concat if net.layout == "combined" else "codes",
    )
    predictions = np.argmax(scores, axis=1).astype(np.int64)
    cycles = np.sum([lr.cycles for lr in layers], axis=0).astype(np.int64)
    return SimResult(outputs, predictions, codes_per_module, clamps, layers, cycles, scores,
                     signedness_notes(net, cfg))


def _raise_earliest_error(runs: list[LayerRun], net: QuantizedNetwork, cfg: HwConfig) -> None:
    """Raise the ``error``-policy overflow that happens first in time within a batch.

    Layers of a batch are computed layer by layer for all its queries, but the hardware runs
    query by query; the earliest event is the smallest (query, layer order, cycle offset).
    """
    found = []
    for order, lr in enumerate(runs):
        for pi, st in enumerate(lr.mac.values()):
            if st.error is None or st.error_at is None:
                continue
            q, j, step = st.error_at
            steps_q = int(lr.schedule.steps(lr.k_active[q : q + 1])[0])
            offset = lr.schedule.event_offset(steps_q, j // lr.schedule.lanes, step, pi)
            found.append((q, order, offset, lr, st.error))
    if not found:
        return
    _, _, _, lr, err = min(found, key=lambda f: f[:3])
    raise RegisterOverflowError(
        f"{net.source}: module {lr.module} layer {lr.layer!r} on {cfg.source}: {err}",
        err.flat_index,
        err.value,
    )


def _merge(parts: list[LayerRun], batch: int) -> LayerRun:
    """Concatenate per-batch LayerRuns along queries, fixing query offsets of events."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    cat = np.concatenate
    mac = {}
    for name in first.mac:
        st = [p.mac[name] for p in parts]
        mac[name] = LaneStats.concat(st, [bi * batch for bi in range(len(st))])
    cf = None
    for bi, p in enumerate(parts):
        if p.clamp.first is not None:
            cf = (p.clamp.first[0] + bi * batch, p.clamp.first[1])
            break
    clamp = ClampEvents(
        np.sum([p.clamp.low for p in parts], axis=0),
        np.sum([p.clamp.high for p in parts], axis=0),
        cf,
    )
    return LayerRun(
        first.module, first.layer,
        {k: cat([p.acc[k] for p in parts]) for k in first.acc},
        {k: cat([p.scaled[k] for p in parts]) for k in first.scaled},
        cat([p.codes for p in parts]), cat([p.unclamped for p in parts]), mac, clamp,
        cat([p.cycles for p in parts]), cat([p.stalls for p in parts]),
        cat([p.k_active for p in parts]), first.schedule, first.acc_bits,
        (min(p.out_range[0] for p in parts), max(p.out_range[1] for p in parts)),
    )
