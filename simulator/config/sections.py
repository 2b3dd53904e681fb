"""Schema of the MAC-array datapath and system sections: spikes, weights, accumulator, mac,
requant, combiner, schedule, clock, energy, readout, report (one frozen dataclass each).

Register widths are in bits; spike, accumulator, pre-add and requantizer-output registers
are two's complement when signed. ``requant_clamp`` gives the requantizer's clamp range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..fixedpoint import MAX_BITS, OVERFLOW_POLICIES, ROUNDING_MODES

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


def requant_clamp(rq: RequantConfig) -> tuple[int, int]:
    """The requantizer's clamp range as integers."""
    from ..fixedpoint import Register

    out = Register(rq.output_bits, rq.output_signed)
    lo = out.min if rq.clamp_low == "register" else int(rq.clamp_low)
    hi = out.max if rq.clamp_high == "register" else int(rq.clamp_high)
    return lo, hi
