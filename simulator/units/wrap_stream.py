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
  ``min_safe_acc_bits``), moves every pair's exact prefix past the chunk, and then steps a
  query's flagged pairs *together*: their registers sit in one float64 array (lanes), updated
  input by input with x'_qk times the row k of w'^T (inputs with x' = 0 skipped) and checked
  at every checkpoint of the chunk (1.5x faster than stepping pair by pair with an early
  stop, on the 22-bit wrap bench).

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
) -> ChunkResult | None:
    """:class:`ChunkResult` of the wrap register for pairs (qs, js) (distinct, in row-major
    order, as ``np.nonzero`` gives them), or None when this path does not apply
    (event_driven schedule, numba off, few live pairs, sums of |products| reaching 2**53).

    The partial sum range covers every checkpoint of every flagged chunk (so it also serves
    ``report.headroom = "bound"``).
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
    if k * max(-xr[0], xr[1], 1) * max(-wr[0], wr[1], 1) >= 1 << 53:
        return None  # the float64 lanes would not hold every prefix sum exactly
    safe_lo = safe.min if safe is not None else -(1 << 62)
    safe_hi = safe.max if safe is not None else 1 << 62
    if "pass" not in _NB:
        _NB["pass"] = _compile()
    chunk_pass = _NB["pass"]
    wt, wa = _weights_t(ow, dt, cache)
    xf = np.ascontiguousarray(ox, dtype=dt)
    xa = xf if xr[0] >= 0 else np.abs(xf)
    f = qs.size
    every = f == q_count * n  # distinct row-major pairs: all of them
    if every:
        pair_id = np.arange(f, dtype=np.int64).reshape(q_count, n)
    else:
        pair_id = np.full((q_count, n), -1, dtype=np.int64)
        pair_id[qs, js] = np.arange(f)
    prefix = np.zeros((q_count, n), dtype=np.int64)
    out = ChunkResult(np.zeros(f, np.int64), np.zeros(f, np.int64), np.zeros(f, np.int64),
                      np.full(f, -1, np.int64), np.zeros(f, np.int64), 0, 0, 0)
    sums = np.empty((q_count, n), dtype=dt)
    abss = np.empty((q_count, n), dtype=dt)
    row_stats = np.zeros((q_count, 3), dtype=np.int64)  # partial min, max, stepped items
    for a in range(0, k, cs):
        b = min(a + cs, k)
        np.matmul(xf[:, a:b], wt[a:b], out=sums)
        np.matmul(xa[:, a:b], wa[a:b], out=abss)
        with PARALLEL_LOCK:
            chunk_pass(sums, abss, prefix, pair_id, xf, wt, a, b, plan.g,  # type: ignore[operator]
                       reg.min, reg.bits, safe_lo, safe_hi, out.wraps, out.first_step,
                       out.first_value, row_stats)
    out.partial_min = int(row_stats[:, 0].min(initial=0))
    out.partial_max = int(row_stats[:, 1].max(initial=0))
    out.stepped_chunks = int(row_stats[:, 2].sum())
    out.acc = wrap_values(prefix.reshape(-1), reg, True) if every else wrap_values(
        prefix[qs, js], reg, True)  # prefix is this pass's own
    return out


def _compile() -> object:
    import numba

    @numba.njit(cache=True, nogil=True, parallel=True)
    def chunk_pass(sums, abss, prefix, pair_id, xf, wt, a, b, g, reg_min, bits, safe_lo,
                   safe_hi, wraps, first_step, first_value,
                   row_stats):  # pragma: no cover - compiled
        """One chunk [a, b) for every pair: flag the pairs that may wrap (or leave [safe_lo,
        safe_hi]) from P(a) + [neg, pos], move every prefix past the chunk, step the flagged.

        Dense schedule: a checkpoint ends every G inputs (chunks start on one) and the last
        input; the register before the chunk holds P(a) modulo 2**bits. A query's flagged
        pairs are stepped together: registers in one float64 array (exact integers, |P| <
        2**53), updated input by input from xf[q, kk] * wt[kk] (x' = 0 skipped), checked at
        every checkpoint; windows floor((P - reg_min) / 2**bits) are exact in float64.
        """
        q_all, n = sums.shape
        span = np.float64(2.0) ** bits
        inv = 1.0 / span
        rmin = np.float64(reg_min)
        for q in numba.prange(q_all):
            lo = row_stats[q, 0]
            hi = row_stats[q, 1]
            fl = np.empty(n, dtype=np.int64)
            acc = np.empty(n, dtype=np.float64)
            nf = 0
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
                fl[nf] = j
                acc[nf] = np.float64(p0)
                nf += 1
            row_stats[q, 2] += nf
            if nf == 0:
                continue
            win = np.empty(nf, dtype=np.float64)  # the registers' 2**bits windows, and
            win_next = np.empty(nf, dtype=np.float64)  # after this checkpoint (no masked stores)
            ev = np.zeros(nf, dtype=np.int64)
            fs = np.full(nf, -1, dtype=np.int64)
            fv = np.zeros(nf, dtype=np.float64)
            for u in range(nf):
                win[u] = np.floor((acc[u] - rmin) * inv)
            lo_f = np.float64(lo)
            hi_f = np.float64(hi)
            for t0 in range(a, b, g):
                for kk in range(t0, min(t0 + g, b)):
                    xv = np.float64(xf[q, kk])
                    if xv != 0.0:
                        row = wt[kk]
                        for u in range(nf):
                            acc[u] += xv * np.float64(row[fl[u]])
                st = t0 // g
                n_first = 0
                for u in range(nf):
                    p = acc[u]
                    lo_f = min(lo_f, p)
                    hi_f = max(hi_f, p)
                    wn = np.floor((p - rmin) * inv)
                    ch = wn != win[u]
                    n_first += 1 if ch & (fs[u] < 0) else 0
                    ev[u] += ch
                    win_next[u] = wn
                if n_first:  # rare: only here a store depends on a condition
                    for u in range(nf):
                        if win_next[u] != win[u] and fs[u] < 0:
                            fs[u] = st
                            fv[u] = acc[u] - win[u] * span
                win, win_next = win_next, win
            for u in range(nf):
                pid = pair_id[q, fl[u]]
                wraps[pid] += ev[u]
                if fs[u] >= 0 and first_step[pid] < 0:
                    first_step[pid] = fs[u]
                    first_value[pid] = np.int64(fv[u])  # register before + tree output
            row_stats[q, 0] = min(lo, np.int64(lo_f))
            row_stats[q, 1] = max(hi, np.int64(hi_f))

    return chunk_pass
