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


def test_compiled_quantizer_equals_exact_emulation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled fma_f32 / half_even pass (spike_buffer._fma_half_even_compiled): the
    same codes and clamp counts as the exact single-rounding FMA, on values on and next to
    ties and integers, far outside the register, and of magnitude >= 2**10 (its risky
    values go through the emulation); numpy (HWSIM_NUMBA=0) agrees too."""
    from simulator.units import chunk_stepper, spike_buffer

    monkeypatch.setenv("HWSIM_NUMBA", "1")
    if not chunk_stepper.numba_enabled():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(spike_buffer, "MIN_COMPILED", 1)
    rng = np.random.default_rng(9)
    risky_seen = 0
    for case in range(30):
        scale = np.float32(rng.uniform(1e-3, 0.5))
        inv = np.float32(np.float32(1.0) / scale)
        zp = int(rng.integers(0, 256))
        k = np.arange(-5, 300, dtype=np.float64)
        edges = np.concatenate([(k + 0.5 - zp) / np.float64(inv), (k - zp) / np.float64(inv)])
        e32 = edges.astype(np.float32)
        x = np.concatenate([rng.random(2000).astype(np.float32), e32,
                            np.nextafter(e32, np.float32(9)), np.nextafter(e32, np.float32(-9)),
                            np.float32([3e6, -3e6, 0.0, 3e9, -3e9, 1e12])])
        x = x[: x.size // 7 * 7].reshape(7, -1)
        # 40 bits: the loop with branches for registers wider than int32
        reg = Register(int(rng.choice([4, 8, 9, 32, 40])), bool(rng.random() < 0.5))
        got = spike_buffer._fma_half_even_compiled(x, float(scale), zp, reg)
        assert got is not None
        exact = round_float(f32_fma_round(x, inv, float(zp)), "half_even")
        want = np.clip(exact.astype(np.float64), reg.min, reg.max).astype(np.int64)
        assert np.array_equal(got[0], want), f"case {case}"
        assert (got[1].clamp_low, got[1].clamp_high) == (
            int((exact < reg.min).sum()), int((exact > reg.max).sum())), f"case {case}"
        monkeypatch.setenv("HWSIM_NUMBA", "0")
        plain = quantize_spikes(x, float(scale), zp, reg, "fma_f32", "half_even")
        monkeypatch.setenv("HWSIM_NUMBA", "1")
        assert np.array_equal(plain[0], got[0]) and plain[1] == got[1]
        s = x * inv + np.float32(zp)
        risky_seen += int((np.abs(s - np.floor(s) - np.float32(0.5)) < 2.0**-11).sum())
    assert risky_seen > 0
