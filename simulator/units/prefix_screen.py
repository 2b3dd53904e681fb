"""Exact sums with per-pair bounds on every index-order prefix sum, from K-chunk sums.

For ``min_safe_acc_bits`` of a layer in which no register event is possible, every partial
sum of every (query, neuron) pair must be shown to stay inside the width of the final sums
(or the widest one found exactly). Whole-pair bounds [neg, pos] (the sums of the negative and
of the positive products) are often too loose: in VPRTempo's output layer every pair's pos
passes the final sums' width although no partial sum does. Here the exact sums are computed
chunk by chunk over K (C float32 BLAS products of (Q, cs) @ (cs, N), together one product of
the layer's size: this *is* the layer's exact product S), and between two chunk ends the
prefix can move away from the exact prefix P(a_c) at the chunk start by at most the chunk's
positive (negative) products, bounded separably:

    sum_{k in c} max(x'_qk w'_jk, 0) <= max_c x'+_q * sum_c w'+_j + max_c x'-_q * sum_c |w'-_j|

(x'+ / x'-: the positive part / the magnitude of the negative part of the inputs; w'+ / w'-
likewise). So every index-order prefix sum of pair (q, j) lies in

    [min_c (P(a_c) - down_c),  max_c (P(a_c) + up_c)]

with up_c the bound above and down_c its mirror. That holds for every schedule: a dense
schedule's checkpoints (every G inputs) and an event-driven one's (inputs with x' = 0
skipped, so each checkpoint is an index-order prefix) are such prefixes. On the bench's
output layer 48 chunks leave ~200 of 250,000 pairs open; :func:`exact_prefix_range` settles
those by stepping every input (a dot product each).

Cost: the chunk products (1.5-2x the one product S they replace) and one compiled pass per
chunk over the (Q, N) arrays (numpy without numba: same integers, slower).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .chunk_stepper import numba_enabled, serialized
from .partial_sums import _float_for
from .wrap_stream import _weights_t

SCREEN_CHUNKS = 48  # 24 left ~30x more pairs open on the bench's output layer, 96 ~20x fewer
_NB: dict[str, object] = {}


@dataclass
class PrefixBounds:
    """sums: int64 (Q, N) exact x' @ w'^T; lo / hi: float64 (Q, N) bounds (exact integers) of
    every non-empty index-order prefix sum of each pair."""

    sums: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def _chunk_edges(k: int, chunks: int) -> np.ndarray:
    """int64 chunk starts and the end: [0, cs, 2 cs, ..., K], cs = ceil(K / chunks)."""
    cs = max(1, -(-k // chunks))
    return np.append(np.arange(0, k, cs, dtype=np.int64), np.int64(k))


def _weight_chunk_sums(ow: np.ndarray, edges: np.ndarray, cache: dict | None
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


def prefix_bounds(
    ox: np.ndarray, ow: np.ndarray, xr: tuple[int, int], wr: tuple[int, int],
    cache: dict | None = None, chunks: int = SCREEN_CHUNKS,
) -> PrefixBounds | None:
    """:class:`PrefixBounds` of x' (Q, K) against w' (N, K) (integer arrays; ``xr`` / ``wr``:
    their (min, max) including 0), or None when a chunk's products could not be summed
    exactly in float64 or the bounds could pass 2**62."""
    q_count, k = ox.shape
    n = ow.shape[0]
    if not (q_count and n and k):  # no product at all: every sum and bound is 0
        zero = np.zeros((q_count, n))
        return PrefixBounds(zero.astype(np.int64), zero, zero.copy())
    xmag = max(-xr[0], xr[1], 1)
    wmag = max(-wr[0], wr[1], 1)
    if k * xmag * wmag >= 1 << 53:
        return None  # the float64 prefixes and bounds would not be exact
    edges = _chunk_edges(k, chunks)
    try:
        dt = _float_for(int(np.diff(edges).max(initial=1)), xr, wr)
    except OverflowError:
        return None
    wpos, wneg = _weight_chunk_sums(ow, edges, cache)
    starts = edges[:-1]
    oxi = np.asarray(ox)
    xpos = np.maximum.reduceat(np.maximum(oxi, 0), starts, axis=1).astype(np.float64)
    xneg = (-np.minimum.reduceat(np.minimum(oxi, 0), starts, axis=1)).astype(np.float64)
    ort_sums = _ort_chunk_sums(oxi, ow, xr, wr, edges, cache)
    xf = wt = None  # float operands only for the BLAS chunks
    if ort_sums is None:
        xf = np.ascontiguousarray(oxi, dtype=dt)
        wt, _ = _weights_t(ow, dt, cache)
    # float64 throughout: every value is an integer of magnitude <= K max|x'| max|w'| < 2**53
    acc = np.zeros((q_count, n), dtype=np.float64)
    lo = np.full((q_count, n), np.inf)
    hi = np.full((q_count, n), -np.inf)
    c_count = edges.size - 1
    kern = _bounds_numba() if numba_enabled() else _bounds_numpy
    # All chunks' sums of a block of queries first, then one pass per query row through them:
    # the (Q, N) state stays in cache (a pass per chunk over it was memory-bound, ~5x slower).
    qb = max(1, min(q_count, BUFFER_BYTES // max(1, c_count * n * np.dtype(dt).itemsize)))
    buf = np.empty((c_count, min(qb, q_count), n), dtype=dt) if xf is not None else None
    for q0 in range(0, q_count, qb):
        q1 = min(q_count, q0 + qb)
        if ort_sums is not None:  # (C, q1 - q0, N) int32 from one ONNX Runtime call
            sums = ort_sums(q0, q1)
        else:
            assert xf is not None and wt is not None and buf is not None
            for c in range(c_count):
                a, b = int(edges[c]), int(edges[c + 1])
                np.matmul(xf[q0:q1, a:b], wt[a:b], out=buf[c, : q1 - q0])
            sums = buf[:, : q1 - q0]
        kern(sums, xpos[q0:q1], xneg[q0:q1], wpos, wneg, acc[q0:q1], lo[q0:q1], hi[q0:q1])
    return PrefixBounds(acc.astype(np.int64), lo, hi)


BUFFER_BYTES = 16 << 20  # chunk sums held at once (per block of queries)


def _ort_chunk_sums(ox: np.ndarray, ow: np.ndarray, xr: tuple[int, int], wr: tuple[int, int],
                    edges: np.ndarray, cache: dict | None) -> Callable | None:
    """``sums(q0, q1)`` -> int32 (C, q1 - q0, N) exact chunk sums of queries [q0, q1) from
    one batched ONNX Runtime uint8 product per call (read-only weights whose session is
    kept, operands with uint8 zero points), or None (then the float BLAS chunks run).

    The K-chunks of ``edges`` are padded to one length cs with zero-valued entries (a'' = 0,
    b'' = 0), so x' (Q, C cs) -> (C, Q, cs) against w'^T (C, cs, N)."""
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


def _bounds_numpy(sums: np.ndarray, xpos: np.ndarray, xneg: np.ndarray, wpos: np.ndarray,
                  wneg: np.ndarray, acc: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Chunk by chunk: widen lo / hi by P(a_c) -+ the chunk's separable bounds, P += sums[c].

    sums: (C, m, N) chunk sums; xpos / xneg: (m, C); wpos / wneg: (C, N); acc / lo / hi:
    float64 (m, N), updated in place."""
    for c in range(sums.shape[0]):
        up = np.multiply.outer(xpos[:, c], wpos[c])
        down = np.multiply.outer(xpos[:, c], wneg[c])
        if xneg[:, c].any():
            up += np.multiply.outer(xneg[:, c], wneg[c])
            down += np.multiply.outer(xneg[:, c], wpos[c])
        up += acc
        np.maximum(hi, up, out=hi)
        np.subtract(acc, down, out=down)
        np.minimum(lo, down, out=lo)
        acc += sums[c]


def _bounds_numba() -> object:
    """:func:`_bounds_numpy` compiled: parallel over query rows, each row's state in cache.

    lo / hi are double-buffered (written to a second row, then swapped): updated in place,
    LLVM turned max / min into masked stores (vmaskmovpd), 4x slower on this AMD host."""
    global _widen_up, _widen_down, _add_row  # globals, not closure cells: see tile_stepper
    if "bounds" not in _NB:
        import numba

        @numba.njit(cache=True, nogil=True, fastmath=True)
        def _widen_up(out, old, p, xp, wp, xn, wn):  # pragma: no cover - compiled
            for j in range(p.size):
                u = p[j] + xp * wp[j] + xn * wn[j]
                o = old[j]
                out[j] = u if u > o else o

        @numba.njit(cache=True, nogil=True, fastmath=True)
        def _widen_down(out, old, p, xp, wn, xn, wp):  # pragma: no cover - compiled
            for j in range(p.size):
                d = p[j] - xp * wn[j] - xn * wp[j]
                o = old[j]
                out[j] = d if d < o else o

        @numba.njit(cache=True, nogil=True, fastmath=True)
        def _add_row(p, row):  # pragma: no cover - compiled
            for j in range(p.size):
                p[j] += row[j]

        @numba.njit(cache=True, nogil=True, parallel=True)
        def bounds(sums, xpos, xneg, wpos, wneg, acc, lo, hi):  # pragma: no cover - compiled
            c_count, m, n = sums.shape
            for q in numba.prange(m):
                p = acc[q].copy()
                h0 = hi[q].copy()
                h1 = np.empty(n)
                l0 = lo[q].copy()
                l1 = np.empty(n)
                for c in range(c_count):
                    _widen_up(h1, h0, p, xpos[q, c], wpos[c], xneg[q, c], wneg[c])
                    _widen_down(l1, l0, p, xpos[q, c], wneg[c], xneg[q, c], wpos[c])
                    h0, h1 = h1, h0
                    l0, l1 = l1, l0
                    _add_row(p, sums[c, q])
                acc[q] = p
                hi[q] = h0
                lo[q] = l0

        _NB["bounds"] = serialized(bounds)
    return _NB["bounds"]  # type: ignore[return-value]


PAIRS_PER_BATCH = 1 << 22  # (pair, input) products per numpy batch of exact_prefix_range


def exact_prefix_range(ox: np.ndarray, ow: np.ndarray, qs: np.ndarray, js: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """int64 (F,) min and max over every non-empty index-order prefix sum of x'_q . w'_j,
    for the pairs (qs, js): every input stepped (exact int64)."""
    f = qs.size
    k = ox.shape[1]
    lo = np.zeros(f, dtype=np.int64)
    hi = np.zeros(f, dtype=np.int64)
    if k == 0:
        return lo, hi
    per = max(1, PAIRS_PER_BATCH // max(k, 1))
    for a in range(0, f, per):
        b = min(f, a + per)
        prods = ox[qs[a:b]].astype(np.int64) * ow[js[a:b]]
        run = np.cumsum(prods, axis=1, out=prods)
        lo[a:b] = run.min(axis=1)
        hi[a:b] = run.max(axis=1)
    return lo, hi
