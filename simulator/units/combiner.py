"""Combiner of the split excitatory/inhibitory layout (the seed's combining add).

For output neuron j (float64 arithmetic, as the seed computes it):

    e = cast((exc_j / f[exc_divisor]) * scale)
    i = cast(((inh_j - inh_offset) / f[inh_divisor]) * scale)
    y = clip(e + i + zero_point, clip_low, clip_high)

``cast`` is ``combiner.cast_rounding`` (the seed: toward_zero, numpy ``astype(int32)``);
``clip_high`` is an integer, the query's largest input code (``input_max``, the seed) or the
output register's maximum (``register``). Clips are counted per neuron.
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import round_float
from .requantizer import ClampEvents, clamp_codes


def combine(
    exc: np.ndarray,
    inh: np.ndarray,
    factors: np.ndarray,
    exc_divisor: int,
    inh_divisor: int,
    inh_offset: int,
    scale: float,
    zero_point: int,
    cast_rounding: str,
    clip_low: int,
    clip_high: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, ClampEvents]:
    """Combine int64 (Q, N) exc/inh values; clip_high is int64 (Q,) per query.

    Returns (codes, unclipped sums, clip events).
    """
    e = round_float((exc / np.float64(factors[exc_divisor])) * np.float64(scale), cast_rounding)
    i = round_float(
        ((inh - inh_offset) / np.float64(factors[inh_divisor])) * np.float64(scale),
        cast_rounding,
    )
    total = e.astype(np.int64) + i.astype(np.int64) + zero_point
    lo_mask = total < clip_low
    hi_mask = total > clip_high[:, None]
    first = None
    if (lo_mask | hi_mask).any():
        idx = int(np.flatnonzero((lo_mask | hi_mask).ravel())[0])
        first = (idx // total.shape[1], idx % total.shape[1])
    codes = np.clip(total, clip_low, clip_high[:, None])
    ev = ClampEvents(lo_mask.sum(axis=0).astype(np.int64), hi_mask.sum(axis=0).astype(np.int64),
                     first)
    return codes, total, ev


__all__ = ["combine", "clamp_codes"]
