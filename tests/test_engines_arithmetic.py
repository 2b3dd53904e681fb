"""The engine arithmetic keys on their own (no engine needed): two_stage against a literal
transcription of gemmlowp's integer routines (extremes the engine tests cannot reach),
float64 and dequant_quant ties, the div_f32 / mul_inv_f32 input quantizers, config checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.config import ConfigError, load_config
from simulator.fixedpoint import Register
from simulator.units.requantizer import requantize
from simulator.units.spike_buffer import quantize_spikes

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
WIDE = (-(1 << 40), 1 << 40)


def _srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul, int32 semantics, C division toward zero."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    num = ab + nudge
    q = abs(num) // (1 << 31)
    return q if num >= 0 else -q


def _rdbpot(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT (mask / threshold form)."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def _quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: (M0 31-bit, exponent)."""
    q, shift = math.frexp(m)
    q_fixed = int(math.floor(abs(q) * (1 << 31) + 0.5))  # std::round: half away (q > 0)
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def _tflm(acc: int, m: float, last: str) -> int:
    m0, shift = _quantize_multiplier(m)
    left, right = max(shift, 0), max(-shift, 0)
    hi = _srdhm(acc * (1 << left), m0)
    if last == "half_away":
        return _rdbpot(hi, right)
    return (hi + ((1 << right) >> 1)) >> right  # LiteRT optimized: rounding shift, half up


@pytest.mark.parametrize("last", ["half_away", "half_up"])
def test_two_stage_equals_gemmlowp_integer_routines(last: str) -> None:
    rng = np.random.default_rng(7)
    sx, sy = float(np.float32(1 / 255)), float(np.float32(0.0371))
    sw = np.float32(rng.uniform(1e-4, 0.05, size=64)).astype(np.float64)
    sw[:5] = [sy / sx * 0.5, sy / sx * 0.25, sy / sx / 6, sy / sx * 3.0,  # ties; one > 1
              sy / sx * 2.0**-33]  # below 2^-32: TFLite uses a zero multiplier
    acc = rng.integers(-(1 << 20), 1 << 20, size=(200, 64))
    acc[0] = INT32_MAX // 4  # extremes: the left shift of the multiplier above 1 stays int32
    acc[1] = INT32_MIN // 4
    acc[2:6, :4] = np.array([[1, 2, 3, 12]]) * np.array([[1], [-1], [3], [-3]])  # exact ties
    codes, unclamped, _ = requantize(acc, "two_stage", sx, sw, sy, 0, last, WIDE)
    want = np.array([[_tflm(int(a), sx * float(s) / sy, last) for a, s in zip(row, sw, strict=True)]
                     for row in acc])
    assert np.array_equal(unclamped, want)
    # the stages are really two roundings: a single rounding differs on some values
    single, _, _ = requantize(acc, "fixed_point", sx, sw, sy, 0, last, WIDE)
    assert (single != codes).any()


def test_float64_ties_away_and_dequant_quant_two_roundings() -> None:
    acc = np.array([[3, -3, 5, -5, 1 << 25]], dtype=np.int64)
    sw = np.full(5, 0.5)
    c, _, _ = requantize(acc, "float64", 1.0, sw, 1.0, 10, "half_away", WIDE)
    assert c.tolist() == [[12, 8, 13, 7, 10 + (1 << 24)]]
    c, _, _ = requantize(acc, "float64", 1.0, sw, 1.0, 10, "half_even", WIDE)
    assert c.tolist() == [[12, 8, 12, 8, 10 + (1 << 24)]]
    # dequantize then quantize: f32(acc) first (2^24 + 1 -> 2^24), then f32(v / sy)
    acc = np.array([[(1 << 24) + 1, 7]], dtype=np.int64)
    c, _, _ = requantize(acc, "dequant_quant", 1.0, np.array([1.0, 1.0]), 2.0, 0,
                         "half_even", WIDE)
    assert c.tolist() == [[1 << 23, 4]]


def test_float_division_input_quantizers() -> None:
    reg = Register(8, False)
    s = np.float32(1 / 256)
    x = np.array([[0.5 * s, 1.5 * s, 2.5 * s, -1.0, 2.0]], dtype=np.float32)
    even, ev = quantize_spikes(x, float(s), 3, reg, "div_f32", "half_even")
    away, _ = quantize_spikes(x, float(s), 3, reg, "div_f32", "half_away")
    assert even.tolist() == [[3, 5, 5, 0, 255]] and (ev.clamp_low, ev.clamp_high) == (1, 1)
    assert away.tolist() == [[4, 5, 6, 0, 255]]
    # mul_inv_f32 rounds x * f32(1/s) once; div_f32 rounds x / s: they differ somewhere
    s = 0.0037
    mid = ((np.arange(255, dtype=np.float64) + 0.5) * s).astype(np.float32)
    x = np.concatenate([mid, np.nextafter(mid, np.float32(1)), np.nextafter(mid, np.float32(0))])
    x = x[None, :]
    a, _ = quantize_spikes(x, s, 0, reg, "div_f32", "half_even")
    b, _ = quantize_spikes(x, s, 0, reg, "mul_inv_f32", "half_even")
    d = np.flatnonzero(a != b)
    assert d.size
    xi = x.ravel()[d[0]]
    assert a.ravel()[d[0]] == np.rint(np.float32(xi / np.float32(s)))
    assert b.ravel()[d[0]] == np.rint(np.float32(xi * np.float32(np.float32(1) / np.float32(s))))


def test_config_keys() -> None:
    cfg = load_config("pytorch_fbgemm", ["requant.scheme='two_stage'", "spikes.quantizer=div_f32"])
    assert cfg.requant.scheme == "two_stage" and cfg.spikes.quantizer == "div_f32"
    with pytest.raises(ConfigError, match="at most a 31-bit M0"):
        load_config("tflm_reference", ["requant.multiplier_bits=32"])
    with pytest.raises(ConfigError, match="float64"):
        load_config("pytorch_fbgemm", ["requant.scheme='double'"])


ENGINE_PRESETS = ("onnxruntime", "onnxruntime_avx2", "onnxruntime_matmulinteger",
                  "onnxruntime_matmulinteger_avx2", "litert_xnnpack", "litert_optimized",
                  "litert_reference", "tflm_reference")


@pytest.mark.parametrize("preset", ENGINE_PRESETS)
def test_engine_presets_stepwise_equals_fast(preset: str) -> None:
    """The cycle-by-cycle engine gives the same bits, events and cycles on every new preset."""
    import engine_oracle as E

    from simulator.engine import simulate
    from simulator.engine.stepwise import compare_with_fast, simulate_stepwise

    net = E.random_network(9, k=12, places=6, modules=2)
    x = E.make_inputs(9, 4, net)
    cfg = load_config(preset)
    assert compare_with_fast(simulate(net, cfg, x), simulate_stepwise(net, cfg, x)) == []
