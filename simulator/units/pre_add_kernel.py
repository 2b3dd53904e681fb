"""Compiled evaluation of the hot pre-add entries of a dense schedule (numba).

A hot entry e is one (neuron j, group g) whose P weights can push the group's sum out of the
signed pre-add register for some input (pre_add.py finds them from the weights alone). For
every query q the kernel forms the exact group sum s = sum_p x'_q,k_p w'_j,k_p, fits it into
the register (wrap, or saturate; ``error`` fits as saturate, as everywhere) and accumulates,
per (neuron, query), the positive and negative corrections fitted - s, the number of events
(fitted != s) and the smallest group number with an event.

Sums are formed in float32 when every |s| stays below 2**24 (float64 below 2**53), so they are
exact integers; corrections are accumulated in int64. Work is spread over neurons (each
neuron's outputs are written by one thread); outputs are (query, neuron) arrays, written only
at events. The numpy fallback in pre_add.py gives the same integers
(``HWSIM_NUMBA=0``); tests run both.
"""

from __future__ import annotations

import numpy as np

from .chunk_stepper import numba_enabled

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
    xt: np.ndarray,
    seg_ptr: np.ndarray,
    seg_j: np.ndarray,
    cols: np.ndarray,
    wv: np.ndarray,
    ent_g: np.ndarray,
    reg_min: int,
    reg_max: int,
    wrap: bool,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run the compiled kernel.

    xt: float (K + 1, Q) inputs x' transposed, row K all zero (padding slot); entries sorted
    by neuron, neuron seg_j[s] owning entries [seg_ptr[s], seg_ptr[s+1]); cols int64 (E, P)
    input indices; wv float (E, P) weights (0 at padding); ent_g int64 (E,) group numbers.
    Returns int64 (Q, N) arrays: positive and negative correction sums, events, first event
    group (-1 where none).
    """
    kern = _NB["kernel"]
    q = xt.shape[1]
    dpos = np.zeros((q, n), dtype=np.int64)
    dneg = np.zeros((q, n), dtype=np.int64)
    cnt = np.zeros((q, n), dtype=np.int64)
    first = np.full((q, n), -1, dtype=np.int64)
    kern(xt, seg_ptr, seg_j, cols, wv, ent_g, xt.dtype.type(reg_min),  # type: ignore[operator]
         xt.dtype.type(reg_max), wrap, dpos, dneg, cnt, first)
    return dpos, dneg, cnt, first


def _compile() -> object:
    import numba

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(xt, seg_ptr, seg_j, cols, wv, ent_g, reg_min, reg_max, wrap,  # noqa: PLR0913
               dpos, dneg, cnt, first):  # pragma: no cover - compiled
        nq = xt.shape[1]
        p_count = cols.shape[1]
        span = reg_max - reg_min + 1
        for s in numba.prange(seg_j.size):
            j = seg_j[s]
            sums = np.empty(nq, dtype=xt.dtype)
            for e in range(seg_ptr[s], seg_ptr[s + 1]):
                g = ent_g[e]
                row = xt[cols[e, 0]]
                w0 = wv[e, 0]
                for i in range(nq):
                    sums[i] = row[i] * w0
                for p in range(1, p_count):
                    row = xt[cols[e, p]]
                    wp = wv[e, p]
                    for i in range(nq):
                        sums[i] += row[i] * wp
                for i in range(nq):
                    v = sums[i]
                    if wrap:
                        f = v - span * np.floor((v - reg_min) / span)
                    else:
                        f = min(max(v, reg_min), reg_max)
                    if f != v:  # an event: rare, so the (Q, N) outputs are touched rarely
                        d = np.int64(f - v)
                        if d > 0:
                            dpos[i, j] += d
                        else:
                            dneg[i, j] += d
                        cnt[i, j] += 1
                        if first[i, j] < 0:
                            first[i, j] = g

    return kernel
