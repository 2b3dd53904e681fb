"""The input quantizer's fast path equals the exact single-rounding FMA everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.fixedpoint import ROUNDING_MODES, Register, f32_fma_round, round_float
from simulator.units.spike_buffer import _round_fma, quantize_spikes


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_fast_fma_rounding_equals_exact_emulation(mode: str) -> None:
    rng = np.random.default_rng(7)
    mismatches = 0
    risky_seen = 0
    for _ in range(40):
        scale = np.float32(rng.uniform(1e-3, 0.5))
        inv = np.float32(np.float32(1.0) / scale)
        zp = float(rng.integers(0, 256))
        x = rng.random(5000).astype(np.float32) * np.float32(rng.uniform(0.1, 3.0))
        # values whose exact x*inv + zp sits on or next to a tie or an integer
        k = np.arange(-5, 300, dtype=np.float64)
        edges = np.concatenate([(k + 0.5 - zp) / np.float64(inv), (k - zp) / np.float64(inv)])
        e32 = edges.astype(np.float32)
        x = np.concatenate([x, e32, np.nextafter(e32, np.float32(9)),
                            np.nextafter(e32, np.float32(-9)), np.float32([3e6, -3e6]),
                            (rng.uniform(-2e6, 2e6, 500) / np.float64(inv)).astype(np.float32)])
        fast = _round_fma(x, inv, zp, mode)
        exact = round_float(f32_fma_round(x, inv, zp), mode)
        mismatches += int((fast != exact).sum())
        s = x.astype(np.float64) * np.float64(inv) + zp
        risky_seen += int((np.abs(s - np.floor(s) - 0.5) < 2.0**-11).sum())
    assert risky_seen > 0
    assert mismatches == 0


def test_quantizer_counts_clamps() -> None:
    x = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0]], dtype=np.float32)
    codes, ev = quantize_spikes(x, 1 / 255, 0, Register(8, False), "fma_f32", "half_even")
    # f32(1/f32(1/255)) is just below 255, so 0.5 maps below the tie: 127
    assert codes.tolist() == [[0, 0, 127, 255, 255]]
    assert (ev.clamp_low, ev.clamp_high) == (1, 1)
