"""The MAC array's offset input operands x' = x - zx, in one compiled pass.

acc_screened.py needs, for int64 input codes x (Q, K) and the zero point zx: x' in the
narrowest of int16 / int64 that holds it, the bounds (min(x, 0) - zx, max(x, 0) - zx), and
each query's sum of |x'| (int64). numpy takes six passes over x for them (min, max, subtract,
cast, abs, sum: ~16 ms per run of the bench's two layers); the numba kernel here takes one,
parallel over query rows, writing x' in int16 as it goes (when the bounds then show that
int16 cannot hold x', the numpy path computes it in int64). acc_chunked.py's narrowed x'
(:func:`narrow_offset`) comes from the same pass. ``HWSIM_NUMBA=0``, or inputs
that are not C-ordered int64, take the numpy path; both give the same integers (tests/
test_offset_inputs.py). Also :func:`value_range`, (min, max) of an int64 array in one pass, and
:func:`count_active`, the inputs that differ from the zero point per row.
"""

from __future__ import annotations

import numpy as np

from .chunk_stepper import numba_enabled, serialized

_NB: dict[str, object] = {}
MIN_COMPILED = 1 << 16  # elements below which numpy is as fast


def offset_inputs(x: np.ndarray, zx: int) -> tuple[np.ndarray, int, int, np.ndarray]:
    """(x' = x - zx in int16 when -32768 < xlo and xhi <= 32767 (so |x'| fits too) else
    int64, xlo, xhi, per-row sum of |x'| int64 (Q,)), with xlo = min(min x, 0) - zx and
    xhi = max(max x, 0) - zx."""
    got = _scanned(x, zx)
    if got is not None:
        ox, lo, hi, abs_rows = got
        xlo, xhi = min(lo + zx, 0) - zx, max(hi + zx, 0) - zx
        if -(1 << 15) < xlo and xhi < (1 << 15):
            return ox, xlo, xhi, abs_rows
    xlo, xhi = int(x.min(initial=0)) - zx, int(x.max(initial=0)) - zx
    xdt = np.int16 if -(1 << 15) < xlo and xhi < (1 << 15) else np.int64
    ox = (x - zx).astype(xdt, copy=False)
    return ox, xlo, xhi, np.abs(ox).sum(axis=1, dtype=np.int64)


def narrow_offset(x: np.ndarray, zx: int) -> tuple[np.ndarray, tuple[int, int]]:
    """accumulator.narrow(x - zx) for int64 codes x: x' in the smallest of int8 / uint8 /
    int16 / int32 / int64 holding it, and (min(x', 0), max(x', 0))."""
    from .accumulator import narrow

    got = _scanned(x, zx)
    if got is None:
        return narrow(x.astype(np.int64, copy=False) - zx)
    ox, lo, hi, _ = got
    for dt in (np.int8, np.uint8, np.int16):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return ox.astype(dt, copy=False), (min(lo, 0), max(hi, 0))
    return narrow(x - zx)


def _scanned(x: np.ndarray, zx: int) -> tuple[np.ndarray, int, int, np.ndarray] | None:
    """(x - zx wrapped into int16, min(x'), max(x'), per-row sum of |x'|) by the compiled
    scan, or None where it does not run (numba off, small or not C-ordered int64 x). The
    int16 array holds x' only when [min, max] fits int16 (callers check)."""
    if not (numba_enabled() and x.ndim == 2 and x.dtype == np.int64 and x.flags.c_contiguous
            and x.size >= MIN_COMPILED and -(1 << 62) < zx < 1 << 62):
        return None
    q, k = x.shape
    out = np.empty((q, k), dtype=np.int16)
    lows = np.empty(q, dtype=np.int64)
    highs = np.empty(q, dtype=np.int64)
    abs_rows = np.empty(q, dtype=np.int64)
    _scan()(x, np.int64(zx), out, lows, highs, abs_rows)
    return out, int(lows.min()) - zx, int(highs.max()) - zx, abs_rows


def value_range(a: np.ndarray) -> tuple[int, int]:
    """(min, max) of a non-empty array: one compiled pass for big C-ordered int64 ones."""
    if numba_enabled() and a.dtype == np.int64 and a.flags.c_contiguous and \
            a.size >= MIN_COMPILED:
        flat = a.reshape(-1)
        parts = max(1, min(64, flat.size // MIN_COMPILED))
        lows = np.empty(parts, dtype=np.int64)
        highs = np.empty(parts, dtype=np.int64)
        _minmax()(flat, lows, highs)
        return int(lows.min()), int(highs.max())
    return int(a.min()), int(a.max())


def count_active(x: np.ndarray, zx: int) -> np.ndarray:
    """int64 (Q,) number of inputs x != zx per query row (an event-driven schedule's
    k_active): one compiled pass for big C-ordered int64 x (numpy's compare and sum took
    ~3.6 ms on the bench's two layers), else numpy; the same counts."""
    if numba_enabled() and x.ndim == 2 and x.dtype == np.int64 and x.flags.c_contiguous \
            and x.size >= MIN_COMPILED:
        out = np.empty(x.shape[0], dtype=np.int64)
        _count()(x, np.int64(zx), out)
        return out
    return np.count_nonzero(x != zx, axis=1).astype(np.int64)


def _count() -> object:
    if "count" not in _NB:
        import numba

        @numba.njit(cache=True, nogil=True, parallel=True)
        def count(x, zx, out):  # pragma: no cover - compiled
            for q in numba.prange(x.shape[0]):
                c = 0
                for i in range(x.shape[1]):
                    c += x[q, i] != zx
                out[q] = c

        _NB["count"] = serialized(count)
    return _NB["count"]


def _scan() -> object:
    if "scan" not in _NB:
        import numba

        @numba.njit(cache=True, nogil=True, parallel=True)
        def scan(x, zx, out, lows, highs, abs_rows):  # pragma: no cover - compiled
            q_all, k = x.shape
            for q in numba.prange(q_all):
                lo = x[q, 0] if k else 0
                hi = lo
                s = 0
                for i in range(k):
                    v = x[q, i]
                    lo = min(lo, v)
                    hi = max(hi, v)
                    d = v - zx
                    out[q, i] = d  # int16: kept only when every d fits (checked after)
                    s += abs(d)
                lows[q] = lo
                highs[q] = hi
                abs_rows[q] = s

        _NB["scan"] = serialized(scan)
    return _NB["scan"]


def _minmax() -> object:
    if "minmax" not in _NB:
        import numba

        @numba.njit(cache=True, nogil=True, parallel=True)
        def minmax(a, lows, highs):  # pragma: no cover - compiled
            parts = lows.size
            for p in numba.prange(parts):
                i0 = p * a.size // parts
                i1 = (p + 1) * a.size // parts
                lo = a[i0]
                hi = lo
                for i in range(i0 + 1, i1):
                    v = a[i]
                    lo = min(lo, v)
                    hi = max(hi, v)
                lows[p] = lo
                highs[p] = hi

        _NB["minmax"] = serialized(minmax)
    return _NB["minmax"]
