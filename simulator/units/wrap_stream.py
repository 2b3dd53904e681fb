"""Sparse wrap events, dense schedule: chunk statistics streamed one K-chunk at a time.

The chunked path (:mod:`simulator.units.partial_sums`) needs, per pair and K-chunk c, the exact
prefix P(a_c) at the chunk start and the chunk's sum and absolute sum: a wrap may happen in
chunk c only if P(a_c) + [neg_c, pos_c] touches two 2**bits windows (neg_c / pos_c: the sums
of the chunk's negative / positive products). Here, in the dense schedule (every chunk starts
on an adder-tree step, so the register before chunk c holds P(a_c) exactly, modulo 2**bits),
the statistics are computed chunk by chunk for *all* queries at once:

* one float32 matrix product per chunk and operand, (Q, cs) @ (cs, N) with the transposed
  weights kept with the read-only weight matrix (exact: every chunk sum of |products| stays
  below 2**24, ``_float_for``; float64 otherwise) - large products run at BLAS speed, where
  the blocked (C, q, cs) stacks of the general path ran several times slower;
* one compiled pass per chunk (parallel over queries) flags the pairs whose
  P(a_c) + [neg_c, pos_c] may wrap (or leave the ``safe`` register, for
  ``min_safe_acc_bits``), steps those checkpoint by checkpoint right away - stopping once the
  chunk's remaining |products| can reach neither edge of the current window nor leave
  ``safe`` - and moves every pair's exact prefix past the chunk.

Memory: (Q, N) arrays only, never (pairs x chunks). Outputs equal the general path's
(tests/test_overflow_paths.py). numba only; without it the general path runs.
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import Register
from .chunk_stepper import PARALLEL_LOCK, numba_enabled
from .partial_sums import ChunkPlan, ChunkResult, _float_for, wrap_values

_NB: dict[str, object] = {}
STREAM_CHUNKS = 24  # chunks per K (48 and 96 measured no better on the bench: noise-level)


def _weights_t(ow: np.ndarray, dt: type, cache: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """(w'^T, |w'|^T) as (K, N) C-contiguous ``dt`` arrays, kept with the read-only weights."""
    key = ("stream_wt", dt)
    if cache is not None and key in cache:
        return cache[key]
    wt = np.ascontiguousarray(ow.T, dtype=dt)
    wa = np.abs(wt)
    if cache is not None:
        wt.flags.writeable = False
        wa.flags.writeable = False
        cache[key] = (wt, wa)
    return wt, wa


def evaluate_wrap_streamed(
    plan: ChunkPlan,
    ox: np.ndarray,
    ow: np.ndarray,
    qs: np.ndarray,
    js: np.ndarray,
    reg: Register,
    safe: Register | None,
    xr: tuple[int, int],
    wr: tuple[int, int],
    cache: dict | None = None,
    early_exit: bool = True,
) -> ChunkResult | None:
    """:class:`ChunkResult` of the wrap register for pairs (qs, js) (sorted by query), or None
    when this path does not apply (event_driven schedule, numba off, few live pairs).

    early_exit: a flagged chunk's stepping stops at a checkpoint once the chunk's remaining
    |products| can neither reach the current window's edges nor leave ``safe`` (the skipped
    partial sums then cannot change an event or ``min_safe_acc_bits``); off when the partial
    sum range must cover every stepped checkpoint (``report.headroom = "bound"``).
    """
    if not plan.dense or not numba_enabled() or not qs.size:
        return None
    q_count, n = ox.shape[0], ow.shape[0]
    if qs.size * 2 < q_count * n:  # a sparse set of pairs: the general path gathers them
        return None
    k = ox.shape[1]
    cs = -(-max(1, -(-k // STREAM_CHUNKS)) // plan.g) * plan.g
    cs = min(plan.cs, cs)  # a multiple of G: every chunk starts on an adder-tree step
    try:
        dt = _float_for(cs, xr, wr)
    except OverflowError:
        return None
    safe_lo = safe.min if safe is not None else -(1 << 62)
    safe_hi = safe.max if safe is not None else 1 << 62
    if "pass" not in _NB:
        _NB["pass"] = _compile()
    chunk_pass = _NB["pass"]
    wt, wa = _weights_t(ow, dt, cache)
    xf = np.ascontiguousarray(ox, dtype=dt)
    xa = xf if xr[0] >= 0 else np.abs(xf)
    pair_id = np.full((q_count, n), -1, dtype=np.int64)
    f = qs.size
    pair_id[qs, js] = np.arange(f)
    prefix = np.zeros((q_count, n), dtype=np.int64)
    out = ChunkResult(np.zeros(f, np.int64), np.zeros(f, np.int64), np.zeros(f, np.int64),
                      np.full(f, -1, np.int64), np.zeros(f, np.int64), 0, 0, 0)
    sums = np.empty((q_count, n), dtype=dt)
    abss = np.empty((q_count, n), dtype=dt)
    row_stats = np.zeros((q_count, 3), dtype=np.int64)  # partial min, max, stepped items
    # x' as int16 when it fits (uint8 / int8 / int16): fewer compiled signatures
    small = ox.dtype in (np.uint8, np.int8, np.int16)
    oxc = np.ascontiguousarray(ox, dtype=np.int16 if small else ox.dtype)
    owc = np.ascontiguousarray(ow)
    for a in range(0, k, cs):
        b = min(a + cs, k)
        np.matmul(xf[:, a:b], wt[a:b], out=sums)
        np.matmul(xa[:, a:b], wa[a:b], out=abss)
        with PARALLEL_LOCK:
            chunk_pass(sums, abss, prefix, pair_id, oxc, owc, a, b, plan.g,  # type: ignore[operator]
                       k, reg.min, reg.bits, safe_lo, safe_hi, early_exit, out.wraps,
                       out.first_step, out.first_value, row_stats)
    out.partial_min = int(row_stats[:, 0].min(initial=0))
    out.partial_max = int(row_stats[:, 1].max(initial=0))
    out.stepped_chunks = int(row_stats[:, 2].sum())
    out.acc = wrap_values(prefix[qs, js], reg)
    return out


def _compile() -> object:
    import numba

    @numba.njit(cache=True, nogil=True, parallel=True)
    def chunk_pass(sums, abss, prefix, pair_id, ox, ow, a, b, g, k, reg_min, bits, safe_lo,
                   safe_hi, early, wraps, first_step, first_value,
                   row_stats):  # pragma: no cover - compiled
        """One chunk [a, b) for every pair: flag the pairs that may wrap (or leave [safe_lo,
        safe_hi]) from P(a) + [neg, pos], step those, move every prefix past the chunk.

        Dense schedule: a checkpoint ends every G inputs (chunks start on one) and the last
        input; the register before the chunk holds P(a) modulo 2**bits.
        """
        q_all, n = sums.shape
        one = np.int64(1)
        for q in numba.prange(q_all):
            lo = row_stats[q, 0]
            hi = row_stats[q, 1]
            items = row_stats[q, 2]
            for j in range(n):
                pid = pair_id[q, j]
                s = np.int64(sums[q, j])
                p0 = prefix[q, j]
                prefix[q, j] = p0 + s
                if pid < 0:
                    continue
                av = np.int64(abss[q, j])
                neg = p0 + ((s - av) >> 1)
                pos = p0 + ((s + av) >> 1)
                if ((neg - reg_min) >> bits) == ((pos - reg_min) >> bits) and neg >= safe_lo \
                        and pos <= safe_hi:
                    continue
                items += 1
                p = p0
                left = av
                win = (p - reg_min) >> bits
                wlo = reg_min + (win << bits)
                whi = wlo + (one << bits) - 1
                for t0 in range(a, b, g):
                    t1 = min(t0 + g, b)
                    for kk in range(t0, t1):
                        pr = np.int64(ox[q, kk]) * np.int64(ow[j, kk])
                        p += pr
                        left -= abs(pr)
                    lo = min(lo, p)
                    hi = max(hi, p)
                    if p < wlo or p > whi:
                        wraps[pid] += 1
                        if first_step[pid] < 0:
                            first_step[pid] = t0 // g
                            first_value[pid] = p - (win << bits)  # register before + tree
                        win = (p - reg_min) >> bits
                        wlo = reg_min + (win << bits)
                        whi = wlo + (one << bits) - 1
                    if early and p - left >= wlo and p + left <= whi and p - left >= safe_lo \
                            and p + left <= safe_hi:
                        break
            row_stats[q, 0] = lo
            row_stats[q, 1] = hi
            row_stats[q, 2] = items

    return chunk_pass
