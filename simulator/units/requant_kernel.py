"""The requantizer of requantizer.py in one compiled pass (numba): scale, round, zero point,
clamp and the clamp counts, for the two schemes most runs use.

* ``fbgemm`` / ``qnnpack`` with ``half_even`` rounding: v = float32(acc) * m_j (one float32
  multiply, round to nearest even), rint(v) (ties to even), + zy;
* ``fixed_point`` with a product that fits int64 (|acc| * M0_j * 2**left below 2**62):
  round(acc * M0_j / 2**shift_j) by a biased arithmetic shift (every rounding mode of
  fixedpoint._round_shift_biased), + zy. With |acc| and M0 below 2**31, shifts 1..62 and
  ``half_even`` (the int8_fixed_point preset) a loop of its own: int32 x int32 products and
  no branch, which LLVM vectorises (12.4 -> 4.4-6.6 ms for the bench's 500 x 6272 sums).

Then clamp to [lo, hi]; per neuron, the codes clamped low and high; the first clamp in
query order. A row is scanned for clamps first; only a row that has any is clipped into the
codes and counted, by a branch-free loop (VPRTempo's feature layer clamps about half its
codes low: the loop with branches took ~10 ms of its 15). When nothing clamped (the usual
case elsewhere) the unclamped values are the codes too (one array, as on the numpy path).
The same integers as the numpy path (``HWSIM_NUMBA=0`` runs that one; the tests compare
both), in one pass over the accumulators instead of six to ten, without their (Q, N)
temporaries. Rows are cut into blocks, each with its own counts (summed at the end).
"""

from __future__ import annotations

import numpy as np

from .chunk_stepper import numba_enabled, serialized
from .offset_inputs import value_range

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
                     clamp: tuple[int, int], acc_range: tuple[int, int] | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int] | None:
    """As :func:`requantize_float32` for round(acc * m0 / 2**shift) + zy (per-channel m0 >= 0
    and shifts, int64 (N,)); None when a product could reach 2**62 or a shift passes 62
    (the numpy path's wide arithmetic then runs). ``acc_range``: bounds the caller
    guarantees for every accumulator (the register's range); when they settle the choice
    of loop, the accumulators are not scanned for their range."""
    m = np.asarray(m0, dtype=np.int64).reshape(-1)
    s = np.asarray(shift, dtype=np.int64).reshape(-1)
    if not acc.size or int(s.max(initial=0)) > 62 or int(m.min(initial=0)) < 0:
        return None
    kind = None if acc_range is None else _fixed_kind(acc_range, m, s, mode)
    if kind is None:
        kind = _fixed_kind(value_range(acc), m, s, mode)
    if kind is None:
        return None
    return _run(kind, acc, np.zeros(1, np.float32), m, s, MODES.index(mode), zy, clamp)


def _fixed_kind(acc_range: tuple[int, int], m0: np.ndarray, shift: np.ndarray, mode: str
                ) -> int | None:
    """The kernel's loop for accumulators inside ``acc_range``: None when |acc| * M0 *
    2**left could reach 2**62, 2 (int32 x int32 products) for accumulators and M0 inside
    int32, shifts >= 1 and half_even, else 1."""
    lo, hi = int(acc_range[0]), int(acc_range[1])
    amax = max(hi, -lo, 0)
    mmax = int(m0.max(initial=0))
    left = max(-int(shift.min(initial=0)), 0)
    if (amax * mmax) << left >= 1 << 62:
        return None
    narrow = -(1 << 31) <= lo and hi < 1 << 31 and mmax < 1 << 31 and \
        int(shift.min(initial=1)) >= 1
    return 2 if narrow and mode == "half_even" else 1


def _run(kind: int, acc: np.ndarray, m32: np.ndarray, m0: np.ndarray, shift: np.ndarray,
         mode: int, zy: int, clamp: tuple[int, int]
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    q, n = acc.shape
    a = np.ascontiguousarray(acc, dtype=np.int64)
    unclamped = np.empty((q, n), dtype=np.int64)
    codes = np.empty((q, n), dtype=np.int64)  # pages touched only by rows that clamp
    clamped = np.zeros(q, dtype=np.bool_)
    blocks = max(1, min(ROW_BLOCKS, q))
    low = np.zeros((blocks, n), dtype=np.int64)
    high = np.zeros((blocks, n), dtype=np.int64)
    first = np.full(blocks, -1, dtype=np.int64)
    m0b = np.broadcast_to(m0, (n,)).copy() if kind else m0
    shb = np.broadcast_to(shift, (n,)).copy() if kind else shift
    _kernel()(kind, a, m32, m0b, shb, mode, np.int64(zy), np.int64(clamp[0]),
              np.int64(clamp[1]), unclamped, codes, clamped, low, high, first)
    hits = first[first >= 0]
    if not hits.size:  # nothing clamped (the usual case): the codes are the unclamped values
        codes = unclamped
    elif not clamped.all():
        rest = ~clamped
        codes[rest] = unclamped[rest]
    return (codes, unclamped, low.sum(axis=0), high.sum(axis=0),
            int(hits.min()) if hits.size else -1)


def _kernel() -> object:
    global _round_shift, _row_float32, _row_half_even, _row_fixed, _row_clamps, _row_clip
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

        @numba.njit(cache=True, nogil=True, fastmath=False)
        def _row_float32(row, m32, zy, out):  # pragma: no cover - compiled
            for j in range(row.size):
                out[j] = np.int64(np.rint(np.float32(row[j]) * m32[j])) + zy

        @numba.njit(cache=True, nogil=True)
        def _row_half_even(row, m0, shift, zy, out):  # pragma: no cover - compiled
            # |acc| and M0 below 2**31, 1 <= shift <= 62: int32 x int32 products (vpmuldq)
            for j in range(row.size):
                p = np.int64(np.int32(row[j])) * np.int64(np.int32(m0[j]))
                s = shift[j]
                b = (np.int64(1) << (s - 1)) - 1 + ((p >> s) & 1)
                out[j] = ((p + b) >> s) + zy

        @numba.njit(cache=True, nogil=True)
        def _row_fixed(row, m0, shift, mode, zy, out):  # pragma: no cover - compiled
            for j in range(row.size):
                s = shift[j]
                p = row[j] * m0[j]
                if s < 0:
                    p = p << (-s)
                    s = 0
                out[j] = _round_shift(p, s, mode) + zy

        @numba.njit(cache=True, nogil=True)
        def _row_clamps(out, lo, hi):  # pragma: no cover - compiled
            hit = False
            for j in range(out.size):
                hit |= (out[j] < lo) | (out[j] > hi)
            return hit

        @numba.njit(cache=True, nogil=True)
        def _row_clip(out, lo, hi, low, high, codes):  # pragma: no cover - compiled
            # branch-free (vectorised): VPRTempo's feature layer clamps about half its codes
            for j in range(out.size):
                u = out[j]
                low[j] += u < lo
                high[j] += u > hi
                codes[j] = min(max(u, lo), hi)

        @numba.njit(cache=True, nogil=True, parallel=True)
        def kern(kind, acc, m32, m0, shift, mode, zy, lo, hi, unclamped, codes, clamped, low,
                 high, first):  # pragma: no cover - compiled
            q_all, n = acc.shape
            blocks = first.size
            for b in numba.prange(blocks):
                q0 = b * q_all // blocks
                q1 = (b + 1) * q_all // blocks
                for q in range(q0, q1):
                    out = unclamped[q]
                    if kind == 0:
                        _row_float32(acc[q], m32, zy, out)
                    elif kind == 2:
                        _row_half_even(acc[q], m0, shift, zy, out)
                    else:
                        _row_fixed(acc[q], m0, shift, mode, zy, out)
                    if not _row_clamps(out, lo, hi):
                        continue
                    clamped[q] = True
                    _row_clip(out, lo, hi, low[b], high[b], codes[q])
                    if first[b] < 0:
                        for j in range(n):
                            if out[j] < lo or out[j] > hi:
                                first[b] = q * n + j
                                break

        _NB["k"] = serialized(kern)
    return _NB["k"]
