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
from .chunk_stepper import numba_enabled, step_items

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
    sums: np.ndarray | None = None  # (F,) exact sums, where the evaluation knows them


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
        self.active = active
        self._arrays: dict[str, np.ndarray] | None = None

    # The per-input arrays below are built on first use: the streamed wrap path needs none
    # of them (building them cost ~25 % of a dense 500-query output layer).
    @property
    def n_act(self) -> np.ndarray:
        """int64 (Q,) active inputs per query."""
        return self._derived()["n_act"]

    @property
    def steps(self) -> np.ndarray:
        """int64 (Q,) accumulator additions of the MAC part per query."""
        return self._derived()["steps"]

    @property
    def ckpt(self) -> np.ndarray:
        """bool (Q, K) True on the last input of an adder-tree step."""
        return self._derived()["ckpt"]

    @property
    def stepno(self) -> np.ndarray:
        """int64 (Q, K) the adder-tree step an input belongs to."""
        return self._derived()["stepno"]

    @property
    def rank0(self) -> np.ndarray:
        """int64 (Q, C) active inputs before each chunk's start."""
        return self._derived()["rank0"]

    @property
    def act_pos(self) -> np.ndarray:
        """int64 (Q, K + G) position of the active input of each rank (K: none)."""
        return self._derived()["act_pos"]

    @property
    def ext_pos(self) -> np.ndarray:
        """int64 (Q, C, G - 1) the active inputs before each chunk that its first step takes
        (event_driven only; K: none), right-aligned."""
        return self._derived()["ext_pos"]

    def _derived(self) -> dict[str, np.ndarray]:
        if self._arrays is not None:
            return self._arrays
        active, q, k, g, dense = self.active, self.q, self.k, self.g, self.dense
        rank = np.cumsum(active, axis=1, dtype=np.int64) - active  # active inputs before k
        n_act = active.sum(axis=1).astype(np.int64)
        last = active & (rank == n_act[:, None] - 1)
        starts = np.arange(self.c) * self.cs
        r0 = rank[:, starts] if k else np.zeros((q, self.c), np.int64)  # (Q, C)
        act_pos = np.full((q, k + g), k, dtype=np.int64)
        if not dense:
            qi, ki = np.nonzero(active)
            act_pos[qi, rank[qi, ki]] = ki
        if not dense and g > 1:
            ext = np.full((q, self.c, self.ext), k, dtype=np.int64)
            n_ext = r0 % g
            for i in range(self.ext):  # right-aligned: ext[..., -1] is the last one before a
                back = self.ext - i  # this slot holds the active input of rank r0 - back
                ok = back <= n_ext
                ext[..., i] = np.where(ok, act_pos[np.arange(q)[:, None],
                                                   np.maximum(r0 - back, 0)], k)
        else:
            ext = np.zeros((q, self.c, 0), dtype=np.int64)
        self._arrays = {"n_act": n_act, "steps": -(-n_act // g),
                        "ckpt": active & (((rank + 1) % g == 0) | last), "stepno": rank // g,
                        "rank0": r0, "act_pos": act_pos, "ext_pos": ext}
        return self._arrays

    def back_chunks(self) -> int:
        """How many chunks before chunk c the checkpoint preceding it may lie (0 when dense)."""
        if self.dense or self.k == 0:
            return 0
        starts = np.arange(self.c) * self.cs
        r0 = self.rank0
        rp = (r0 // self.g) * self.g - 1  # rank of the checkpoint before the chunk
        qi = np.arange(self.q)[:, None]
        pos = np.where(rp >= 0, self.act_pos[qi, np.maximum(rp, 0)], 0)
        pos = np.minimum(pos, self.k - 1)
        back = np.arange(self.c)[None, :] - pos // self.cs
        del starts
        return int(back.max(initial=0))

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
    """Chunk length: a multiple of G near K / 24, at least 8 G and 32 inputs."""
    base = max(32, 8 * g, -(-k // 24))
    return -(-base // g) * g


def _float_for(cs: int, xr: tuple[int, int], wr: tuple[int, int]) -> type:
    """float32 if every chunk sum of |products| stays below 2**24 (exact), else float64."""
    m = cs * max(-xr[0], xr[1], 1) * max(-wr[0], wr[1], 1)
    if m < 1 << 24:
        return np.float32
    if m < 1 << 53:
        return np.float64
    raise OverflowError("chunk sums too large for exact float products")


def _stacked_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(C, M, K) @ (C, K, N) as C BLAS calls (np.matmul on stacks measured ~2x slower here)."""
    out = np.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=np.result_type(a, b))
    for c in range(a.shape[0]):
        np.matmul(a[c], b[c], out=out[c])
    return out


def _chunked(a: np.ndarray, c_count: int, cs: int, dt: type) -> np.ndarray:
    """(M, K) -> (C, M, cs) in ``dt``, K zero-padded to C * cs."""
    m, k = a.shape
    out = np.zeros((c_count, m, cs), dtype=dt)
    for c in range(c_count):
        sl = a[:, c * cs: (c + 1) * cs]
        out[c, :, : sl.shape[1]] = sl
    return out


class ChunkProducts:
    """Exact per-chunk sums and absolute sums of (query, neuron) pairs.

    One stacked float matrix product per block of queries (exact: see _float_for), on the
    neurons the block needs; the chunked weights are built once when most neurons are needed.
    """

    def __init__(self, ox: np.ndarray, ow: np.ndarray, js_needed: np.ndarray, cs: int,
                 xr: tuple[int, int], wr: tuple[int, int], cache: dict | None = None) -> None:
        self.ox, self.ow, self.cs = ox, ow, cs
        self.c = max(1, -(-ox.shape[1] // cs))
        self.dt = _float_for(cs, xr, wr)
        self.all_j = js_needed
        self.nonneg = xr[0] >= 0  # |x'| = x': sums and abs sums from one product
        self.w_all: np.ndarray | None = None
        if js_needed.size * 2 > ow.shape[0]:
            key = ("chunked", cs, self.dt, self.nonneg)
            full = js_needed.size == ow.shape[0]
            if full and cache is not None and key in cache:
                self.w_all, self.wa_all = cache[key]
            else:
                self.w_all, self.wa_all = self._weights(js_needed)
                if full and cache is not None:  # kept with the (read-only) weight matrix
                    cache[key] = (self.w_all, self.wa_all)

    def _weights(self, j_set: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wc = np.ascontiguousarray(_chunked(self.ow[j_set], self.c, self.cs, self.dt)
                                  .transpose(0, 2, 1))  # (C, cs, J)
        if self.nonneg:  # (C, cs, 2J): [w', |w'|]
            return np.concatenate([wc, np.abs(wc)], axis=2), wc[:, :, :0]
        return wc, np.abs(wc)

    def __call__(self, qs: np.ndarray, js: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sums, abs sums) int64 (F, C) of pairs (qs, js) sorted by query."""
        c_count = self.c
        f = qs.size
        sums = np.zeros((f, c_count), dtype=np.int64)
        abss = np.zeros((f, c_count), dtype=np.int64)
        if not f:
            return sums, abss
        uq, qstart = np.unique(qs, return_index=True)
        qend = np.append(qstart[1:], f)
        i = 0
        while i < uq.size:
            if self.w_all is not None:
                j_set = self.all_j
                step = max(1, _BLOCK_ELEMENTS // max(1, j_set.size * c_count))
                i1 = min(uq.size, i + step)
                wc, wac = self.w_all, self.wa_all
            else:
                j_set = np.zeros(0, dtype=np.int64)
                i1 = i
                while i1 < uq.size:
                    cand = np.union1d(j_set, js[qstart[i1]: qend[i1]])
                    if i1 > i and (i1 - i + 1) * cand.size * c_count > _BLOCK_ELEMENTS:
                        break
                    j_set = cand
                    i1 += 1
                wc, wac = self._weights(j_set)
            qb = uq[i:i1]
            xc = _chunked(self.ox[qb], c_count, self.cs, self.dt)
            lo, hi = qstart[i], qend[i1 - 1]
            full = hi - lo == qb.size * j_set.size  # every pair of the block, in order
            if not full:
                rows = np.searchsorted(qb, qs[lo:hi])
                cols = np.searchsorted(j_set, js[lo:hi])
            nj = j_set.size
            if self.nonneg:
                both = _stacked_matmul(xc, wc)  # (C, qb, 2J)
                parts = ((sums, both[:, :, :nj]), (abss, both[:, :, nj:]))
            else:
                parts = ((sums, _stacked_matmul(xc, wc)),
                         (abss, _stacked_matmul(np.abs(xc), wac)))
            for dst, prod in parts:  # prod (C, qb, J)
                if full:
                    dst[lo:hi] = prod.reshape(c_count, -1).T if prod.flags.c_contiguous \
                        else prod.transpose(1, 2, 0).reshape(-1, c_count)
                else:
                    dst[lo:hi] = prod[:, rows, cols].T
            del parts
            i = i1
        return sums, abss


def pair_bounds(
    ox: np.ndarray, ow: np.ndarray, xr: tuple[int, int], wr: tuple[int, int], cs: int,
    cache: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact sums (Q, N) and bounds [lo, hi] (0 included) on every index-order prefix sum of
    every pair: per K-chunk, the exact prefix at its start plus its negative / positive
    products (one stacked product per block of queries)."""
    q, n = ox.shape[0], ow.shape[0]
    total = np.zeros((q, n), dtype=np.int64)
    lo = np.zeros((q, n), dtype=np.int64)
    hi = np.zeros((q, n), dtype=np.int64)
    if not (q and n and ox.shape[1]):
        return total, lo, hi
    prod = ChunkProducts(ox, ow, np.arange(n), cs, xr, wr, cache)
    qb = max(1, _BLOCK_ELEMENTS // (n * prod.c))
    for q0 in range(0, q, qb):
        q1 = min(q0 + qb, q)
        qs = np.repeat(np.arange(q0, q1), n)
        js = np.tile(np.arange(n), q1 - q0)
        sums, abss = prod(qs, js)
        prefix = np.cumsum(sums, axis=1)
        total[q0:q1] = prefix[:, -1].reshape(q1 - q0, n)
        prefix -= sums
        low = ((sums - abss) >> 1) + prefix
        high = ((sums + abss) >> 1) + prefix
        lo[q0:q1] = np.minimum(low.min(axis=1), 0).reshape(q1 - q0, n)
        hi[q0:q1] = np.maximum(high.max(axis=1), 0).reshape(q1 - q0, n)
    return total, lo, hi


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
    cache: dict | None = None,
    given: tuple[np.ndarray, np.ndarray] | None = None,
) -> ChunkResult:
    """Run the register of pairs (qs, js) (sorted by query) over the MAC part, exactly.

    policy: wrap | saturate. safe: a register whose range the pairs' partial sums are known
    to reach; chunks that may leave it are stepped too, so that the returned partial range
    decides ``min_safe_acc_bits`` exactly (None: events only). Pairs are taken in blocks so
    that the (pairs x chunks) statistics stay bounded in memory. ``cache``: a dict that lives
    as long as ``ow`` does (chunked float copies of the weights are kept there). ``given``:
    the pairs' exact (sums, absolute sums) when the plan has a single chunk.
    """
    f = qs.size
    out = ChunkResult(np.zeros(f, np.int64), np.zeros(f, np.int64), np.zeros(f, np.int64),
                      np.full(f, -1, np.int64), np.zeros(f, np.int64), 0, 0, 0)
    if given is not None and plan.c != 1:
        raise ValueError("evaluate_pairs: given sums need a single-chunk plan")
    products = None if given is not None else \
        ChunkProducts(ox, ow, np.unique(js), plan.cs, xr, wr, cache)
    blk = max(1, _BLOCK_ELEMENTS // plan.c)
    for f0 in range(0, f, blk):
        sl = slice(f0, min(f0 + blk, f))
        if given is not None:
            sa = (given[0][sl, None].astype(np.int64), given[1][sl, None].astype(np.int64))
        else:
            assert products is not None
            sa = products(qs[sl], js[sl])
        r = _evaluate_block(plan, sa, ox, ow, qs[sl], js[sl], reg, policy, safe)
        out.acc[sl], out.wraps[sl], out.sats[sl] = r.acc, r.wraps, r.sats
        out.first_step[sl], out.first_value[sl] = r.first_step, r.first_value
        out.partial_min = min(out.partial_min, r.partial_min)
        out.partial_max = max(out.partial_max, r.partial_max)
        out.stepped_chunks += r.stepped_chunks
    return out


def _evaluate_block(
    plan: ChunkPlan,
    sums_abss: tuple[np.ndarray, np.ndarray],
    ox: np.ndarray,
    ow: np.ndarray,
    qs: np.ndarray,
    js: np.ndarray,
    reg: Register,
    policy: str,
    safe: Register | None,
) -> ChunkResult:
    f = qs.size
    sums, abss = sums_abss
    prefix = np.cumsum(sums, axis=1)
    total = prefix[:, -1].copy()
    prefix -= sums  # exact P at each chunk start
    lo = sums - abss  # twice the sum of the chunk's negative products
    lo >>= 1
    lo += prefix  # every prefix sum inside chunk c lies in [lo, hi]
    hi = sums
    hi += abss
    hi >>= 1
    hi += prefix
    del sums, abss
    st = _Stepper(plan, ox, ow, qs, js, reg, policy)
    if policy == "wrap":
        need = _hull_windows_differ(plan, qs, lo, hi, reg)
        if safe is not None:
            need |= (lo < safe.min) | (hi > safe.max)
        del lo, hi
        pi, ci = np.nonzero(need)
        del need
        st.run(pi, ci, prefix, None)
        return st.result(wrap_values(total, reg), f)
    d = np.zeros(f, dtype=np.int64)  # register value - prefix sum, constant between events
    for c in range(plan.c):
        need = (lo[:, c] + d < reg.min) | (hi[:, c] + d > reg.max)
        if safe is not None:
            need |= (lo[:, c] < safe.min) | (hi[:, c] > safe.max)
        pi = np.flatnonzero(need)
        if pi.size:
            st.run(pi, np.full(pi.size, c), prefix, d)
    return st.result(total + d, f)


def wrap_values(v: np.ndarray, reg: Register, in_place: bool = False) -> np.ndarray:
    """Two's complement wrap of int64 ``v`` into ``reg`` (signed, < 63 bits); one temporary
    (a 3 M-pair layer's fresh temporaries cost ~50 ms each on this VM), none ``in_place``."""
    t = np.subtract(v, reg.min)
    t >>= reg.bits
    t <<= reg.bits  # = 2**bits * window: exact, |v| < 2**62
    return np.subtract(v, t, out=v if in_place else t)


def _hull_windows_differ(
    plan: ChunkPlan, qs: np.ndarray, lo: np.ndarray, hi: np.ndarray, reg: Register
) -> np.ndarray:
    """(F, C) True where a wrap may happen at a checkpoint of chunk c.

    The register before chunk c's first checkpoint holds the checkpoint before it, which lies
    in chunk c (dense: the chunk starts on a step) or up to ``back`` chunks earlier.
    """
    back = plan.back_chunks()
    if back:
        if back > 8:
            lo = np.minimum.accumulate(lo, axis=1)
            hi = np.maximum.accumulate(hi, axis=1)
        else:
            lo0, hi0 = lo, hi
            lo, hi = lo0.copy(), hi0.copy()
            for b in range(1, back + 1):
                np.minimum(lo[:, b:], lo0[:, :-b], out=lo[:, b:])
                np.maximum(hi[:, b:], hi0[:, :-b], out=hi[:, b:])
    wl = lo - reg.min  # 2**bits windows by arithmetic shifts (floor division by 2**bits)
    wl >>= reg.bits
    wh = hi - reg.min
    wh >>= reg.bits
    return wl != wh


class _Stepper:
    """Steps (pair, chunk) items checkpoint by checkpoint; keeps per-pair results only.

    Items of one pair must arrive in chunk order (a pair's first event is then its first
    item with an event).
    """

    def __init__(self, plan: ChunkPlan, ox: np.ndarray, ow: np.ndarray, qs: np.ndarray,
                 js: np.ndarray, reg: Register, policy: str) -> None:
        self.plan, self.qs, self.js, self.reg, self.policy = plan, qs, js, reg, policy
        self.ox, self.ow = np.ascontiguousarray(ox), np.ascontiguousarray(ow)
        f = qs.size
        self.wraps = np.zeros(f, dtype=np.int64)
        self.sats = np.zeros(f, dtype=np.int64)
        self.first_step = np.full(f, -1, dtype=np.int64)
        self.first_value = np.zeros(f, dtype=np.int64)
        self.pmin, self.pmax, self.items = 0, 0, 0
        if not numba_enabled():
            self.oxp = np.concatenate([ox, np.zeros((ox.shape[0], 1), ox.dtype)], axis=1)
            self.owp = np.concatenate([ow, np.zeros((ow.shape[0], 1), ow.dtype)], axis=1)

    def _record(self, p: np.ndarray, nw: np.ndarray, ns: np.ndarray, fs: np.ndarray,
                fv: np.ndarray) -> None:
        ev = np.flatnonzero(nw + ns)
        if not ev.size:
            return
        f = self.wraps.size
        pe = p[ev]
        self.wraps += np.bincount(pe, weights=nw[ev], minlength=f).astype(np.int64)
        self.sats += np.bincount(pe, weights=ns[ev], minlength=f).astype(np.int64)
        up, first = np.unique(pe, return_index=True)  # first item of each pair: earliest
        new = self.first_step[up] < 0
        self.first_step[up[new]] = fs[ev][first[new]]
        self.first_value[up[new]] = fv[ev][first[new]]

    def run(self, pi: np.ndarray, ci: np.ndarray, prefix: np.ndarray,
            d: np.ndarray | None) -> None:
        """Step items (pair pi, chunk ci); saturate: ``d`` offsets are read and updated."""
        plan = self.plan
        self.items += int(pi.size)
        if numba_enabled():
            nw, ns, fs, fv, lo, hi = step_items(
                self.ox, self.ow, self.qs, self.js, pi, ci, prefix[pi, ci], d, plan, self.reg.min,
                self.reg.max, self.reg.bits, self.policy == "wrap",
            )
            self.pmin, self.pmax = min(self.pmin, lo), max(self.pmax, hi)
            self._record(pi, nw, ns, fs, fv)
            return
        batch = max(1, _STEP_ELEMENTS // (plan.ext + plan.cs))
        wide = 1 << self.reg.bits
        for s0 in range(0, pi.size, batch):
            p, c = pi[s0: s0 + batch], ci[s0: s0 + batch]
            qi, ji = self.qs[p], self.js[p]
            pos_, ck = plan.positions(qi, c)
            prods = self.oxp[qi[:, None], pos_].astype(np.int64) * self.owp[ji[:, None], pos_]
            cum = np.cumsum(prods, axis=1)
            del prods
            start = prefix[p, c] - (cum[:, plan.ext - 1] if plan.ext else 0)
            vals = start[:, None] + cum
            del cum
            if ck.any():
                v = vals[ck]
                self.pmin = min(self.pmin, int(v.min()))
                self.pmax = max(self.pmax, int(v.max()))
            steps = plan.stepno[qi[:, None], np.minimum(pos_, plan.k - 1)]
            if d is None:
                d0 = -wide * ((start - self.reg.min) >> self.reg.bits)
            else:
                d0 = d[p]
            dd, nw, ns, fs, fv = _step_register(start, vals, ck, steps, d0, self.reg,
                                                self.policy, wide)
            if d is not None:
                d[p] = dd
            self._record(p, nw, ns, fs, fv)

    def result(self, acc: np.ndarray, f: int) -> ChunkResult:
        return ChunkResult(acc, self.wraps, self.sats, self.first_step, self.first_value,
                           self.pmin, self.pmax, self.items)


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
        win_prev = (prev - reg.min) >> reg.bits
        win_now = (vals - reg.min) >> reg.bits
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
        new_d[has] = -wide * ((lastv[has] - reg.min) >> reg.bits)
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
