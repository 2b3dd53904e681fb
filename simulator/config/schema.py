"""The whole config schema: the sections by name (which may be set per layer), the unit of
every key, the validated :class:`HwConfig` with its per-layer view :class:`LayerHw`, and the
rows (key, default, allowed, meaning) that docs/hwconfig.md and ``config show`` print."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from .neuromorphic import DenseConfig, NeuromorphicConfig, NeuronConfig, ProdNeuronConfig
from .sections import (
    AccumulatorConfig,
    ClockConfig,
    CombinerConfig,
    EnergyConfig,
    MacConfig,
    ReadoutConfig,
    ReportConfig,
    RequantConfig,
    ScheduleConfig,
    SpikesConfig,
    WeightsConfig,
)

LAYER_KEYS = ("feature", "output")


SECTIONS: dict[str, type] = {
    "spikes": SpikesConfig,
    "weights": WeightsConfig,
    "accumulator": AccumulatorConfig,
    "mac": MacConfig,
    "requant": RequantConfig,
    "combiner": CombinerConfig,
    "schedule": ScheduleConfig,
    "clock": ClockConfig,
    "energy": EnergyConfig,
    "readout": ReadoutConfig,
    "report": ReportConfig,
    "neuromorphic": NeuromorphicConfig,
    "dense": DenseConfig,
    "prodneuron": ProdNeuronConfig,
    "neuron": NeuronConfig,
}
LAYER_SECTIONS = ("spikes", "accumulator", "mac", "requant", "combiner", "schedule", "dense",
                  "prodneuron", "neuron")

# Unit of every key, for docs/hwconfig.md ("-" = a name or flag without a unit).
UNITS: dict[str, str] = {
    "spikes.bits": "bits",
    "spikes.signed": "-",
    "spikes.quantizer": "-",
    "spikes.rounding": "-",
    "weights.bits": "bits",
    "weights.signed": "-",
    "weights.capacity_kib": "KiB",
    "weights.banks": "banks",
    "weights.word_bits": "bits",
    "weights.read_ports": "ports per bank",
    "accumulator.bits": "bits",
    "accumulator.overflow": "-",
    "accumulator.adder_tree_width": "products per cycle",
    "mac.lanes": "lanes",
    "mac.operand": "-",
    "mac.pre_add_width": "products",
    "mac.pre_add_bits": "bits",
    "mac.pre_add_overflow": "-",
    "requant.scheme": "-",
    "requant.rounding": "-",
    "requant.multiplier_bits": "bits",
    "requant.output_bits": "bits",
    "requant.output_signed": "-",
    "requant.shift": "bits",
    "requant.multipliers": "-",
    "requant.clamp_low": "code",
    "requant.clamp_high": "code",
    "requant.throughput": "values per cycle",
    "requant.latency": "cycles",
    "requant.exc_divisors": "factor indices",
    "requant.inh_divisors": "factor indices",
    "requant.inh_pre_offset": "code",
    "requant.inh_post_offset": "code",
    "combiner.exc_divisor": "factor index",
    "combiner.inh_divisor": "factor index",
    "combiner.inh_offset": "code",
    "combiner.scale": "ratio",
    "combiner.zero_point": "code",
    "combiner.cast_rounding": "-",
    "combiner.clip_low": "code",
    "combiner.clip_high": "code",
    "schedule.mode": "-",
    "schedule.order": "-",
    "schedule.time_bins": "bins",
    "clock.mhz": "MHz",
    "energy.mult_pj_per_bit2": "pJ/bit^2",
    "energy.add_pj_per_bit": "pJ/bit",
    "energy.sram_read_pj_per_bit": "pJ/bit",
    "energy.float32_mult_pj": "pJ",
    "readout.concat": "-",
    "report.compare_with": "preset or path",
    "report.headroom": "-",
    "neuromorphic.datapath": "-",
    "neuromorphic.timesteps": "time steps",
    "neuromorphic.emit": "-",
    "neuromorphic.readout": "-",
    "dense.fold_scales": "-",
    "neuron.spike_code": "output codes per spike",
    "neuron.bias": "-",
    "dense.weight_bits": "bits",
    "dense.sign_mode": "-",
    "dense.double_weights": "-",
    "dense.weight_exp": "shift (bits)",
    "prodneuron.multiplier_bits": "bits",
    "prodneuron.shift": "bits",
    "prodneuron.product_bits": "bits",
    "prodneuron.product_overflow": "-",
    "prodneuron.vth": "value",
    "neuron.du": "1/4096 per step",
    "neuron.dv": "1/4096 per step",
    "neuron.vth": "value / 2^6",
    "neuron.bias_mant": "value",
    "neuron.bias_exp": "shift (bits)",
}
TOP_KEYS = {"name": str, "description": str}


@dataclass(frozen=True)
class LayerHw:
    """The hardware one layer runs on, after per-layer overrides."""

    spikes: SpikesConfig
    accumulator: AccumulatorConfig
    mac: MacConfig
    requant: RequantConfig
    combiner: CombinerConfig
    schedule: ScheduleConfig
    dense: DenseConfig = DenseConfig()
    prodneuron: ProdNeuronConfig = ProdNeuronConfig()
    neuron: NeuronConfig = NeuronConfig()


@dataclass(frozen=True)
class HwConfig:
    """A validated hardware configuration."""

    name: str
    description: str
    source: str
    sha256: str
    spikes: SpikesConfig
    weights: WeightsConfig
    accumulator: AccumulatorConfig
    mac: MacConfig
    requant: RequantConfig
    combiner: CombinerConfig
    schedule: ScheduleConfig
    clock: ClockConfig
    energy: EnergyConfig
    readout: ReadoutConfig
    report: ReportConfig
    layer_overrides: dict[str, dict[str, dict[str, Any]]]
    raw: dict[str, Any]
    neuromorphic: NeuromorphicConfig = NeuromorphicConfig()
    dense: DenseConfig = DenseConfig()
    prodneuron: ProdNeuronConfig = ProdNeuronConfig()
    neuron: NeuronConfig = NeuronConfig()

    def for_layer(self, layer: str) -> LayerHw:
        ov = self.layer_overrides.get(layer, {})
        parts = {}
        for sec in LAYER_SECTIONS:
            base = getattr(self, sec)
            parts[sec] = dataclasses.replace(base, **ov.get(sec, {})) if sec in ov else base
        return LayerHw(**parts)

    def to_dict(self) -> dict[str, Any]:
        return self.raw


# What the keys without a range or a list of choices accept (as _check_value enforces).
FREE_FORM_ALLOWED: dict[str, str] = {
    "requant.shift": "'auto' | integer 0..62",
    "requant.clamp_low": "integer inside the output register | 'register'",
    "requant.clamp_high": "integer inside the output register | 'register'",
    "requant.exc_divisors": "list of non-empty lists of indices 0..3",
    "requant.inh_divisors": "list of non-empty lists of indices 0..3",
    "combiner.clip_high": "integer | 'input_max' | 'register'",
    "report.compare_with": "'' | preset name | config file path",
    "dense.weight_exp": "'auto' | integer -24..24",
    "prodneuron.shift": "'auto' | integer 0..62",
    "neuron.vth": "'auto' | integer 0..131071",
}


def schema_units() -> dict[str, str]:
    """Unit of every dotted key (``-`` for names and flags)."""
    return dict(UNITS)


def schema_rows() -> list[tuple[str, str, str, str]]:
    """(dotted key, default, allowed, meaning) for every key, for docs and ``config show``."""
    rows = []
    for sname, cls in SECTIONS.items():
        for f in fields(cls):
            meta = f.metadata
            if "choices" in meta:
                allowed = " | ".join(meta["choices"])
            elif "range" in meta:
                allowed = f"{meta['range'][0]}..{meta['range'][1]}"
            elif isinstance(f.default, bool):
                allowed = "true | false"
            else:
                allowed = FREE_FORM_ALLOWED.get(f"{sname}.{f.name}", "see meaning")
            rows.append((f"{sname}.{f.name}", repr(f.default), allowed, meta.get("doc", "")))
    return rows
