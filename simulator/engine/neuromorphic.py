"""Time-stepped execution on a Loihi-class neuromorphic datapath (``neuromorphic.datapath``).

Bit-exact with Lava 0.10's bit-accurate CPU process models (tests/golden/lava/, made by
tools/lava_golden.py); every silent narrowing of those models is an event here. Two mappings
of a combined-layout VPRTempo module (docs/neuromorphic.md):

* ``prodneuron`` (graded spikes, one query per time step, pipelined):
  s = x - zx -> Dense(W or 2W, weight_exp) -> ProdNeuron(a * M0_j >> shift) -> Dense ->
  ProdNeuron. M0_j and one shift per layer come from the real multiplier sx * sw_j / sy
  (as the ``fixed_point`` requantizer with a fixed shift). Each layer's output code is
  clamp(v + zy); the next Dense receives v (``emit = offset``, as Lava) or code - zy.
  Query q's Dense of layer l runs at time step q + l, its ProdNeuron at q + l + 1.
* ``lif`` (spiking): s = x - zx presented for ``timesteps`` steps -> Dense -> LIF -> Dense
  (binary spikes) -> LIF; Dense outputs arrive one step late. A layer's codes are its spike
  counts; the readout is the argmax of the output layer's counts. State is reset between
  queries; query q's step t is time step q * timesteps + t.

A "cycle" in the report is a Loihi time step: 1 per layer and query (prodneuron) or
``timesteps`` (lif).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import ConfigError, HwConfig, LayerHw, requant_clamp
from ..fixedpoint import RegisterOverflowError
from ..network import Layer, ModelError, QuantizedNetwork
from ..units.lif import ACT_SHIFT, LIF_EVENTS, UV_MAX, LifParams, lif_step
from ..units.loihi_dense import DenseWeights, dense_forward, load_weights
from ..units.mac_array import LaneStats
from ..units.neuro_events import EventCounter
from ..units.prod_neuron import prod_neuron
from ..units.readout import join_modules
from ..units.requantizer import ClampEvents, clamp_codes, fixed_point_multipliers
from ..units.weight_memory import WeightMemory
from .fast import LayerRun, SimResult, prepare_inputs
from .schedule import TileSchedule

DENSE_EVENTS = ("dense_dot_wrap", "dense_shift_wrap")
PROD_EVENTS = ("product_overflow", "below_vth", "code_clamp_low", "code_clamp_high")


@dataclass
class LayerPlan:
    """Static per-layer mapping: Lava weights, weight_exp and the neuron's constants."""

    name: str
    weights: DenseWeights
    weight_exp: int
    graded: bool
    m0: np.ndarray | None = None  # prodneuron: int64 (N,)
    shift: int = 0
    lif: LifParams | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class NeuroLayerRun(LayerRun):
    """A LayerRun of the neuromorphic datapath plus its events (``neuromorphic`` report block)."""

    events: EventCounter | None = None
    plan: LayerPlan | None = None
    time_steps: int = 1
    state: dict[str, np.ndarray] = field(default_factory=dict)  # lif: final u, v (Q, N)

    def neuromorphic_report(self) -> dict[str, Any]:
        assert self.events is not None and self.plan is not None
        evs = self.events.to_report()
        firsts = [(v["first"]["step"], v["first"]["neuron"], k) for k, v in evs.items()
                  if v["first"] is not None and k != "below_vth"]
        first = None
        if firsts:
            step, _, kind = min(firsts)
            fe = evs[kind]["first"]
            first = {"cycle": step, "query": fe["query"], "neuron": fe["neuron"], "step": step,
                     "path": "combined", "kind": kind}
        return {"time_steps_per_query": self.time_steps, "first": first, "events": evs,
                **self.plan.info}


def is_neuromorphic(cfg: HwConfig) -> bool:
    return getattr(cfg, "neuromorphic", None) is not None and cfg.neuromorphic.datapath != "off"


def _auto_lif_exp(w: np.ndarray, max_in: int) -> int:
    """Smallest right shift e (as weight_exp = -e) so no input drives a_in << 6 past 24 bits."""
    bound = int(np.abs(w).sum(axis=1).max(initial=0)) * max_in
    e = 0
    while ((bound + (1 << e) - 1) >> e) << ACT_SHIFT >= UV_MAX:
        e += 1
    return -e


def _auto_shift(sx: float, sw: np.ndarray, sy: float, bits: int) -> int:
    """The largest shift for which every M0_j = round(m_j 2^s) fits ``bits`` bits."""
    for s in range(62, -1, -1):
        try:
            fixed_point_multipliers(sx, sw, sy, bits, s)
        except ConfigError:
            continue
        return s
    raise ConfigError(f"no shift in 0..62 gives {bits}-bit multipliers M0_j >= 1")


@dataclass(frozen=True)
class _Input:
    """What a layer needs to know about its input: scale, largest |value|, kind, and (after a
    LIF layer) the zero point and code units per spike of the layer before."""

    scale: float
    max_abs: int
    graded: bool
    zero_point: int = 0
    spike_code: float = 1.0


def plan_layers(net: QuantizedNetwork, cfg: HwConfig) -> list[list[LayerPlan]]:
    """Check the model fits the datapath and build every module's layer plans."""
    mode = cfg.neuromorphic.datapath
    if net.layout != "combined":
        raise ConfigError(
            f"{cfg.source}: 'neuromorphic.datapath' = {mode!r} needs a combined-layout model "
            f"(one signed int8 matrix per layer); {net.source} has the {net.layout!r} layout"
        )
    plans = []
    for mi, mod in enumerate(net.modules):
        zx = mod.input_zero_point
        in_reg = cfg.for_layer("feature").spikes
        lo, hi = (-(1 << (in_reg.bits - 1)), (1 << (in_reg.bits - 1)) - 1) if in_reg.signed \
            else (0, (1 << in_reg.bits) - 1)
        inp = _Input(mod.input_scale, max(abs(lo - zx), abs(hi - zx)), True, zx)
        mplans = []
        for li, lay in enumerate(mod.layers):
            hw = cfg.for_layer(lay.name)
            last = li == len(mod.layers) - 1
            mplans.append(_plan_layer(mi, lay, hw, cfg, net, mode, inp, last))
            if mode == "prodneuron":
                inp = _Input(lay.output_scale, inp.max_abs, True)
            else:
                inp = _Input(lay.output_scale, 1, False, lay.output_zero_point,
                             hw.neuron.spike_code)
        plans.append(mplans)
    return plans


def _fold_scales(w: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, float]:
    """w' = rint(w * m_j / max(m) * g), max |w'| = 127; returns (w', g / max(m)): stored
    weight units per output-code unit."""
    r = w * (m / m.max())[:, None]
    peak = float(np.abs(r).max(initial=0))
    g = 127.0 / peak if peak > 0 else 1.0
    return np.rint(r * g).astype(np.int64), g / float(m.max())


def _encode_bias(b: np.ndarray, where: str) -> tuple[np.ndarray, int]:
    """(mantissa int64 (N,), shared exponent 0..7) with mant << exp = rint(b / 2^exp) << exp."""
    for e in range(8):
        mant = np.rint(np.asarray(b, dtype=np.float64) / (1 << e)).astype(np.int64)
        if mant.size == 0 or (mant.min() >= -4096 and mant.max() <= 4095):
            return mant, e
    raise ConfigError(f"{where}: the zero-point bias {float(np.abs(b).max()):.4g} needs more than "
                      "13-bit mantissa << 7; lower 'dense.weight_exp' or use neuron.bias = 'fixed'")


# Loaded synapses per weight array, as the fast path caches its weight facts: a run of many
# batches or repeated runs on one model prepare each matrix once (entries die with the array).
_SYNAPSES: dict[tuple, tuple[Any, tuple[DenseWeights, float]]] = {}


def _synapses(weight: np.ndarray, sw: np.ndarray, s_in: float, s_out: float,
              d: Any) -> tuple[DenseWeights, float]:
    """Lava-loaded weights (folded and doubled as configured) and the stored weight units per
    output-code unit (0 unless fold_scales)."""
    import weakref

    key = (id(weight), id(sw), float(s_in), float(s_out), d.weight_bits, d.sign_mode,
           d.double_weights, d.fold_scales)
    hit = _SYNAPSES.get(key)
    if hit is not None and hit[0]() is weight:
        return hit[1]
    w = weight.astype(np.int64)
    per_code = 0.0
    if d.fold_scales:
        real = np.float64(s_in) * np.asarray(sw, np.float64) / np.float64(s_out)
        w, per_code = _fold_scales(w, real)
    out = (load_weights(w * (2 if d.double_weights else 1), d.weight_bits, d.sign_mode),
           per_code)
    _SYNAPSES[key] = (weakref.ref(weight, lambda _r, k=key: _SYNAPSES.pop(k, None)), out)
    return out


def _plan_layer(mi: int, lay: Layer, hw: LayerHw, cfg: HwConfig, net: QuantizedNetwork,
                mode: str, inp: _Input, last: bool) -> LayerPlan:
    where = f"{cfg.source}: module {mi} layer {lay.name!r} of {net.source}"
    p = lay.paths[0]
    if np.any(p.zero_point != 0):
        raise ModelError(f"{where}: weight zero points must be 0 (Lava's Dense has no weight "
                         "offset)")
    if p.bias is not None and np.any(p.bias != 0):
        raise ModelError(f"{where}: has a non-zero bias; the Dense mapping has none")
    d = hw.dense
    dbl = 2 if d.double_weights else 1
    lw, per_code = _synapses(p.weight, p.scale, inp.scale, lay.output_scale, d)
    graded = inp.graded
    if d.weight_exp != "auto":
        exp = int(d.weight_exp)
    elif mode == "prodneuron":
        exp = -1 if d.double_weights else 0
    else:
        exp = _auto_lif_exp(lw.weights, inp.max_abs)
    info: dict[str, Any] = {
        "datapath": mode,
        "weights": {"sign_mode": lw.sign_mode, "bits": d.weight_bits,
                    "doubled": d.double_weights, "folded_scales": d.fold_scales,
                    "weight_exp": exp, "clipped": int(lw.clipped.sum()),
                    "truncated": int(lw.truncated.sum())},
        "message": "graded" if graded else "binary",
    }
    plan = LayerPlan(lay.name, lw, exp, graded, info=info)
    if mode == "prodneuron":
        pn = hw.prodneuron
        try:
            shift = (_auto_shift(inp.scale, p.scale, lay.output_scale, pn.multiplier_bits)
                     if pn.shift == "auto" else int(pn.shift))
            m0, _ = fixed_point_multipliers(inp.scale, p.scale, lay.output_scale,
                                            pn.multiplier_bits, shift)
        except ConfigError as exc:
            raise ConfigError(f"{where}: 'prodneuron.shift': {exc}") from None
        plan.m0, plan.shift = m0, shift
        info["prodneuron"] = {"multiplier_bits": pn.multiplier_bits, "shift": shift,
                              "product_bits": pn.product_bits,
                              "product_overflow": pn.product_overflow, "vth": pn.vth,
                              "m0_range": [int(m0.min()), int(m0.max())]}
        return plan
    nc = hw.neuron
    if (nc.vth == "auto" or nc.bias == "zero_point") and not d.fold_scales:
        raise ConfigError(f"{where}: neuron.vth = 'auto' and neuron.bias = 'zero_point' need "
                          "dense.fold_scales = true (one code scale per layer); or give "
                          "neuron.vth as an integer with neuron.bias = 'fixed'")
    tries = [exp] if d.weight_exp != "auto" else list(range(exp, -25, -1))
    for i, e in enumerate(tries):  # auto: shift further right until vth and bias fit
        try:
            vth, mant, bexp = _lif_constants(nc, lw, e, dbl * per_code, inp, graded, last,
                                             lay.output_zero_point, where)
            break
        except ConfigError:
            if i == len(tries) - 1:
                raise
    plan.weight_exp = info["weights"]["weight_exp"] = e
    plan.lif = LifParams(nc.du, nc.dv, vth, mant, bexp)
    info["neuron"] = {"du": nc.du, "dv": nc.dv, "vth": vth, "bias": nc.bias,
                      "bias_mant_range": [int(mant.min(initial=0)), int(mant.max(initial=0))],
                      "bias_exp": bexp, "spike_code": nc.spike_code}
    return plan


def _lif_constants(nc: Any, lw: DenseWeights, exp: int, per_code: float, inp: _Input,
                   graded: bool, last: bool, zy: int, where: str) -> tuple[int, np.ndarray, int]:
    """(vth, bias mantissas, bias exponent) of a LIF layer at weight exponent ``exp``."""
    n = lw.weights.shape[0]
    # v units added per output-code unit per step (binary input: at the input's spike rate)
    unit = per_code * 2.0**exp * (1 << ACT_SHIFT)
    if not graded:
        unit /= inp.spike_code
    if nc.vth == "auto":
        vth = int(round(nc.spike_code * unit / (1 << ACT_SHIFT)))
        if not 1 <= vth < 1 << 17:
            raise ConfigError(f"{where}: neuron.vth = 'auto' gives {vth}, outside 1..131071; "
                              "change neuron.spike_code or dense.weight_exp")
    else:
        vth = int(nc.vth)
    if nc.bias != "zero_point":
        return vth, np.full(n, nc.bias_mant, np.int64), nc.bias_exp
    b = np.zeros(n) if last else np.full(n, zy * unit)
    if not graded:  # the previous layer's zero point, at its spike rate
        b = b - inp.zero_point / inp.spike_code * lw.weights.sum(axis=1) * 2.0**exp * (
            1 << ACT_SHIFT)
    mant, bexp = _encode_bias(b, where)
    return vth, mant, bexp


def _schedule(n: int, k: int) -> TileSchedule:
    """A one-tile, one-step schedule (all neurons of a layer update in one time step)."""
    return TileSchedule(n_out=n, lanes=n, tree_width=k, pre_add_width=1, weights_per_cycle=n * k,
                        requant_throughput=n, requant_latency=0, paths=1, extra_steps=0)


def _lane_stats(exact_lo: int, exact_hi: int, wraps: np.ndarray, max_abs: int) -> LaneStats:
    """Dense sums in the MAC-array vocabulary: int32 register, wrap events, exact range."""
    n = wraps.size
    return LaneStats(acc_wrap=wraps.astype(np.int64), acc_saturate=np.zeros(n, np.int64),
                     pre_add_events=np.zeros(n, np.int64), max_abs_acc=max_abs, first=None,
                     ordered_pairs=0, partial_min=min(exact_lo, 0), partial_max=max(exact_hi, 0))


def _run_prod_module(mi: int, plans: list[LayerPlan], net: QuantizedNetwork, cfg: HwConfig,
                     x: np.ndarray, zx: int, q0: int) -> list[NeuroLayerRun]:
    mod = net.modules[mi]
    s = x - zx
    steps_q = np.arange(x.shape[0], dtype=np.int64) + q0
    runs = []
    for li, (plan, lay) in enumerate(zip(plans, mod.layers, strict=True)):
        hw = cfg.for_layer(lay.name)
        pn = hw.prodneuron
        n = lay.out_features
        ev = EventCounter(n)
        ev.declare(*DENSE_EVENTS, *PROD_EVENTS)
        d = dense_forward(s, plan.weights, plan.weight_exp, graded=True)
        ev.add("dense_dot_wrap", d.dot_wrap, steps_q + li, q0)
        ev.add("dense_shift_wrap", d.shift_wrap, steps_q + li, q0)
        assert plan.m0 is not None
        try:
            pr = prod_neuron(d.out, plan.m0[None, :], plan.shift, pn.vth, pn.product_bits,
                             pn.product_overflow)
        except RegisterOverflowError as exc:
            qi, j = divmod(exc.flat_index, n)
            raise RegisterOverflowError(
                f"{net.source}: module {mi} layer {lay.name!r} on {cfg.source}: ProdNeuron "
                f"product overflow at query {q0 + qi}, neuron {j}, time step {q0 + qi + li + 1}"
                f": {exc.value} does not fit {pn.product_bits} bits; widen "
                "'prodneuron.product_bits', narrow 'prodneuron.multiplier_bits' or set "
                "'prodneuron.product_overflow' to wrap or saturate", exc.flat_index, exc.value,
            ) from None
        ev.add("product_overflow", pr.product_overflow, steps_q + li + 1, q0)
        ev.add("below_vth", pr.below_vth, steps_q + li + 1, q0)
        zy = lay.output_zero_point
        unclamped = pr.out + zy
        lo, hi = requant_clamp(hw.requant)
        codes, clamp = clamp_codes(unclamped, (lo, hi))
        ev.add("code_clamp_low", unclamped < lo, steps_q + li + 1, q0)
        ev.add("code_clamp_high", unclamped > hi, steps_q + li + 1, q0)
        s = pr.out if cfg.neuromorphic.emit == "offset" else codes - zy
        runs.append(_layer_run(mi, lay, plan, ev, d, codes, unclamped, clamp, x.shape, 1))
    return runs


def _run_lif_module(mi: int, plans: list[LayerPlan], net: QuantizedNetwork, cfg: HwConfig,
                    x: np.ndarray, zx: int, q0: int) -> list[NeuroLayerRun]:
    mod = net.modules[mi]
    t_steps = cfg.neuromorphic.timesteps
    q = x.shape[0]
    base = (np.arange(q, dtype=np.int64) + q0) * t_steps
    layers = list(zip(plans, mod.layers, strict=True))
    evs = []
    for _, lay in layers:
        ev = EventCounter(lay.out_features)
        ev.declare(*DENSE_EVENTS, *LIF_EVENTS)
        evs.append(ev)
    u = [np.zeros((q, lay.out_features), np.int64) for _, lay in layers]
    v = [np.zeros_like(a) for a in u]
    a_prev = [np.zeros_like(a) for a in u]  # the Dense buffers (one step of delay)
    counts = [np.zeros_like(a) for a in u]
    first_dense = dense_forward(x - zx, layers[0][0].weights, layers[0][0].weight_exp,
                                graded=True)
    last_dense: list[Any] = [first_dense] + [None] * (len(layers) - 1)
    exact_lo = [0] * len(layers)
    exact_hi = [0] * len(layers)
    wraps = [np.zeros(lay.out_features, np.int64) for _, lay in layers]
    for t in range(t_steps):
        spikes_in = None
        for li, (plan, _) in enumerate(layers):
            d = first_dense if li == 0 else dense_forward(spikes_in, plan.weights,
                                                          plan.weight_exp, graded=plan.graded)
            evs[li].add("dense_dot_wrap", d.dot_wrap, base + t, q0)
            evs[li].add("dense_shift_wrap", d.shift_wrap, base + t, q0)
            wraps[li] += (d.dot_wrap | d.shift_wrap).sum(axis=0)
            exact_lo[li] = min(exact_lo[li], int(d.exact.min(initial=0)))
            exact_hi[li] = max(exact_hi[li], int(d.exact.max(initial=0)))
            assert plan.lif is not None
            st = lif_step(u[li], v[li], a_prev[li], plan.lif)
            for kind, mask in st.events.items():
                evs[li].add(kind, mask, base + t, q0)
            u[li], v[li] = st.u, st.v
            counts[li] += st.spikes
            a_prev[li] = d.out
            last_dense[li] = d
            spikes_in = st.spikes.astype(np.int64)
    runs = []
    for li, (plan, lay) in enumerate(layers):
        n = lay.out_features
        none = np.zeros(n, np.int64)
        run = _layer_run(mi, lay, plan, evs[li], last_dense[li], counts[li], counts[li],
                         ClampEvents(none, none.copy(), None), x.shape, t_steps)
        run.mac["combined"] = _lane_stats(exact_lo[li], exact_hi[li], wraps[li],
                                          max(abs(exact_lo[li]), abs(exact_hi[li])))
        run.state = {"u": u[li], "v": v[li]}
        runs.append(run)
    return runs


def _layer_run(mi: int, lay: Layer, plan: LayerPlan, ev: EventCounter, d: Any,
               codes: np.ndarray, unclamped: np.ndarray, clamp: ClampEvents,
               xshape: tuple[int, ...], t_steps: int) -> NeuroLayerRun:
    q = xshape[0]
    k = lay.in_features
    lo = int(d.exact.min(initial=0))
    hi = int(d.exact.max(initial=0))
    wraps = ev.counts["dense_dot_wrap"] + ev.counts["dense_shift_wrap"]
    stats = _lane_stats(lo, hi, wraps, max(abs(lo), abs(hi)))
    out_range = (int(codes.min(initial=0)), int(codes.max(initial=0)))
    return NeuroLayerRun(
        mi, lay.name, {"combined": d.out}, {}, codes, unclamped, {"combined": stats}, clamp,
        np.full(q, t_steps, np.int64), np.zeros(q, np.int64), np.full(q, k, np.int64),
        _schedule(lay.out_features, k), 32, out_range, events=ev, plan=plan, time_steps=t_steps,
    )


def _merge(parts: list[NeuroLayerRun]) -> NeuroLayerRun:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    ev = EventCounter(first.codes.shape[1])
    for p in parts:
        assert p.events is not None
        for kind, c in p.events.counts.items():
            ev.declare(kind)
            ev.counts[kind] = ev.counts[kind] + c
            fe = p.events.first.get(kind)
            if fe is not None and kind not in ev.first:
                ev.first[kind] = fe
    st = [p.mac["combined"] for p in parts]
    stats = _lane_stats(min(s.partial_min for s in st), max(s.partial_max for s in st),
                        sum(s.acc_wrap for s in st), max(s.max_abs_acc for s in st))
    cf, off = None, 0
    for p in parts:  # clamp_codes reports batch-local queries
        if p.clamp.first is not None:
            cf = (p.clamp.first[0] + off, p.clamp.first[1])
            break
        off += p.codes.shape[0]
    clamp = ClampEvents(sum(p.clamp.low for p in parts), sum(p.clamp.high for p in parts), cf)
    cat = np.concatenate
    return NeuroLayerRun(
        first.module, first.layer, {"combined": cat([p.acc["combined"] for p in parts])}, {},
        cat([p.codes for p in parts]), cat([p.unclamped for p in parts]), {"combined": stats},
        clamp, cat([p.cycles for p in parts]), cat([p.stalls for p in parts]),
        cat([p.k_active for p in parts]), first.schedule, first.acc_bits,
        (min(p.out_range[0] for p in parts), max(p.out_range[1] for p in parts)),
        events=ev, plan=first.plan, time_steps=first.time_steps,
        state={k: cat([p.state[k] for p in parts]) for k in first.state},
    )


def simulate_neuromorphic(
    net: QuantizedNetwork,
    cfg: HwConfig,
    inputs: np.ndarray,
    batch: int = 512,
    progress: Callable[[int], None] | None = None,
    source: str = "input",
) -> SimResult:
    """Run ``inputs`` (float spikes or uint8 codes, (Q, K)) on the neuromorphic datapath."""
    net.validate()
    WeightMemory(cfg.weights).check_fits(net, cfg.source)
    plans = plan_layers(net, cfg)
    codes_per_module, clamps = prepare_inputs(net, cfg, inputs, source)
    q_total = codes_per_module[0].shape[0]
    run_module = _run_prod_module if cfg.neuromorphic.datapath == "prodneuron" \
        else _run_lif_module
    batches: list[list[NeuroLayerRun]] = []
    for start in range(0, q_total, batch):
        stop = min(start + batch, q_total)
        runs: list[NeuroLayerRun] = []
        for mi, mod in enumerate(net.modules):
            x = codes_per_module[mi][start:stop]
            runs += run_module(mi, plans[mi], net, cfg, x, mod.input_zero_point, start)
        batches.append(runs)
        if progress is not None:
            progress(stop - start)
    layers = [_merge([b[i] for b in batches]) for i in range(len(batches[0]))]
    final = [lr.codes for lr in layers if lr.layer == "output"]
    outputs = np.concatenate(final, axis=1)
    concat = cfg.readout.concat if cfg.neuromorphic.datapath == "prodneuron" else "codes"
    if cfg.neuromorphic.datapath == "lif" and cfg.neuromorphic.readout == "spike_count_then_v":
        # counts first, ties by the final v (|v| < 2^23, so count * 2^24 + v keeps the order)
        final = [lr.codes * (1 << 24) + lr.state["v"] for lr in layers if lr.layer == "output"]
    scores = join_modules(
        final,
        [m.layer("output").output_scale for m in net.modules],
        [m.layer("output").output_zero_point for m in net.modules],
        concat,
    )
    predictions = np.argmax(scores, axis=1).astype(np.int64)
    cycles = np.sum([lr.cycles for lr in layers], axis=0).astype(np.int64)
    notes = [f"neuromorphic datapath {cfg.neuromorphic.datapath!r}: a cycle is one Loihi time "
             "step (see docs/neuromorphic.md)"]
    return SimResult(outputs, predictions, codes_per_module, clamps, list(layers), cycles,
                     scores, notes)


def lava_constants(net: QuantizedNetwork, cfg: HwConfig, module: int = 0) -> dict[str, Any]:
    """The constants this mapping hands Lava for one module, per layer i (1 = feature,
    2 = output): ``map_w{i}`` Dense weights (after the load rules), ``map_weight_exp{i}``,
    ``map_graded{i}``; ProdNeuron ``map_m0_{i}``, ``map_shift{i}``, ``map_vth{i}``; LIF
    ``map_du{i}``, ``map_dv{i}``, ``map_vth{i}``, ``map_bias_mant{i}``, ``map_bias_exp{i}``;
    and ``timesteps``. tools/lava_preset_inputs.py writes them for tools/lava_golden.py."""
    plans = plan_layers(net, cfg)[module]
    out: dict[str, Any] = {"timesteps": np.int64(cfg.neuromorphic.timesteps)}
    for i, pl in enumerate(plans, start=1):
        out[f"map_w{i}"] = pl.weights.weights
        out[f"map_weight_exp{i}"] = np.int64(pl.weight_exp)
        out[f"map_graded{i}"] = np.bool_(pl.graded)
        if pl.m0 is not None:
            out[f"map_m0_{i}"] = pl.m0
            out[f"map_shift{i}"] = np.int64(pl.shift)
            out[f"map_vth{i}"] = np.int64(cfg.for_layer(pl.name).prodneuron.vth)
        if pl.lif is not None:
            out[f"map_du{i}"] = np.int64(pl.lif.du)
            out[f"map_dv{i}"] = np.int64(pl.lif.dv)
            out[f"map_vth{i}"] = np.int64(pl.lif.vth)
            out[f"map_bias_mant{i}"] = np.asarray(pl.lif.bias_mant, np.int64)
            out[f"map_bias_exp{i}"] = np.int64(pl.lif.bias_exp)
    return out
