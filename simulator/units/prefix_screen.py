"""Exact sums with per-pair bounds on every index-order prefix sum, from K-chunk sums.

For ``min_safe_acc_bits`` of a layer in which no register event is possible, every partial
sum of every (query, neuron) pair must be shown to stay inside the width of the final sums
(or the widest one found exactly). Whole-pair bounds [neg, pos] (the sums of the negative and
of the positive products) are often too loose: in VPRTempo's output layer every pair's pos
passes the final sums' width although no partial sum does. Here the exact sums are computed
chunk by chunk over K (C float32 BLAS products of (Q, cs) @ (cs, N), together one product of
the layer's size: this *is* the layer's exact product S). Inside chunk c = [a_c, a_c+1) the
prefix moves away from the exact prefix P(a_c) at the chunk start by at most the chunk's
positive products upwards and its negative products downwards, bounded separably:

    up_c   = max_c x'+_q * sum_c w'+_j + max_c x'-_q * sum_c |w'-_j|  >= sum_c max(x' w', 0)
    down_c = max_c x'+_q * sum_c |w'-_j| + max_c x'-_q * sum_c w'+_j  >= sum_c max(-x' w', 0)

(x'+ / x'-: the positive part / the magnitude of the negative part of the inputs; w'+ / w'-
likewise), and from the other side a prefix inside the chunk differs from the exact P(a_c+1)
at its end by the products still to come. So every index-order prefix sum of pair (q, j)
lies in

    [min_c max(P(a_c) - down_c, P(a_c+1) - up_c),  max_c min(P(a_c) + up_c, P(a_c+1) + down_c)]

The chunk-end form is what settles VPRTempo's output layer: its products are mostly
positive, so the prefix climbs to its final sum and up_c is large while down_c is small
(260 of the bench's 250,000 pairs left with 32 chunks; 48 chunks and the chunk-start form
alone left 136). That holds for every schedule: a dense schedule's checkpoints (every G
inputs) and an event-driven one's (inputs with x' = 0 skipped, so each checkpoint is an
index-order prefix) are such prefixes. :func:`exact_prefix_range` settles the pairs left by
stepping every input (a dot product each).

Most pairs need less: with M / m the max / min of the inner prefixes P(a_1) .. P(a_C-1) and
S the final sum, every prefix is at most min(max(M, 0) + max_c up_c, max(M, S) + max_c
down_c), and max_c up_c is at most max_c x'+_q * max_c sum_c w'+_j + max_c x'-_q * max_c
sum_c |w'-_j| (a product of two vectors; down_c likewise). So one pass through the chunk
sums keeps each pair's final sum and M / m, that separable test settles ~99.5 % of the
bench's pairs, and only the rest get the per-chunk bounds above.

Cost: the chunk products (ONNX Runtime: ~1.1x the one product S they replace), one compiled
pass per query row through its chunk sums, and a compiled pass per pair the separable test
leaves (numpy without numba: same integers, slower).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..fixedpoint import Register
from .accumulator import bits_for_range
from .chunk_stepper import numba_enabled, row_pairs, serialized
from .partial_sums import _float_for
from .wrap_stream import _weights_t

SCREEN_CHUNKS = 32  # the bench's output layer: 260 pairs left to step (24: 416, 48: 30);
# screen + stepping 25.4 ms (24: 26.1, 48: 27.4; 48 before the chunk-end bounds: ~30)
_NB: dict[str, object] = {}


@dataclass
class PrefixBounds:
    """sums: int64 (Q, N) exact x' @ w'^T. qs / js: int64 (F,) the pairs listed (row-major);
    lo / hi: float64 (F,) bounds (exact integers) of every non-empty index-order prefix sum of
    each listed pair. Every pair *not* listed has every prefix sum inside the width of the
    final sums, ``Register(bits_for_range(*range_of(sums)), signed)``; with ``every_pair`` all
    pairs are listed."""

    sums: np.ndarray
    qs: np.ndarray
    js: np.ndarray
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
    cache: dict | None = None, chunks: int = SCREEN_CHUNKS, every_pair: bool = False,
) -> PrefixBounds | None:
    """:class:`PrefixBounds` of x' (Q, K) against w' (N, K) (integer arrays; ``xr`` / ``wr``:
    their (min, max) including 0), or None when a chunk's products could not be summed
    exactly in float64 or the bounds could pass 2**62.

    Blocks of queries: one pass through a block's chunk sums gives each pair's final sum and
    the max / min of its inner chunk prefixes P(a_1) .. P(a_C-1). The chunk bounds up_c /
    down_c are at most max_c x'+_q max_c sum_c w'+_j + max_c x'-_q max_c sum_c |w'-_j| (and
    the mirror), so a pair whose separable bounds (:func:`separable_open`) stay inside the
    register needs nothing more. The register is the width of the final sums seen so far: it
    can only widen with later blocks, so a pair inside it is inside the final one. Only the
    other pairs get their exact chunk bounds (a pass over their C chunk sums each) and are
    listed if those leave that register too."""
    q_count, k = ox.shape
    n = ow.shape[0]
    none = np.zeros(0, dtype=np.int64)
    if not (q_count and n and k):  # no product at all: every sum and bound is 0
        qs, js = np.divmod(np.arange(q_count * n if every_pair else 0), max(n, 1))
        zero = np.zeros(qs.size)
        return PrefixBounds(np.zeros((q_count, n), np.int64), qs, js, zero, zero.copy())
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
    oxi = np.asarray(ox)
    xpos, xneg = chunk_extremes(oxi, edges)
    ort_sums = _ort_chunk_sums(oxi, ow, xr, wr, edges, cache)
    xf = wt = None  # float operands only for the BLAS chunks
    if ort_sums is None:
        xf = np.ascontiguousarray(oxi, dtype=dt)
        wt, _ = _weights_t(ow, dt, cache)
    # float64 throughout: every value is an integer of magnitude <= K max|x'| max|w'| < 2**53;
    # the prefixes in int32 when they stay below 2**31 (ONNX Runtime's int32 chunk sums: twice
    # the lanes per vector, 9 -> 6 ms for the bench's output layer)
    small = ort_sums is not None and k * xmag * wmag < 1 << 31
    work = np.int32 if small else np.float64
    compiled = numba_enabled()
    acc = np.empty((q_count, n), dtype=np.int64 if compiled else work)
    if not compiled:
        pmax = np.empty_like(acc)
        pmin = np.empty_like(acc)
    c_count = edges.size - 1
    xpm, xnm = xpos.max(axis=1), xneg.max(axis=1)
    wpm, wnm = wpos.max(axis=0), wneg.max(axis=0)
    if compiled:  # per tile of the compiled pass: its largest chunk sums of w'+ and w'-
        starts = np.arange(0, n, SCREEN_TILE)
        wpt, wnt = np.maximum.reduceat(wpm, starts), np.maximum.reduceat(wnm, starts)
    seen = (0, 0)  # (min(sums, 0), max(sums, 0)) of the blocks so far
    listed: list[tuple[np.ndarray, ...]] = []
    item = 4 if ort_sums is not None else np.dtype(dt).itemsize
    qb = max(1, min(q_count, BUFFER_BYTES // max(1, c_count * n * item)))
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
        blk = slice(q0, q1)
        if compiled:  # final sums, their range and per-tile separable bounds in one pass
            tiles = -(-n // SCREEN_TILE)
            rows = np.empty((2, q1 - q0))
            top = np.empty((q1 - q0, tiles))
            bottom = np.empty((q1 - q0, tiles))
            _screen_pass()(sums, np.zeros(n, dtype=work), xpm[blk], xnm[blk], wpt, wnt,
                           acc[blk], rows, top, bottom)
            lo_b, hi_b = float(rows[0].min()), float(rows[1].max())
        else:
            _prefix_pass_numpy(sums, acc[blk], pmax[blk], pmin[blk])
            lo_b, hi_b = float(acc[blk].min()), float(acc[blk].max())
        seen = (min(seen[0], lo_b), max(seen[1], hi_b))
        reg = Register(bits_for_range(int(seen[0]), int(seen[1])), True)
        if every_pair:
            bq, bj = np.divmod(np.arange((q1 - q0) * n, dtype=np.int64), n)
        elif compiled:  # every pair of the tiles whose bounds leave the register
            bq, bj = _tile_pairs(top > reg.max, bottom < reg.min, n)
        else:
            bq, bj = separable_open(pmax[blk], pmin[blk], acc[blk], xpm[blk], xnm[blk], wpm,
                                    wnm, reg.min, reg.max, False)
        lo = np.empty(bq.size)
        hi = np.empty(bq.size)
        if bq.size:
            (_pair_bounds() if compiled else _pair_bounds_numpy)(
                sums, xpos[blk], xneg[blk], wpos, wneg, bq.astype(np.int64),
                bj.astype(np.int64), lo, hi)
        if not every_pair:
            keep = (hi > reg.max) | (lo < reg.min)
            bq, bj, lo, hi = bq[keep], bj[keep], lo[keep], hi[keep]
        listed.append((bq.astype(np.int64) + q0, bj.astype(np.int64), lo, hi))
    qs, js, lo, hi = (np.concatenate([part[i] for part in listed]) if listed else none
                      for i in range(4))
    return PrefixBounds(acc.astype(np.int64, copy=False), qs, js, lo.astype(np.float64),
                        hi.astype(np.float64))


SCREEN_TILE = 64  # neurons per tile of the compiled pass's separable bounds


def _tile_pairs(high: np.ndarray, low: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(qs, js) int64, row-major: every pair of the tiles flagged in ``high`` or ``low``
    (m, tiles) of :func:`_screen_pass` (a superset of the pairs the separable test leaves;
    the exact chunk bounds decide)."""
    tq, tt = np.nonzero(high | low)
    cols = tt[:, None] * SCREEN_TILE + np.arange(SCREEN_TILE)[None, :]
    inside = cols < n
    rows = np.broadcast_to(tq[:, None], cols.shape)
    return rows[inside].astype(np.int64), cols[inside].astype(np.int64)


def screen_chunks(q: int, n: int) -> int:
    """The chunk count for a (q, n) layer: SCREEN_CHUNKS while its int32 chunk sums fit
    SCREEN_ELEMENTS, fewer (at least 2) for layers with many pairs (the bench's feature
    layer: 2 chunks for 3.1 M pairs)."""
    return max(2, min(SCREEN_CHUNKS, SCREEN_ELEMENTS // max(1, q * n)))


SCREEN_ELEMENTS = 1 << 23  # chunk sums per screen (32 MB in int32)


BUFFER_BYTES = 48 << 20  # chunk sums held at once (per block of queries; blocks of
# 174 queries took 17-19 ms of ONNX Runtime for the bench's output layer, one of 500 15.5)


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


def _ort_chunk_sums(ox: np.ndarray, ow: np.ndarray, xr: tuple[int, int], wr: tuple[int, int],
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
    """:func:`_ort_chunk_sums` with one ONNX Runtime session per K-chunk."""
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


def separable_open(pmax: np.ndarray, pmin: np.ndarray, acc: np.ndarray, xpm: np.ndarray,
                   xnm: np.ndarray, wpm: np.ndarray, wnm: np.ndarray, lo: int, hi: int,
                   compiled: bool) -> tuple[np.ndarray, np.ndarray]:
    """(qs, js) int64, row-major: the pairs whose separable bounds leave [lo, hi].

    pmax / pmin (m, N): max / min of the inner chunk prefixes (:func:`_prefix_pass_numpy`),
    acc (m, N) the final sums; up = xpm wpm + xnm wnm and down = xpm wnm + xnm wpm bound
    every chunk's up_c / down_c (xpm / xnm (m,); wpm / wnm (N,)). Every prefix is at most
    min(max(pmax, 0) + up, max(pmax, acc) + down) (from the chunk starts / ends) and at
    least max(min(pmin, 0) - down, min(pmin, acc) - up); all float64 exact integers.
    Compiled: a counting pass and a filling pass over the rows with any, no (m, N)
    temporaries (numpy took 7 ms for 500 x 500 pairs, this 0.4)."""
    if not compiled:
        up = np.multiply.outer(xpm, wpm) + np.multiply.outer(xnm, wnm)
        down = np.multiply.outer(xpm, wnm) + np.multiply.outer(xnm, wpm)
        top = np.minimum(np.maximum(pmax, 0) + up, np.maximum(pmax, acc) + down)
        bottom = np.maximum(np.minimum(pmin, 0) - down, np.minimum(pmin, acc) - up)
        return np.nonzero((top > hi) | (bottom < lo))
    args = (pmax, pmin, acc, xpm, xnm, wpm, wnm, np.float64(lo), np.float64(hi))
    return row_pairs(_separable_open(), args, pmax.shape[0])


def _separable_open() -> object:
    """Compiled :func:`separable_open`, parallel over rows. First call (qs is None):
    counts[q] = the row's pairs; second: counts = starts (m + 1), fills qs / js."""
    if "separable" not in _NB:
        import numba

        @numba.njit(cache=True, nogil=True, parallel=True)
        def separable(pmax, pmin, acc, xpm, xnm, wpm, wnm, lo, hi, counts, qs,
                      js):  # pragma: no cover - compiled
            m, n = pmax.shape
            for q in numba.prange(m):
                if qs is not None and counts[q + 1] == counts[q]:
                    continue  # filling: a row without any
                xp = xpm[q]
                xn = xnm[q]
                c = 0
                slot = 0 if qs is None else counts[q]
                for j in range(n):
                    up = xp * wpm[j] + xn * wnm[j]
                    down = xp * wnm[j] + xn * wpm[j]
                    mx = np.float64(pmax[q, j])
                    mn = np.float64(pmin[q, j])
                    s = np.float64(acc[q, j])
                    top = min(max(mx, 0.0) + up, max(mx, s) + down)
                    bottom = max(min(mn, 0.0) - down, min(mn, s) - up)
                    if top > hi or bottom < lo:
                        if qs is not None:
                            qs[slot + c] = q
                            js[slot + c] = j
                        c += 1
                if qs is None:
                    counts[q] = c

        _NB["separable"] = serialized(separable)
    return _NB["separable"]


def _prefix_pass_numpy(sums: np.ndarray, acc: np.ndarray, pmax: np.ndarray,
                       pmin: np.ndarray) -> None:
    """acc = the final sums, pmax / pmin = max / min of the inner chunk prefixes P(a_1) ..
    P(a_{C-1}) (with one chunk: the final sum; so max(pmax, 0) bounds the chunk starts'
    prefixes and max(pmax, acc) the chunk ends'): sums (C, m, N) chunk sums; acc / pmax /
    pmin (m, N) float64, or int32 when every prefix fits it, written."""
    acc[:] = sums[0]
    pmax[:] = acc
    pmin[:] = acc
    for c in range(1, sums.shape[0]):
        np.maximum(pmax, acc, out=pmax)
        np.minimum(pmin, acc, out=pmin)
        acc += sums[c]


def _pair_bounds_numpy(sums: np.ndarray, xpos: np.ndarray, xneg: np.ndarray, wpos: np.ndarray,
                       wneg: np.ndarray, qs: np.ndarray, js: np.ndarray, lo: np.ndarray,
                       hi: np.ndarray) -> None:
    """lo / hi (F,) = min_c max(P(a_c) - down_c, P(a_c+1) - up_c) / max_c min(P(a_c) + up_c,
    P(a_c+1) + down_c) of the pairs (qs, js) (query rows of the block): chunk by chunk,
    P += sums[c]."""
    p = np.zeros(qs.size)
    hi[:] = -np.inf
    lo[:] = np.inf
    for c in range(sums.shape[0]):
        xp, xn = xpos[qs, c], xneg[qs, c]
        wp, wn = wpos[c, js], wneg[c, js]
        up, down = xp * wp + xn * wn, xp * wn + xn * wp
        end = p + sums[c, qs, js]
        np.maximum(hi, np.minimum(p + up, end + down), out=hi)
        np.minimum(lo, np.maximum(p - down, end - up), out=lo)
        p = end


def _screen_pass() -> object:
    """Compiled :func:`_prefix_pass_numpy` and a tile-wise :func:`separable_open` in one
    pass, parallel over query rows, tile by tile of SCREEN_TILE neurons (the tile's prefixes
    stay in three small arrays of ``proto``'s dtype: int32 when every prefix fits, else
    float64). Per tile it keeps the max / min of the inner prefixes M / m and of the final
    sums S, and bounds every pair of the tile: top = min(max(M, 0) + up, max(M, S) + down)
    and bottom likewise (:func:`separable_open`), with ``wpt`` / ``wnt`` (tiles,) the tile's
    largest w'+ / w'- chunk sums in up / down; each term only grows, so these bound every
    pair's own. Writes top / bottom (m, tiles), the final sums to int64 ``acc`` and their
    min / max per row to ``rows`` (2, m). The loops are plain max / min / add of the prefix
    dtype, which LLVM vectorises: 2.0 ms for the bench's feature layer (2 chunks, 500 x 6272
    pairs) and 1.7 ms for its output layer (32 chunks, 500 x 500), where a pass over whole
    rows with per-pair float64 bounds took 10 and 3.9 ms. No (m, N) prefix arrays: the exact
    chunk bounds of the pairs in flagged tiles come from the chunk sums."""
    if "screen" not in _NB:
        import numba

        tile = SCREEN_TILE

        @numba.njit(cache=True, nogil=True, parallel=True, fastmath=True)
        def screen(sums, proto, xpm, xnm, wpt, wnt, acc, rows, top,
                   bottom):  # pragma: no cover - compiled
            c_count, m, n = sums.shape
            for q in numba.prange(m):
                p = np.empty(tile, proto.dtype)
                h = np.empty(tile, proto.dtype)
                lo = np.empty(tile, proto.dtype)
                xp = xpm[q]
                xn = xnm[q]
                rlo = np.inf
                rhi = -np.inf
                for t in range(top.shape[1]):
                    j0 = t * tile
                    w = min(n, j0 + tile) - j0
                    s0 = sums[0, q]
                    for j in range(w):  # P(a_1)
                        v = s0[j0 + j]
                        p[j] = v
                        h[j] = v
                        lo[j] = v
                    for c in range(1, c_count):
                        sc = sums[c, q]
                        for j in range(w):
                            v = p[j]
                            h[j] = max(h[j], v)
                            lo[j] = min(lo[j], v)
                            p[j] = v + sc[j0 + j]
                    mx = h[0]
                    mn = lo[0]
                    sx = p[0]
                    sn = p[0]
                    for j in range(w):
                        v = p[j]
                        mx = max(mx, h[j])
                        mn = min(mn, lo[j])
                        sx = max(sx, v)
                        sn = min(sn, v)
                        acc[q, j0 + j] = np.int64(v)
                    up = xp * wpt[t] + xn * wnt[t]
                    down = xp * wnt[t] + xn * wpt[t]
                    fmx, fmn = np.float64(mx), np.float64(mn)
                    fsx, fsn = np.float64(sx), np.float64(sn)
                    top[q, t] = min(max(fmx, 0.0) + up, max(fmx, fsx) + down)
                    bottom[q, t] = max(min(fmn, 0.0) - down, min(fmn, fsn) - up)
                    rlo = min(rlo, fsn)
                    rhi = max(rhi, fsx)
                rows[0, q] = rlo
                rows[1, q] = rhi

        _NB["screen"] = serialized(screen)
    return _NB["screen"]


def _pair_bounds() -> object:
    """:func:`_pair_bounds_numpy` compiled: parallel over pairs."""
    if "pairs" not in _NB:
        import numba

        @numba.njit(cache=True, nogil=True, parallel=True)
        def pair_bounds(sums, xpos, xneg, wpos, wneg, qs, js, lo, hi):  # pragma: no cover
            for i in numba.prange(qs.size):
                q = qs[i]
                j = js[i]
                p = 0.0
                h = -np.inf
                low = np.inf
                for c in range(sums.shape[0]):
                    xp = xpos[q, c]
                    xn = xneg[q, c]
                    up = xp * wpos[c, j] + xn * wneg[c, j]
                    down = xp * wneg[c, j] + xn * wpos[c, j]
                    end = p + sums[c, q, j]
                    h = max(h, min(p + up, end + down))
                    low = min(low, max(p - down, end - up))
                    p = end
                lo[i] = low
                hi[i] = h

        _NB["pairs"] = serialized(pair_bounds)
    return _NB["pairs"]


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
    if numba_enabled() and f:  # the 136 pairs of the bench's output layer: 4 ms -> 0.5 ms
        _prefix_range()(np.asarray(ox), np.asarray(ow), qs.astype(np.int64),
                        js.astype(np.int64), lo, hi)
        return lo, hi
    per = max(1, PAIRS_PER_BATCH // max(k, 1))
    for a in range(0, f, per):
        b = min(f, a + per)
        prods = ox[qs[a:b]].astype(np.int64) * ow[js[a:b]]
        run = np.cumsum(prods, axis=1, out=prods)
        lo[a:b] = run.min(axis=1)
        hi[a:b] = run.max(axis=1)
    return lo, hi


def _prefix_range() -> object:
    """Compiled :func:`exact_prefix_range`: parallel over pairs, one int64 running sum each."""
    if "range" not in _NB:
        import numba

        @numba.njit(cache=True, nogil=True, parallel=True)
        def prefix_range(ox, ow, qs, js, lo, hi):  # pragma: no cover - compiled
            for i in numba.prange(qs.size):
                xr = ox[qs[i]]
                wr = ow[js[i]]
                run = np.int64(xr[0]) * np.int64(wr[0])
                low = run
                high = run
                for kk in range(1, xr.size):
                    run += np.int64(xr[kk]) * np.int64(wr[kk])
                    low = min(low, run)
                    high = max(high, run)
                lo[i] = low
                hi[i] = high

        _NB["range"] = serialized(prefix_range)
    return _NB["range"]
