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
sum_c |w'-_j| (a product of two vectors; down_c likewise). So one compiled pass through
the chunk sums keeps each pair's final sum and bounds the pairs tile by tile (64 neurons:
the largest M, S and w' chunk sums of the tile), a second one gives the pairs of flagged
tiles their own separable bounds, and only the pairs left (~0.5 % of the bench's output
layer, none of its feature layer) get the per-chunk bounds above.

Cost: the chunk products (ONNX Runtime: 2 chunks of the bench's feature layer take about
the time of its one product S; 32 of its output layer ~1.1x), a compiled pass through the
chunk sums (~2 ms each), and the few pairs left (numpy without numba: the same integers,
per pair, slower). The chunk count (:func:`screen_chunks`) keeps the chunk sums of a block
of queries near SCREEN_ELEMENTS: 32 chunks for the output layer's 250,000 pairs, 2 for
the feature layer's 3.1 M.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixedpoint import Register
from .accumulator import bits_for_range
from .chunk_stepper import numba_enabled, serialized
from .chunk_sums import chunk_edges, chunk_extremes, ort_chunk_sums, weight_chunk_sums
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
    sums_range: tuple[int, int] = (0, 0)  # (min(sums, 0), max(sums, 0))


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
    edges = chunk_edges(k, chunks)
    try:
        dt = _float_for(int(np.diff(edges).max(initial=1)), xr, wr)
    except OverflowError:
        return None
    wpos, wneg = weight_chunk_sums(ow, edges, cache)
    oxi = np.asarray(ox)
    xpos, xneg = chunk_extremes(oxi, edges)
    ort_sums = ort_chunk_sums(oxi, ow, xr, wr, edges, cache)
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
        per_pair = (q1 - q0) * n <= PER_PAIR_MAX
        if compiled:  # final sums, their range and separable bounds in one pass
            rows = np.empty((2, q1 - q0))
            top = np.empty((q1 - q0, n if per_pair else -(-n // SCREEN_TILE)))
            bottom = np.empty_like(top)
            _screen_pass()(sums, np.zeros(n, dtype=work), xpm[blk], xnm[blk],
                           (wpm, wnm) if per_pair else (wpt, wnt), per_pair, acc[blk], rows,
                           top, bottom)
            lo_b, hi_b = float(rows[0].min()), float(rows[1].max())
        else:
            _prefix_pass_numpy(sums, acc[blk], pmax[blk], pmin[blk])
            lo_b, hi_b = float(acc[blk].min()), float(acc[blk].max())
        seen = (min(seen[0], lo_b), max(seen[1], hi_b))
        reg = Register(bits_for_range(int(seen[0]), int(seen[1])), True)
        if every_pair:
            bq, bj = np.divmod(np.arange((q1 - q0) * n, dtype=np.int64), n)
        elif compiled and per_pair:
            bq, bj = (v.astype(np.int64) for v in np.nonzero((top > reg.max) |
                                                              (bottom < reg.min)))
        elif compiled:  # the pairs of flagged tiles whose own separable bounds leave reg
            bq, bj = _open_in_tiles(sums, (top > reg.max) | (bottom < reg.min), work,
                                    (xpm[blk], xnm[blk], wpm, wnm), reg)
        else:
            bq, bj = separable_open(pmax[blk], pmin[blk], acc[blk], xpm[blk], xnm[blk], wpm,
                                    wnm, reg.min, reg.max)
        lo = np.empty(bq.size)  # the exact chunk bounds of those pairs
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
                        hi.astype(np.float64), (int(seen[0]), int(seen[1])))


SCREEN_TILE = 64  # neurons per tile of the compiled pass: 2.0 / 1.5 ms for the bench's
# feature / output layer (16: 3.9 / 7.1 ms, though fewer pairs flagged for _tile_open)
PER_PAIR_MAX = 1 << 20  # pairs of a block up to which the pass bounds each pair on its own
# (the output layer's 250,000: +~1 ms; tiles flagged half of them, ~3.5 ms in _tile_open)


def _open_in_tiles(sums: np.ndarray, flagged: np.ndarray, work: type,
                   separable: tuple[np.ndarray, ...], reg: Register
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(qs, js) int64, row-major: the pairs of the ``flagged`` (m, tiles) tiles whose own
    separable bounds leave ``reg`` (:func:`_tile_open`); ``separable`` = (xpm, xnm, wpm,
    wnm) of :func:`separable_open`."""
    tq, tt = np.nonzero(flagged)
    open_ = np.zeros((tq.size, SCREEN_TILE), dtype=np.bool_)  # slot s: neuron tt * TILE + s
    if tq.size:
        _tile_open()(sums, np.zeros(SCREEN_TILE, dtype=work), *separable, tq, tt,
                     np.float64(reg.min), np.float64(reg.max), open_)
    ti, slot = np.nonzero(open_)
    return tq[ti].astype(np.int64), (tt[ti] * SCREEN_TILE + slot).astype(np.int64)


def screen_chunks(q: int, n: int) -> int:
    """The chunk count for a (q, n) layer: SCREEN_CHUNKS while its int32 chunk sums fit
    SCREEN_ELEMENTS, fewer (at least 2) for layers with many pairs (the bench's feature
    layer: 2 chunks for 3.1 M pairs)."""
    return max(2, min(SCREEN_CHUNKS, SCREEN_ELEMENTS // max(1, q * n)))


SCREEN_ELEMENTS = 1 << 23  # chunk sums per screen (32 MB in int32)


BUFFER_BYTES = 48 << 20  # chunk sums held at once (per block of queries; blocks of
# 174 queries took 17-19 ms of ONNX Runtime for the bench's output layer, one of 500 15.5)


def separable_open(pmax: np.ndarray, pmin: np.ndarray, acc: np.ndarray, xpm: np.ndarray,
                   xnm: np.ndarray, wpm: np.ndarray, wnm: np.ndarray, lo: int, hi: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(qs, js) int64, row-major: the pairs whose separable bounds leave [lo, hi] (numpy;
    compiled, :func:`_screen_pass` and :func:`_tile_open` give the same pairs).

    pmax / pmin (m, N): max / min of the inner chunk prefixes (:func:`_prefix_pass_numpy`),
    acc (m, N) the final sums; up = xpm wpm + xnm wnm and down = xpm wnm + xnm wpm bound
    every chunk's up_c / down_c (xpm / xnm (m,); wpm / wnm (N,)). Every prefix is at most
    min(max(pmax, 0) + up, max(pmax, acc) + down) (from the chunk starts / ends) and at
    least max(min(pmin, 0) - down, min(pmin, acc) - up); all float64 exact integers."""
    up = np.multiply.outer(xpm, wpm) + np.multiply.outer(xnm, wnm)
    down = np.multiply.outer(xpm, wnm) + np.multiply.outer(xnm, wpm)
    top = np.minimum(np.maximum(pmax, 0) + up, np.maximum(pmax, acc) + down)
    bottom = np.maximum(np.minimum(pmin, 0) - down, np.minimum(pmin, acc) - up)
    qs, js = np.nonzero((top > hi) | (bottom < lo))
    return qs.astype(np.int64), js.astype(np.int64)


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
    """Compiled :func:`_prefix_pass_numpy` and :func:`separable_open` in one pass, parallel
    over query rows, tile by tile of SCREEN_TILE neurons (the tile's prefixes stay in three
    small arrays of ``proto``'s dtype: int32 when every prefix fits, else float64). Writes
    the final sums to int64 ``acc`` and their min / max per row to ``rows`` (2, m), and the
    separable bounds top = min(max(M, 0) + up, max(M, S) + down) and bottom likewise (M / m:
    the inner prefixes' max / min, S the final sum):

    * ``per_pair``: top / bottom (m, N) of every pair, ``wsep`` = (wpm, wnm) per neuron;
    * else per tile, top / bottom (m, tiles): from the tile's max / min of M, m and S and
      ``wsep`` = (wpt, wnt), the tile's largest w'+ / w'- chunk sums; each term only grows,
      so these bound every pair's own (and :func:`_tile_open` gives the pairs of flagged
      tiles their own).

    The loops are plain max / min / add of the prefix dtype, which LLVM vectorises: 2.0 ms
    for the bench's feature layer (2 chunks, 500 x 6272 pairs, per tile) and ~2.5 ms for its
    output layer (32 chunks, 500 x 500, per pair), where a pass over whole rows with per-pair
    float64 bounds took 10 and 3.9 ms. No (m, N) prefix arrays: the exact chunk bounds of
    the pairs left come from the chunk sums."""
    if "screen" not in _NB:
        import numba

        tile = SCREEN_TILE

        @numba.njit(cache=True, nogil=True, parallel=True, fastmath=True)
        def screen(sums, proto, xpm, xnm, wsep, per_pair, acc, rows, top,
                   bottom):  # pragma: no cover - compiled
            c_count, m, n = sums.shape
            wpt, wnt = wsep
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
                    if per_pair:  # wsep = (wpm, wnm) per neuron: each pair's own bounds
                        for j in range(w):
                            up = xp * wpt[j0 + j] + xn * wnt[j0 + j]
                            down = xp * wnt[j0 + j] + xn * wpt[j0 + j]
                            sf = np.float64(p[j])
                            fm = np.float64(h[j])
                            fl = np.float64(lo[j])
                            top[q, j0 + j] = min(max(fm, 0.0) + up, max(fm, sf) + down)
                            bottom[q, j0 + j] = max(min(fl, 0.0) - down, min(fl, sf) - up)
                        rlo = min(rlo, np.float64(sn))
                        rhi = max(rhi, np.float64(sx))
                        continue
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


def _tile_open() -> object:
    """Compiled :func:`separable_open` for the pairs of whole tiles (tq, tt) flagged by
    :func:`_screen_pass`, parallel over the tiles: each tile's chunk prefixes again in three
    small arrays of ``proto``'s dtype, then every pair's own bounds; ``open_`` (tiles,
    SCREEN_TILE) bool marks the pairs whose bounds leave [lo, hi] (tile i, slot s: neuron
    tt[i] SCREEN_TILE + s; slots past N stay False).
    On the bench's output layer the tile bounds flag 1,976 of 4,000 tiles (125,000 pairs;
    its final sums sit close to the width's max) and this leaves ~300 pairs, for which
    :func:`_pair_bounds` is cheap (the exact chunk bounds of all 125,000 took ~8 ms)."""
    if "tile_open" not in _NB:
        import numba

        tile = SCREEN_TILE
        # the tile's prefixes are computed as in _screen_pass, written out again: a shared
        # compiled helper (3-D sums and row index as arguments) measured 2-3x slower there

        @numba.njit(cache=True, nogil=True, parallel=True, fastmath=True)
        def tile_open(sums, proto, xpm, xnm, wpm, wnm, tq, tt, lo, hi,
                      open_):  # pragma: no cover - compiled
            c_count, m, n = sums.shape
            for i in numba.prange(tq.size):
                q = tq[i]
                j0 = tt[i] * tile
                w = min(n, j0 + tile) - j0
                p = np.empty_like(proto)
                h = np.empty_like(proto)
                low = np.empty_like(proto)
                s0 = sums[0, q]
                for j in range(w):
                    v = s0[j0 + j]
                    p[j] = v
                    h[j] = v
                    low[j] = v
                for c in range(1, c_count):
                    sc = sums[c, q]
                    for j in range(w):
                        v = p[j]
                        h[j] = max(h[j], v)
                        low[j] = min(low[j], v)
                        p[j] = v + sc[j0 + j]
                xp = xpm[q]
                xn = xnm[q]
                for j in range(w):
                    up = xp * wpm[j0 + j] + xn * wnm[j0 + j]
                    down = xp * wnm[j0 + j] + xn * wpm[j0 + j]
                    sf = np.float64(p[j])
                    mx = np.float64(h[j])
                    mn = np.float64(low[j])
                    top = min(max(mx, 0.0) + up, max(mx, sf) + down)
                    bottom = max(min(mn, 0.0) - down, min(mn, sf) - up)
                    open_[i, j] = top > hi or bottom < lo

        _NB["tile_open"] = serialized(tile_open)
    return _NB["tile_open"]


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
