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
* a compiled pass adds the chunk sums to the running prefix (float64, exact below 2**53) and
  flags the (pair, chunk) items that may wrap (or leave the ``safe`` register, for
  ``min_safe_acc_bits``);
* the flagged items of the chunk are stepped at once (:func:`chunk_stepper.step_items`).

Memory: (Q, N) arrays only, never (pairs x chunks). Outputs equal the general path's
(tests/test_overflow_paths.py). numba only; without it the general path runs.
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import Register
from .chunk_stepper import numba_enabled
from .partial_sums import ChunkPlan, ChunkResult, _float_for, wrap_values

_NB: dict[str, object] = {}


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
    try:
        dt = _float_for(plan.cs, xr, wr)
    except OverflowError:
        return None
    safe_lo = safe.min if safe is not None else -(1 << 62)
    safe_hi = safe.max if safe is not None else 1 << 62
    if "flag" not in _NB:
        _NB["flag"] = _compile()
    flag, step = _NB["flag"]  # type: ignore[misc]
    wt, wa = _weights_t(ow, dt, cache)
    xf = np.ascontiguousarray(ox, dtype=dt)
    xa = xf if xr[0] >= 0 else np.abs(xf)
    pair_id = np.full((q_count, n), -1, dtype=np.int64)
    f = qs.size
    pair_id[qs, js] = np.arange(f)
    prefix = np.zeros((q_count, n), dtype=np.float64)
    safe_min = float(safe.min) if safe is not None else -np.inf
    safe_max = float(safe.max) if safe is not None else np.inf
    out = ChunkResult(np.zeros(f, np.int64), np.zeros(f, np.int64), np.zeros(f, np.int64),
                      np.full(f, -1, np.int64), np.zeros(f, np.int64), 0, 0, 0)
    sums = np.empty((q_count, n), dtype=dt)
    abss = np.empty((q_count, n), dtype=dt)
    need = np.empty((q_count, n), dtype=np.bool_)
    oxc = np.ascontiguousarray(ox)
    owc = np.ascontiguousarray(ow)
    k = ox.shape[1]
    for c in range(plan.c):
        a, b = c * plan.cs, min((c + 1) * plan.cs, k)
        np.matmul(xf[:, a:b], wt[a:b], out=sums)
        np.matmul(xa[:, a:b], wa[a:b], out=abss)
        flag(sums, abss, prefix, pair_id, float(reg.min), float(1 << reg.bits),  # type: ignore[operator]
             safe_min, safe_max, need)
        qi, ji = np.nonzero(need)
        if not qi.size:
            continue
        pi = pair_id[qi, ji]
        start = prefix[qi, ji].astype(np.int64)  # prefix before chunk c (flag kept it)
        rem = abss[qi, ji].astype(np.int64)  # sum of |products| of the chunk
        nw = np.zeros(pi.size, dtype=np.int64)
        fs = np.full(pi.size, -1, dtype=np.int64)
        fv = np.zeros(pi.size, dtype=np.int64)
        lo_hi = np.zeros((pi.size, 2), dtype=np.int64)
        step(oxc, owc, qi, ji, start, rem, a, b, plan.g, k, reg.min, reg.bits,  # type: ignore[operator]
             safe_lo, safe_hi, early_exit, nw, fs, fv, lo_hi)
        out.partial_min = min(out.partial_min, int(lo_hi[:, 0].min()))
        out.partial_max = max(out.partial_max, int(lo_hi[:, 1].max()))
        out.stepped_chunks += int(pi.size)
        ev = nw > 0
        if ev.any():
            pe = pi[ev]
            out.wraps[pe] += nw[ev]
            new = out.first_step[pe] < 0  # chunks come in order: the first one is earliest
            out.first_step[pe[new]] = fs[ev][new]
            out.first_value[pe[new]] = fv[ev][new]
        # the flagged pairs' prefix still stands before chunk c: move it past the chunk
        prefix[qi, ji] += sums[qi, ji].astype(np.float64)
    out.acc = wrap_values(prefix[qs, js].astype(np.int64), reg)
    return out


def _compile() -> object:
    import numba

    @numba.njit(cache=True, nogil=True, parallel=True)
    def flag(sums, abss, prefix, pair_id, reg_min, wide, safe_min, safe_max,
             need):  # pragma: no cover - compiled
        """need[q, j]: pair (q, j) is evaluated and may wrap or leave ``safe`` in this chunk;
        the prefix of every other pair moves past the chunk."""
        q_all, n = sums.shape
        inv = 1.0 / wide
        for q in numba.prange(q_all):
            for j in range(n):
                s = np.float64(sums[q, j])
                a = np.float64(abss[q, j])
                p = prefix[q, j]
                lo = p + (s - a) * 0.5
                hi = p + (s + a) * 0.5
                wl = np.floor((lo - reg_min) * inv)
                wh = np.floor((hi - reg_min) * inv)
                nd = (pair_id[q, j] >= 0) & ((wl != wh) | (lo < safe_min) | (hi > safe_max))
                need[q, j] = nd
                prefix[q, j] = p if nd else p + s

    @numba.njit(cache=True, nogil=True, parallel=True)
    def step(ox, ow, qi, ji, start, rem, a, b, g, k, reg_min, bits, safe_lo, safe_hi, early,
             nw, fs, fv, lo_hi):  # pragma: no cover - compiled
        """Step items (query qi, neuron ji) over inputs [a, b) from prefix ``start``; dense
        schedule: a checkpoint ends every G inputs and the last input."""
        for it in numba.prange(qi.size):
            q = qi[it]
            j = ji[it]
            p = start[it]
            left = rem[it]
            win = (p - reg_min) >> bits
            wlo = reg_min + (win << bits)
            whi = wlo + (np.int64(1) << bits) - 1
            lo = np.int64(0)
            hi = np.int64(0)
            cnt = 0
            for kk in range(a, b):
                pr = np.int64(ox[q, kk]) * np.int64(ow[j, kk])
                p += pr
                left -= abs(pr)
                if (kk + 1) % g != 0 and kk != k - 1:
                    continue
                lo = min(lo, p)
                hi = max(hi, p)
                if p < wlo or p > whi:
                    cnt += 1
                    if fs[it] < 0:
                        fs[it] = kk // g
                        fv[it] = p - (win << bits)  # the register before plus the tree output
                    win = (p - reg_min) >> bits
                    wlo = reg_min + (win << bits)
                    whi = wlo + (np.int64(1) << bits) - 1
                if early and p - left >= wlo and p + left <= whi and p - left >= safe_lo \
                        and p + left <= safe_hi:
                    break
            nw[it] = cnt
            lo_hi[it, 0] = lo
            lo_hi[it, 1] = hi

    return flag, step
