"""Compiled evaluation of the hot pre-add entries of a dense schedule (numba).

A hot entry e is one (neuron j, group g) whose P weights can push the group's sum out of the
signed pre-add register for some input (pre_add.py finds them from the weights alone). For
every query q the kernel forms the exact group sum s = sum_p x'_q,k_p w'_j,k_p (int64), fits
it into the register (wrap, or saturate; ``error`` fits as saturate, as everywhere) and
accumulates, per (query, neuron), the sum of the corrections fitted - s, of the negative ones,
and the number of events (fitted != s). (pre_add.py finds the first event with numpy, in the
first query that has one.)

Pruning (exact): |s| <= m * sum_p |w'_j,k_p| with m = max_p |x'_q,k_p|, so for each (query,
group) only the entries whose sum of |w'| exceeds (register limit) // m are evaluated; they
come first because each group's entries are sorted by decreasing sum of |w'|. Work is spread
over queries (each query's output row is written by one thread), outputs are written only at
events. The numpy fallback in pre_add.py gives the same integers
(``HWSIM_NUMBA=0``); tests run both.
"""

from __future__ import annotations

import numpy as np

from .chunk_stepper import PARALLEL_LOCK, numba_enabled

_NB: dict[str, object] = {}


def hot_kernel_available() -> bool:
    """True when numba is usable (see chunk_stepper.numba_enabled) and the kernel compiles."""
    if not numba_enabled():
        return False
    if "kernel" not in _NB:
        try:
            _NB["kernel"] = _compile()
        except ImportError:  # pragma: no cover - numba_enabled() already imported it
            _NB["kernel"] = None
    return _NB["kernel"] is not None


def evaluate_hot(
    ox: np.ndarray,
    groups: np.ndarray,
    hot_groups: np.ndarray,
    gptr: np.ndarray,
    ent_j: np.ndarray,
    ent_w: np.ndarray,
    ent_wsum: np.ndarray,
    reg_min: int,
    reg_max: int,
    wrap: bool,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run the compiled kernel.

    ox: int64 (Q, K) inputs x'; groups int64 (G, P) input indices (K = zero padding);
    hot_groups (H,) ascending, group hot_groups[h] owning entries [gptr[h], gptr[h+1]),
    sorted by decreasing ent_wsum (sum_p |w'|); ent_j (E,) neurons; ent_w int64 (E, P).
    Returns (Q, N) arrays: the sum of all and of the negative corrections (int64), events
    (int32).
    """
    kern, kern2 = _NB["kernel"]  # type: ignore[misc]
    q, k = ox.shape
    xmax = int(np.abs(ox).max(initial=0))
    safe = min(reg_max, -reg_min)
    lim = safe // np.maximum(np.arange(min(xmax, 1 << 16) + 1, dtype=np.int64), 1)
    delta = np.zeros((q, n), dtype=np.int64)
    dneg = np.zeros((q, n), dtype=np.int64)
    cnt = np.zeros((q, n), dtype=np.int32)
    wmax = int(np.abs(ent_w).max(initial=0))
    small = max(xmax * wmax * 2, safe + 1, -reg_min) < 1 << 30 and xmax <= 1 << 16
    if groups.shape[1] == 2 and small:  # pairs in int32 (VPMADDUBSW): the common case
        xpad = np.zeros((q, k + 1), dtype=np.int32)  # column k: the zero padding
        xpad[:, :k] = ox
        cols = groups[hot_groups].astype(np.int32)
        w32 = ent_w.astype(np.int32)
        c0, c1 = np.ascontiguousarray(cols[:, 0]), np.ascontiguousarray(cols[:, 1])
        w0, w1 = np.ascontiguousarray(w32[:, 0]), np.ascontiguousarray(w32[:, 1])
        with PARALLEL_LOCK:
            kern2(xpad, c0, c1, gptr, ent_j.astype(np.int32), w0, w1,
                  ent_wsum.astype(np.int32), lim.astype(np.int32), np.int32(reg_min),
                  np.int32(reg_max), wrap, delta, dneg, cnt)
        return delta, dneg, cnt
    with PARALLEL_LOCK:
        kern(ox, groups, hot_groups, gptr, ent_j, ent_w, ent_wsum, lim,
             reg_min, reg_max, wrap, delta, dneg, cnt)
    return delta, dneg, cnt


def _compile() -> object:
    import numba

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(ox, groups, hot_groups, gptr, ent_j, ent_w, ent_wsum, lim_of,  # noqa: PLR0913
               reg_min, reg_max, wrap, delta, dneg, cnt):  # pragma: no cover - compiled
        k = ox.shape[1]
        p_count = groups.shape[1]
        span = reg_max - reg_min + 1
        safe = min(reg_max, -reg_min)  # |s| <= safe fits the register
        for q in numba.prange(ox.shape[0]):
            xq = ox[q]
            dl = delta[q]
            dn = dneg[q]
            ct = cnt[q]
            xs = np.zeros(p_count, dtype=np.int64)
            for h in range(hot_groups.size):
                g = hot_groups[h]
                m = 0
                for p in range(p_count):
                    c = groups[g, p]
                    v = xq[c] if c < k else 0
                    xs[p] = v
                    m = max(m, abs(v))
                if m == 0:
                    continue
                # entries with sum |w'| <= lim cannot leave the register
                lim = lim_of[m] if m < lim_of.size else safe // m
                a = xs[0]
                b = xs[1] if p_count > 1 else 0
                for e in range(gptr[h], gptr[h + 1]):
                    if ent_wsum[e] <= lim:
                        break
                    if p_count == 2:  # VPMADDUBSW pairs: the common case, unrolled
                        s = a * ent_w[e, 0] + b * ent_w[e, 1]
                    else:
                        s = 0
                        for p in range(p_count):
                            s += xs[p] * ent_w[e, p]
                    if s < reg_min or s > reg_max:
                        if wrap:
                            f = (s - reg_min) % span + reg_min
                        else:
                            f = reg_min if s < reg_min else reg_max
                        d = f - s
                        j = ent_j[e]
                        dl[j] += d
                        if d < 0:
                            dn[j] += d
                        ct[j] += 1

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel2(xpad, c0, c1, gptr, ent_j, w0, w1, wsum, lim_of, reg_min,  # noqa: PLR0913
                reg_max, wrap, delta, dneg, cnt):  # pragma: no cover - compiled
        span = np.int64(reg_max) - np.int64(reg_min) + 1
        for q in numba.prange(xpad.shape[0]):
            xq = xpad[q]
            dl = delta[q]
            dn = dneg[q]
            ct = cnt[q]
            for h in range(c0.size):
                a = xq[c0[h]]
                b = xq[c1[h]]
                m = max(abs(a), abs(b))
                if m == 0:
                    continue
                lm = lim_of[m]  # entries with sum |w'| <= lm cannot leave the register
                for e in range(gptr[h], gptr[h + 1]):
                    if wsum[e] <= lm:
                        break
                    s = a * w0[e] + b * w1[e]
                    if s > reg_max or s < reg_min:
                        if wrap:
                            f = (np.int64(s) - reg_min) % span + reg_min
                        else:
                            f = reg_max if s > reg_max else reg_min
                        d = np.int64(f) - np.int64(s)
                        j = ent_j[e]
                        dl[j] += d
                        if d < 0:
                            dn[j] += d
                        ct[j] += 1

    return kernel, kernel2
