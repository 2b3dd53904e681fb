"""Re-quantization of a model to narrower weight and spike registers than it was trained for.

Rule for weights (``weights.bits = b`` < the model's width, combined layout, signed weights):
per output channel j, symmetric, zero point 0. A channel whose codes already fit in
[-(2^(b-1) - 1), 2^(b-1) - 1] is kept as it is. Otherwise, with a_j = max_k |w_jk| and
M = 2^(b-1) - 1, every code becomes w'_jk = round_half_even(w_jk * M / a_j) (exact integer
arithmetic) and the channel's scale becomes sw'_j = sw_j * a_j / M (float64), so the largest
magnitude maps onto +-M and the real weights w * sw change by at most half a new step.

Rule for activations (``spikes.bits = b`` < 8 on the model's quint8 activations, unsigned):
the quantizer feeding that spike register keeps its real range [(0 - z) s, (255 - z) s] and is
rescaled to b bits: s' = s * 255 / (2^b - 1), z' = round_half_even(z * (2^b - 1) / 255).
The feature layer's register is fed by each module's input quantizer (float spikes are then
quantized straight to b bits); the output layer's by the feature layer's output quantizer,
whose requantizer must then also clamp to b bits (``layers.feature.requant.output_bits``).

Both return a new frozen network; the caller records what changed in report.json.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..config import ConfigError, HwConfig, requant_clamp
from ..network import Layer, Module, QuantizedNetwork, WeightPath

MODEL_ACTIVATION_BITS = 8
WEIGHT_RULE = (
    "per-channel symmetric: channels with max|w| > 2^(b-1)-1 get w' = round_half_even(w * "
    "(2^(b-1)-1) / max|w|) and scale * max|w| / (2^(b-1)-1); other channels unchanged"
)
SPIKE_RULE = (
    "unsigned activation quantizer rescaled from 8 to b bits: scale * 255 / (2^b-1), "
    "zero point round_half_even(z * (2^b-1) / 255)"
)


def _div_round_half_even(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """round_half_even(num / den) exactly, int64 num and positive int64 den."""
    q = np.floor_divide(num, den)
    rem2 = 2 * (num - q * den)
    up = (rem2 > den) | ((rem2 == den) & (q % 2 == 1))
    return q + up.astype(np.int64)


def requantize_weight_matrix(
    w: np.ndarray, scale: np.ndarray, bits: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """int8 (N, K) codes, float64 (N,) scales -> narrower codes (int8), scales, channels changed."""
    m = (1 << (bits - 1)) - 1
    w64 = w.astype(np.int64)
    amax = np.abs(w64).max(axis=1)
    change = amax > m
    new_w = w64.copy()
    new_s = np.asarray(scale, dtype=np.float64).copy()
    if change.any():
        a = amax[change][:, None]
        new_w[change] = _div_round_half_even(w64[change] * m, a)
        new_s[change] = new_s[change] * amax[change].astype(np.float64) / m
    return new_w.astype(np.int8), new_s, int(change.sum())


def _rescale_activation(scale: float, zero_point: int, bits: int) -> tuple[float, int]:
    n = (1 << bits) - 1
    full = (1 << MODEL_ACTIVATION_BITS) - 1
    zp = int(_div_round_half_even(np.array([zero_point * n]), np.array([full]))[0])
    return float(scale) * full / n, zp


def _model_weight_bits(net: QuantizedNetwork) -> int:
    """Narrowest signed width holding every weight code of the model."""
    lo = min(int(p.weight.min()) for m in net.modules for lay in m.layers for p in lay.paths)
    hi = max(int(p.weight.max()) for m in net.modules for lay in m.layers for p in lay.paths)
    bits = 2
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def narrow_network(
    net: QuantizedNetwork, cfg: HwConfig
) -> tuple[QuantizedNetwork, dict[str, Any] | None]:
    """The network re-quantized to ``weights.bits`` / ``spikes.bits`` when they are narrower
    than the model's; returns (network, record) with record None when nothing changed.

    Raises ConfigError when the narrowing is undefined (split layout, unsigned registers).
    """
    wb = cfg.weights.bits
    need_w = wb < _model_weight_bits(net)
    sb_in = cfg.for_layer("feature").spikes
    sb_hid = cfg.for_layer("output").spikes
    need_in = sb_in.bits < MODEL_ACTIVATION_BITS
    need_hid = sb_hid.bits < MODEL_ACTIVATION_BITS
    if not (need_w or need_in or need_hid):
        return net, None
    if net.layout != "combined":
        raise ConfigError(
            f"{cfg.source}: 'weights.bits' = {wb} / 'spikes.bits' narrower than the model "
            f"({net.source}, split layout): re-quantization is defined for the combined layout "
            "only; use the model's widths"
        )
    if need_w and not cfg.weights.signed:
        raise ConfigError(
            f"{cfg.source}: 'weights.bits' = {wb} with weights.signed = false: narrowing "
            f"re-quantizes signed weights of {net.source}; set weights.signed = true"
        )
    for hw_s, layer in ((sb_in, "feature"), (sb_hid, "output")):
        if hw_s.bits < MODEL_ACTIVATION_BITS and hw_s.signed:
            raise ConfigError(
                f"{cfg.source}: layer {layer!r}: 'spikes.bits' = {hw_s.bits} with spikes.signed"
                f" = true: narrowing re-quantizes the model's unsigned activations; set "
                "spikes.signed = false"
            )
    if need_hid:
        lo, hi = requant_clamp(cfg.for_layer("feature").requant)
        top = (1 << sb_hid.bits) - 1
        if lo < 0 or hi > top:
            raise ConfigError(
                f"{cfg.source}: the output layer's spike register ('layers.output.spikes.bits' "
                f"= {sb_hid.bits}, also set by 'spikes.bits') holds 0..{top} but the feature "
                f"layer's requantizer gives codes {lo}..{hi}: set "
                f"'layers.feature.requant.output_bits' = {sb_hid.bits} as well, or narrow only "
                "the network input with 'layers.feature.spikes.bits'"
            )
    record: dict[str, Any] = {}
    wpaths: list[dict[str, Any]] = []
    mods = []
    for mi, mod in enumerate(net.modules):
        layers = []
        for lay in mod.layers:
            paths = []
            for p in lay.paths:
                if need_w:
                    w2, s2, changed = requantize_weight_matrix(p.weight, p.scale, wb)
                    wpaths.append({"module": mi, "layer": lay.name, "path": p.name,
                                   "channels": int(p.weight.shape[0]),
                                   "channels_rescaled": changed,
                                   "max_abs_code_before": int(np.abs(
                                       p.weight.astype(np.int64)).max()),
                                   "max_abs_code_after": int(np.abs(
                                       w2.astype(np.int64)).max())})
                    p = WeightPath(p.name, w2, s2, np.array(p.zero_point), p.bias)
                paths.append(p)
            out_s, out_z = lay.output_scale, lay.output_zero_point
            if lay.name == "feature" and need_hid:
                out_s, out_z = _rescale_activation(out_s, out_z, sb_hid.bits)
            layers.append(dataclasses.replace(
                lay, paths=tuple(paths), output_scale=out_s, output_zero_point=out_z))
        in_s, in_z = mod.input_scale, mod.input_zero_point
        if need_in:
            in_s, in_z = _rescale_activation(in_s, in_z, sb_in.bits)
        mods.append(Module(in_s, in_z, tuple(layers)))
    if need_w:
        record["weights"] = {"bits": wb, "from_bits": _model_weight_bits(net),
                             "rule": WEIGHT_RULE, "paths": wpaths}
    acts = []
    if need_in:
        acts.append({"register": "feature spikes (network input)", "bits": sb_in.bits,
                     "scale": [m.input_scale for m in mods],
                     "zero_point": [m.input_zero_point for m in mods]})
    if need_hid:
        feats: list[Layer] = [m.layer("feature") for m in mods]
        acts.append({"register": "output spikes (feature layer output)", "bits": sb_hid.bits,
                     "scale": [f.output_scale for f in feats],
                     "zero_point": [f.output_zero_point for f in feats]})
    if acts:
        record["spikes"] = {"from_bits": MODEL_ACTIVATION_BITS, "rule": SPIKE_RULE,
                            "quantizers": acts}
    new = QuantizedNetwork(net.layout, tuple(mods), dict(net.metadata), net.source)
    new.validate()
    return new, record
