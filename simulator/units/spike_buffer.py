"""Input spike buffer: the host-side quantizer of float spikes and the input register check.

Float spikes x (float32; float64 input is rounded to float32 first, as torch does when it is
handed a float32 tensor) become quint8 codes with torch's QuantStub arithmetic:

    q = clamp(round(fmaf(x, f32(1 / scale), zero_point)), lo, hi)

one float32 rounding for the fused multiply-add (``spikes.quantizer = "fma_f32"``), or plain
float64 ``x / scale + zero_point`` (``float64``). The other engines round the scaled value to
float32 first and add the zero point after rounding:

    div_f32:      q = clamp(round(f32(x / f32(scale))) + zero_point)       (ONNX Runtime
                  QuantizeLinear: half_even; TFLite reference / TFLite Micro QUANTIZE: half_away)
    mul_inv_f32:  q = clamp(round(f32(x * f32(1 / f32(scale)))) + zero_point)  (LiteRT XNNPACK
                  and optimized QUANTIZE, half_even)
 Codes below/above the register are clamped
and counted (that is what the quantizer does), never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..fixedpoint import Register, f32_fma_round, round_float

if TYPE_CHECKING:
    from ..config import HwConfig
    from ..network import QuantizedNetwork


@dataclass
class InputQuantEvents:
    clamp_low: int
    clamp_high: int


def quantize_spikes(
    x: np.ndarray, scale: float, zero_point: int, reg: Register, quantizer: str, rounding: str
) -> tuple[np.ndarray, InputQuantEvents]:
    """float (Q, K) -> int64 codes (Q, K) in ``reg``'s range."""
    x32 = np.asarray(x, dtype=np.float32)
    if quantizer == "fma_f32" and rounding == "half_even":
        done = _fma_half_even_compiled(x32, scale, zero_point, reg)
        if done is not None:
            return done
    if quantizer == "fma_f32":
        inv = np.float32(np.float32(1.0) / np.float32(scale))
        r = _round_fma(x32, inv, float(zero_point), rounding)
    elif quantizer == "div_f32":
        r = round_float(x32 / np.float32(scale), rounding) + np.float32(zero_point)
    elif quantizer == "mul_inv_f32":
        inv = np.float32(np.float32(1.0) / np.float32(scale))
        r = round_float(x32 * inv, rounding) + np.float32(zero_point)
    else:
        v = x32.astype(np.float64) / np.float64(scale) + zero_point
        r = round_float(v, rounding)
    low = r < reg.min
    high = r > reg.max
    n_low, n_high = int(np.count_nonzero(low)), int(np.count_nonzero(high))
    if n_low or n_high:
        r = np.where(low | high, 0, r)  # every kept value is an integer inside the register
    codes = r.astype(np.int64)
    if n_low or n_high:
        codes[low] = reg.min
        codes[high] = reg.max
    return codes, InputQuantEvents(n_low, n_high)


_EDGE = 2.0**-11  # distance to a rounding edge below which the exact emulation decides
_SAFE_MAG = 2.0**10  # below it, float32 rounding moves a value by <= 2**-14 per operation


def _round_fma(x32: np.ndarray, inv: np.float32, zp: float, rounding: str) -> np.ndarray:
    """round(fmaf(x, inv, zp)) by the named mode, as float32 integral values.

    First computed as float32 multiply then add (two roundings, each <= 2**-14 away for
    |value| < 2**10); only values within 2**-11 of a rounding edge (a half-integer for the
    half_* modes, an integer otherwise) or of magnitude >= 2**10, where the exact float32
    rounding of the fused multiply-add could decide the result, go through the exact
    single-rounding emulation. Identical to rounding f32_fma_round(x, inv, zp) everywhere.
    """
    s = x32 * inv
    s += np.float32(zp)
    r = round_float(s, rounding)
    frac = s - np.floor(s)
    if rounding in ("floor", "ceil", "toward_zero"):
        d = np.minimum(frac, 1.0 - frac)
    else:
        d = np.abs(frac - 0.5)
    risky = np.flatnonzero(((d < _EDGE) | (np.abs(s) >= _SAFE_MAG)).ravel())
    if risky.size:
        exact = f32_fma_round(x32.ravel()[risky], inv, zp)
        r.ravel()[risky] = round_float(exact, rounding)
    return r


MIN_COMPILED = 1 << 16  # spikes below which numpy is as fast
_NB: dict[str, object] = {}


def _fma_half_even_compiled(x32: np.ndarray, scale: float, zero_point: int, reg: Register
                            ) -> tuple[np.ndarray, InputQuantEvents] | None:
    """:func:`quantize_spikes` for ``fma_f32`` / ``half_even`` in one compiled pass (numba,
    parallel over queries): the float32 multiply-add, rint, the edge test of
    :func:`_round_fma`, the clamp and its counts, the int64 codes. The values it marks risky
    go through the exact emulation here, as in :func:`_round_fma`. None without numba or
    for small or non-2-D inputs (numpy then runs: the same codes, tests/test_spike_buffer.py)."""
    from .chunk_stepper import numba_enabled

    if x32.ndim != 2 or x32.size < MIN_COMPILED or not numba_enabled():
        return None
    x32 = np.ascontiguousarray(x32)
    q, k = x32.shape
    inv = np.float32(np.float32(1.0) / np.float32(scale))
    codes = np.empty((q, k), dtype=np.int64)
    risky = np.empty((q, k), dtype=np.bool_)
    counts = np.zeros((q, 3), dtype=np.int64)  # low, high, risky per query
    kern = _quantize_kernel()[0 if -(1 << 31) < reg.min and reg.max < 1 << 31 else 1]
    kern(x32, inv, np.float32(zero_point), np.float32(_EDGE), np.float32(_SAFE_MAG),
         np.int64(reg.min), np.int64(reg.max), codes, risky, counts)
    n_low, n_high, n_risky = (int(c) for c in counts.sum(axis=0))
    if n_risky:
        at = np.flatnonzero(risky.ravel())
        r = round_float(f32_fma_round(x32.ravel()[at], inv, float(zero_point)), "half_even")
        low, high = r < reg.min, r > reg.max
        n_low += int(np.count_nonzero(low))
        n_high += int(np.count_nonzero(high))
        vals = np.where(low | high, 0, r).astype(np.int64)
        vals[low] = reg.min
        vals[high] = reg.max
        codes.ravel()[at] = vals
    return codes, InputQuantEvents(n_low, n_high)


def _quantize_kernel() -> tuple[object, object]:
    """(narrow, wide): the same loop, ``narrow`` branch-free (LLVM vectorises it; the codes
    pass through int32, so for registers inside int32: 4.3 -> ~1.8 ms for the bench's
    500 x 3136 spikes), ``wide`` with branches for wider registers."""
    global _quantize_row  # a global, not a closure cell: see tile_stepper
    if "q" not in _NB:
        import numba

        from .chunk_stepper import serialized

        @numba.njit(cache=True, nogil=True)
        def _quantize_row(x, inv, zp, edge, safe_mag, lo, hi, codes, risky,
                          counts):  # pragma: no cover - compiled
            n_low = 0
            n_high = 0
            n_risky = 0
            flo = np.float64(lo)
            fhi = np.float64(hi)
            for i in range(x.size):
                s = x[i] * inv  # float32 multiply, then add: two roundings
                s = s + zp
                r = np.float64(np.rint(s))
                d = abs(s - np.floor(s) - np.float32(0.5))
                rk = (d < edge) | (abs(s) >= safe_mag)  # the exact emulation decides
                under = r < flo
                over = r > fhi
                c = min(max(r, flo), fhi)
                risky[i] = rk
                codes[i] = 0 if rk else np.int64(np.int32(c))
                n_risky += rk
                n_low += under & ~rk
                n_high += over & ~rk
            counts[0] = n_low
            counts[1] = n_high
            counts[2] = n_risky

        @numba.njit(cache=True, nogil=True, parallel=True)
        def quantize_narrow(x, inv, zp, edge, safe_mag, lo, hi, codes, risky,
                            counts):  # pragma: no cover - compiled
            for q in numba.prange(x.shape[0]):
                _quantize_row(x[q], inv, zp, edge, safe_mag, lo, hi, codes[q], risky[q],
                              counts[q])

        @numba.njit(cache=True, nogil=True, parallel=True)
        def quantize(x, inv, zp, edge, safe_mag, lo, hi, codes, risky,
                     counts):  # pragma: no cover - compiled
            q_all, k = x.shape
            for q in numba.prange(q_all):
                n_low = 0
                n_high = 0
                n_risky = 0
                for i in range(k):
                    s = x[q, i] * inv  # float32 multiply, then add: two roundings
                    s = s + zp
                    r = np.rint(s)
                    d = abs(s - np.floor(s) - np.float32(0.5))
                    if d < edge or abs(s) >= safe_mag:  # the exact emulation decides
                        risky[q, i] = True
                        codes[q, i] = 0
                        n_risky += 1
                        continue
                    risky[q, i] = False
                    if r < lo:
                        codes[q, i] = lo
                        n_low += 1
                    elif r > hi:
                        codes[q, i] = hi
                        n_high += 1
                    else:
                        codes[q, i] = np.int64(r)
                counts[q, 0] = n_low
                counts[q, 1] = n_high
                counts[q, 2] = n_risky

        _NB["q"] = (serialized(quantize_narrow), serialized(quantize))
    return _NB["q"]  # type: ignore[return-value]


def negative_codes_fix() -> str:
    """The fix for negative integer input codes on an unsigned spike register."""
    return (
        "negative codes look like int8 engine codes (TFLite int8 = uint8 - 128): add 128 to "
        "them, as hwsim holds activations in uint8 form (docs/engines.md), or set "
        "spikes.signed = true if the register really is signed"
    )


def signedness_notes(net: QuantizedNetwork, cfg: HwConfig) -> list[str]:
    """Warnings for signed spike/output registers that cannot hold the model's uint8 codes.

    hwsim's networks hold activations in uint8 form (zero points 0..255; int8 engine graphs
    are imported +128), so a signed 8-bit register clamps every code above 127.
    """
    notes = []
    zps = sorted({m.input_zero_point for m in net.modules})
    for lname in ("feature", "output"):
        hw = cfg.for_layer(lname)
        for key, signed, bits in (
            ("spikes.signed", hw.spikes.signed, hw.spikes.bits),
            ("requant.output_signed", hw.requant.output_signed, hw.requant.output_bits),
        ):
            reg = Register(bits, signed)
            if signed and reg.max < 255:
                notes.append(
                    f"layer {lname!r}: {key} = true gives a {reg.describe()} register, but the "
                    f"model's activations are uint8 codes (input zero points {zps[0]}.."
                    f"{zps[-1]}; int8 graphs are imported +128): codes above {reg.max} clamp; "
                    f"set {key} = false (or widen the register)"
                )
    return notes
