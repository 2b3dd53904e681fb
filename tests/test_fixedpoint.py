"""simulator/fixedpoint.py cross-checked against independent implementations.

* fxpmath (a separate fixed-point library) for registers, wrap/saturate, rounding casts of
  floats and rounding right shifts, every rounding mode, signed and unsigned, widths 2..32.
  Name map (fxpmath 0.4.10, ``Config._rounding_list``): floor -> 'floor', ceil -> 'ceil',
  toward_zero -> 'trunc' (fxpmath's 'trunc' rounds toward ZERO, not toward -inf),
  half_up -> 'nearest_posinf', half_down -> 'nearest_neginf', half_even -> 'around',
  half_away -> 'nearest_away'. A mode the installed fxpmath lacks (older releases have only
  around/floor/ceil/fix/trunc) is checked against exact ``fractions.Fraction`` arithmetic
  instead (see ``_fxp_rounding``).
* Exact ``fractions.Fraction`` / Python-int arithmetic wherever fxpmath cannot be exact:
  integer division by non-powers of two (round_divide), wide products (multiply_shift),
  widths above 32 bits, the multiplier decomposition and float32 fused multiply-add.

fxpmath's nearest-rounding computes ``frac = v - floor(v)`` in floating point, which is not
exact for v in (-1/2, 0): v = -1/2 + 2**-54 gets frac == 1/2 and is rounded to -1 by
'nearest_neginf' / 'nearest_away' (the exact answer is 0). Those values are compared with
Fraction only (``test_round_float_near_negative_half``); the simulator had the same flaw and
was fixed.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from fxpmath import Fxp
from fxpmath.objects import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.fixedpoint import (
    OVERFLOW_POLICIES,
    ROUNDING_MODES,
    Register,
    RegisterOverflowError,
    count_out_of_range,
    f32_fma_round,
    fit,
    multiply_shift,
    quantize_multiplier,
    round_divide,
    round_float,
    round_shift,
    saturate,
    wrap,
)

FXP_ROUNDING = {
    "floor": "floor",
    "ceil": "ceil",
    "toward_zero": "trunc",  # NOT floor: fxpmath's trunc drops the fraction (toward zero)
    "half_up": "nearest_posinf",
    "half_down": "nearest_neginf",
    "half_even": "around",
    "half_away": "nearest_away",
}
WIDTHS = range(2, 33)
SIGNS = (True, False)
NARROWING = ("wrap", "saturate")  # fxpmath has no 'error' policy; tested separately


def _fxp_rounding(mode: str) -> str | None:
    """fxpmath's name for ``mode``, or None if this fxpmath does not accept it."""
    name = FXP_ROUNDING[mode]
    try:
        Config().rounding = name
    except ValueError:
        return None
    return name


# --- exact references -------------------------------------------------------------------------


def ref_round(x: Fraction, mode: str) -> int:
    """Exact rounding of a rational to an integer by the named mode."""
    fl = math.floor(x)
    rem = x - fl
    if mode == "floor":
        return fl
    if mode == "ceil":
        return math.ceil(x)
    if mode == "toward_zero":
        return math.trunc(x)
    half = Fraction(1, 2)
    if rem > half:
        return fl + 1
    if rem < half:
        return fl
    return {
        "half_up": fl + 1,
        "half_down": fl,
        "half_even": fl + (fl % 2),
        "half_away": fl + 1 if x > 0 else fl,
    }[mode]


def ref_narrow(v: int, bits: int, signed: bool, policy: str) -> int:
    lo = -(1 << (bits - 1)) if signed else 0
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    if policy == "saturate":
        return min(max(v, lo), hi)
    return (v - lo) % (1 << bits) + lo


def ref_f32(x: Fraction) -> np.float32:
    """Round a rational to the nearest float32, ties to even (exact; no double rounding)."""
    if x == 0:
        return np.float32(0.0)
    approx = np.float32(float(x))  # float() is correctly rounded; float32() may double-round
    cands = [approx, np.nextafter(approx, np.float32(-np.inf)),
             np.nextafter(approx, np.float32(np.inf))]
    cands = [c for c in cands if np.isfinite(c)]

    def key(c: np.float32) -> tuple[Fraction, int]:
        return abs(Fraction(float(c)) - x), int(np.array(c).view(np.uint32)) & 1

    return min(cands, key=key)


def edge_values(reg: Register, rng: np.random.Generator, n_random: int = 40) -> np.ndarray:
    lo, hi, span = reg.min, reg.max, 1 << reg.bits
    vals = {lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, 0, 1, -1, span, -span, span + 1,
            -span - 1, 2 * lo, 2 * hi + 1, 3 * span + 5, -3 * span - 7, lo - span, hi + span}
    rnd = rng.integers(-4 * span, 4 * span, size=n_random, dtype=np.int64)
    return np.array(sorted(vals) + list(rnd), dtype=np.int64)


# --- registers, wrap, saturate, fit -------------------------------------------------------------


@pytest.mark.parametrize("signed", SIGNS)
def test_register_range_matches_fxpmath(signed: bool) -> None:
    for bits in WIDTHS:
        reg = Register(bits, signed)
        ref = Fxp(None, signed=signed, n_word=bits, n_frac=0)
        assert (reg.min, reg.max) == (int(ref.lower), int(ref.upper)), bits
    for bits in range(1 if not signed else 2, 65):
        reg = Register(bits, signed)
        assert reg.max - reg.min == (1 << bits) - 1
        assert reg.contains(reg.min, reg.max)
        assert not reg.contains(reg.min - 1, reg.max)
        assert not reg.contains(reg.min, reg.max + 1)


@pytest.mark.parametrize("bad", [0, -3, 65, 128, True, 8.0, "8"])
def test_register_rejects_impossible_widths(bad: object) -> None:
    with pytest.raises(ValueError, match="width"):
        Register(bad)  # type: ignore[arg-type]


def test_register_signed_needs_two_bits() -> None:
    with pytest.raises(ValueError, match="2..64"):
        Register(1, signed=True)
    assert (Register(1, signed=False).min, Register(1, signed=False).max) == (0, 1)
    assert Register(8, True).describe() == "s8 [-128, 127]"
    assert Register(8, False).describe() == "u8 [0, 255]"


@pytest.mark.parametrize("signed", SIGNS)
@pytest.mark.parametrize("policy", NARROWING)
def test_fit_matches_fxpmath(signed: bool, policy: str) -> None:
    rng = np.random.default_rng(11 + signed + 2 * (policy == "wrap"))
    checked = 0
    for bits in WIDTHS:
        reg = Register(bits, signed)
        v = edge_values(reg, rng)
        ref = Fxp(v, signed=signed, n_word=bits, n_frac=0, overflow=policy)
        want = np.asarray(ref.val).astype(np.int64)
        got, ev = fit(v, reg, policy)
        direct = wrap(v, reg) if policy == "wrap" else saturate(v, reg)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want, err_msg=f"{policy} {reg.describe()}")
        np.testing.assert_array_equal(direct, want)
        # events: exact counts; fxpmath only has booleans, which must agree
        low, high = int((v < reg.min).sum()), int((v > reg.max).sum())
        assert (ev.low, ev.high, ev.total) == (low, high, low + high)
        assert ev.first == int(np.flatnonzero((v < reg.min) | (v > reg.max))[0])
        assert ref.status["overflow"] == (ev.high > 0)
        assert ref.status["underflow"] == (ev.low > 0)
        checked += v.size
    assert checked > 31 * 50


@pytest.mark.parametrize("signed", SIGNS)
def test_wrap_saturate_wide_registers_exact(signed: bool) -> None:
    """Widths 33..64 (beyond what fxpmath holds in int64) against Python integers."""
    rng = np.random.default_rng(5)
    for bits in range(33, 65):
        reg = Register(bits, signed)
        lim = (1 << 62) - 1
        vals = {max(-lim, min(lim, x)) for x in (reg.min - 1, reg.min, reg.max, reg.max + 1)}
        v = np.array(sorted(vals) + list(rng.integers(-lim, lim, 30)), dtype=np.int64)
        for policy in NARROWING:
            if bits == 64 and not signed and policy == "wrap":
                # negative values wrap to >= 2**63: beyond int64, so an error, never silent
                with pytest.raises(OverflowError, match="u64"):
                    fit(v, reg, policy)
                continue
            got, ev = fit(v, reg, policy)
            want = [ref_narrow(int(x), bits, signed, policy) for x in v]
            assert got.tolist() == want, (bits, signed, policy)
            assert ev.total == sum(1 for x in v if not reg.min <= int(x) <= reg.max)


def test_full_int64_register_is_identity() -> None:
    v = np.array([-(1 << 63), -1, 0, (1 << 63) - 1], dtype=np.int64)
    reg = Register(64, True)
    for policy in OVERFLOW_POLICIES:
        got, ev = fit(v, reg, policy)
        assert got.tolist() == v.tolist() and ev.total == 0
    assert count_out_of_range(v, Register(64, False)).low == 2


def test_fit_error_policy_names_first_offender() -> None:
    reg = Register(8, True)
    v = np.array([[0, 127, -128], [5, 300, -999]], dtype=np.int64)
    with pytest.raises(RegisterOverflowError) as info:
        fit(v, reg, "error", what="accumulator")
    assert info.value.flat_index == 4 and info.value.value == 300
    msg = str(info.value)
    assert "accumulator overflow" in msg and "s8 [-128, 127]" in msg and "300" in msg
    ok, ev = fit(np.array([-128, 127]), reg, "error")
    assert ok.tolist() == [-128, 127] and ev.total == 0
    with pytest.raises(ValueError, match="wrap, saturate, error"):
        fit(v, reg, "clip")


def test_count_out_of_range_events() -> None:
    reg = Register(4, False)
    v = np.array([[-1, 0, 15], [16, 99, -7]])
    ev = count_out_of_range(v, reg)
    assert (ev.low, ev.high, ev.first) == (2, 2, 0)
    assert count_out_of_range(np.array([3, 4]), reg).first is None
    with pytest.raises(TypeError):
        count_out_of_range(np.array([1.5]), reg)
    with pytest.raises(OverflowError):
        count_out_of_range(np.array([1 << 63], dtype=np.uint64), reg)


# --- rounding of floats -------------------------------------------------------------------------


def _float_cases(rng: np.random.Generator) -> np.ndarray:
    k = rng.integers(-1000, 1000, 200).astype(np.float64)
    ties = k + 0.5
    near = np.concatenate([np.nextafter(ties, np.inf), np.nextafter(ties, -np.inf)])
    big = np.array([2.0**52, 2.0**52 + 1, -(2.0**52) - 1, 2.0**53 + 2, -(2.0**54),
                    2.0**52 - 0.5, -(2.0**52) + 0.5])
    small = np.array([0.0, -0.0, 2.0**-60, -(2.0**-60), 0.5, -0.5, 1.5, -1.5, 2.5, -2.5,
                      0.49999999999999994, -0.49999999999999994, 1e-300, -1e-300])
    uni = rng.uniform(-1e4, 1e4, 400)
    return np.concatenate([k, ties, near, big, small, uni])


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_round_float_matches_fxpmath_and_fractions(mode: str) -> None:
    v = _float_cases(np.random.default_rng(3))
    got = round_float(v, mode)
    assert got.dtype == np.float64
    exact = [ref_round(Fraction(float(x)), mode) for x in v]
    assert [int(g) for g in got] == exact
    name = _fxp_rounding(mode)
    if name is None:
        pytest.skip(f"fxpmath has no {mode}; checked against Fraction only")
    # fxpmath's float frac is inexact in (-1/2, 0) (see module docstring): compare elsewhere
    sel = ~((v > -0.5) & (v < 0))
    ref = Fxp(v[sel], signed=True, n_word=60, n_frac=0, rounding=name, overflow="saturate")
    np.testing.assert_array_equal(got[sel].astype(np.int64), np.asarray(ref.val, np.int64))


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_round_float32_exact(mode: str) -> None:
    rng = np.random.default_rng(4)
    v = np.concatenate([
        _float_cases(rng).astype(np.float32),
        np.array([-0.5 + 2.0**-25, 0.5 - 2.0**-25, 8388607.5, -8388607.5], np.float32),
    ])
    got = round_float(v, mode)
    assert got.dtype == np.float32
    assert [int(g) for g in got] == [ref_round(Fraction(float(x)), mode) for x in v]


def test_round_float_near_negative_half() -> None:
    """-1/2 < v < 0 near -1/2: every nearest mode must give 0 (fxpmath gives -1 for two)."""
    v = np.array([-0.5 + 2.0**-54, -0.5 + 2.0**-53, -0.5 + 2.0**-40, -0.25, -(2.0**-60)])
    for mode in ("half_up", "half_down", "half_even", "half_away"):
        assert round_float(v, mode).tolist() == [0.0] * 5, mode
        assert round_float(-v, mode).tolist() == [0.0] * 5, mode
    assert round_float(np.array([-0.5]), "half_down").tolist() == [-1.0]
    assert round_float(np.array([-0.5]), "half_away").tolist() == [-1.0]
    assert round_float(np.array([-0.5]), "half_up").tolist() == [0.0]


def test_round_float_rejects_bad_input() -> None:
    with pytest.raises(TypeError):
        round_float(np.array([1, 2]), "floor")
    with pytest.raises(ValueError, match="half_even"):
        round_float(np.array([1.5]), "trunc")


def test_fxpmath_trunc_is_toward_zero_not_floor() -> None:
    """The documented trap: mapping floor -> fxpmath 'trunc' would be wrong."""
    v = np.array([-2.5, -0.25, 2.5])
    trunc = np.asarray(Fxp(v, True, 8, 0, rounding="trunc").val).tolist()
    assert trunc == [-2, 0, 2]
    assert round_float(v, "toward_zero").tolist() == trunc
    assert round_float(v, "floor").tolist() == [-3, -1, 2]


# --- rounding right shifts + narrowing ------------------------------------------------------------


def _shift_cases(s: int, reg: Register, rng: np.random.Generator) -> np.ndarray:
    one = 1 << s
    half = one >> 1
    base = [reg.min, reg.max, reg.min - 1, reg.max + 1, 0, 1, -1, 2, -2, 3, -3]
    vals = set()
    for b in base:
        for off in (0, half, -half, half + 1, half - 1, one - 1, -one + 1):
            vals.add(b * one + off)
    q = rng.integers(max(reg.min - 4, -(1 << 40)), min(reg.max + 4, 1 << 40), 20)
    vals.update(int(x) * one + half for x in q)  # exact ties
    vals.update(int(x) * one - half for x in q)
    lim = min(1 << 51, one << (reg.bits + 2))
    vals.update(int(x) for x in rng.integers(-lim, lim, 20))
    return np.array(sorted(x for x in vals if abs(x) < (1 << 52)), dtype=np.int64)


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_round_shift_then_fit_matches_fxpmath(mode: str) -> None:
    """round(v / 2**s) into a register: fxpmath rounds v / 2**s (exact in float64)."""
    rng = np.random.default_rng(ROUNDING_MODES.index(mode))
    name = _fxp_rounding(mode)
    checked = 0
    for bits in WIDTHS:
        for signed in SIGNS:
            reg = Register(bits, signed)
            s = int(rng.integers(0, 19))
            v = _shift_cases(s, reg, rng)
            r = round_shift(v, s, mode)
            exact = [ref_round(Fraction(int(x), 1 << s), mode) for x in v]
            assert r.tolist() == exact, (mode, s)
            for policy in NARROWING:
                got, ev = fit(r, reg, policy)
                if name is None:
                    want = [ref_narrow(e, bits, signed, policy) for e in exact]
                else:
                    ref = Fxp(v / float(1 << s), signed=signed, n_word=bits, n_frac=0,
                              rounding=name, overflow=policy)
                    want = np.asarray(ref.val).astype(np.int64).tolist()
                    assert ref.status["overflow"] == (ev.high > 0)
                    assert ref.status["underflow"] == (ev.low > 0)
                assert got.tolist() == want, (mode, policy, reg.describe(), s)
                checked += v.size
    assert checked > 31 * 2 * 2 * 40


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_round_shift_full_range_exact(mode: str) -> None:
    rng = np.random.default_rng(99)
    v = np.concatenate([
        rng.integers(-(1 << 62), 1 << 62, 400),
        np.array([(1 << 62) - 1, -(1 << 62), 0, 1, -1, 3, -3]),
    ]).astype(np.int64)
    shifts = rng.integers(0, 63, v.size)
    got = round_shift(v, shifts, mode)
    want = [ref_round(Fraction(int(x), 1 << int(s)), mode) for x, s in zip(v, shifts, strict=True)]
    assert got.tolist() == want
    # per-channel shifts broadcast over the last axis
    mat = rng.integers(-(1 << 40), 1 << 40, (6, 5))
    sh = np.array([0, 1, 7, 20, 33])
    got = round_shift(mat, sh, mode)
    for (i, j), x in np.ndenumerate(mat):
        assert got[i, j] == ref_round(Fraction(int(x), 1 << int(sh[j])), mode)


def test_round_shift_rejects_bad_shift() -> None:
    with pytest.raises(ValueError, match="0..62"):
        round_shift(np.array([4]), -1, "floor")
    with pytest.raises(ValueError, match="0..62"):
        round_shift(np.array([4]), 63, "floor")
    with pytest.raises(ValueError):
        round_shift(np.array([4]), 1, "trunc")


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(1 << 62), (1 << 62) - 1),
    st.integers(0, 62),
    st.sampled_from(ROUNDING_MODES),
)
def test_round_shift_property(v: int, s: int, mode: str) -> None:
    assert int(round_shift(np.array([v]), s, mode)[0]) == ref_round(Fraction(v, 1 << s), mode)


# --- round_divide -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_round_divide_exact(mode: str) -> None:
    """fxpmath cannot divide exactly by non-powers of two: exact Fraction reference."""
    rng = np.random.default_rng(21)
    d = rng.integers(1, 1 << 20, 600)
    q = rng.integers(-(1 << 30), 1 << 30, 600)
    n = np.concatenate([
        rng.integers(-(1 << 50), 1 << 50, 600),
        q[:300] * d[:300] + d[:300] // 2,  # ties when d is even
        q[300:] * d[300:] - d[300:] // 2,
    ])
    d = np.concatenate([d, d])[: n.size]
    d[::50] = 1
    d[1::50] = 2
    got = round_divide(n, d, mode)
    want = [ref_round(Fraction(int(a), int(b)), mode) for a, b in zip(n, d, strict=True)]
    assert got.tolist() == want
    assert int((2 * (n % d) == d).sum()) > 100  # ties really occur
    # scalar divisor, negative ties
    nn = np.array([-7, -5, -3, -1, 1, 3, 5, 7])
    assert round_divide(nn, 2, mode).tolist() == [ref_round(Fraction(int(a), 2), mode) for a in nn]


def test_round_divide_rejects_non_positive_divisor() -> None:
    for bad in (0, -3, np.array([1, 0])):
        with pytest.raises(ValueError, match="> 0"):
            round_divide(np.array([5, 6]), bad, "floor")


# --- quantize_multiplier -------------------------------------------------------------------------


def ref_multiplier(m: float, bits: int) -> tuple[int, int]:
    x = Fraction(m)
    e = math.floor(math.log2(m)) + 1
    while x >= Fraction(2) ** e:
        e += 1
    while x < Fraction(2) ** (e - 1):
        e -= 1
    m0 = ref_round(x * Fraction(2) ** (bits - e), "half_away")
    if m0 == 1 << bits:
        m0, e = m0 >> 1, e + 1
    return m0, bits - e


def test_quantize_multiplier_exact_and_fxpmath() -> None:
    rng = np.random.default_rng(8)
    checked = 0
    for bits in range(2, 33):
        m = np.concatenate([
            10.0 ** rng.uniform(-12, 6, 60),
            2.0 ** rng.integers(-30, 20, 5).astype(np.float64),
            np.array([1 - 2.0**-40, 0.75, 1.0, 3.0, 0.5 - 2.0**-60, 1e-20, float(1 << bits) * 3]),
        ])
        m0, shift = quantize_multiplier(m, bits)
        assert m0.dtype == np.int64 and shift.dtype == np.int64
        assert np.all(m0 >= 1 << (bits - 1)) and np.all(m0 < 1 << bits)
        for mi, a, s in zip(m, m0, shift, strict=True):
            assert (int(a), int(s)) == ref_multiplier(float(mi), bits), (bits, mi)
            # relative error below 2**-bits
            err = abs(Fraction(int(a)) / Fraction(2) ** int(s) - Fraction(float(mi)))
            assert err <= Fraction(float(mi)) / 2**bits
        # fxpmath: quantize m to an unsigned bits-wide word with n_frac = shift fraction bits
        if _fxp_rounding("half_away") is not None:
            for s in np.unique(shift[(shift >= 0) & (shift <= 200)]):
                sel = shift == s
                ref = Fxp(m[sel], signed=False, n_word=bits, n_frac=int(s),
                          rounding="nearest_away", overflow="saturate")
                assert np.asarray(ref.val, np.int64).tolist() == m0[sel].tolist()
                checked += int(sel.sum())
    assert checked > 1000 or _fxp_rounding("half_away") is None


def test_quantize_multiplier_rounds_up_to_next_power() -> None:
    m0, shift = quantize_multiplier(np.array([1 - 2.0**-40]), 31)
    assert (int(m0[0]), int(shift[0])) == (1 << 30, 30)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_quantize_multiplier_rejects_bad_reals(bad: float) -> None:
    with pytest.raises(ValueError, match="finite and > 0"):
        quantize_multiplier(np.array([1.0, bad]))


@pytest.mark.parametrize("bits", [1, 33])
def test_quantize_multiplier_rejects_bad_width(bits: int) -> None:
    with pytest.raises(ValueError, match="2..32"):
        quantize_multiplier(np.array([0.5]), bits)


# --- multiply_shift -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ROUNDING_MODES)
@pytest.mark.parametrize("mbits", [8, 16, 31, 32])
def test_multiply_shift_exact(mode: str, mbits: int) -> None:
    """round(acc * M0 / 2**shift) against Python integers: narrow and wide products."""
    rng = np.random.default_rng(mbits)
    n = 24
    real = 10.0 ** rng.uniform(-9, 0, n)  # <= 1: results of 2**62 accumulators fit int64
    real[0] = float(1 << 33)  # multiplier >= 2**bits: negative shift (left shift)
    real[1] = 1e-25  # shift > 62
    m0, shift = quantize_multiplier(real, mbits)
    q = 30
    acc = np.concatenate([
        rng.integers(-(1 << 31), 1 << 31, (q // 3, n)),  # int32 accumulators: narrow path
        rng.integers(-(1 << 62), 1 << 62, (q // 3, n)),  # wide product path
        rng.integers(-(1 << 24), 1 << 24, (q // 3, n)),
    ]).astype(np.int64)
    acc[:, 0] = rng.integers(-(1 << 20), 1 << 20, q)  # keep the left-shifted column in int64
    # exact ties: acc * M0 = (2k+1) * 2**(shift-1) for a power-of-two M0
    pm0, psh = np.array([1 << (mbits - 1)]), np.array([mbits + 2])
    tie_acc = (2 * rng.integers(-1000, 1000, 40) + 1)[:, None] * 4
    wide_tie = np.array([[(1 << 61) + 4], [-(1 << 61) - 4]])
    for a, m, s in ((acc, m0[None, :], shift[None, :]), (tie_acc, pm0, psh),
                    (wide_tie, pm0, psh)):
        got = multiply_shift(a, m, s, mode)
        ab, mb, sb = np.broadcast_arrays(a, m, s)
        want = np.empty(ab.shape, dtype=object)
        for idx in np.ndindex(ab.shape):
            x = Fraction(int(ab[idx]) * int(mb[idx])) / Fraction(2) ** int(sb[idx])
            want[idx] = ref_round(x, mode)
        assert got.tolist() == want.tolist(), (mode, mbits)


def test_multiply_shift_narrow_and_wide_paths_agree() -> None:
    rng = np.random.default_rng(2)
    acc = rng.integers(-(1 << 31), 1 << 31, (50, 8))
    m0, sh = quantize_multiplier(10.0 ** rng.uniform(-6, 0, 8), 32)
    narrow = multiply_shift(acc, m0, sh, "half_even")
    big = np.vstack([acc, [[1 << 62] * 8]])  # one large row forces the wide path
    wide = multiply_shift(big, m0, sh, "half_even")
    np.testing.assert_array_equal(wide[:-1], narrow)


def test_multiply_shift_overflow_is_reported() -> None:
    with pytest.raises(OverflowError):
        multiply_shift(np.array([1 << 40]), np.array([1 << 31]), np.array([-10]), "floor")
    with pytest.raises(ValueError):
        multiply_shift(np.array([1]), np.array([1]), np.array([0]), "round")


# --- float32 fused multiply-add ------------------------------------------------------------------


def _exact_fma(x: np.ndarray, a: np.float32, b: float) -> np.ndarray:
    fa, fb = Fraction(float(a)), Fraction(b)
    return np.array([ref_f32(Fraction(float(xi)) * fa + fb) for xi in x], dtype=np.float32)


def _same_bits(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return (got.view(np.uint32) == want.view(np.uint32)) | ((got == 0) & (want == 0))


def _midpoint_cases() -> list[tuple[np.ndarray, np.float32, float]]:
    """x*a + b whose float64 sum lands exactly on a float32 midpoint but the exact value
    does not: x = (2**23+u) 2**-24, a = (2**23-w) 2**(e-23), so x*a = (2**46 + d) 2**(e-47)
    with |d| < 2**17; b = B 2**e (B in [2**23, 2**24)) has float32 ulp 2**e, the product's
    leading bit is b's rounding midpoint and d lies below float64's half ulp."""
    pairs = [(u, u) for u in (1, 7, 100, 361)]  # d = -u**2 < 0: exact value below midpoint
    pairs += [(w + 1, w) for w in range(2874, 2896)]  # d = 2**23 - w(w+1)
    pairs += [(w + 2, w) for w in range(4090, 4097)]  # d = 2**24 - w(w+2)
    out = []
    for e in (0, -8, 3, -20):
        for big in ((1 << 23) + 1, (1 << 23) + 2, (1 << 24) - 1, (1 << 24) - 2, 12345679):
            for sign in (1.0, -1.0):
                xs, a_vals = [], []
                for u, w in pairs:
                    d = (1 << 23) ** 2 + ((u - w) << 23) - u * w - (1 << 46)
                    assert 0 < abs(d) < 1 << 17
                    xs.append(sign * (2**23 + u) * 2.0**-24)
                    a_vals.append((2**23 - w) * 2.0 ** (e - 23))
                for a in sorted(set(a_vals)):
                    sel = [x for x, av in zip(xs, a_vals, strict=True) if av == a]
                    out.append((np.array(sel, np.float32), np.float32(a), sign * big * 2.0**e))
    return out


def test_f32_fma_round_crafted_midpoints() -> None:
    cases = _midpoint_cases()
    total = naive_wrong = 0
    for x, a, b in cases:
        got = f32_fma_round(x, a, b)
        want = _exact_fma(x, a, b)
        assert _same_bits(got, want).all(), (x, a, b)
        naive = (x.astype(np.float64) * np.float64(a) + b).astype(np.float32)
        naive_wrong += int((~_same_bits(naive, want)).sum())
        total += x.size
    assert total > 1000
    assert naive_wrong > total // 4  # the cases really are double-rounding traps


def test_f32_fma_round_random() -> None:
    rng = np.random.default_rng(17)
    total = 0
    for _ in range(30):
        scale = np.float32(10.0 ** rng.uniform(-4, 0))
        inv = np.float32(np.float32(1.0) / scale)
        zp = float(rng.integers(0, 256))
        x = np.concatenate([rng.random(150), rng.uniform(-2, 2, 50)]).astype(np.float32)
        got = f32_fma_round(x, inv, zp)
        assert got.dtype == np.float32
        assert _same_bits(got, _exact_fma(x, inv, zp)).all()
        total += x.size
    # arbitrary float32 operands (moderate exponents)
    for _ in range(20):
        x = (rng.standard_normal(100) * 10.0 ** rng.uniform(-6, 6, 100)).astype(np.float32)
        a = np.float32(rng.standard_normal() * 10.0 ** rng.uniform(-6, 6))
        b = float(np.float32(rng.standard_normal() * 10.0 ** rng.uniform(-6, 6)))
        assert _same_bits(f32_fma_round(x, a, b), _exact_fma(x, a, b)).all()
        total += x.size
    assert total == 30 * 200 + 20 * 100
