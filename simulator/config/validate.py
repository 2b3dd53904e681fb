"""Validation of a parsed config into an :class:`HwConfig`: known keys, each value's type,
range or choices, per-layer overrides, and the constraints between keys."""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from typing import Any

from ..fixedpoint import MAX_BITS
from .errors import ConfigError, _did_you_mean
from .presets import preset_names, resolve_config_path
from .schema import LAYER_KEYS, LAYER_SECTIONS, SECTIONS, TOP_KEYS, HwConfig, LayerHw
from .sections import requant_clamp


def build_config(
    raw: dict[str, Any], src: str = "<dict>", sha256: str = "", default_name: str = "config"
) -> HwConfig:
    """Validate a parsed TOML dict into an HwConfig (raises ConfigError naming key and fix)."""
    known = set(SECTIONS) | set(TOP_KEYS) | {"layers"}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"{src}: unknown key {key!r}{_did_you_mean(key, sorted(known))}; allowed "
                f"top-level keys: {', '.join(sorted(known))}"
            )
    for key, typ in TOP_KEYS.items():
        if key in raw and not isinstance(raw[key], typ):
            raise ConfigError(f"{src}: {key!r} must be a string, not {raw[key]!r}")
    sections = {
        name: _build_section(cls, raw.get(name, {}), name, src) for name, cls in SECTIONS.items()
    }
    layer_ov: dict[str, dict[str, dict[str, Any]]] = {}
    layers_raw = raw.get("layers", {})
    if not isinstance(layers_raw, dict):
        raise ConfigError(f"{src}: 'layers' must be a table like [layers.feature.accumulator]")
    for lname, secs in layers_raw.items():
        if lname not in LAYER_KEYS:
            raise ConfigError(
                f"{src}: unknown layer 'layers.{lname}'"
                f"{_did_you_mean(lname, LAYER_KEYS, 'layers.')}; layers are "
                f"{', '.join(LAYER_KEYS)}"
            )
        if not isinstance(secs, dict):
            raise ConfigError(f"{src}: 'layers.{lname}' must be a table of sections")
        layer_ov[lname] = {}
        for sname, vals in secs.items():
            if sname in SECTIONS and sname not in LAYER_SECTIONS:
                raise ConfigError(
                    f"{src}: 'layers.{lname}.{sname}' cannot be set per layer (one [{sname}] "
                    f"serves the whole network); per-layer sections: {', '.join(LAYER_SECTIONS)}"
                )
            if sname not in LAYER_SECTIONS:
                raise ConfigError(
                    f"{src}: unknown section 'layers.{lname}.{sname}'"
                    f"{_did_you_mean(sname, LAYER_SECTIONS, f'layers.{lname}.')}; per-layer "
                    f"overrides are tables [layers.{lname}.<section>] with <section> one of "
                    f"{', '.join(LAYER_SECTIONS)}"
                )
            prefix = f"layers.{lname}.{sname}"
            merged = {**raw.get(sname, {}), **(vals if isinstance(vals, dict) else {})}
            if not isinstance(vals, dict):
                raise ConfigError(f"{src}: '{prefix}' must be a table")
            built = _build_section(SECTIONS[sname], merged, prefix, src, keys_from=vals)
            # keep the validated values (tuples for lists, floats for integer literals)
            layer_ov[lname][sname] = {k: getattr(built, k) for k in vals}
    compare = sections["report"].compare_with
    if compare:
        try:
            resolve_config_path(compare)
        except ConfigError:
            raise ConfigError(
                f"{src}: 'report.compare_with' = {compare!r} is neither a preset nor a config "
                f"file; presets: {', '.join(preset_names())} ('' = no comparison)"
            ) from None
    cfg = HwConfig(
        name=str(raw.get("name", default_name)),
        description=str(raw.get("description", "")),
        source=src,
        sha256=sha256,
        layer_overrides=layer_ov,
        raw=raw,
        **sections,
    )
    for lname in LAYER_KEYS:
        _check_cross(cfg, cfg.for_layer(lname), lname, src)
    return cfg


def _build_section(
    cls: type, values: Any, prefix: str, src: str, keys_from: dict[str, Any] | None = None
) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{src}: '{prefix}' must be a table, e.g. [{prefix}]")
    flds = {f.name: f for f in fields(cls)}
    for key in keys_from if keys_from is not None else values:
        if key not in flds:
            raise ConfigError(
                f"{src}: unknown key '{prefix}.{key}'{_did_you_mean(key, flds, prefix + '.')}; "
                f"allowed keys in [{prefix}]: {', '.join(flds)}"
            )
    kwargs = {}
    for key, val in values.items():
        if key in flds:
            kwargs[key] = _check_value(flds[key], val, f"{prefix}.{key}", src)
    return cls(**kwargs)


def _check_value(f: dataclasses.Field, val: Any, key: str, src: str) -> Any:
    default = f.default
    meta = f.metadata
    if isinstance(default, bool):
        if not isinstance(val, bool):
            raise ConfigError(f"{src}: '{key}' must be true or false, not {val!r}")
        return val
    if isinstance(default, tuple):
        if not (isinstance(val, list | tuple) and all(
            isinstance(d, list | tuple) and d and all(isinstance(i, int) and 0 <= i <= 3 for i in d)
            for d in val
        )):
            raise ConfigError(
                f"{src}: '{key}' must be a list of lists of scale-factor indices 0..3, "
                f"e.g. [[0, 2], [2]], not {val!r}"
            )
        return tuple(tuple(d) for d in val)
    if isinstance(default, str) and "choices" in meta:
        if not isinstance(val, str) or val not in meta["choices"]:
            hint = _did_you_mean(val, meta["choices"])
            if isinstance(val, str) and val.lower() == "trunc" and "toward_zero" in hint:
                note = " 'trunc' rounds toward zero in C and fxpmath; floor is toward -inf)"
                hint = hint[:-1] + note
            raise ConfigError(
                f"{src}: '{key}' = {val!r} is not allowed{hint}; choose one of "
                f"{', '.join(meta['choices'])}"
            )
        return val
    if key.endswith(("clamp_low", "clamp_high")) and key.split(".")[-2] == "requant":
        if val == "register" or (isinstance(val, int) and not isinstance(val, bool)):
            return val
        raise ConfigError(f"{src}: '{key}' must be an integer or 'register', not {val!r}")
    if key.endswith("neuron.vth") and key.split(".")[-2] == "neuron":
        if val == "auto" or (isinstance(val, int) and not isinstance(val, bool)
                             and 0 <= val < 1 << 17):
            return val
        raise ConfigError(f"{src}: '{key}' must be 'auto' or an integer in 0..131071, "
                          f"not {val!r}")
    if key.endswith(("dense.weight_exp", "prodneuron.shift")):
        lo, hi = (-24, 24) if key.endswith("weight_exp") else (0, 62)
        if val == "auto" or (isinstance(val, int) and not isinstance(val, bool)
                             and lo <= val <= hi):
            return val
        raise ConfigError(f"{src}: '{key}' must be 'auto' or an integer in {lo}..{hi}, "
                          f"not {val!r}")
    if key.endswith("requant.shift"):
        if val == "auto" or (isinstance(val, int) and not isinstance(val, bool) and 0 <= val <= 62):
            return val
        raise ConfigError(f"{src}: '{key}' must be 'auto' or an integer in 0..62, not {val!r}")
    if key.endswith("clip_high"):
        if val in ("input_max", "register") or (isinstance(val, int) and not isinstance(val, bool)):
            return val
        raise ConfigError(
            f"{src}: '{key}' must be an integer, 'input_max' or 'register', not {val!r}"
        )
    if isinstance(default, str):
        if not isinstance(val, str):
            raise ConfigError(f"{src}: '{key}' must be a string, not {val!r}")
        return val
    allowed = " in {}..{}".format(*meta["range"]) if "range" in meta else ""
    if isinstance(default, int):
        if not isinstance(val, int) or isinstance(val, bool):
            raise ConfigError(f"{src}: '{key}' must be an integer{allowed}, not {val!r}")
    elif isinstance(default, float):
        if not isinstance(val, int | float) or isinstance(val, bool):
            raise ConfigError(f"{src}: '{key}' must be a number{allowed}, not {val!r}")
        val = float(val)
    if "range" in meta:
        lo, hi = meta["range"]
        if not lo <= val <= hi:
            raise ConfigError(f"{src}: '{key}' = {val!r} is out of range; allowed {lo}..{hi}")
    return val


def _check_cross(cfg: HwConfig, hw: LayerHw, layer: str, src: str) -> None:
    """Constraints between keys."""
    where = f"{src}: layer {layer!r}:"
    if hw.spikes.signed and hw.spikes.bits < 2:
        raise ConfigError(
            f"{where} 'spikes.bits' = 1 is too narrow for a signed register; allowed "
            f"2..{MAX_BITS} (or spikes.signed = false)"
        )
    if hw.requant.output_signed and hw.requant.output_bits < 2:
        raise ConfigError(
            f"{where} 'requant.output_bits' = 1 is too narrow for signed output; allowed "
            f"2..{MAX_BITS} (or requant.output_signed = false)"
        )
    lo, hi = requant_clamp(hw.requant)
    from ..fixedpoint import Register

    out = Register(hw.requant.output_bits, hw.requant.output_signed)
    if lo > hi:
        raise ConfigError(
            f"{where} 'requant.clamp_low' ({lo}) is above 'requant.clamp_high' ({hi}); the "
            f"clamp range must be non-empty and inside the output register {out.describe()}"
        )
    if not (out.min <= lo <= hi <= out.max):
        raise ConfigError(
            f"{where} requant clamp [{lo}, {hi}] must lie inside the output register "
            f"{out.describe()}; fix 'requant.clamp_low'/'requant.clamp_high'"
        )
    if hw.requant.scheme == "two_stage" and hw.requant.multiplier_bits > 31:
        raise ConfigError(
            f"{where} 'requant.multiplier_bits' = {hw.requant.multiplier_bits}: the two_stage "
            "requantizer's high multiply (SaturatingRoundingDoublingHighMul) takes at most a "
            "31-bit M0; set requant.multiplier_bits = 31"
        )
    if hw.schedule.order == "time_bin" and (hw.mac.operand != "offset"
                                             or hw.mac.pre_add_width != 1):
        raise ConfigError(
            f"{where} 'schedule.order' = 'time_bin' sums each bin exactly in one addition; it "
            "needs mac.operand = 'offset' and mac.pre_add_width = 1"
        )
    if hw.mac.pre_add_width > 1 and hw.mac.operand != "raw":
        pass  # a pre-add stage on offset operands is allowed (a generic design choice)
    if cfg.weights.signed and cfg.weights.bits < 2:
        raise ConfigError(
            f"{src}: 'weights.bits' = {cfg.weights.bits} is too narrow for signed weights; "
            f"allowed 2..{MAX_BITS} (or weights.signed = false)"
        )
