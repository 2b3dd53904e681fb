"""The requantizer of requantizer.py in one compiled pass (numba): scale, round, zero point,
clamp and the clamp counts, for the two schemes most runs use.

* ``fbgemm`` / ``qnnpack`` with ``half_even`` rounding: v = float32(acc) * m_j (one float32
  multiply, round to nearest even), rint(v) (ties to even), + zy;
* ``fixed_point`` with a product that fits int64 (|acc| * M0_j * 2**left below 2**62):
  round(acc * M0_j / 2**shift_j) by a biased arithmetic shift (every rounding mode of
  fixedpoint._round_shift_biased), + zy.

Then clamp to [lo, hi]; per neuron, the codes clamped low and high; the first clamp in
query order. The loop writes the unclamped values only: when nothing clamped (the usual
case) they are the codes too (one array, as on the numpy path), else np.clip makes them.
The same integers as the numpy path (``HWSIM_NUMBA=0`` runs that one; the tests compare
both), in one pass over the accumulators instead of six to ten, without their (Q, N)
temporaries. Rows are cut into blocks, each with its own counts (summed at the end).
"""

from __future__ import annotations

import numpy as np

from .chunk_stepper import numba_enabled, serialized

MODES = ("floor", "half_even", "half_up", "half_down", "ceil", "half_away", "toward_zero")
_NB: dict[str, object] = {}
ROW_BLOCKS = 16  # blocks of query rows, each with its own clamp counts


def available() -> bool:
    """True when numba is usable (HWSIM_NUMBA)."""
    return numba_enabled()


def requantize_float32(acc: np.ndarray, m: np.ndarray, zy: int, clamp: tuple[int, int]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(codes, unclamped, low counts, high counts, first clamp flat index or -1) of
    rint(float32(acc) * m) + zy; ``acc`` int64 (Q, N), ``m`` float32 (N,)."""
    return _run(0, acc, np.asarray(m, dtype=np.float32), np.zeros(1, np.int64),
                np.zeros(1, np.int64), 0, zy, clamp)


def requantize_fixed(acc: np.ndarray, m0: np.ndarray, shift: np.ndarray, mode: str, zy: int,
                     clamp: tuple[int, int]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int] | None:
    """As :func:`requantize_float32` for round(acc * m0 / 2**shift) + zy (per-channel m0 >= 0
    and shifts, int64 (N,)); None when a product could reach 2**62 or a shift passes 62
    (the numpy path's wide arithmetic then runs)."""
    m = np.asarray(m0, dtype=np.int64).reshape(-1)
    s = np.asarray(shift, dtype=np.int64).reshape(-1)
    if not acc.size:
        return None
    amax = max(int(acc.max()), -int(acc.min()))
    mmax = int(m.max(initial=0))
    left = max(-int(s.min(initial=0)), 0)
    if amax.bit_length() + mmax.bit_length() + left > 62 or int(s.max(initial=0)) > 62 or \
            int(m.min(initial=0)) < 0:
        return None
    return _run(1, acc, np.zeros(1, np.float32), m, s, MODES.index(mode), zy, clamp)


def _run(kind: int, acc: np.ndarray, m32: np.ndarray, m0: np.ndarray, shift: np.ndarray,
         mode: int, zy: int, clamp: tuple[int, int]
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    q, n = acc.shape
    a = np.ascontiguousarray(acc, dtype=np.int64)
    unclamped = np.empty((q, n), dtype=np.int64)
    blocks = max(1, min(ROW_BLOCKS, q))
    low = np.zeros((blocks, n), dtype=np.int64)
    high = np.zeros((blocks, n), dtype=np.int64)
    first = np.full(blocks, -1, dtype=np.int64)
    m0b = np.broadcast_to(m0, (n,)).copy() if kind == 1 else m0
    shb = np.broadcast_to(shift, (n,)).copy() if kind == 1 else shift
    _kernel()(kind, a, m32, m0b, shb, mode, np.int64(zy), np.int64(clamp[0]),
              np.int64(clamp[1]), unclamped, low, high, first)
    hits = first[first >= 0]
    # nothing clamped (the usual case): the codes are the unclamped values, one array
    codes = np.clip(unclamped, clamp[0], clamp[1]) if hits.size else unclamped
    return (codes, unclamped, low.sum(axis=0), high.sum(axis=0),
            int(hits.min()) if hits.size else -1)


def _kernel() -> object:
    if "k" not in _NB:
        import numba

        @numba.njit(cache=True, nogil=True)
        def _round_shift(v, s, mode):  # pragma: no cover - compiled
            if s == 0:
                return v
            half = np.int64(1) << (s - 1)
            if mode == 0:  # floor
                b = np.int64(0)
            elif mode == 1:  # half_even
                b = half - 1 + ((v >> s) & 1)
            elif mode == 2:  # half_up
                b = half
            elif mode == 3:  # half_down
                b = half - 1
            elif mode == 4:  # ceil
                b = (np.int64(1) << s) - 1
            elif mode == 5:  # half_away
                b = half - 1 + (1 if v >= 0 else 0)
            else:  # toward_zero
                b = (np.int64(1) << s) - 1 if v < 0 else np.int64(0)
            return (v + b) >> s

        @numba.njit(cache=True, nogil=True, parallel=True)
        def kern(kind, acc, m32, m0, shift, mode, zy, lo, hi, unclamped, low, high,
                 first):  # pragma: no cover - compiled
            q_all, n = acc.shape
            blocks = first.size
            for b in numba.prange(blocks):
                q0 = b * q_all // blocks
                q1 = (b + 1) * q_all // blocks
                for q in range(q0, q1):
                    for j in range(n):
                        if kind == 0:
                            v = np.float32(acc[q, j]) * m32[j]
                            r = np.int64(np.rint(v))
                        else:
                            s = shift[j]
                            p = acc[q, j] * m0[j]
                            if s < 0:
                                p = p << (-s)
                                s = 0
                            r = _round_shift(p, s, mode)
                        u = r + zy
                        unclamped[q, j] = u
                        if u < lo:
                            low[b, j] += 1
                            if first[b] < 0:
                                first[b] = q * n + j
                        elif u > hi:
                            high[b, j] += 1
                            if first[b] < 0:
                                first[b] = q * n + j

        _NB["k"] = serialized(kern)
    return _NB["k"]
