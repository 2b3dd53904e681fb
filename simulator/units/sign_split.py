"""Exact split-sign sums of every (query, neuron) pair: the whole-pair partial-sum bounds.

For non-negative multiplier inputs x' >= 0 (raw uint8 codes, or offset codes with zx = 0):

    pos_qj = sum_k x'_qk max(w'_jk, 0)      neg_qj = sum_k x'_qk min(w'_jk, 0)

S = pos + neg is the exact sum of the products, and every index-order partial sum of the
products lies in [neg, pos] (the sums of the negative and of the positive products). A
saturating pre-add stage keeps that true: each fitted group value lies between 0 and the
group's exact sum.

Both come from one float32 BLAS product of x' against the stacked matrix [w'+ ; w'-]. It is
exact without any rounding analysis of the BLAS: every product x' w'+ is >= 0 (every x' w'- is
<= 0), so each intermediate sum in any summation order is an integer of magnitude at most the
K-chunk's bound max x' * max_j sum_{k in chunk} |w'-+_jk|; chunks are cut so that this stays
below 2**24 (float64 and 2**53 when single inputs are too wide), and chunk results are summed
in int64. Stacked float weights of read-only matrices are kept in the caller's cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_BLOCK = 64  # K granularity of the chunk cut
_QUERY_BLOCK_ELEMENTS = 1 << 23  # (query, 2 N) float results held at once


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


def _stacked(ow: np.ndarray, dtype: type) -> np.ndarray:
    """(K, 2N) [w'+ | w'-] in ``dtype`` (C order: one BLAS operand)."""
    n, k = ow.shape
    out = np.empty((k, 2 * n), dtype=dtype)
    wt = ow.T
    np.maximum(wt, 0, out=out[:, :n], casting="unsafe")
    np.minimum(wt, 0, out=out[:, n:], casting="unsafe")
    return out


@dataclass
class SplitSums:
    """Exact sums of every pair: ``exact`` int64 (Q, N) = pos + neg; ``pos`` / ``neg``
    (Q, N) hold exact integers (float32 views of the one product when K is one chunk, else
    int64)."""

    exact: np.ndarray
    pos: np.ndarray
    neg: np.ndarray

    def pos_max(self) -> int:
        return int(self.pos.max(initial=0))

    def neg_min(self) -> int:
        return int(self.neg.min(initial=0))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(neg, pos) as int64 (Q, N) arrays (new arrays: the caller may change them)."""
        return self.neg.astype(np.int64), self.pos.astype(np.int64)


def split_sign_sums(
    ox: np.ndarray, ow: np.ndarray, xmax: int, cache: dict | None = None
) -> SplitSums | None:
    """Exact split sums of x' (Q, K) >= 0 with max ``xmax`` against w' (N, K).

    ``cache``: a dict that lives as long as ``ow`` does (the stacked float weights and the
    64-input block sums are kept there). None when x' and w' are too wide for exact float
    sums.
    """
    q, k = ox.shape
    n = ow.shape[0]
    if not (q and n and k) or xmax == 0:
        z = np.zeros((q, n), dtype=np.int64)
        return SplitSums(z, z.copy(), z.copy())
    cache = {} if cache is None else cache
    if "sign_split_blocks" not in cache:
        cache["sign_split_blocks"] = block_sums(ow)
    plan = None
    for dtype, exact in ((np.float32, 1 << 24), (np.float64, 1 << 53)):
        chunks = split_chunks(cache["sign_split_blocks"], k, xmax, exact)
        if chunks is not None:
            key = ("sign_split_weights", dtype)
            if key not in cache:
                cache[key] = _stacked(ow, dtype)
            plan = (dtype, chunks, cache[key])
            break
    if plan is None:
        return None
    dtype, chunks, wst = plan
    if len(chunks) == 1 and q * 2 * n <= _QUERY_BLOCK_ELEMENTS:  # one product, no copies
        part = ox.astype(dtype) @ wst  # (Q, 2N), exact
        total = part[:, :n].astype(np.int64)
        np.add(total, part[:, n:], out=total, casting="unsafe")  # float64 sums: exact
        return SplitSums(total, part[:, :n], part[:, n:])
    pos = np.zeros((q, n), dtype=np.int64)
    neg = np.zeros((q, n), dtype=np.int64)
    qb = max(1, _QUERY_BLOCK_ELEMENTS // (2 * n))
    for q0 in range(0, q, qb):
        q1 = min(q, q0 + qb)
        xf = ox[q0:q1].astype(dtype)
        for a, b in chunks:
            part = xf[:, a:b] @ wst[a:b]  # (qb, 2N), exact
            np.add(pos[q0:q1], part[:, :n], out=pos[q0:q1], casting="unsafe")
            np.add(neg[q0:q1], part[:, n:], out=neg[q0:q1], casting="unsafe")
    return SplitSums(pos + neg, pos, neg)
