"""Input spike buffer: the host-side quantizer of float spikes and the input register check.

Float spikes x (float32; float64 input is rounded to float32 first, as torch does when it is
handed a float32 tensor) become quint8 codes with torch's QuantStub arithmetic:

    q = clamp(round(fmaf(x, f32(1 / scale), zero_point)), lo, hi)

one float32 rounding for the fused multiply-add (``spikes.quantizer = "fma_f32"``), or plain
float64 ``x / scale + zero_point`` (``float64``). Codes below/above the register are clamped
and counted (that is what the quantizer does), never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixedpoint import Register, f32_fma_round, round_float


@dataclass
class InputQuantEvents:
    clamp_low: int
    clamp_high: int


def quantize_spikes(
    x: np.ndarray, scale: float, zero_point: int, reg: Register, quantizer: str, rounding: str
) -> tuple[np.ndarray, InputQuantEvents]:
    """float (Q, K) -> int64 codes (Q, K) in ``reg``'s range."""
    x32 = np.asarray(x, dtype=np.float32)
    if quantizer == "fma_f32":
        inv = np.float32(np.float32(1.0) / np.float32(scale))
        v = f32_fma_round(x32, inv, float(zero_point))
    else:
        v = x32.astype(np.float64) / np.float64(scale) + zero_point
    r = round_float(v, rounding)
    low = r < reg.min
    high = r > reg.max
    codes = np.clip(r, reg.min, reg.max).astype(np.int64)
    return codes, InputQuantEvents(int(low.sum()), int(high.sum()))
