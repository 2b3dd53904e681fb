"""Pre-add stage of the MAC array (``mac.pre_add_width`` P > 1, e.g. AVX2 VPMADDUBSW pairs).

P consecutive products are summed exactly and written to a signed ``mac.pre_add_bits``
register under ``mac.pre_add_overflow``. :func:`pre_add_stage` finds every overflowing write
exactly: in dense mode a (group, neuron) entry can overflow only where max|x'| times the
group's sum of |w'| leaves the register, a property of the weights alone (AVX2: only where
255 (|w_2i| + |w_2i+1|) > 32767), so only those "hot" entries are ever evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..fixedpoint import saturate, wrap

if TYPE_CHECKING:
    from .accumulator import MacSpec

_PRE_BATCH_ELEMENTS = 1 << 23  # pre-add products held at once


def _fit(values: np.ndarray, reg, policy: str) -> np.ndarray:  # noqa: ANN001
    return wrap(values, reg) if policy == "wrap" else saturate(values, reg)


@dataclass
class PreAdd:
    """Pre-add stage results: per-(query, neuron) corrections (fitted - exact) and events."""

    q_count: int
    n: int
    delta: np.ndarray | None = None  # (Q, N) sum of corrections
    dneg: np.ndarray | None = None  # (Q, N) sum of negative corrections
    counts: np.ndarray | None = None  # (N,) events per neuron
    # pair event rows: (E, 5) tables, or builders of one (see accumulator.PairRows)
    rows: list[np.ndarray | Callable[[], np.ndarray]] = field(default_factory=list)
    first: tuple[int, int, int, int] | None = None  # (query, tile, step, neuron)
    first_value: int = 0
    rows_merged: bool = False  # rows is one table sorted by (query, neuron), one row per pair

    @property
    def dpos(self) -> np.ndarray | None:
        """(Q, N) sum of positive corrections (computed: delta - dneg)."""
        if self.delta is None or self.dneg is None:
            return None
        return self.delta - self.dneg

    def alloc(self) -> None:
        if self.delta is None:
            shape = (self.q_count, self.n)
            self.delta = np.zeros(shape, dtype=np.int64)
            self.dneg = np.zeros(shape, dtype=np.int64)
            self.counts = np.zeros(self.n, dtype=np.int64)


def pre_add_stage(
    x: np.ndarray, zx: int, ox: np.ndarray, ow: np.ndarray, aw: np.ndarray | None,
    spec: MacSpec, cache: dict | None = None, xmax: int | None = None,
) -> PreAdd:
    """Find every pre-add register write that overflows, exactly.

    Dense: a (group, neuron) entry can overflow only if max|x'| * sum_{k in group} |w'_jk|
    leaves the register ("hot" entries, few for real weights); per query, hot entries whose
    bound sum_k |x'_qk| |w'_jk| still leaves it are summed exactly. Event-driven (groups
    differ per query): groups with sum_k |x'_qk| max_j |w'_jk| outside the register are summed
    exactly for every neuron. Either way only true overflows are recorded.

    aw: |w'| (computed here when None); ``cache``: a dict that lives as long as ``ow`` does
    (the hot entries of each threshold are kept there); ``xmax``: max |x'| when known.
    """
    q_count, k = ox.shape
    n = ow.shape[0]
    p = spec.pre_add_width
    preg = spec.pre_register
    res = PreAdd(q_count, n)
    if not spec.event_driven:
        groups = _groups(np.arange(k), p, k)  # (G, P); index k is the zero padding
        xmax = int(np.abs(ox).max(initial=0)) if xmax is None else xmax
        if xmax == 0:
            return res
        hot_j, hot_g = _hot_entries(ow, aw, p, preg.max // xmax, groups.shape[0], cache)
        if _dense_compiled(res, spec, ox, ow, groups, hot_j, hot_g, xmax, cache):
            return res
        step = max(1, _PRE_BATCH_ELEMENTS // p)
        for e0 in range(0, hot_j.size, step):
            hj = hot_j[e0 : e0 + step]
            hg = hot_g[e0 : e0 + step]
            cols = groups[hg]  # (E, P)
            valid = cols < k
            cols = np.minimum(cols, k - 1)
            wv = np.where(valid, ow[hj[:, None], cols], 0)
            qstep = max(1, _PRE_BATCH_ELEMENTS // max(1, cols.size))
            for q0 in range(0, q_count, qstep):  # exact hot-group sums, a block of queries
                q1 = min(q0 + qstep, q_count)
                xv = ox[q0:q1][:, cols]  # (qb, E, P); padded slots meet a zero weight
                sums = np.einsum("qep,ep->qe", xv, wv)
                qi, ei = np.nonzero((sums < preg.min) | (sums > preg.max))
                if not qi.size:
                    continue
                bounds = np.flatnonzero(np.diff(qi)) + 1
                for part_q, part_e in zip(np.split(qi, bounds), np.split(ei, bounds),
                                          strict=True):
                    q = int(part_q[0])
                    _record(res, spec, q0 + q, hj[part_e], hg[part_e], sums[q, part_e])
        return res
    aw = _abs(ow) if aw is None else aw
    wmax = np.concatenate([aw.max(axis=0, initial=0), [0]])  # (K + 1,)
    cstep = max(1, _PRE_BATCH_ELEMENTS // max(n * p, 1))
    for q in range(q_count):
        g = _groups(np.flatnonzero(x[q] != zx), p, k)
        xq = np.concatenate([ox[q], [0]])  # index k is the zero padding
        cand = np.flatnonzero((np.abs(xq[g]) * wmax[g]).sum(axis=1) > preg.max)
        for c0 in range(0, cand.size, cstep):
            cc = cand[c0 : c0 + cstep]
            gi = g[cc]  # (C, P) input indices
            s = (ow[:, np.minimum(gi, k - 1)] * xq[gi][None, :, :]).sum(axis=2)  # (N, C)
            over = (s < preg.min) | (s > preg.max)
            if over.any():
                jj, ci = np.nonzero(over)
                _record(res, spec, q, jj, cc[ci], s[jj, ci])
    return res


def _hot_entries(
    ow: np.ndarray, aw: np.ndarray | None, p: int, limit: int, g_count: int,
    cache: dict | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(neurons, groups) of the entries whose sum of |w'| exceeds ``limit``, sorted by
    (neuron, group): only they can leave the pre-add register (limit = max // max|x'|)."""
    key = ("pre_add_hot", p, limit)
    if cache is not None and key in cache:
        return cache[key]
    wsum = cache.get(("pre_add_wsum", p)) if cache is not None else None
    if wsum is None:
        n = ow.shape[0]
        aw = _abs(ow) if aw is None else aw
        big = p * int(aw.max(initial=0)) >= 1 << 31
        wsum = np.zeros((n, g_count), dtype=np.int64 if big else np.int32)  # sum |w'| in group
        for r in range(p):
            part = aw[:, r::p]
            wsum[:, : part.shape[1]] += part
        if cache is not None:
            cache[("pre_add_wsum", p)] = wsum
    hot = np.nonzero(wsum > limit)
    if cache is not None:
        cache[key] = hot
    return hot


def _hot_operands(
    ow: np.ndarray, groups: np.ndarray, hot_j: np.ndarray, hot_g: np.ndarray,
    cache: dict | None, limit: int,
) -> tuple[np.ndarray, ...]:
    """Kernel operands of the hot entries of threshold ``limit`` (kept in ``cache`` with the
    weights): hot groups (ascending), their entry ranges, and per entry (sorted by group,
    then decreasing sum of |w'|) the neuron, the P weights (int64) and their sum of |w'|."""
    key = ("pre_add_hot_operands", groups.shape[1], limit)
    if cache is not None and key in cache:
        return cache[key]
    k = ow.shape[1]
    cols = groups[hot_g]  # (E, P)
    wv = np.where(cols < k, ow[hot_j[:, None], np.minimum(cols, k - 1)], 0).astype(np.int64)
    wsum = np.abs(wv).sum(axis=1)
    order = np.lexsort((hot_j, -wsum, hot_g))
    hot_groups, gstart = np.unique(hot_g[order], return_index=True)
    out = (hot_groups.astype(np.int64), np.append(gstart, hot_g.size).astype(np.int64),
           hot_j[order].astype(np.int64), np.ascontiguousarray(wv[order]), wsum[order])
    if cache is not None:
        cache[key] = out
    return out


def _dense_compiled(
    res: PreAdd, spec: MacSpec, ox: np.ndarray, ow: np.ndarray, groups: np.ndarray,
    hot_j: np.ndarray, hot_g: np.ndarray, xmax: int, cache: dict | None = None,
) -> bool:
    """The hot entries of a dense schedule through the compiled kernel (pre_add_kernel.py).

    Fills ``res`` and returns True; False (nothing done) without numba or when a group sum
    might not fit int64.
    """
    from .pre_add_kernel import evaluate_hot, hot_kernel_available

    if not hot_j.size:
        return True
    if not hot_kernel_available():
        return False
    q_count, k = ox.shape
    n = res.n
    p = spec.pre_add_width
    preg = spec.pre_register
    hot_groups, gptr, ent_j, ent_w, ent_wsum = _hot_operands(ow, groups, hot_j, hot_g, cache,
                                                               preg.max // xmax)
    if int(ent_wsum.max(initial=0)) * xmax >= 1 << 62 or preg.bits > 62:
        return False
    simd = _hot_pairs_simd(ox, ow, hot_j, hot_g, xmax, spec, cache)
    if simd is not None:
        delta, dneg, cnt, counts = simd
    else:
        delta, dneg, cnt = evaluate_hot(
            np.ascontiguousarray(ox, dtype=np.int64), groups, hot_groups, gptr, ent_j, ent_w,
            ent_wsum, preg.min, preg.max, spec.pre_add_overflow == "wrap", n,
        )
        counts = cnt.sum(axis=0, dtype=np.int64)
    if not counts.any():
        return True
    res.delta, res.dneg = delta, dneg
    res.counts = counts
    res.rows = [_rows_later(cnt)]
    res.rows_merged = True
    # The first event lies in the first query with one: find it there with numpy.
    q0 = _first_row_with_events(cnt)
    del cnt
    key = ("pre_add_entry_columns", preg.max // xmax)
    found = cache.get(key) if cache is not None else None
    if found is None:
        ent_g = np.repeat(hot_groups, np.diff(gptr))
        found = ent_g, np.ascontiguousarray(groups[ent_g].T)  # (P, E); k: the zero padding
        if cache is not None:
            cache[key] = found
    ent_g, cols_t = found
    xq = np.append(ox[q0].astype(np.int64), 0)
    s = xq[cols_t[0]] * ent_w[:, 0]  # column by column: a short last axis sums slowly
    for c in range(1, cols_t.shape[0]):
        s += xq[cols_t[c]] * ent_w[:, c]
    ev = np.flatnonzero((s < preg.min) | (s > preg.max))
    js, gs = ent_j[ev], ent_g[ev]
    steps = gs // (spec.adder_tree_width // p)
    tiles = js // spec.lanes
    i0 = np.lexsort((js, steps, tiles))[0]
    res.first = (q0, int(tiles[i0]), int(steps[i0]), int(js[i0]))
    res.first_value = int(s[ev[i0]])
    return True


def _first_row_with_events(cnt: np.ndarray) -> int:
    """The first row of ``cnt`` (Q, N) holding a nonzero count (one exists), scanning
    blocks of rows from the top (the first query with an event is usually an early one)."""
    step = 8
    for a in range(0, cnt.shape[0], step):
        rows = cnt[a:a + step].any(axis=1)
        if rows.any():
            return a + int(np.argmax(rows))
    raise ValueError("no row holds an event")


def _hot_pairs_simd(
    ox: np.ndarray, ow: np.ndarray, hot_j: np.ndarray, hot_g: np.ndarray, xmax: int,
    spec: MacSpec, cache: dict | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(corrections, negative corrections, events) (Q, N) and events per neuron (N,) of the
    hot entries by the SIMD loop of pre_add_simd.py (pairs, int32 lanes exact), or None
    (the numba kernel runs)."""
    from . import pre_add_simd

    if spec.pre_add_width != 2 or not pre_add_simd.available():
        return None
    key = ("pre_add_simd", hot_j.size, spec.pre_register.max // max(xmax, 1))
    ops = cache.get(key) if cache is not None else None
    if ops is None:
        ops = pre_add_simd.operands(ow, hot_j, hot_g)
        ops = (*ops, int(np.abs(ow).max(initial=0)))  # and max |w'|
        if cache is not None:
            cache[key] = ops
    *ops, wmax = ops
    per_neuron = int(np.diff(ops[2]).max(initial=0))
    if not pre_add_simd.fits(xmax, wmax, spec.pre_register, per_neuron):
        return None
    return pre_add_simd.evaluate(ox, ow.shape[0], tuple(ops), spec.pre_register,
                                 spec.pre_add_overflow == "wrap")


def _rows_later(cnt: np.ndarray) -> Callable[[], np.ndarray]:
    """Builder of the pair event rows (query, neuron, 0, 0, pre-add events) of the (Q, N)
    event counts ``cnt``, in (query, neuron) order: a table of millions of rows is built only
    when read (LaneStats.pair_events)."""

    def build() -> np.ndarray:
        qi, ji = np.nonzero(cnt)
        rows = np.zeros((qi.size, 5), dtype=np.int64)
        rows[:, 0] = qi
        rows[:, 1] = ji
        rows[:, 4] = cnt[qi, ji]
        return rows

    def per_query(q_count: int) -> tuple[np.ndarray, np.ndarray]:
        pre = np.zeros(q_count, dtype=np.int64)
        pre[: cnt.shape[0]] = cnt.sum(axis=1, dtype=np.int64)
        return np.zeros(q_count, dtype=np.int64), pre

    build.per_query = per_query  # type: ignore[attr-defined]
    return build


def _record(
    res: PreAdd, spec: MacSpec, q: int, jj: np.ndarray, gg: np.ndarray, s: np.ndarray
) -> None:
    """Record pre-add overflows of query q: neurons jj, group numbers gg, exact sums s."""
    res.alloc()
    assert res.delta is not None and res.dneg is not None
    assert res.counts is not None
    n = res.n
    d = _fit(s, spec.pre_register, spec.pre_add_overflow) - s
    np.add.at(res.delta[q], jj, d)
    np.add.at(res.dneg[q], jj, np.minimum(d, 0))
    cnt = np.bincount(jj, minlength=n).astype(np.int64)
    res.counts += cnt
    js = np.flatnonzero(cnt)
    z = np.zeros(js.size, dtype=np.int64)
    res.rows.append(np.stack([np.full(js.size, q), js, z, z, cnt[js]], axis=1))
    steps = gg // (spec.adder_tree_width // spec.pre_add_width)
    tiles = jj // spec.lanes
    i0 = np.lexsort((gg, jj, steps, tiles))[0]
    key = (int(q), int(tiles[i0]), int(steps[i0]), int(jj[i0]))
    if res.first is None or key < res.first:
        res.first = key
        res.first_value = int(s[i0])


def _abs(ow: np.ndarray) -> np.ndarray:
    """|w'| without an int64 copy of int8 weights (|-128| needs int16)."""
    return np.abs(ow.astype(np.int16 if ow.dtype in (np.int8, np.uint8) else np.int64))


def _groups(idx: np.ndarray, p: int, pad: int) -> np.ndarray:
    """Consecutive groups of ``p`` indices (G, p), the last padded with ``pad``."""
    ng = -(-idx.size // p)
    g = np.full(ng * p, pad, dtype=np.int64)
    g[: idx.size] = idx
    return g.reshape(ng, p)
