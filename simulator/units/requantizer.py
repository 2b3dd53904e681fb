"""Requantizer: int64 accumulator values -> output codes (one value per lane per cycle).

Schemes (``requant.scheme``), for output neuron j with accumulator a, input scale sx, weight
scale sw_j, output scale sy and output zero point zy; f32() rounds to float32 (half even):

* ``fbgemm``  (torch fbgemm/x86): m_j = f32(f32(f32(sx) * f32(sw_j)) / f32(sy));
  v = f32(f32(a) * m_j); q = clamp(round(v) + zy).
* ``qnnpack`` (torch qnnpack):   m_j = f32(f32(f32(sw_j) * f32(sx)) * f32(1 / sy)); then as fbgemm.
* ``fixed_point`` (integer-only accelerators, gemmlowp/TFLite style): the real multiplier
  sx*sw_j/sy (float64) becomes M0_j * 2**-shift_j with a ``requant.multiplier_bits``-bit M0
  (per-channel shifts, or one ``requant.shift`` for all channels);
  q = clamp(round(a * M0_j / 2**shift_j) + zy), the product held exactly (64-bit or wider).
* ``two_stage`` (gemmlowp / TFLite Micro / CMSIS-NN, LiteRT's optimized kernels): the same
  (M0_j, shift_j) with a 31-bit M0 (``requant.multiplier_bits``), applied in two narrowings:
  hi = SaturatingRoundingDoublingHighMul(a * 2**left_j, M0_j) = round_half_up(a * M0_j / 2**31)
  (the product is exact; ties toward +inf for both signs, as the nudge 2**30 / 1 - 2**30 with a
  division toward zero gives), then q = round(hi / 2**right_j) by ``requant.rounding``
  (RoundingDivideByPOT: half_away; LiteRT optimized: half_up). left_j = max(exponent_j, 0),
  right_j = max(-exponent_j, 0) where m_j = M0_j * 2**(exponent_j - 31).
* ``float64`` (LiteRT reference kernels): v = a * m_j in float64 with m_j = sx*sw_j/sy (float64
  of the float32 scales), q = clamp(round(v) + zy).
* ``dequant_quant`` (ONNX Runtime MatMulInteger -> Cast -> Mul -> QuantizeLinear):
  v = f32(f32(a) * f32(f32(sx) * f32(sw_j))), q = clamp(round(f32(v / f32(sy))) + zy): two
  float32 roundings (dequantize, then quantize with a float32 division).
* ``seed_floor_divide`` (the seed tutorial, split layout): floor divisions by products of the
  layer's scale factors (see :func:`seed_floor_divide`).

``round`` is ``requant.rounding`` (default half_even = torch's rint); clamp is
[``requant.clamp_low``, ``requant.clamp_high``]. Every clamp is counted per neuron.

``requant.multipliers = "model"`` replaces the multipliers recomputed from the scales by an
engine's own, stored in the model (:func:`model_multipliers`): (M0_j, shift_j) with
m_j = M0_j * 2**-shift_j for fixed_point and two_stage, a float m_j for fbgemm, qnnpack (it must
be a float32 value) and float64. dequant_quant and seed_floor_divide have no single multiplier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ConfigError
from ..fixedpoint import multiply_shift, quantize_multiplier, round_float, round_shift
from . import requant_kernel

HIGH_MUL_BITS = 31  # SaturatingRoundingDoublingHighMul keeps the high 32 bits of 2*a*M0


@dataclass
class ClampEvents:
    """Per-neuron counts of codes clamped at the low and high end (int64 (N,))."""

    low: np.ndarray
    high: np.ndarray
    first: tuple[int, int] | None  # (query, neuron) of the first clamp in query order


def float_multiplier(scheme: str, sx: float, sw: np.ndarray, sy: float) -> np.ndarray:
    """The float32 requantization multiplier per channel of the torch engines."""
    f32 = np.float32
    sx32 = f32(sx)
    sw32 = np.asarray(sw, dtype=np.float64).astype(f32)
    sy32 = f32(sy)
    if scheme == "fbgemm":
        return (sx32 * sw32) / sy32
    if scheme == "qnnpack":
        inv = f32(f32(1.0) / sy32)
        return (sw32 * sx32) * inv
    raise ValueError(f"no float multiplier for scheme {scheme!r}")


def fixed_point_multipliers(
    sx: float, sw: np.ndarray, sy: float, bits: int, shift: int | str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """(M0, shift) per channel, int64, with real multiplier sx * sw_j / sy (float64).

    shift "auto": M0_j normalised to [2**(bits-1), 2**bits) (quantize_multiplier).
    shift an integer s: one shift for every channel, M0_j = floor(m_j * 2**s + 1/2); an M0
    that rounds to 0 or needs more than ``bits`` bits is a ConfigError (never clipped).
    """
    real = np.float64(sx) * np.asarray(sw, dtype=np.float64) / np.float64(sy)
    if shift == "auto":
        return quantize_multiplier(real, bits)
    s = int(shift)
    m0 = np.floor(np.ldexp(real, s) + 0.5)
    if np.any(m0 < 1) or np.any(m0 >= 2.0**bits):
        j = int(np.flatnonzero((m0 < 1) | (m0 >= 2.0**bits))[0])
        side = "rounds to 0: raise" if m0[j] < 1 else f"needs more than {bits} bits: lower"
        raise ConfigError(
            f"'requant.shift' = {s}: channel {j}'s multiplier {real[j]:.6g} * 2^{s} {side} "
            "requant.shift (or widen requant.multiplier_bits), or use shift = 'auto'"
        )
    return m0.astype(np.int64), np.full(real.shape, s, dtype=np.int64)


@dataclass(frozen=True)
class StoredMultipliers:
    """An engine's own per-channel multipliers taken from the model.

    m0 / shift: int64 (N,), m_j = m0_j * 2**-shift_j (fixed_point, two_stage); multiplier:
    float (N,) (float32 values for fbgemm / qnnpack, float64 for float64). Unused fields None.
    """

    m0: np.ndarray | None = None
    shift: np.ndarray | None = None
    multiplier: np.ndarray | None = None

    def channels(self, ch: np.ndarray | slice | int) -> StoredMultipliers:
        """The multipliers of output channels ``ch`` (an index, slice or index array)."""
        pick = np.atleast_1d if isinstance(ch, (int, np.integer)) else np.asarray

        def sel(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else pick(a[ch])

        return StoredMultipliers(sel(self.m0), sel(self.shift), sel(self.multiplier))


INTEGER_MULTIPLIER_SCHEMES = ("fixed_point", "two_stage")
FLOAT_MULTIPLIER_SCHEMES = ("fbgemm", "qnnpack", "float64")


def model_multipliers(lay, rq, key: str = "") -> StoredMultipliers | None:
    """The multipliers the requantizer of layer ``lay`` uses under config section ``rq``.

    None with ``rq.multipliers == "scales"`` (recompute from the scales). With "model", the
    layer's stored arrays, checked against the scheme: a ConfigError naming the key and the fix
    when the model holds none, the wrong kind, an M0 wider than ``requant.multiplier_bits``,
    or a float32 scheme's multiplier that is not a float32 value (never rounded silently).
    ``key`` names the layer's arrays in messages (``m0.feature``).
    """
    if rq.multipliers == "scales":
        return None
    pre = key or f"m?.{lay.name}"
    opt = "'requant.multipliers' = 'model'"
    scheme = rq.scheme
    if scheme in INTEGER_MULTIPLIER_SCHEMES:
        if lay.requant_m0 is None:
            other = " (it stores a float requant.multiplier)" if (
                lay.requant_multiplier is not None) else ""
            raise ConfigError(
                f"{opt}: scheme {scheme!r} needs {pre}.requant.m0 and {pre}.requant.shift in "
                f"the model{other}; store them, or set requant.multipliers = 'scales'"
            )
        if rq.shift != "auto":
            raise ConfigError(
                f"'requant.shift' = {rq.shift!r}: with requant.multipliers = 'model' the "
                f"model's shifts ({pre}.requant.shift) are used; remove requant.shift"
            )
        bits = rq.multiplier_bits
        if scheme == "two_stage" and bits > HIGH_MUL_BITS:
            raise ConfigError(
                f"'requant.multiplier_bits' = {bits}: the two_stage requantizer's high multiply "
                f"takes at most a {HIGH_MUL_BITS}-bit M0; lower it"
            )
        wide = lay.requant_m0 >= (np.int64(1) << bits)
        if wide.any():
            j = int(np.flatnonzero(wide)[0])
            raise ConfigError(
                f"'requant.multiplier_bits' = {bits}: {pre}.requant.m0[{j}] = "
                f"{int(lay.requant_m0[j])} needs more bits; widen requant.multiplier_bits"
            )
        return StoredMultipliers(m0=lay.requant_m0, shift=lay.requant_shift)
    if scheme in FLOAT_MULTIPLIER_SCHEMES:
        if lay.requant_multiplier is None:
            other = " (it stores requant.m0/shift)" if lay.requant_m0 is not None else ""
            raise ConfigError(
                f"{opt}: scheme {scheme!r} needs a float {pre}.requant.multiplier in the "
                f"model{other}; store it, or set requant.multipliers = 'scales'"
            )
        m = np.asarray(lay.requant_multiplier, dtype=np.float64)
        if scheme != "float64":
            m32 = m.astype(np.float32)
            inexact = (m32.astype(np.float64) != m) | ~np.isfinite(m32) | (m32 == 0)
            if inexact.any():
                j = int(np.flatnonzero(inexact)[0])
                raise ConfigError(
                    f"{opt}: {pre}.requant.multiplier[{j}] = {float(m[j])!r} is not a float32 "
                    f"value, and scheme {scheme!r} multiplies in float32; store float32 multipliers"
                )
            return StoredMultipliers(multiplier=m32)
        return StoredMultipliers(multiplier=m)
    raise ConfigError(
        f"{opt}: scheme {scheme!r} has no single per-channel multiplier to store; use "
        "requant.multipliers = 'scales'"
    )


def requantize(
    acc: np.ndarray,
    scheme: str,
    sx: float,
    sw: np.ndarray,
    sy: float,
    zy: int,
    rounding: str,
    clamp: tuple[int, int],
    multiplier_bits: int = 31,
    shift: int | str = "auto",
    stored: StoredMultipliers | None = None,
    acc_range: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, ClampEvents]:
    """Requantize accumulators ``acc`` int64 (Q, N).

    ``stored`` (from :func:`model_multipliers`, channels matching ``acc``'s columns): the
    engine's own multipliers instead of those recomputed from the scales. ``acc_range``:
    (min, max) that every accumulator is guaranteed to lie in (the accumulator register's
    range), which may spare the compiled fixed-point loop a scan.
    Returns (codes int64 (Q, N), unclamped int64 (Q, N) = round(...) + zy, clamp events).
    """
    if stored is not None and stored.multiplier is None and stored.m0 is None:
        stored = None
    if scheme in ("fbgemm", "qnnpack"):
        if stored is not None and stored.multiplier is not None:
            m = np.asarray(stored.multiplier, dtype=np.float32)
        else:
            m = float_multiplier(scheme, sx, sw, sy)
        if rounding == "half_even" and acc.ndim == 2 and requant_kernel.available():
            return _fused(requant_kernel.requantize_float32(acc, m, zy, clamp), acc.shape)
        v = acc.astype(np.float32)
        v *= m[None, :]
        v = round_float(v, rounding) if rounding != "half_even" else np.rint(v, out=v)
        lo, hi = clamp
        vmin, vmax = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
        if lo - zy <= vmin and vmax <= hi - zy:
            # nothing to clamp; |v| <= 2**16 so adding zy in float32 is exact
            v += np.float32(zy)
            codes = v.astype(np.int64)
            n = acc.shape[1]
            none = np.zeros(n, dtype=np.int64)
            return codes, codes, ClampEvents(none, none.copy(), None)
        r = v.astype(np.int64)
    elif scheme == "fixed_point":
        if stored is not None and stored.m0 is not None:
            m0, shifts = stored.m0, stored.shift
        else:
            m0, shifts = fixed_point_multipliers(sx, sw, sy, multiplier_bits, shift)
        if acc.ndim == 2 and requant_kernel.available():
            fused = requant_kernel.requantize_fixed(acc, m0, shifts, rounding, zy, clamp,
                                                    acc_range)
            if fused is not None:
                return _fused(fused, acc.shape)
        r = multiply_shift(acc, m0[None, :], shifts[None, :], rounding)
    elif scheme == "two_stage":
        r = two_stage_requantize(acc, sx, sw, sy, rounding, multiplier_bits,
                                 None if stored is None or stored.m0 is None
                                 else (stored.m0, stored.shift))
    elif scheme == "float64":
        if stored is not None and stored.multiplier is not None:
            real = np.asarray(stored.multiplier, dtype=np.float64)
        else:
            real = np.float64(sx) * np.asarray(sw, dtype=np.float64) / np.float64(sy)
        r = round_float(acc.astype(np.float64) * real[None, :], rounding).astype(np.int64)
    elif scheme == "dequant_quant":
        f32 = np.float32
        m = (f32(sx) * np.asarray(sw, dtype=np.float64).astype(f32)).astype(f32)
        v = acc.astype(f32) * m[None, :]  # dequantize: one float32 rounding
        v = v / f32(sy)  # quantize: a float32 division, a second rounding
        r = round_float(v, rounding).astype(np.int64)
    else:
        raise ValueError(f"requantize does not handle scheme {scheme!r}")
    unclamped = r + zy
    codes, events = clamp_codes(unclamped, clamp)
    return codes, unclamped, events


def _fused(out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int],
           shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, ClampEvents]:
    """requantize's result from requant_kernel.py's (codes, unclamped, low, high, first)."""
    codes, unclamped, low, high, first = out
    n = shape[1]
    where = None if first < 0 else (first // n, first % n)
    return codes, unclamped, ClampEvents(low, high, where)


def two_stage_requantize(
    acc: np.ndarray,
    sx: float,
    sw: np.ndarray,
    sy: float,
    rounding: str,
    multiplier_bits: int = 31,
    m0_shift: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """gemmlowp's MultiplyByQuantizedMultiplier on int64 (Q, N) accumulators (no zero point).

    M0_j (``multiplier_bits`` <= 31 bits, normalised, rounded half away as TFLite's
    QuantizeMultiplier) and exponent_j with m_j = M0_j * 2**(exponent_j - bits);
    stage 1: SaturatingRoundingDoublingHighMul(a * 2**left_j, M0_j * 2**(31 - bits)), i.e.
    round_half_up(a * 2**left_j * M0'_j / 2**31); its only saturating case (both operands
    -2**31) cannot occur with M0 > 0. Stage 2: round(hi / 2**right_j) by ``rounding``.
    A multiplier below 2**-32 (exponent < -31) becomes 0, as TFLite's QuantizeMultiplier does.
    ``m0_shift``: stored (M0_j, shift_j) int64 with m_j = M0_j * 2**-shift_j (M0_j below
    2**multiplier_bits) instead of those computed from the scales.
    """
    if multiplier_bits > HIGH_MUL_BITS:
        raise ConfigError(
            f"'requant.multiplier_bits' = {multiplier_bits}: the two_stage requantizer's "
            f"high multiply takes at most a {HIGH_MUL_BITS}-bit M0; lower it"
        )
    if m0_shift is None:
        real = np.float64(sx) * np.asarray(sw, dtype=np.float64) / np.float64(sy)
        m0, shift = quantize_multiplier(real, multiplier_bits)
    else:
        m0, shift = (np.asarray(a, dtype=np.int64) for a in m0_shift)
    m0 = m0 << (HIGH_MUL_BITS - multiplier_bits)
    exponent = HIGH_MUL_BITS - (shift + (HIGH_MUL_BITS - multiplier_bits))
    tiny = exponent < -31  # TFLite's QuantizeMultiplier: below 2^-32 the multiplier is 0
    m0 = np.where(tiny, 0, m0)
    exponent = np.where(tiny, 0, exponent)
    left = np.maximum(exponent, 0)
    right = np.maximum(-exponent, 0)
    a = acc if not np.any(left) else acc * (np.int64(1) << left)[None, :]
    hi = multiply_shift(a, m0[None, :], np.full((1, m0.size), HIGH_MUL_BITS), "half_up")
    return round_shift(hi, np.broadcast_to(right[None, :], hi.shape), rounding)


def clamp_codes(values: np.ndarray, clamp: tuple[int, int]) -> tuple[np.ndarray, ClampEvents]:
    """Clamp int64 (Q, N) to [lo, hi], counting per neuron."""
    lo, hi = clamp
    low_mask = values < lo
    high_mask = values > hi
    first = None
    any_mask = low_mask | high_mask
    if any_mask.any():
        idx = int(np.flatnonzero(any_mask.ravel())[0])
        first = (idx // values.shape[1], idx % values.shape[1])
    ev = ClampEvents(
        low_mask.sum(axis=0).astype(np.int64), high_mask.sum(axis=0).astype(np.int64), first
    )
    return np.clip(values, lo, hi), ev


def seed_floor_divide(
    acc: np.ndarray,
    factors: np.ndarray,
    divisors: tuple[tuple[int, ...], ...],
    pre_offset: int,
    post_offset: int,
) -> np.ndarray:
    """The seed's requantization: ((acc - pre) // d1) // d2 ... + post, as float64 floor division.

    Each divisor is the product of the layer's scale factors named by index (seed order:
    [per-slice exc, per-slice inh, per-channel exc, per-channel inh]). Floor division follows
    numpy's float ``//`` exactly (floor of the quotient, computed via fmod), as the seed does;
    the result is truncated toward zero to int64 as the seed's ``astype(np.int32)``. Products of
    factors are rounded in the factors' float dtype (float32 factors give float32 products).
    """
    v = (acc - pre_offset).astype(np.float64)
    f = np.asarray(factors)
    # the product of scale factors is formed in the factors' own float type, as numpy does in
    # the seed (float32 factors: s0*s2 rounds to float32); the division itself is float64
    one = f.dtype.type(1) if f.dtype.kind == "f" else np.float64(1.0)
    for d in divisors:
        div = one
        for i in d:
            div = div * (f[i] if f.dtype.kind == "f" else np.float64(f[i]))
        v = np.floor_divide(v, np.float64(div))
    return np.trunc(v).astype(np.int64) + post_offset
