"""Readout: joins the modules' output codes and picks the best-matching place.

VPRTempoQuant joins its modules with a quantized ``torch.cat`` before dequantizing, which
re-expresses every module's quint8 codes on module 0's output grid (scale s0, zero point z0):

    q' = clamp(rint(fmaf(f32(f32(q - z_i) * f32(s_i)), f32(1 / f32(s0)), z0)), 0, 255)

(a float32 dequantize, then torch's single-rounding quantizer; measured against torch 2.13).
``readout.concat = "requantize"`` models that; ``"codes"`` keeps each module's own codes.
The prediction is the argmax over the joined row (first index on ties, as torch/numpy).
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import f32_fma_round


def join_modules(
    codes: list[np.ndarray], scales: list[float], zero_points: list[int], mode: str
) -> np.ndarray:
    """Join int64 (Q, N_i) code blocks into int64 (Q, sum N_i) scores."""
    if mode == "codes" or len(codes) == 1:
        return np.concatenate(codes, axis=1)
    if mode != "requantize":
        raise ValueError(f"readout.concat must be 'requantize' or 'codes', not {mode!r}")
    s0 = np.float32(scales[0])
    inv = np.float32(np.float32(1.0) / s0)
    z0 = int(zero_points[0])
    out = []
    for q, s, z in zip(codes, scales, zero_points, strict=True):
        deq = (q - z).astype(np.float32) * np.float32(s)
        v = np.rint(f32_fma_round(deq, inv, float(z0)))
        out.append(np.clip(v, 0, 255).astype(np.int64))
    return np.concatenate(out, axis=1)
