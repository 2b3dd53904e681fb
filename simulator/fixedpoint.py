"""Fixed-width registers, overflow policies and named rounding modes (vectorised numpy).

Every function here is exact on ``int64`` inputs whose magnitude is below 2**62, and every
narrowing returns the overflow events it caused: nothing is clipped or wrapped silently.

Rounding modes (for a real value v = n + f, n integer, 0 <= f < 1):

=============== ======================================================
``floor``        toward -inf
``ceil``         toward +inf
``toward_zero``  drop the fraction (C casts; fxpmath calls it 'trunc')
``half_up``      nearest, ties toward +inf (floor(v + 1/2))
``half_down``    nearest, ties toward -inf
``half_even``    nearest, ties to even (IEEE default, numpy.rint)
``half_away``    nearest, ties away from zero (C round())
=============== ======================================================

Overflow policies: ``wrap`` (two's complement modulo 2**bits), ``saturate`` (clamp to the
register range), ``error`` (raise :class:`RegisterOverflowError`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROUNDING_MODES: tuple[str, ...] = (
    "floor",
    "ceil",
    "toward_zero",
    "half_up",
    "half_down",
    "half_even",
    "half_away",
)
OVERFLOW_POLICIES: tuple[str, ...] = ("wrap", "saturate", "error")
MAX_BITS = 64


class RegisterOverflowError(ArithmeticError):
    """Raised by the ``error`` overflow policy; carries where it happened."""

    def __init__(self, message: str, flat_index: int, value: int) -> None:
        super().__init__(message)
        self.flat_index = flat_index
        self.value = value


def check_rounding(mode: str) -> str:
    if mode not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDING_MODES)}, not {mode!r}")
    return mode


def check_policy(policy: str) -> str:
    if policy not in OVERFLOW_POLICIES:
        raise ValueError(
            f"overflow policy must be one of {', '.join(OVERFLOW_POLICIES)}, not {policy!r}"
        )
    return policy


@dataclass(frozen=True)
class Register:
    """A fixed-width two's complement (signed) or plain binary (unsigned) register.

    bits: 1..64 (signed needs >= 2). Range: signed [-2**(bits-1), 2**(bits-1)-1],
    unsigned [0, 2**bits - 1].
    """

    bits: int
    signed: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or isinstance(self.bits, bool):
            raise ValueError(f"register width must be an integer, not {self.bits!r}")
        lo = 2 if self.signed else 1
        if not lo <= self.bits <= MAX_BITS:
            kind = "signed" if self.signed else "unsigned"
            raise ValueError(
                f"{kind} register width must be in {lo}..{MAX_BITS} bits, not {self.bits}"
            )

    @property
    def min(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def contains(self, lo: int, hi: int) -> bool:
        """True if every value in [lo, hi] fits without overflow."""
        return self.min <= lo and hi <= self.max

    def describe(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits} [{self.min}, {self.max}]"


@dataclass
class OverflowEvents:
    """Counts of values that fell below (``low``) or above (``high``) a register's range.

    first: flat index (C order) of the first offending element, or None.
    """

    low: int = 0
    high: int = 0
    first: int | None = None

    @property
    def total(self) -> int:
        return self.low + self.high

    def merge(self, other: OverflowEvents, offset: int = 0) -> None:
        if self.first is None and other.first is not None:
            self.first = other.first + offset
        self.low += other.low
        self.high += other.high


def _as_int64(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"expected an integer array, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= 1 << 63:
        raise OverflowError("uint64 values >= 2**63 do not fit the int64 datapath")
    return arr.astype(np.int64, copy=False)


def count_out_of_range(values: np.ndarray, reg: Register) -> OverflowEvents:
    """Count elements of an int64 array outside ``reg``'s range (no change to the values)."""
    v = _as_int64(values)
    if reg.bits >= 64 and reg.signed:
        return OverflowEvents()
    low_mask = v < reg.min
    high_mask = v > reg.max
    low = int(np.count_nonzero(low_mask))
    high = int(np.count_nonzero(high_mask))
    first = None
    if low or high:
        first = int(np.flatnonzero(low_mask.ravel() | high_mask.ravel())[0])
    return OverflowEvents(low, high, first)


def wrap(values: np.ndarray, reg: Register) -> np.ndarray:
    """Two's complement wrap of int64 values into ``reg`` (modulo 2**bits)."""
    v = _as_int64(values)
    if reg.bits >= 64:
        if not reg.signed and v.size and int(v.min()) < 0:
            # v mod 2**64 >= 2**63 for negative v: not representable in the int64 datapath
            raise OverflowError("wrapping negative values into u64 leaves the int64 datapath")
        return v.copy()
    mask = np.int64((1 << reg.bits) - 1)
    u = v & mask
    if reg.signed:
        sign = np.int64(1 << (reg.bits - 1))
        u = (u ^ sign) - sign
    return u


def saturate(values: np.ndarray, reg: Register) -> np.ndarray:
    """Clamp int64 values into ``reg``'s range."""
    v = _as_int64(values)
    lo = max(reg.min, -(1 << 63))
    hi = min(reg.max, (1 << 63) - 1)
    return np.clip(v, lo, hi)


def fit(
    values: np.ndarray, reg: Register, policy: str, what: str = "register"
) -> tuple[np.ndarray, OverflowEvents]:
    """Narrow int64 values into ``reg`` under ``policy``; return (values, events).

    ``error`` raises RegisterOverflowError at the first offending element (C order).
    """
    check_policy(policy)
    events = count_out_of_range(values, reg)
    if events.total == 0:
        return _as_int64(values).copy(), events
    if policy == "error":
        assert events.first is not None
        bad = int(np.asarray(values).ravel()[events.first])
        raise RegisterOverflowError(
            f"{what} overflow: value {bad} does not fit {reg.describe()} "
            f"(element {events.first}); widen the register or choose wrap/saturate",
            events.first,
            bad,
        )
    if policy == "wrap":
        return wrap(values, reg), events
    return saturate(values, reg), events


def round_float(values: np.ndarray, mode: str) -> np.ndarray:
    """Round real (float) values to integral floats by the named mode (same dtype)."""
    check_rounding(mode)
    v = np.asarray(values)
    if v.dtype.kind != "f":
        raise TypeError(f"round_float expects floats, got {v.dtype}")
    if mode == "floor":
        return np.floor(v)
    if mode == "ceil":
        return np.ceil(v)
    if mode == "toward_zero":
        return np.trunc(v)
    r = np.rint(v)  # nearest, ties to even; exact
    if mode == "half_even":
        return r
    # v - r is exact (|v - r| <= 1/2 and r is v's nearest integer), so ties are detected
    # exactly; v - floor(v) is not exact for v in (-1/2, 0) and misses near-ties there.
    diff = v - r
    tie = np.abs(diff) == v.dtype.type(0.5)
    up = tie & (diff > 0)  # v = r + 1/2: the tie's other neighbour is r + 1
    down = tie & (diff < 0)  # v = r - 1/2: the tie's other neighbour is r - 1
    if mode == "half_up":
        return np.where(up, r + 1, r)
    if mode == "half_down":
        return np.where(down, r - 1, r)
    # half_away: ties go to the neighbour with the larger magnitude
    return np.where(up & (v > 0), r + 1, np.where(down & (v < 0), r - 1, r))


def round_shift(values: np.ndarray, shift: int | np.ndarray, mode: str) -> np.ndarray:
    """Arithmetic right shift of int64 ``values`` by ``shift`` >= 0 bits with named rounding.

    Computes round(values / 2**shift) exactly; ``shift`` may be an array broadcastable to
    ``values`` (per-channel shifts). shift must be in 0..62.
    """
    check_rounding(mode)
    v = _as_int64(values)
    s = np.asarray(shift, dtype=np.int64)
    if s.size and (s.min() < 0 or s.max() > 62):
        raise ValueError(f"shift must be in 0..62, found {s.min()}..{s.max()}")
    q = v >> s  # floor division by 2**s
    r = v - (q << s)  # remainder in [0, 2**s)
    if mode == "floor":
        return q
    one = np.int64(1)
    nonzero = r != 0
    if mode == "ceil":
        return q + nonzero
    if mode == "toward_zero":
        return q + (nonzero & (v < 0))
    half = np.where(s > 0, one << np.maximum(s - 1, 0), 0)
    above = r > half
    tie = (r == half) & (s > 0)
    if mode == "half_up":
        return q + (above | tie)
    if mode == "half_down":
        return q + above
    if mode == "half_even":
        return q + (above | (tie & ((q & one) == 1)))
    # half_away: ties go up for positive values, down (stay at floor) for negative
    return q + (above | (tie & (v >= 0)))


def _round_shift_biased(v: np.ndarray, s: np.ndarray, mode: str) -> np.ndarray:
    """round_shift for |v| < 2**62 as one biased arithmetic shift, (v + bias) >> s, in place.

    ``s`` (0..62) broadcasts against ``v`` (per-channel shifts stay per channel). With
    h = 2**(s-1) for s > 0 (0 for s = 0) the bias is: floor 0, ceil 2**s - 1, half_up h,
    half_down h - 1, half_away h - 1 + [v >= 0], toward_zero (2**s - 1) [v < 0], half_even
    h - 1 + (floor(v / 2**s) & 1). |v| + bias < 2**63: no intermediate wraps.
    """
    one = np.int64(1)
    pos = (s > 0).astype(np.int64)
    half = np.where(s > 0, one << np.maximum(s - 1, 0), 0)
    if mode == "floor":
        return v >> s
    if mode == "half_even":
        odd = v >> s
        odd &= pos  # the floor's lowest bit, 0 where s = 0
        out = v + (half - pos)
        out += odd
    elif mode == "half_up":
        out = v + half
    elif mode == "half_down":
        out = v + (half - pos)
    elif mode == "ceil":
        out = v + ((one << s) - 1)
    elif mode == "half_away":
        out = v + (half - pos)
        out += (v >= 0) & (pos == 1)
    else:  # toward_zero
        out = v + ((v < 0) * ((one << s) - 1))
    out >>= s
    return out


def round_divide(num: np.ndarray, den: np.ndarray | int, mode: str) -> np.ndarray:
    """Exact integer division round(num / den) with the named rounding; den > 0."""
    check_rounding(mode)
    n = _as_int64(num)
    d = np.asarray(den, dtype=np.int64)
    if np.any(d <= 0):
        raise ValueError("divisor must be > 0")
    q = np.floor_divide(n, d)
    r = n - q * d  # in [0, d)
    if mode == "floor":
        return q
    nonzero = r != 0
    if mode == "ceil":
        return q + nonzero
    if mode == "toward_zero":
        return q + (nonzero & (n < 0))
    twice = 2 * r
    above = twice > d
    tie = twice == d
    if mode == "half_up":
        return q + (above | tie)
    if mode == "half_down":
        return q + above
    if mode == "half_even":
        return q + (above | (tie & ((q & 1) == 1)))
    return q + (above | (tie & (n >= 0)))


def quantize_multiplier(real: np.ndarray, bits: int = 31) -> tuple[np.ndarray, np.ndarray]:
    """Express positive reals m as M0 * 2**-shift with an unsigned ``bits``-bit M0.

    M0 is normalised to [2**(bits-1), 2**bits) (rounded half away from zero, as gemmlowp/
    TFLite do) so the relative error is below 2**-bits. Returns (M0 int64, shift int64).
    """
    if not 2 <= bits <= 32:
        raise ValueError(f"multiplier width must be in 2..32 bits, not {bits}")
    m = np.asarray(real, dtype=np.float64)
    if np.any(~np.isfinite(m)) or np.any(m <= 0):
        raise ValueError("requantization multipliers must be finite and > 0")
    mant, exp = np.frexp(m)  # m = mant * 2**exp, mant in [0.5, 1)
    m0 = np.floor(mant * float(1 << bits) + 0.5).astype(np.int64)
    carry = m0 == (1 << bits)
    m0 = np.where(carry, m0 >> 1, m0)
    exp = exp + carry
    shift = bits - exp.astype(np.int64)
    return m0, shift


def multiply_shift(
    acc: np.ndarray, m0: np.ndarray, shift: np.ndarray, mode: str
) -> np.ndarray:
    """round(acc * M0 / 2**shift) exactly, with the product held in a wide register.

    ``acc`` int64 (any shape, last axis = channel when m0/shift are per-channel arrays),
    ``m0`` >= 0 (up to 32 bits, see :func:`quantize_multiplier`). The exact product may need
    more than 64 bits; such elements are computed with unbounded integers, so no intermediate
    wraps. Shifts below 0 multiply by 2**-shift exactly; the result must fit int64.
    """
    check_rounding(mode)
    a = _as_int64(acc)
    m = np.asarray(m0, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    amax = max(int(a.max()), -int(a.min())) if a.size else 0  # exact, even for -2**63
    mmax = max(int(m.max()), -int(m.min())) if m.size else 0
    left = int(max(-int(s.min()), 0)) if s.size else 0
    right = int(s.max()) if s.size else 0
    if amax.bit_length() + mmax.bit_length() + left <= 62 and right <= 62:
        prod = a * m  # exact: below 2**62
        if left:
            prod <<= np.maximum(-s, 0)
        return _round_shift_biased(prod, np.maximum(s, 0), mode)
    # wide product: unbounded Python integers per element (rare: |acc * M0| >= 2**62)
    shape = np.broadcast(a, m, s).shape
    out = np.empty(shape, dtype=np.int64)
    flat = [x.ravel() for x in np.broadcast_arrays(a, m, s)]
    for i, (ai, mi, sh) in enumerate(zip(*flat, strict=True)):
        val = int(ai) * int(mi)
        sh = int(sh)
        res = val << -sh if sh < 0 else _round_shift_int(val, sh, mode)
        if not -(1 << 63) <= res < 1 << 63:
            raise OverflowError(f"multiply_shift result {res} does not fit int64")
        out.flat[i] = res
    return out


def _round_shift_int(val: int, shift: int, mode: str) -> int:
    q = val >> shift
    r = val - (q << shift)
    if mode == "floor" or r == 0:
        return q
    half = 1 << (shift - 1)
    if mode == "ceil":
        return q + 1
    if mode == "toward_zero":
        return q + (1 if val < 0 else 0)
    if r > half:
        return q + 1
    if r < half:
        return q
    if mode == "half_up":
        return q + 1
    if mode == "half_down":
        return q
    if mode == "half_even":
        return q + (q & 1)
    return q + (1 if val >= 0 else 0)


def f32_fma_round(x: np.ndarray, a: np.float32, b: float) -> np.ndarray:
    """float32 fused multiply-add x*a + b with a single rounding to float32 (vectorised).

    x: float32 array, a: float32 scalar, b: a float exactly representable in float32 (an
    integer zero point). The product is exact in float64 (24+24 bits); TwoSum recovers the
    exact error of the float64 addition, which decides the rare cases where the float64 sum
    lands exactly on a float32 rounding midpoint. Result is bit-identical to C fmaf().
    """
    x64 = np.asarray(x, dtype=np.float32).astype(np.float64)
    p = x64 * np.float64(a)  # exact
    bb = np.float64(b)
    s = p + bb
    t = s - p
    err = (p - (s - t)) + (bb - t)  # exact: p + bb == s + err
    r = s.astype(np.float32)
    # s is a float32 midpoint iff rounding s both ways gives neighbours whose mean is s
    r64 = r.astype(np.float64)
    below = np.nextafter(r, np.float32(-np.inf))
    above = np.nextafter(r, np.float32(np.inf))
    other = np.where(r64 > s, below, above)
    mid = (r64 + other.astype(np.float64)) * 0.5
    at_mid = (mid == s) & (err != 0)
    if np.any(at_mid):
        # exact value lies on the side of err: choose the neighbour in that direction
        toward = np.where(err > 0, np.maximum(r, other), np.minimum(r, other))
        r = np.where(at_mid, toward, r)
    return r
