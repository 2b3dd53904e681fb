"""Hardware configuration: the one schema, TOML loading, validation and ``--set`` overrides.

A config is a TOML file with the sections below (every key documented in docs/hwconfig.md).
Any section except ``[layers]`` may be repeated per layer as ``[layers.<layer>.<section>]``
(layer = ``feature`` or ``output``) to override single keys for that layer.

Errors (:class:`ConfigError`) always name the file, the dotted key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .fixedpoint import MAX_BITS, OVERFLOW_POLICIES, ROUNDING_MODES

PRESET_DIR = Path(__file__).resolve().parent / "hwconfig"  # in the wheel; ./hwconfig links here
LAYER_KEYS = ("feature", "output")


class ConfigError(ValueError):
    """A hardware config that cannot be used as written."""


# Rounding names used elsewhere (C, numpy, fxpmath, IEEE 754, SystemC) -> the name used here.
# Only a hint in error messages: a config must spell the mode exactly.
ROUNDING_ALIASES = {
    "trunc": "toward_zero",  # C trunc() and fxpmath 'trunc' round toward zero, not floor
    "truncate": "toward_zero",
    "fix": "toward_zero",
    "to_zero": "toward_zero",
    "round_toward_zero": "toward_zero",
    "down": "floor",
    "round_down": "floor",
    "up": "ceil",
    "ceiling": "ceil",
    "round": "half_away",  # C round()
    "nearest": "half_even",
    "rint": "half_even",
    "around": "half_even",
    "nearest_even": "half_even",
    "round_half_even": "half_even",
    "banker": "half_even",
    "convergent": "half_even",
    "nearest_posinf": "half_up",
    "round_half_up": "half_up",
    "nearest_neginf": "half_down",
    "round_half_down": "half_down",
    "nearest_away": "half_away",
    "round_half_away": "half_away",
}


def _did_you_mean(word: Any, options: Any, prefix: str = "") -> str:
    """' (did you mean 'x'?)' for a close match of ``word`` among ``options``, else ''."""
    if not isinstance(word, str):
        return ""
    opts = [str(o) for o in options]
    lower = {o.lower(): o for o in opts}
    if word.lower() in lower:
        best = lower[word.lower()]
    elif word.lower() in ROUNDING_ALIASES and ROUNDING_ALIASES[word.lower()] in opts:
        best = ROUNDING_ALIASES[word.lower()]
    else:
        close = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)
        if not close:
            return ""
        best = lower[close[0]]
    return f" (did you mean '{prefix}{best}'?)"


# --- section dataclasses -------------------------------------------------------------------
# Each field's metadata: "doc" (meaning and unit), and either "range" (lo, hi) for numbers or
# "choices" for strings. The schema below is the single source of truth for validation and docs.


def _f(default: Any, doc: str, **meta: Any) -> Any:
    return field(default=default, metadata={"doc": doc, **meta})


@dataclass(frozen=True)
class SpikesConfig:
    """Input spike register and the host-side quantizer of float spikes."""

    bits: int = _f(
        8,
        "width of the input spike register (bits); narrower than the model's 8-bit "
        "activations re-quantizes the activation quantizer feeding it (docs/hwconfig.md)",
        range=(1, MAX_BITS),
    )
    signed: bool = _f(False, "input codes are signed (two's complement)")
    quantizer: str = _f(
        "fma_f32",
        "how float spikes become codes: fma_f32 = torch QuantStub, "
        "clamp(round(fmaf(x, f32(1/scale), zp))) with a single float32 rounding; "
        "div_f32 = clamp(round(f32(x / scale)) + zp) (ONNX Runtime QuantizeLinear, TFLite "
        "reference QUANTIZE); mul_inv_f32 = clamp(round(f32(x * f32(1/scale))) + zp) (LiteRT "
        "XNNPACK / optimized QUANTIZE); float64 = round(x / scale + zp) in float64",
        choices=("fma_f32", "div_f32", "mul_inv_f32", "float64"),
    )
    rounding: str = _f("half_even", "rounding of the float quantizer", choices=ROUNDING_MODES)


@dataclass(frozen=True)
class WeightsConfig:
    """Weight memory: word organisation, banks and capacity."""

    bits: int = _f(
        8,
        "width of one stored weight (bits); narrower than the model's weights re-quantizes "
        "them per channel (docs/hwconfig.md)",
        range=(1, MAX_BITS),
    )
    signed: bool = _f(True, "weights are two's complement")
    capacity_kib: int = _f(
        32768, "capacity in KiB; must hold all layers of the largest module", range=(1, 1 << 40)
    )
    banks: int = _f(8, "independent banks read in parallel", range=(1, 1 << 16))
    word_bits: int = _f(64, "width of one bank word (bits)", range=(1, 4096))
    read_ports: int = _f(1, "read ports per bank (words per bank per cycle)", range=(1, 64))


@dataclass(frozen=True)
class AccumulatorConfig:
    """Per-lane accumulator register."""

    bits: int = _f(32, "accumulator width (bits, signed)", range=(2, MAX_BITS))
    overflow: str = _f(
        "saturate",
        "what an addition outside the range does: wrap (two's complement), saturate, "
        "or error (stop the run)",
        choices=OVERFLOW_POLICIES,
    )
    adder_tree_width: int = _f(
        1,
        "products summed exactly per lane per cycle before one add into the accumulator",
        range=(1, 1 << 16),
    )


@dataclass(frozen=True)
class MacConfig:
    """MAC array: lanes and an optional pre-add stage (e.g. AVX2 VPMADDUBSW int16 pairs)."""

    lanes: int = _f(64, "parallel MAC lanes (one output neuron per lane)", range=(1, 1 << 20))
    operand: str = _f(
        "offset",
        "offset: multiply (x - zx) * (w - zw); raw: multiply raw codes x * w and subtract "
        "zx * sum(w) afterwards (as fbgemm does)",
        choices=("offset", "raw"),
    )
    pre_add_width: int = _f(
        1, "products summed in a pre-add register before the adder tree (1 = none)",
        range=(1, 64),
    )
    pre_add_bits: int = _f(16, "pre-add register width (bits, signed)", range=(2, MAX_BITS))
    pre_add_overflow: str = _f(
        "saturate", "pre-add register overflow policy", choices=OVERFLOW_POLICIES
    )


@dataclass(frozen=True)
class RequantConfig:
    """Requantizer: accumulator -> output code."""

    scheme: str = _f(
        "fbgemm",
        "fbgemm: float32 m=f32(f32(sx*sw)/sy), v=f32(acc)*m; qnnpack: m=f32(f32(sw*sx)*f32(1/sy)); "
        "fixed_point: acc*M0 >> shift with an integer M0, one rounding; two_stage: gemmlowp/"
        "TFLite SaturatingRoundingDoublingHighMul (half up) then a rounding right shift "
        "(requant.rounding); float64: v=acc*(sx*sw/sy) in float64; dequant_quant: "
        "v=f32(f32(acc)*f32(sx*sw)), q=round(f32(v/sy))+zy (two float32 roundings); "
        "seed_floor_divide: the seed's floor divisions by scale factors (split layout)",
        choices=("fbgemm", "qnnpack", "fixed_point", "two_stage", "float64", "dequant_quant",
                 "seed_floor_divide"),
    )
    rounding: str = _f(
        "half_even",
        "rounding of the scaled value (two_stage: of the final right shift; the high multiply "
        "always rounds half up)",
        choices=ROUNDING_MODES,
    )
    multiplier_bits: int = _f(
        31, "fixed_point, two_stage (<= 31): width of the multiplier M0 (bits)", range=(2, 32)
    )
    shift: int | str = _f(
        "auto",
        "fixed_point: right shift after the multiply; 'auto' = per channel, M0 normalised to "
        "[2^(b-1), 2^b); an integer = one shift for every channel, M0 = round(m * 2^shift)",
    )
    multipliers: str = _f(
        "scales",
        "where the per-channel multipliers come from: scales = recomputed from the model's "
        "scales; model = the engine's own stored in the model (m{i}.{layer}.requant.m0 + .shift "
        "for fixed_point/two_stage, .requant.multiplier for fbgemm/qnnpack/float64)",
        choices=("scales", "model"),
    )
    output_bits: int = _f(8, "output register width (bits)", range=(1, MAX_BITS))
    output_signed: bool = _f(False, "output codes are signed")
    clamp_low: int | str = _f("register", "lowest output code, or 'register' for its minimum")
    clamp_high: int | str = _f("register", "highest output code, or 'register' for its maximum")
    throughput: int = _f(1, "accumulators requantized per cycle", range=(1, 1 << 20))
    latency: int = _f(3, "pipeline latency (cycles) of the requantizer", range=(0, 1 << 16))
    exc_divisors: tuple = _f(
        ((0, 2), (2,)),
        "seed: excitatory floor divisions, each a product of scale-factor indices",
    )
    inh_divisors: tuple = _f(((1, 3), (3,)), "seed: inhibitory floor divisions")
    inh_pre_offset: int = _f(127, "seed: subtracted from the inhibitory sum before dividing",
                             range=(-(1 << 31), 1 << 31))
    inh_post_offset: int = _f(127, "seed: added to the inhibitory result after dividing",
                              range=(-(1 << 31), 1 << 31))


@dataclass(frozen=True)
class CombinerConfig:
    """Combining add of the split excitatory/inhibitory layout (seed)."""

    exc_divisor: int = _f(2, "scale-factor index dividing the excitatory value", range=(0, 3))
    inh_divisor: int = _f(2, "scale-factor index dividing the inhibitory value", range=(0, 3))
    inh_offset: int = _f(127, "subtracted from the inhibitory value before rescaling",
                         range=(-(1 << 31), 1 << 31))
    scale: float = _f(58.0, "combining scale (multiplier after the division)", range=(0, 1e12))
    zero_point: int = _f(61, "combining zero point", range=(-(1 << 31), 1 << 31))
    cast_rounding: str = _f("toward_zero", "float -> int cast of each rescaled term",
                            choices=ROUNDING_MODES)
    clip_low: int = _f(0, "lowest combined code", range=(-(1 << 62), 1 << 62))
    clip_high: int | str = _f(
        "input_max",
        "highest combined code: an integer, 'input_max' (the query's largest input code, as "
        "the seed does) or 'register' (the output register's maximum)",
    )


@dataclass(frozen=True)
class ScheduleConfig:
    """Dataflow schedule."""

    mode: str = _f(
        "dense",
        "dense: every input is streamed; event_driven: inputs equal to the zero point are "
        "skipped (cycles depend on activity)",
        choices=("dense", "event_driven"),
    )
    order: str = _f(
        "index",
        "accumulation order: index (ascending input); time (per query larger code first, "
        "ties by index: spike time); time_bin (time_bins bins of the code range, each summed "
        "exactly, one accumulator addition per bin)",
        choices=("index", "time", "time_bin"),
    )
    time_bins: int = _f(8, "order = time_bin: equal bins of the input code range",
                        range=(1, 1 << 16))


@dataclass(frozen=True)
class ClockConfig:
    mhz: float = _f(200.0, "clock frequency (MHz)", range=(1e-6, 1e6))


@dataclass(frozen=True)
class EnergyConfig:
    """Energy per operation, scaled by the configured widths (formula in docs/hwconfig.md).

    Defaults: Horowitz, ISSCC 2014, 45 nm at 0.9 V (32-bit add 0.1 pJ, 32-bit multiply 3.1 pJ,
    float32 multiply 3.7 pJ, 64-bit read of an 8 KB SRAM 10 pJ).
    """

    mult_pj_per_bit2: float = _f(
        0.003027,
        "integer multiplier: pJ per product of its operand widths (a x b bits costs "
        "a*b times this); default 3.1 pJ / (32*32)",
        range=(0, 1e9),
    )
    add_pj_per_bit: float = _f(
        0.003125,
        "integer adder and the register it writes: pJ per bit of width; default 0.1 pJ / 32",
        range=(0, 1e9),
    )
    sram_read_pj_per_bit: float = _f(
        0.15625,
        "weight memory read: pJ per bit read (whole words); default 10 pJ / 64 bits",
        range=(0, 1e9),
    )
    float32_mult_pj: float = _f(
        3.7, "one float32 multiply (requant.scheme fbgemm, qnnpack, seed_floor_divide) (pJ)",
        range=(0, 1e9),
    )


@dataclass(frozen=True)
class ReadoutConfig:
    """How the modules' outputs are joined before the argmax."""

    concat: str = _f(
        "requantize",
        "requantize: every module's codes re-expressed on module 0's output scale and zero "
        "point, as VPRTempoQuant's quantized torch.cat does; codes: each module's own codes",
        choices=("requantize", "codes"),
    )


@dataclass(frozen=True)
class ReportConfig:
    compare_with: str = _f(
        "", "preset or config file run on the same model and inputs; the report counts "
        "differing codes and argmaxes ('' = none)"
    )
    headroom: str = _f(
        "exact",
        "exact: min_safe_acc_bits is the exact width of the widest partial sum (may evaluate "
        "pairs step by step); bound: when no event is possible, report the final sums' width "
        "and an abs-sum upper bound instead (faster; event counts stay exact)",
        choices=("exact", "bound"),
    )


# --- neuromorphic datapath (Loihi-2 class, as Lava 0.10's bit-accurate models; see
# docs/neuromorphic.md)


@dataclass(frozen=True)
class NeuromorphicConfig:
    """Which datapath runs: the MAC array (off) or a Loihi-class time-stepped pipeline."""

    datapath: str = _f(
        "off",
        "off: the MAC-array datapath; prodneuron: graded spikes, Dense -> ProdNeuron "
        "(x M0_j >> shift) per layer, one query per time step; lif: Dense -> LIF per layer, "
        "spiking, timesteps steps per query, readout = output spike counts",
        choices=("off", "prodneuron", "lif"),
    )
    timesteps: int = _f(32, "lif: time steps per query (u, v and Dense buffers reset between "
                        "queries)", range=(1, 1 << 20))
    readout: str = _f(
        "spike_count",
        "lif: scores = output spike counts (spike_count) or counts with ties broken by the "
        "final v (spike_count_then_v: count * 2^24 + v)",
        choices=("spike_count", "spike_count_then_v"),
    )
    emit: str = _f(
        "offset",
        "prodneuron: what a layer sends to the next Dense: offset = ProdNeuron's unclamped v "
        "(as Lava does); code = clamp(v + zy) - zy (the output register's clamp applied)",
        choices=("offset", "code"),
    )


@dataclass(frozen=True)
class DenseConfig:
    """Loihi-class Dense synapses: Lava's weight rules and int32 sums."""

    weight_bits: int = _f(8, "num_weight_bits: weights floored to this many bits (+ sign)",
                          range=(1, 8))
    sign_mode: str = _f("auto", "weight sign mode (auto = from the weights' signs, as Lava)",
                        choices=("auto", "mixed", "excitatory", "inhibitory"))
    double_weights: bool = _f(
        False, "store 2w and add -1 to weight_exp: odd int8 weights stay exact at 8 bits"
    )
    fold_scales: bool = _f(
        False,
        "lif: fold the per-channel requantization multipliers into the weights, "
        "w' = rint(w * m_j / max(m) * g) with g putting max |w'| at 127 (lossy)",
    )
    weight_exp: int | str = _f(
        "auto",
        "shared weight exponent: sum << e (e > 0) or >> -e (floor); 'auto' = -1 with "
        "double_weights for prodneuron, else the smallest right shift for which no input can "
        "take a_in << 6 past 24 bits",
    )


@dataclass(frozen=True)
class ProdNeuronConfig:
    """ProdNeuron as requantizer: v = (a * M0_j) >> shift, |v| <= vth sent as 0."""

    multiplier_bits: int = _f(8, "width of the per-neuron multiplier M0_j (bits, unsigned)",
                              range=(1, 31))
    shift: int | str = _f(
        "auto", "one right shift per layer (floor); 'auto' = the largest with every M0_j "
        "within multiplier_bits"
    )
    product_bits: int = _f(32, "product register width (bits, signed; Lava: int32)",
                           range=(2, 64))
    product_overflow: str = _f("wrap", "product register overflow policy (Lava wraps)",
                               choices=OVERFLOW_POLICIES)
    vth: int = _f(0, "graded output threshold: |v| <= vth is sent as 0", range=(0, 1 << 31))


@dataclass(frozen=True)
class NeuronConfig:
    """LIF neuron (Lava PyLifModelBitAcc): 24-bit u and v, 12-bit decays."""

    du: int = _f(4095, "current decay (4095 = u holds only this step's input)", range=(0, 4095))
    dv: int = _f(0, "voltage decay (0 = no leak)", range=(0, 4095))
    vth: int | str = _f(
        "auto",
        "threshold mantissa (spike when v > vth << 6); 'auto' = one spike per spike_code "
        "output-code units (needs the model's scales)",
    )
    spike_code: float = _f(255.0, "vth = 'auto': output-code units per spike (255 = a neuron at "
                           "code 255 spikes every step)", range=(1e-3, 1e9))
    bias: str = _f(
        "fixed",
        "fixed: bias_mant << bias_exp for every neuron; zero_point: per neuron from the model "
        "(a hidden layer's output zero point, minus the previous layer's zero point times the "
        "weight row sum at its spike rate)",
        choices=("fixed", "zero_point"),
    )
    bias_mant: int = _f(0, "bias mantissa (signed 13-bit)", range=(-4096, 4095))
    bias_exp: int = _f(0, "bias exponent (bias = bias_mant << bias_exp)", range=(0, 7))

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


# --- loading --------------------------------------------------------------------------------


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to an existing file, or the name of a preset in hwconfig/ (with or without .toml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".toml") else p.name
    cand = PRESET_DIR / f"{stem}.toml"
    if p.parent == Path(".") and cand.is_file():
        return cand
    raise ConfigError(
        f"{name_or_path}: no such config file or preset; presets: {', '.join(preset_names())}"
    )


def load_config(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> HwConfig:
    """Load, override (``key=value`` strings, TOML values) and validate a hardware config."""
    path = resolve_config_path(name_or_path)
    src = str(path)
    blob = read_config_bytes(path)
    raw = parse_toml(blob, src)
    digest = hashlib.sha256(blob)
    for item in overrides:
        apply_override(raw, item, src)
        digest.update(b"\0" + item.encode())
    try:
        return build_config(raw, src, digest.hexdigest(), default_name=path.stem)
    except ConfigError as exc:
        raise ConfigError(str(exc) + _override_note(str(exc), overrides)) from None


MAX_CONFIG_BYTES = 1 << 20
"""Largest config file read (a hardware config is a few kB)."""

MAX_TOML_DEPTH = 32
"""Deepest nesting of tables and arrays in a config (the schema needs 4)."""


def read_config_bytes(path: Path) -> bytes:
    """A config file's bytes, at most MAX_CONFIG_BYTES; OS errors become one ConfigError line."""
    try:
        with open(path, "rb") as fh:
            blob = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(blob) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_CONFIG_BYTES:,} bytes; a hardware config is a few kB "
            "of TOML (is this the right file?)"
        )
    return blob


def parse_toml(blob: bytes, src: str) -> dict[str, Any]:
    """Parse a config's TOML text; every problem is one ConfigError line naming ``src``."""
    if blob.startswith(b"\xef\xbb\xbf"):
        raise ConfigError(
            f"{src}: starts with a UTF-8 byte order mark (BOM), which TOML does not allow; "
            "save the file as UTF-8 without BOM"
        )
    if blob.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{src}: is UTF-16 text; save it as UTF-8 (without BOM)")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{src}: not UTF-8 text (byte {exc.start} is 0x{blob[exc.start]:02x}); "
            "save it as UTF-8"
        ) from None
    depth = _bracket_depth(text)
    if depth > MAX_TOML_DEPTH:
        raise ConfigError(
            f"{src}: arrays or inline tables nested {depth} levels deep; a hardware config "
            f"needs at most 4 (limit {MAX_TOML_DEPTH})"
        )
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{src}: TOML syntax error: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"{src}: nested too deeply to parse; a hardware config needs at most 4 levels"
        ) from None
    if _dict_depth(raw) > MAX_TOML_DEPTH:
        raise ConfigError(
            f"{src}: tables nested more than {MAX_TOML_DEPTH} levels deep; a hardware config "
            "needs at most 4"
        )
    return raw


def _bracket_depth(text: str) -> int:
    """Upper bound of the nesting of [ ] and { } outside comments and strings (cheap, linear).

    Brackets inside strings are counted too; only a text with more than MAX_TOML_DEPTH of them
    open at once is refused, which no config of this schema has.
    """
    depth = best = 0
    for line in text.splitlines():
        code = line.split("#", 1)[0] if '"' not in line and "'" not in line else line
        for ch in code:
            if ch in "[{":
                depth += 1
                best = max(best, depth)
            elif ch in "]}":
                depth = max(depth - 1, 0)
    return best


def _dict_depth(node: Any, level: int = 0) -> int:
    """Nesting depth of parsed TOML (dicts and lists), iteratively."""
    best = level
    stack = [(node, level)]
    while stack:
        cur, lev = stack.pop()
        best = max(best, lev)
        if best > MAX_TOML_DEPTH:
            return best
        if isinstance(cur, dict):
            stack.extend((v, lev + 1) for v in cur.values())
        elif isinstance(cur, list):
            stack.extend((v, lev + 1) for v in cur)
    return best


def _override_note(msg: str, overrides: list[str] | tuple[str, ...]) -> str:
    """' (from --set k=v)' when the error is about a key set on the command line."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        parts = key.split(".")
        prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
        if any(f"'{p}'" in msg for p in prefixes):
            return f" (from --set {item})"
    return ""


def apply_override(raw: dict[str, Any], item: str, src: str = "--set") -> None:
    """Apply one ``dotted.key=value`` override (value parsed as TOML, else a bare string)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. accumulator.bits=24")
    key, _, text = item.partition("=")
    key = key.strip()
    text = text.strip()
    if _bracket_depth(text) > MAX_TOML_DEPTH:
        raise ConfigError(f"--set {key}=...: value nested too deeply (limit {MAX_TOML_DEPTH})")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"--set {item!r}: malformed key {key!r}")
    node = raw
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
        node = nxt
    node[parts[-1]] = value


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
    from .fixedpoint import Register

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


def requant_clamp(rq: RequantConfig) -> tuple[int, int]:
    """The requantizer's clamp range as integers."""
    from .fixedpoint import Register

    out = Register(rq.output_bits, rq.output_signed)
    lo = out.min if rq.clamp_low == "register" else int(rq.clamp_low)
    hi = out.max if rq.clamp_high == "register" else int(rq.clamp_high)
    return lo, hi


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
