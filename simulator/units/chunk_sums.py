"""K-chunk sums of an exact integer product, and the chunk facts the prefix screen needs.

Not a hardware unit: the operands of simulator/units/prefix_screen.py. For x' (Q, K) and
w' (N, K) cut into K-chunks [a_c, a_c+1): the chunk sums sum_{k in c} x'_qk w'_jk (int32,
through ONNX Runtime's exact uint8 product, kernels_ort.py), the chunk sums of w'+ and |w'-|
per neuron, and the largest x'+ and x'- per query and chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .chunk_stepper import numba_enabled, serialized

_NB: dict[str, object] = {}


def chunk_edges(k: int, chunks: int) -> np.ndarray:
    """int64 chunk starts and the end: [0, cs, 2 cs, ..., K], cs = ceil(K / chunks)."""
    cs = max(1, -(-k // chunks))
    return np.append(np.arange(0, k, cs, dtype=np.int64), np.int64(k))


def weight_chunk_sums(ow: np.ndarray, edges: np.ndarray, cache: dict | None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(sum of w'+, sum of |w'-|) float64 (C, N) per K-chunk (exact integers), kept with
    read-only weights."""
    key = ("prefix_screen_w", tuple(int(e) for e in edges))
    if cache is not None and key in cache:
        return cache[key]
    starts = edges[:-1]
    wpos = np.add.reduceat(np.maximum(ow, 0), starts, axis=1, dtype=np.int64).T
    wneg = -np.add.reduceat(np.minimum(ow, 0), starts, axis=1, dtype=np.int64).T
    wpos, wneg = (np.ascontiguousarray(v, dtype=np.float64) for v in (wpos, wneg))
    if cache is not None:
        wpos.flags.writeable = False
        wneg.flags.writeable = False
        cache[key] = (wpos, wneg)
    return wpos, wneg


def chunk_extremes(ox: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 (Q, C) max of x'+ and max of x'- (the magnitude of the negative part) over
    each K-chunk [edges[c], edges[c + 1]) of integer x' (Q, K): one compiled pass when numba
    runs (two reduceat passes over (Q, K) temporaries took ~6 ms on the bench's output
    layer), else numpy; the same integers."""
    starts = edges[:-1]
    if numba_enabled() and ox.ndim == 2 and ox.dtype.kind in "iu" and ox.size and \
            ox.flags.c_contiguous and starts.size:
        xpos = np.empty((ox.shape[0], starts.size), dtype=np.float64)
        xneg = np.empty_like(xpos)
        _chunk_extremes()(ox, edges.astype(np.int64), xpos, xneg)
        return xpos, xneg
    xpos = np.maximum.reduceat(np.maximum(ox, 0), starts, axis=1).astype(np.float64)
    xneg = (-np.minimum.reduceat(np.minimum(ox, 0), starts, axis=1)).astype(np.float64)
    return xpos, xneg


def _chunk_extremes() -> object:
    if "extremes" not in _NB:
        import numba

        @numba.njit(cache=True, nogil=True, parallel=True)
        def extremes(ox, edges, xpos, xneg):  # pragma: no cover - compiled
            q_all = ox.shape[0]
            for q in numba.prange(q_all):
                row = ox[q]
                for c in range(edges.size - 1):
                    hi = 0
                    lo = 0
                    for i in range(edges[c], edges[c + 1]):
                        v = np.int64(row[i])
                        hi = max(hi, v)
                        lo = min(lo, v)
                    xpos[q, c] = hi
                    xneg[q, c] = -lo

        _NB["extremes"] = serialized(extremes)
    return _NB["extremes"]


def ort_chunk_sums(ox: np.ndarray, ow: np.ndarray, xr: tuple[int, int], wr: tuple[int, int],
                    edges: np.ndarray, cache: dict | None) -> Callable | None:
    """``sums(q0, q1)`` -> int32 (C, q1 - q0, N) exact chunk sums of queries [q0, q1) through
    ONNX Runtime's uint8 product (read-only weights whose sessions are kept, operands with
    uint8 zero points), or None (then the float BLAS chunks run).

    Small weights (N K < BATCHED_MAX): one batched call, the K-chunks of ``edges`` padded to
    one length cs with zero-valued entries (a'' = 0, b'' = 0), so x' (Q, C cs) -> (C, Q, cs)
    against w'^T (C, cs, N); it packs its 3-D weight on every call, cheap for them (the
    bench's output layer: 14 ms against 18-19 for one session per chunk). Larger ones: one
    session per chunk (weights packed once), each writing its slice of the result in place
    (the bench's feature layer in 2 chunks: ~the time of its one product)."""
    from .. import kernels, kernels_ort

    q_count, k = ox.shape
    n = ow.shape[0]
    azp, bzp = kernels_ort.zero_point(*xr), kernels_ort.zero_point(*wr)
    if cache is None or azp is None or bzp is None or \
            q_count * n * k < kernels.ORT_MIN_PRODUCTS or not kernels.uses_ort():
        return None
    c_count = edges.size - 1
    cs = int(np.diff(edges).max(initial=1))
    if cs > kernels_ort.K_MAX or np.any(np.diff(edges)[:-1] != cs):
        return None
    if n * k >= BATCHED_MAX:
        return _ort_chunk_sessions(ox, ow, azp, bzp, edges, cache)
    key = ("prefix_screen_ort", c_count, cs, bzp)
    if key not in cache:
        wpad = np.full((n, c_count * cs), bzp, dtype=np.uint8)
        np.add(ow, bzp, out=wpad[:, :k], dtype=np.int16, casting="unsafe")
        cache[key] = kernels_ort.batched_session(
            np.ascontiguousarray(wpad.T).reshape(c_count, cs, n), bzp)
    sess = cache[key]

    def sums(q0: int, q1: int) -> np.ndarray:
        apad = np.full((q1 - q0, c_count * cs), azp, dtype=np.uint8)
        np.add(ox[q0:q1], azp, out=apad[:, :k], dtype=np.int16, casting="unsafe")
        a3 = np.ascontiguousarray(apad.reshape(q1 - q0, c_count, cs).transpose(1, 0, 2))
        return kernels_ort.run_batched(sess, a3, azp)

    return sums


BATCHED_MAX = 1 << 23  # weights (N K) from which each chunk gets its own session


def _ort_chunk_sessions(ox: np.ndarray, ow: np.ndarray, azp: int, bzp: int,
                        edges: np.ndarray, cache: dict) -> Callable:
    """:func:`ort_chunk_sums` with one ONNX Runtime session per K-chunk."""
    from .. import kernels_ort

    n = ow.shape[0]
    bounds = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    key = ("prefix_screen_ort_chunks", tuple(bounds), bzp)
    if key not in cache:
        cache[key] = [kernels_ort.session_for(
            np.add(ow[:, a:b], bzp, dtype=np.uint8, casting="unsafe"), bzp)
            for a, b in bounds]
    sessions = cache[key]

    def sums(q0: int, q1: int) -> np.ndarray:
        out = np.empty((len(bounds), q1 - q0, n), dtype=np.int32)
        a_u8 = np.add(ox[q0:q1], azp, dtype=np.uint8, casting="unsafe")  # mod 256: exact
        for c, (a, b) in enumerate(bounds):
            kernels_ort.run_into(sessions[c], a_u8[:, a:b], azp, out[c])
        return out

    return sums
