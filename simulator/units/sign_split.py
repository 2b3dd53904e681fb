"""Exact sums of every (query, neuron) pair with whole-pair bounds on their partial sums.

For non-negative multiplier inputs x' >= 0 (raw uint8 codes, or offset codes with zx = 0):

    pos_qj = sum_k x'_qk max(w'_jk, 0)      neg_qj = sum_k x'_qk min(w'_jk, 0) = S_qj - pos_qj

every index-order partial sum of the products lies in [neg, pos] (the sums of the negative
and of the positive products). A saturating pre-add stage keeps that true: each fitted group
value lies between 0 and the group's exact sum.

Cost: the exact sums S take one float32 BLAS product; pos is bounded from above by a product
four times shorter, over blocks of B = 4 inputs:

    pos_qj <= U_qj = sum_blocks (max_{k in block} x'_qk) * (sum_{k in block} max(w'_jk, 0))

so every partial sum lies in [S - U, U]. Only the pairs whose [S - U, U] may reach past the
width that matters get their exact pos (a dot product each; one more full product when they
are many). Both products are exact without any rounding analysis of the BLAS: every partial
sum of S in any order lies between a sum of negative and a sum of positive products, and U's
terms are all >= 0, so each intermediate value is an integer of magnitude at most the
K-chunk's bound max x' * max_j sum_{k in chunk} |w'+-_jk|; chunks are cut (at multiples of 64
inputs) so that this stays below 2**24 (float64 and 2**53 when single inputs are too wide),
and chunk results are summed in int64. Float weights of read-only matrices are kept in the
caller's cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .chunk_stepper import numba_enabled, row_pairs, serialized

_BLOCK = 64  # K granularity of the chunk cut
BOUND_BLOCK = 4  # inputs per block of the bound on the positive sums (divides _BLOCK)
DOT_PAIRS_MAX_FRACTION = 1 / 20  # above this share of pairs, exact_pos runs a full product


def block_sums(ow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum of w'+, sum of |w'-|) int64 (N, blocks) over blocks of 64 inputs."""
    n, k = ow.shape
    starts = np.arange(0, k, _BLOCK)
    bpos = np.add.reduceat(np.maximum(ow, 0), starts, axis=1, dtype=np.int64)
    bneg = -np.add.reduceat(np.minimum(ow, 0), starts, axis=1, dtype=np.int64)
    return bpos, bneg


def split_chunks(
    blocks: tuple[np.ndarray, np.ndarray], k: int, xmax: int, exact: int
) -> list[tuple[int, int]] | None:
    """K-chunks [a, b) with xmax * max_j sum_{k in [a, b)} |w'+-_jk| < ``exact``.

    ``blocks``: :func:`block_sums`; cut at multiples of 64 inputs; None when even one
    64-input block is too long.
    """
    bpos, bneg = blocks
    n, nb = bpos.shape
    cap = (exact - 1) // max(xmax, 1)
    if max(int(bpos.max(initial=0)), int(bneg.max(initial=0))) > cap:
        return None
    chunks = []
    a = 0
    run_p = np.zeros(n, dtype=np.int64)
    run_n = np.zeros(n, dtype=np.int64)
    for b in range(nb):
        if int((run_p + bpos[:, b]).max()) > cap or int((run_n + bneg[:, b]).max()) > cap:
            chunks.append((a * _BLOCK, b * _BLOCK))
            a = b
            run_p[:] = 0
            run_n[:] = 0
        run_p += bpos[:, b]
        run_n += bneg[:, b]
    chunks.append((a * _BLOCK, k))
    return chunks


def _as_float_t(ow: np.ndarray, dtype: type) -> np.ndarray:
    """(K, N) w'^T in ``dtype`` (C order: one BLAS operand)."""
    return np.ascontiguousarray(ow.T, dtype=dtype)


def _pos_blocks_t(ow: np.ndarray, dtype: type) -> np.ndarray:
    """(ceil(K / B), N): sum of w'+ over each block of B inputs, in ``dtype``."""
    n, k = ow.shape
    nb = -(-k // BOUND_BLOCK)
    out = np.zeros((nb, n), dtype=np.int64)
    wt = np.maximum(ow.T, 0)
    for r in range(BOUND_BLOCK):
        part = wt[r::BOUND_BLOCK]
        out[: part.shape[0]] += part
    return out.astype(dtype)


def _block_max(x: np.ndarray, dtype: type) -> np.ndarray:
    """(Q, ceil(K / B)) max of x' >= 0 over each block of B inputs (zero padded)."""
    q, k = x.shape
    nb = -(-k // BOUND_BLOCK)
    if k % BOUND_BLOCK:
        xp = np.zeros((q, nb * BOUND_BLOCK), dtype=dtype)
        xp[:, :k] = x
        x = xp
    out = x[:, 0::BOUND_BLOCK].astype(dtype)
    for r in range(1, BOUND_BLOCK):
        np.maximum(out, x[:, r::BOUND_BLOCK], out=out, casting="unsafe")
    return out


HULL_TILE = 256  # neurons per tile of HullSummary (64: ~2 ms more per pass, horizontal mins)
TILE_SCAN_MAX_FRACTION = 1 / 8  # above this share of tiles open, open_pairs scans all pairs


@dataclass
class HullSummary:
    """What one pass over the exact sums S and the bounds U found (:func:`finish_ort`):
    ``s_range`` (min S, max S); per query row and tile of HULL_TILE neurons, float64 (exact
    integers) (Q, tiles) ``tile_lo`` = min (S - U) and ``tile_hi`` = max U."""

    s_range: tuple[int, int]
    tile_lo: np.ndarray
    tile_hi: np.ndarray

    def open_pairs(self, exact: np.ndarray, pos_ub: np.ndarray, lo: int, hi: int
                   ) -> tuple[np.ndarray, np.ndarray] | None:
        """The pairs of SplitSums.open_pairs looked for in the tiles whose hull leaves
        [lo, hi] only (row-major), or None when those are many."""
        tq, tt = np.nonzero((self.tile_lo < lo) | (self.tile_hi > hi))
        if tq.size > TILE_SCAN_MAX_FRACTION * self.tile_lo.size:
            return None
        n = exact.shape[1]
        if numba_enabled() and pos_ub.dtype.kind in "iu" and exact.flags.c_contiguous and \
                pos_ub.flags.c_contiguous:  # the bench's layer 1: 760 tiles, 4 ms -> 0.3
            qs = np.empty(tq.size * HULL_TILE, dtype=np.int64)
            js = np.empty_like(qs)
            f = _tile_pairs()(exact, pos_ub, tq.astype(np.int64), tt.astype(np.int64),
                              np.int64(lo), np.int64(hi), qs, js)
            return qs[:f], js[:f]
        cols = tt[:, None] * HULL_TILE + np.arange(HULL_TILE)[None, :]  # (F, TILE)
        inside = cols < n
        cols = np.minimum(cols, n - 1)
        rows = np.broadcast_to(tq[:, None], cols.shape)
        ub = pos_ub[rows, cols].astype(np.int64)
        out = inside & ((exact[rows, cols] - ub < lo) | (ub > hi))
        return rows[out].astype(np.int64), cols[out].astype(np.int64)


@dataclass
class SplitSums:
    """Exact sums ``exact`` int64 (Q, N) of every pair and an upper bound ``pos_ub`` (Q, N,
    exact integers) on its sum of positive products; :meth:`exact_pos` gives exact ones."""

    exact: np.ndarray
    pos_ub: np.ndarray
    ox: np.ndarray
    ow: np.ndarray
    chunks: list[tuple[int, int]]
    dtype: type
    cache: dict
    summary: HullSummary | None = None

    def open_pairs(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(qs, js) int64 of the pairs whose hull [S - pos_ub, pos_ub] leaves [lo, hi], in
        row-major order: from the tiles of ``summary`` that leave it, else compiled in one
        pass without (Q, N) temporaries, else from hull()."""
        if self.summary is not None and lo <= 0 <= hi:
            got = self.summary.open_pairs(self.exact, self.pos_ub, lo, hi)
            if got is not None:
                return got
        if numba_enabled() and self.pos_ub.dtype.kind in "fiu" and lo <= 0 <= hi:
            return row_pairs(_open_pairs(), (self.exact, self.pos_ub, np.float64(lo),
                                             np.float64(hi)), self.exact.shape[0])
        lo_b, hi_b = self.hull()
        return np.nonzero((lo_b < lo) | (hi_b > hi))

    def hull(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) int64 (Q, N) = (S - pos_ub, pos_ub): lo <= neg and pos <= hi."""
        hi = self.pos_ub.astype(np.int64)
        lo = self.exact - hi
        return lo, hi

    def _ub_below_2_53(self) -> bool:
        """True when every pos_ub < 2**53 (int32 bounds, as ONNX Runtime's: without a scan)."""
        ub = self.pos_ub
        return (ub.dtype.kind in "iu" and ub.dtype.itemsize <= 4) or \
            bool(ub.max(initial=0) < 1 << 53)

    def exact_pos(self, qs: np.ndarray, js: np.ndarray) -> np.ndarray:
        """Exact int64 pos of the pairs (qs, js): dot products, or one more full product
        when the pairs are many."""
        q, n = self.exact.shape
        if qs.size <= DOT_PAIRS_MAX_FRACTION * q * n and numba_enabled() and \
                self._ub_below_2_53():  # float64 sums exact in any order
            out = np.empty(qs.size, dtype=np.float64)
            _pos_dots()(self.ox, self.ow, qs.astype(np.int64), js.astype(np.int64), out)
            return out.astype(np.int64)
        if qs.size <= DOT_PAIRS_MAX_FRACTION * q * n:  # per query: rows of w'+ times x'_q
            out = np.empty(qs.size, dtype=np.int64)
            dt = np.float64 if self._ub_below_2_53() else np.int64  # exact
            order = np.argsort(qs, kind="stable")
            qo = qs[order]
            starts = np.flatnonzero(np.diff(qo, prepend=-1))
            ends = np.append(starts[1:], qo.size)
            for a, b in zip(starts, ends, strict=True):
                sel = order[a:b]
                wrows = np.maximum(self.ow[js[sel]], 0).astype(dt)
                out[sel] = wrows @ self.ox[qo[a]].astype(dt)
            return out
        key = ("sign_split_pos", self.dtype)
        if key not in self.cache:
            self.cache[key] = np.ascontiguousarray(np.maximum(self.ow.T, 0), dtype=self.dtype)
        wpos = self.cache[key]
        pos = np.zeros((q, n), dtype=np.int64)
        xf = self.ox.astype(self.dtype)
        for a, b in self.chunks:
            np.add(pos, xf[:, a:b] @ wpos[a:b], out=pos, casting="unsafe")  # exact
        return pos[qs, js]


def split_sign_sums(
    ox: np.ndarray, ow: np.ndarray, xmax: int, cache: dict | None = None
) -> SplitSums | None:
    """Exact sums and positive-sum bounds of x' (Q, K) >= 0 with max ``xmax`` against w'
    (N, K).

    ``cache``: a dict that lives as long as ``ow`` does (float weights and 64-input block
    sums are kept there). None when x' and w' are too wide for exact float sums.
    """
    q, k = ox.shape
    n = ow.shape[0]
    kept = cache is not None  # ONNX Runtime sessions are built only for weights that stay
    cache = {} if cache is None else cache
    if not (q and n and k) or xmax == 0:
        z = np.zeros((q, n), dtype=np.int64)
        return SplitSums(z, z.copy(), ox, ow, [], np.float64, cache)
    plan = _plan(ow, k, xmax, cache)
    if plan is None:
        return None
    dtype, chunks = plan
    wpb = cache[("sign_split_pos_blocks", dtype)]
    ort_total = _ort_sums(ox, ow, xmax, cache if kept else None)  # int32 or int64
    ort_half = _ort_pos_half(ox, ow, xmax, cache if kept else None)
    if ort_total is not None and ort_half is not None:
        total, ub, summary = finish_ort(ort_total, ort_half)
        return SplitSums(total, ub, ox, ow, chunks, dtype, cache, summary)
    if ort_total is not None:
        ort_total = ort_total.astype(np.int64, copy=False)
    xf = ox.astype(dtype)
    xm = _block_max(xf, dtype)
    wt = None
    if ort_total is None:  # the float weights only when BLAS computes the sums (K, N floats)
        if ("sign_split_w", dtype) not in cache:
            cache[("sign_split_w", dtype)] = _as_float_t(ow, dtype)
        wt = cache[("sign_split_w", dtype)]
    if len(chunks) == 1:
        total = ort_total if wt is None else (xf @ wt).astype(np.int64)  # exact
        pos_ub = xm @ wpb  # exact integers
        return SplitSums(total, pos_ub, ox, ow, chunks, dtype, cache)
    total = ort_total if wt is None else np.zeros((q, n), dtype=np.int64)
    pos_ub = np.zeros((q, n), dtype=np.int64)
    for a, b in chunks:  # a is a multiple of 64, so of B
        if wt is not None:
            np.add(total, xf[:, a:b] @ wt[a:b], out=total, casting="unsafe")
        ba, bb = a // BOUND_BLOCK, -(-b // BOUND_BLOCK)
        np.add(pos_ub, xm[:, ba:bb] @ wpb[ba:bb], out=pos_ub, casting="unsafe")
    return SplitSums(total, pos_ub, ox, ow, chunks, dtype, cache)


def _plan(ow: np.ndarray, k: int, xmax: int, cache: dict
          ) -> tuple[type, list[tuple[int, int]]] | None:
    """(float dtype, K-chunks) in which the sums and bounds are exact, or None; fills the
    cache with the weights' block sums and positive block sums."""
    if "sign_split_blocks" not in cache:
        cache["sign_split_blocks"] = block_sums(ow)
    for dtype, exact in ((np.float32, 1 << 24), (np.float64, 1 << 53)):
        ckey = ("sign_split_chunks", dtype, xmax)
        if ckey not in cache:
            cache[ckey] = split_chunks(cache["sign_split_blocks"], k, xmax, exact)
        chunks = cache[ckey]
        if chunks is not None:
            if ("sign_split_pos_blocks", dtype) not in cache:
                cache[("sign_split_pos_blocks", dtype)] = _pos_blocks_t(ow, dtype)
            return dtype, chunks
    return None


def positive_bound(ox: np.ndarray, ow: np.ndarray, xmax: int, cache: dict | None = None,
                   exact_float: bool = False) -> np.ndarray | None:
    """int64 (Q, N) U >= the sum of the positive products of every pair (x' (Q, K) >= 0 with
    max ``xmax``, w' (N, K)): the bound of :func:`split_sign_sums` alone, when the exact sums
    are known already (every partial sum of a pair then lies in [S - U, U]). None when the
    float products would not be exact. ``exact_float``: an int32 or float array of exact
    integers may come back instead (no int64 conversion)."""
    q, k = ox.shape
    n = ow.shape[0]
    kept = cache is not None  # ONNX Runtime sessions are built only for weights that stay
    cache = {} if cache is None else cache
    if not (q and n and k) or xmax == 0:
        return np.zeros((q, n), dtype=np.int64)
    plan = _plan(ow, k, xmax, cache)
    if plan is None:
        return None
    dtype, chunks = plan
    ort_ub = _ort_pos_bound(ox, ow, xmax, cache if kept else None)
    if ort_ub is not None:
        return ort_ub if exact_float else ort_ub.astype(np.int64)
    wpb = cache[("sign_split_pos_blocks", dtype)]
    xm = _block_max(ox.astype(dtype), dtype)
    if exact_float and len(chunks) == 1:
        return xm @ wpb  # exact integers
    pos_ub = np.zeros((q, n), dtype=np.int64)
    for a, b in chunks:  # a is a multiple of 64, so of B
        ba, bb = a // BOUND_BLOCK, -(-b // BOUND_BLOCK)
        np.add(pos_ub, xm[:, ba:bb] @ wpb[ba:bb], out=pos_ub, casting="unsafe")  # exact
    return pos_ub


def _ort_pos_bound(ox: np.ndarray, ow: np.ndarray, xmax: int, cache: dict | None
                   ) -> np.ndarray | None:
    """int32 (Q, N) U' = 2 sum_blocks (max_block x') ceil((sum_block w'+) / 2) >= U through
    ONNX Runtime's exact uint8 product (block sums of w'+ up to 510 halve into uint8; ~2/3
    of the float32 product's time, the bound ~1 % looser), or None (see _ort_pos_half)."""
    half = _ort_pos_half(ox, ow, xmax, cache)
    return None if half is None else np.left_shift(half, 1, out=half)


def _ort_pos_half(ox: np.ndarray, ow: np.ndarray, xmax: int, cache: dict | None
                  ) -> np.ndarray | None:
    """int32 (Q, N) U' / 2 of :func:`_ort_pos_bound`, or None: ONNX Runtime is not in use,
    the product is small, x' > 255, U' could pass int32 (more than K_MAX / 2 blocks), or
    the weights may change (no ``cache``)."""
    from .. import kernels, kernels_ort

    q, k = ox.shape
    n = ow.shape[0]
    nb = -(-k // BOUND_BLOCK)
    if cache is None or xmax > 255 or q * n * nb < kernels.ORT_MIN_PRODUCTS or \
            nb > kernels_ort.K_MAX // 2 or not kernels.uses_ort():
        return None
    key = "sign_split_pos_half_ort"
    if key not in cache:
        wpb = _pos_blocks_t(ow, np.int64)  # (blocks, N)
        cache[key] = None
        if int(wpb.max(initial=0)) <= 510:
            half = ((wpb + 1) // 2).astype(np.uint8)
            cache[key] = kernels_ort.batched_session(np.ascontiguousarray(half), 0)
    sess = cache[key]
    if sess is None:
        return None
    xm = _block_max(ox, np.uint8)  # x' in [0, 255]
    return kernels_ort.run_batched(sess, np.ascontiguousarray(xm), 0)


def finish_ort(total: np.ndarray, half: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, HullSummary | None]:
    """(S int64, U = 2 ``half`` int32 (in place), summary) from ONNX Runtime's sums ``total``
    (int32, or int64 when K was cut) and halved bounds: one compiled pass that widens S,
    doubles U and fills the :class:`HullSummary` (~2.5 ms for the bench's 500 x 6272 pairs,
    against ~8 ms for the widening, shift, range scan and two-pass open-pair scan it
    replaces), else numpy (no summary)."""
    if not (numba_enabled() and total.dtype == np.int32 and total.ndim == 2 and
            total.flags.c_contiguous and half.flags.c_contiguous and total.size):
        return total.astype(np.int64), np.left_shift(half, 1, out=half), None
    q, n = total.shape
    tiles = -(-n // HULL_TILE)
    s64 = np.empty((q, n), dtype=np.int64)
    rows = np.empty((2, q))
    tile_lo = np.empty((q, tiles))  # exact integers in float64
    tile_hi = np.empty((q, tiles))
    _finish()(total, half, s64, rows, tile_lo, tile_hi)
    return s64, half, HullSummary((int(rows[0].min()), int(rows[1].max())), tile_lo, tile_hi)


def _ort_sums(ox: np.ndarray, ow: np.ndarray, xmax: int, cache: dict | None
              ) -> np.ndarray | None:
    """Exact x' @ w'^T through ONNX Runtime when exact_matmul would use it (int32 when it
    needs no correction, else int64), else None."""
    from .. import kernels

    if ox.shape[0] * ow.shape[0] * ox.shape[1] < kernels.ORT_MIN_PRODUCTS or \
            not kernels.uses_ort():  # small products first: no onnxruntime import for them
        return None
    wkey = "sign_split_w_range"
    if cache is None or wkey not in cache:
        wr = (int(ow.min(initial=0)), int(ow.max(initial=0)))
        if cache is not None:
            cache[wkey] = wr
    else:
        wr = cache[wkey]
    return kernels.ort_product(ox, (0, xmax), ow, wr, cache, int32_ok=True)


_NB: dict[str, object] = {}


def _pos_dots() -> object:
    """Compiled exact pos of pairs: out[i] = sum_k x'[qs[i], k] * max(w'[js[i], k], 0),
    float64 (callers ensure the sums stay below 2**53: exact in any order, so fastmath may
    reassociate and vectorise), parallel over pairs. The numpy loop per query took 29-40 ms
    for the 3,406 open output-layer pairs of the x86_avx2_fbgemm bench; this 7 ms."""
    if "pos_dots" not in _NB:
        import numba

        @numba.njit(cache=True, nogil=True, parallel=True, fastmath=True)
        def pos_dots(ox, ow, qs, js, out):  # pragma: no cover - compiled
            k = ox.shape[1]
            for i in numba.prange(qs.size):
                xr = ox[qs[i]]
                wr = ow[js[i]]
                acc = 0.0
                for kk in range(k):
                    acc += np.float64(xr[kk]) * max(np.float64(wr[kk]), 0.0)
                out[i] = acc

        _NB["pos_dots"] = serialized(pos_dots)
    return _NB["pos_dots"]  # type: ignore[return-value]


def _open_pairs() -> object:
    """Compiled :meth:`SplitSums.open_pairs`, parallel over query rows. First call (qs is
    None): counts[q] = open pairs of row q; second: counts = starts (Q + 1), starts[q] = first
    slot of row q, fills qs / js (rows without open pairs skipped). float64 compares are
    exact: |S| and pos_ub below 2**53 (the float products)."""
    if "open_pairs" not in _NB:
        import numba

        @numba.njit(cache=True, nogil=True, parallel=True)
        def open_pairs(exact, pos_ub, lo, hi, counts, qs, js):  # pragma: no cover - compiled
            q_all, n = exact.shape
            for q in numba.prange(q_all):
                if qs is not None and counts[q + 1] == counts[q]:
                    continue  # filling: a row without open pairs
                c = 0
                slot = 0 if qs is None else counts[q]
                for j in range(n):
                    u = np.float64(pos_ub[q, j])
                    if np.float64(exact[q, j]) - u < lo or u > hi:
                        if qs is not None:
                            qs[slot + c] = q
                            js[slot + c] = j
                        c += 1
                if qs is None:
                    counts[q] = c

        _NB["open_pairs"] = serialized(open_pairs)
    return _NB["open_pairs"]  # type: ignore[return-value]


def _finish() -> object:
    """Compiled :func:`finish_ort`, parallel over query rows: s64 = S, U doubled in place,
    rows = (min S, max S) per row, per tile of HULL_TILE neurons min (S - U) and max U.
    The reductions run in float64 (exact: |values| < 2**33), which AVX2 vectorises (it has no
    int64 min / max)."""
    if "finish" not in _NB:
        import numba

        tile = HULL_TILE

        @numba.njit(cache=True, nogil=True, parallel=True, fastmath=True)
        def finish(s32, half, s64, rows, tile_lo, tile_hi):  # pragma: no cover - compiled
            q_all, n = s32.shape
            for q in numba.prange(q_all):
                a = s32[q]
                b = half[q]
                o = s64[q]
                lo = np.inf
                hi = -np.inf
                for t in range(tile_lo.shape[1]):
                    tl = np.inf
                    th = -np.inf
                    for j in range(t * tile, min(n, t * tile + tile)):
                        h2 = b[j] << 1  # < 2**31: at most K_MAX / 2 blocks
                        v = a[j]
                        o[j] = v
                        b[j] = h2
                        sf = np.float64(v)
                        uf = np.float64(h2)
                        lo = min(lo, sf)
                        hi = max(hi, sf)
                        tl = min(tl, sf - uf)
                        th = max(th, uf)
                    tile_lo[q, t] = tl
                    tile_hi[q, t] = th
                rows[0, q] = lo
                rows[1, q] = hi

        _NB["finish"] = serialized(finish)
    return _NB["finish"]  # type: ignore[return-value]


def _tile_pairs() -> object:
    """Compiled scan of the tiles (tq, tt) of :meth:`HullSummary.open_pairs` (in their
    row-major order): writes the pairs whose [S - U, U] leaves [lo, hi] into qs / js and
    returns their count; int64 compares (|S|, U < 2**31)."""
    if "tile_pairs" not in _NB:
        import numba

        tile = HULL_TILE

        @numba.njit(cache=True, nogil=True)
        def tile_pairs(exact, pos_ub, tq, tt, lo, hi, qs, js):  # pragma: no cover - compiled
            n = exact.shape[1]
            f = 0
            for i in range(tq.size):
                q = tq[i]
                for j in range(tt[i] * tile, min(n, tt[i] * tile + tile)):
                    u = np.int64(pos_ub[q, j])
                    if exact[q, j] - u < lo or u > hi:
                        qs[f] = q
                        js[f] = j
                        f += 1
            return f

        _NB["tile_pairs"] = tile_pairs
    return _NB["tile_pairs"]
