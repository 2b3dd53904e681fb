"""Chunked evaluation of accumulator partial sums: the narrow-register fast path.

The accumulation order is part of the hardware (docs/schedule.md): step t sums the products of
G = ``accumulator.adder_tree_width`` consecutive inputs (in ``event_driven`` mode G consecutive
*non-skipped* inputs) exactly and adds that tree output to the signed ``accumulator.bits``
register, whose overflow policy (wrap | saturate) is applied to that addition. The register
therefore only ever sees the *checkpoints* P_t: index-order prefix sums of the products that
end on the last input of a step (skipped inputs have x' = 0, so their products are 0).

Exact facts this module uses (x' = x - zx or x, w' = w - zw or w, all integers):

* per pair, S = sum_k x'w' and A = sum_k |x'w'| bound every prefix sum:
  (S - A) / 2 <= P <= (S + A) / 2 (the sums of the negative and of the positive products);
* the same per K-chunk [a, b) relative to the prefix P(a) at the chunk start (two exact matrix
  products per chunk: sums and absolute sums);
* between two events the register holds P_t + d with a constant offset d (wrap: d = -2**bits
  times the 2**bits window of P; saturate: d changes only when a value is clipped), so a chunk
  whose P(a) + d + [neg_c, pos_c] stays inside the register has no event at all, and one whose
  interval stays inside the width found so far cannot widen ``min_safe_acc_bits``;
* only the remaining chunks are stepped, checkpoint by checkpoint, from the checkpoint before
  them: the work is proportional to the chunks that may hold an event, not to Q x N x K.

Outputs, per-neuron and per-pair event counts, first events and ``min_safe_acc_bits`` equal
the stepwise engine's (tests/test_overflow_paths.py, tests/test_stepwise.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixedpoint import Register
from ..kernels import exact_matmul

_STEP_ELEMENTS = 1 << 22  # gathered products held at once while stepping chunks
_BLOCK_ELEMENTS = 1 << 22  # (query, neuron, chunk) chunk statistics held at once


@dataclass
class ChunkResult:
    """What the chunked evaluation found for the pairs it was given (arrays over pairs)."""

    acc: np.ndarray  # (F,) final register values
    wraps: np.ndarray  # (F,) wrap events
    sats: np.ndarray  # (F,) saturate events
    first_step: np.ndarray  # (F,) step of the pair's first event or -1
    first_value: np.ndarray  # (F,) exact result of that addition
    partial_min: int
    partial_max: int
    stepped_chunks: int


class ChunkPlan:
    """Where the checkpoints of a batch of queries lie, and the chunk cut of K.

    active: bool (Q, K) inputs that take part (all, or x != zx in event_driven mode).
    Chunks are [c*cs, (c+1)*cs) in input order, cs a multiple of G. A chunk is stepped from
    the checkpoint before it: up to G - 1 earlier active inputs (event_driven only) come
    first, then the chunk's own inputs.
    """

    def __init__(self, active: np.ndarray, g: int, cs: int, dense: bool) -> None:
        q, k = active.shape
        self.q, self.k, self.g, self.cs = q, k, g, cs
        self.c = max(1, -(-k // cs))
        self.dense = dense
        self.ext = 0 if dense else g - 1
        rank = np.cumsum(active, axis=1, dtype=np.int64) - active  # active inputs before k
        self.n_act = active.sum(axis=1).astype(np.int64)
        self.steps = -(-self.n_act // g)  # accumulator additions of the MAC part
        last = active & (rank == self.n_act[:, None] - 1)
        self.ckpt = active & (((rank + 1) % g == 0) | last)
        self.stepno = rank // g
        starts = np.arange(self.c) * cs
        r0 = rank[:, starts] if k else np.zeros((q, self.c), np.int64)  # (Q, C)
        if not dense and g > 1:
            act_pos = np.full((q, k + g), k, dtype=np.int64)
            qi, ki = np.nonzero(active)
            act_pos[qi, rank[qi, ki]] = ki
            ext = np.full((q, self.c, self.ext), k, dtype=np.int64)
            n_ext = r0 % g
            for i in range(self.ext):  # right-aligned: ext[..., -1] is the last one before a
                back = self.ext - i  # this slot holds the active input of rank r0 - back
                ok = back <= n_ext
                ext[..., i] = np.where(ok, act_pos[np.arange(q)[:, None],
                                                   np.maximum(r0 - back, 0)], k)
            self.ext_pos = ext
        else:
            self.ext_pos = np.zeros((q, self.c, 0), dtype=np.int64)

    def positions(self, qs: np.ndarray, cs_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions (F, ext + cs), checkpoint mask) of items (query, chunk); index k = pad."""
        own = cs_[:, None] * self.cs + np.arange(self.cs)[None, :]
        own = np.where(own < self.k, own, self.k)
        pos = np.concatenate([self.ext_pos[qs, cs_], own], axis=1) if self.ext else own
        ck = np.zeros(pos.shape, dtype=bool)
        own_ok = own < self.k
        ck[:, self.ext:] = np.where(own_ok, self.ckpt[qs[:, None], np.minimum(own, self.k - 1)],
                                    False)
        return pos, ck


def abs_wide(a: np.ndarray) -> np.ndarray:
    """|a| in a dtype that holds it (|-128| does not fit int8)."""
    if a.dtype == np.int8:
        return np.abs(a.astype(np.int16))
    if a.dtype == np.int16:
        return np.abs(a.astype(np.int32)) if a.size and int(a.min()) == -32768 else np.abs(a)
    return np.abs(a)


def chunk_size(k: int, g: int) -> int:
    """Chunk length: a multiple of G near K / 48, at least 8 G and 32 inputs."""
    base = max(32, 8 * g, -(-k // 48))
    return -(-base // g) * g


def chunk_stats(
    ox: np.ndarray, ow: np.ndarray, qs: np.ndarray, js: np.ndarray, cs: int,
    xr: tuple[int, int], wr: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-chunk sums and absolute sums (F, C) of pairs (qs, js), sorted by query.

    Computed per block of queries on the neurons that block needs (exact_matmul per chunk).
    """
    k = ox.shape[1]
    c_count = max(1, -(-k // cs))
    f = qs.size
    sums = np.zeros((f, c_count), dtype=np.int64)
    abss = np.zeros((f, c_count), dtype=np.int64)
    if not f:
        return sums, abss
    axr = (0, max(-xr[0], xr[1]))
    awr = (0, max(-wr[0], wr[1]))
    uq, qstart = np.unique(qs, return_index=True)
    qend = np.append(qstart[1:], f)
    i = 0
    while i < uq.size:
        # grow the block while (queries x neurons x chunks) stays bounded
        j_set: np.ndarray = np.zeros(0, dtype=np.int64)
        i1 = i
        while i1 < uq.size:
            cand = np.union1d(j_set, js[qstart[i1]: qend[i1]])
            if i1 > i and (i1 - i + 1) * cand.size * c_count > _BLOCK_ELEMENTS:
                break
            j_set = cand
            i1 += 1
        qb = uq[i:i1]
        xb = ox[qb]
        xab = abs_wide(xb)
        wb = ow[j_set]
        wab = abs_wide(wb)
        lo, hi = qstart[i], qend[i1 - 1]
        rows = np.searchsorted(qb, qs[lo:hi])
        cols = np.searchsorted(j_set, js[lo:hi])
        for c in range(c_count):
            sl = slice(c * cs, min((c + 1) * cs, k))
            s = exact_matmul(xb[:, sl], wb[:, sl], a_range=xr, b_range=wr)
            a = exact_matmul(xab[:, sl], wab[:, sl], a_range=axr, b_range=awr)
            sums[lo:hi, c] = s[rows, cols]
            abss[lo:hi, c] = a[rows, cols]
        i = i1
    return sums, abss


def evaluate_pairs(
    plan: ChunkPlan,
    ox: np.ndarray,
    ow: np.ndarray,
    qs: np.ndarray,
    js: np.ndarray,
    reg: Register,
    policy: str,
    safe: Register | None,
    xr: tuple[int, int],
    wr: tuple[int, int],
) -> ChunkResult:
    """Run the register of pairs (qs, js) (sorted by query) over the MAC part, exactly.

    policy: wrap | saturate. safe: a register whose range the pairs' partial sums are known
    to reach; chunks that may leave it are stepped too, so that the returned partial range
    decides ``min_safe_acc_bits`` exactly (None: events only).
    """
    f = qs.size
    cs = plan.cs
    sums, abss = chunk_stats(ox, ow, qs, js, cs, xr, wr)
    neg = (sums - abss) // 2  # sum of the negative products of each chunk
    pos = (sums + abss) // 2
    prefix = np.cumsum(sums, axis=1) - sums  # exact P at each chunk start
    oxp = np.concatenate([ox, np.zeros((ox.shape[0], 1), ox.dtype)], axis=1)
    owp = np.concatenate([ow, np.zeros((ow.shape[0], 1), ow.dtype)], axis=1)
    d = np.zeros(f, dtype=np.int64)  # register value - prefix sum, constant between events
    wraps = np.zeros(f, dtype=np.int64)
    sats = np.zeros(f, dtype=np.int64)
    first_step = np.full(f, -1, dtype=np.int64)
    first_value = np.zeros(f, dtype=np.int64)
    pmin, pmax = 0, 0
    stepped = 0
    wide = 1 << reg.bits
    for c in range(plan.c):
        base = prefix[:, c] + d
        need = (base + neg[:, c] < reg.min) | (base + pos[:, c] > reg.max)
        if safe is not None:
            need |= (prefix[:, c] + neg[:, c] < safe.min) | (prefix[:, c] + pos[:, c] > safe.max)
        items = np.flatnonzero(need)
        stepped += int(items.size)
        batch = max(1, _STEP_ELEMENTS // (plan.ext + cs))
        for s0 in range(0, items.size, batch):
            it = items[s0: s0 + batch]
            qi, ji = qs[it], js[it]
            pos_, ck = plan.positions(qi, np.full(it.size, c))
            prods = oxp[qi[:, None], pos_].astype(np.int64) * owp[ji[:, None], pos_]
            cum = np.cumsum(prods, axis=1)
            start = prefix[it, c] - (cum[:, plan.ext - 1] if plan.ext else 0)
            vals = start[:, None] + cum  # prefix sums at every position of the item
            if ck.any():
                v = np.where(ck, vals, 0)
                pmin = min(pmin, int(v.min()))
                pmax = max(pmax, int(v.max()))
            steps = plan.stepno[qi[:, None], np.minimum(pos_, plan.k - 1)]
            dd, nw, ns, fs, fv = _step_register(start, vals, ck, steps, d[it], reg, policy, wide)
            d[it] = dd
            wraps[it] += nw
            sats[it] += ns
            new = (first_step[it] < 0) & (fs >= 0)
            first_step[it[new]] = fs[new]
            first_value[it[new]] = fv[new]
    total = prefix[:, -1] + sums[:, -1]
    return ChunkResult(total + d, wraps, sats, first_step, first_value, pmin, pmax, stepped)


def _step_register(
    start: np.ndarray,
    vals: np.ndarray,
    ck: np.ndarray,
    steps: np.ndarray,
    d: np.ndarray,
    reg: Register,
    policy: str,
    wide: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Step items checkpoint by checkpoint from value ``start`` with register offset ``d``.

    Returns (new offset, wraps, saturations, first event step or -1, its exact value).
    """
    f = start.size
    wraps = np.zeros(f, dtype=np.int64)
    sats = np.zeros(f, dtype=np.int64)
    fs = np.full(f, -1, dtype=np.int64)
    fv = np.zeros(f, dtype=np.int64)
    if policy == "wrap":
        # previous checkpoint value of every checkpoint (the start for the first one)
        idx = np.where(ck, np.arange(ck.shape[1])[None, :], -1)
        last = np.maximum.accumulate(idx, axis=1)
        prev_idx = np.concatenate([np.full((f, 1), -1), last[:, :-1]], axis=1)
        rows = np.arange(f)[:, None]
        prev = np.where(prev_idx >= 0, vals[rows, np.maximum(prev_idx, 0)], start[:, None])
        r_prev = prev + d[:, None]  # register before the addition (no event since start)
        # window of the register offset: d is -wide * window(prev) for a wrapped register
        win_prev = np.floor_divide(prev - reg.min, wide)
        win_now = np.floor_divide(vals - reg.min, wide)
        out = ck & (win_now != win_prev)
        wraps = out.sum(axis=1).astype(np.int64)
        hit = np.flatnonzero(wraps)
        if hit.size:
            col = np.argmax(out[hit], axis=1)
            fs[hit] = steps[hit, col]
            exact = r_prev[hit, col] + (vals[hit, col] - prev[hit, col])
            fv[hit] = exact
        lastv = np.where(last[:, -1] >= 0, vals[np.arange(f), np.maximum(last[:, -1], 0)],
                         start)
        new_d = d.copy()
        has = last[:, -1] >= 0
        new_d[has] = -wide * np.floor_divide(lastv[has] - reg.min, wide)
        return new_d, wraps, sats, fs, fv
    r = start + d
    prev = start.copy()
    cols = np.flatnonzero(ck.any(axis=0))
    for col in cols:
        m = ck[:, col]
        v = vals[:, col]
        e = r + (v - prev)
        out = m & ((e < reg.min) | (e > reg.max))
        if out.any():
            sats += out
            new = out & (fs < 0)
            fs[new] = steps[new, col]
            fv[new] = e[new]
        r = np.where(m, np.clip(e, reg.min, reg.max), r)
        prev = np.where(m, v, prev)
    return r - prev, wraps, sats, fs, fv
