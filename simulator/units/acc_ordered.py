"""General accumulation (pre-add stage, ``error`` policy, raw event-driven): ordered pairs.

Exact sums plus per-pair chunk bounds flag the (query, neuron) pairs that may hold an event;
those are evaluated step by step in full, and, for ``min_safe_acc_bits``, the pairs that may
widen the range seen so far, worst bound first.
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import Register, wrap
from ..kernels import _mm_frozen, exact_matmul
from .acc_screened import weight_info
from .accumulator import (
    LaneStats,
    MacSpec,
    bits_for_range,
    finish_stats,
    fit_policy,
    narrow,
    operands,
    range_of,
)
from .offset_inputs import narrow_offset
from .partial_sums import abs_wide, chunk_size, pair_bounds
from .pre_add import PreAdd, pre_add_stage
from .sign_split import DOT_PAIRS_MAX_FRACTION, SplitSums, split_sign_sums

_PAIR_BATCH_ELEMENTS = 1 << 24  # products held at once during ordered evaluation


def accumulate_ordered(
    x: np.ndarray,
    zx: int,
    w: np.ndarray,
    zw: np.ndarray,
    spec: MacSpec,
    track_max: bool = True,
    query_offset: int = 0,
    defer_errors: bool = False,
) -> tuple[np.ndarray, LaneStats]:
    """The general path of :func:`simulator.units.mac_array.accumulate` (same contract)."""
    if spec.adder_tree_width % spec.pre_add_width:
        raise ValueError("accumulator.adder_tree_width must be a multiple of mac.pre_add_width")
    n = w.shape[0]
    reg = spec.register
    zeros = np.zeros(n, dtype=np.int64)
    stats = LaneStats(zeros.copy(), zeros.copy(), zeros.copy(), 0, None, 0)
    ox, ow, corr = _operands(x, zx, w, zw, spec.operand)
    # x' = x - zx (offset) or x (raw), narrowed in one compiled pass: bounds, split sums
    oxn, (xlo, xhi) = narrow_offset(x, zx if spec.operand == "offset" else 0)
    nonneg = xlo >= 0  # whole-pair bounds from split sums (below)
    ax = oxn if nonneg else abs_wide(oxn if oxn.itemsize < 4 else oxn.astype(np.int64))
    ax_row_max = int(ax.sum(axis=1, dtype=np.int64).max(initial=0))
    ax_max = max(-xlo, xhi)
    del ax
    cache = None  # derived weights kept with a read-only weight matrix when w' is w - zw
    zw64 = np.asarray(zw, dtype=np.int64)
    if _mm_frozen(w) and (spec.operand == "offset" or not zw64.any()):
        winfo = weight_info(w, zw)
        cache = winfo.derived
        aw_max, aw_row_max = winfo.abs_max, winfo.abs_row_sum_max
        aw = None
    else:
        aw = abs_wide(ow)
        aw_max, aw_row_max = int(aw.max(initial=0)), int(aw.sum(axis=1, dtype=np.int64).max(
            initial=0))
    # Separable bound on |every partial sum| of every pair (pre-add fits never grow a value).
    sep = min(ax_row_max * aw_max, ax_max * aw_row_max)
    limit = min(reg.max, -reg.min)
    pre = pre_add_stage(x, zx, ox, ow, aw, spec, cache, ax_max) if spec.pre_add_width > 1 \
        else None
    del aw
    simple = pre is None and corr is None
    if simple and sep <= limit and not track_max:
        return exact_matmul(ox, ow), stats
    if sep <= limit and not (track_max and nonneg):
        total = _total(exact_matmul(ox, ow), pre, corr)
        lo_known, hi_known = range_of(total)
        if reg.contains(lo_known, hi_known):
            safe = Register(bits_for_range(lo_known, hi_known), True)
            if not track_max or sep <= min(safe.max, -safe.min):
                stats.max_abs_acc = max(-lo_known, hi_known)
                stats.partial_min, stats.partial_max = lo_known, hi_known
                finish_stats(stats, spec, pre, None, [], query_offset, defer_errors)
                return total, stats
    split = split_sign_sums(oxn, ow, ax_max, cache) if nonneg else None
    have_split = split is not None
    if split is not None:
        mac = split.exact  # the MAC part's final value
        if pre is not None and pre.delta is not None:
            mac = mac + pre.delta
        total = mac + corr if corr is not None else mac
        lo_known, hi_known = range_of(total)
        if corr is not None:
            mlo, mhi = range_of(mac)
            lo_known, hi_known = min(lo_known, mlo), max(hi_known, mhi)
        if _split_settles(split, pre, spec, total, lo_known, hi_known, track_max):
            stats.max_abs_acc = max(-int(total.min(initial=0)), int(total.max(initial=0)))
            stats.partial_min, stats.partial_max = lo_known, hi_known
            _finish(stats, spec, pre, None, [], query_offset, defer_errors)
            return total, stats
        lo_b, hi_b = _split_hull(split, pre, spec, lo_known, hi_known, track_max)
        if _settled(int(lo_b.min(initial=0)), int(hi_b.max(initial=0)), total, lo_known,
                    hi_known, spec, track_max):
            stats.max_abs_acc = max(-int(total.min(initial=0)), int(total.max(initial=0)))
            stats.partial_min, stats.partial_max = lo_known, hi_known
            _finish(stats, spec, pre, None, [], query_offset, defer_errors)
            return total, stats
        del mac, total, split
    xs, xr = narrow(ox)
    ws, wr = narrow(ow)
    exact, lo_c, hi_c = pair_bounds(xs, ws, xr, wr, chunk_size(ox.shape[1], 1), cache)
    del xs, ws
    if pre is not None and pre.delta is not None:
        lo_c += pre.dneg
        hi_c += pre.dpos
    total = _total(exact, pre, corr)
    if have_split:  # both bound every partial sum: keep the tighter of each
        np.maximum(lo_b, lo_c, out=lo_b)
        np.minimum(hi_b, hi_c, out=hi_b)
    else:
        lo_b, hi_b = lo_c, hi_c
    del lo_c, hi_c
    np.minimum(lo_b, total, out=lo_b)  # the offset correction's addition ends at the total
    np.maximum(hi_b, total, out=hi_b)
    lo_known, hi_known = _known_range(exact, total, pre, corr)
    del exact
    stats.max_abs_acc = max(-int(total.min(initial=0)), int(total.max(initial=0)))
    stats.partial_min, stats.partial_max = lo_known, hi_known
    flagged = (hi_b > reg.max) | (lo_b < reg.min)  # events possible: evaluate them all
    acc = total
    acc_first = None
    pair_rows: list[np.ndarray] = []
    if flagged.any():
        acc_first = _ordered(x, zx, ox, ow, corr, spec, flagged, acc, stats, pair_rows)
    if track_max:
        _widen_exactly(x, zx, ox, ow, corr, spec, flagged, lo_b, hi_b, acc, stats, pair_rows)
    _finish(stats, spec, pre, acc_first, pair_rows, query_offset, defer_errors)
    return acc, stats


def _operands(
    x: np.ndarray, zx: int, w: np.ndarray, zw: np.ndarray, operand: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`simulator.units.accumulator.operands` with w' kept narrow (int8 / int16 for int8
    weights instead of an int64 copy); the same integers."""
    zw64 = np.asarray(zw, dtype=np.int64)
    if w.dtype != np.int8 or (zw64.size and int(np.abs(zw64).max()) >= 1 << 14):
        ox, ow, corr = operands(x, zx, w, zw, operand)
        return ox, narrow(ow)[0], corr
    xi = x.astype(np.int64, copy=False)  # read only below
    if operand == "offset":
        ow = w if not zw64.any() else (w.astype(np.int16) - zw64[:, None]).astype(np.int16)
        return xi - zx, ow, None
    if zx == 0 and not zw64.any():
        return xi, w, None  # the offset correction adds 0: no event, no new partial sum
    k = x.shape[1]
    corr = (-zx * w.sum(axis=1, dtype=np.int64))[None, :] - zw64[None, :] * xi.sum(axis=1)[:, None]
    return xi, w, corr + k * zx * zw64[None, :]


def _split_hull(
    split: SplitSums, pre: PreAdd | None, spec: MacSpec, lo_known: int, hi_known: int,
    track_max: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds [lo, hi] int64 (Q, N) on every partial sum of the MAC part.

    From [S - U, U] (sign_split.py); pairs whose bounds reach past the width of the known
    range (or the register) get their exact [neg, pos]. A saturating (or ``error``) pre-add
    stage moves each group value towards 0 without changing its sign, so the bounds still
    hold; a wrapping one may add any of its corrections: their negative and positive sums
    widen them.
    """
    lo, hi = split.hull()
    widen = (pre is not None and pre.delta is not None and pre.dneg is not None
             and spec.pre_add_overflow == "wrap")
    if widen:
        assert pre is not None and pre.dneg is not None
        lo += pre.dneg
        hi += pre.dpos
    reg = spec.register
    if track_max and reg.contains(lo_known, hi_known):
        reg = Register(bits_for_range(lo_known, hi_known), True)
    qs, js = np.nonzero((lo < reg.min) | (hi > reg.max))
    if qs.size:
        pos = split.exact_pos(qs, js)
        lo[qs, js] = split.exact[qs, js] - pos
        hi[qs, js] = pos
        if widen:
            assert pre is not None and pre.dneg is not None and pre.delta is not None
            lo[qs, js] += pre.dneg[qs, js]
            hi[qs, js] += pre.delta[qs, js] - pre.dneg[qs, js]
    return lo, hi


def _split_settles(
    split: SplitSums, pre: PreAdd | None, spec: MacSpec, total: np.ndarray, lo_known: int,
    hi_known: int, track_max: bool,
) -> bool:
    """:func:`_settled` for the hull of :func:`_split_hull` without its (Q, N) arrays, when
    no wrapping pre-add correction widens it: every pair's [S - U, U], or its exact [neg,
    pos] where that hull leaves the register (and, ``track_max``, the width of the known
    range), lies inside both, and so do the final values. False when this does not settle
    the run or does not apply (the full hull is then built)."""
    if pre is not None and pre.delta is not None and spec.pre_add_overflow == "wrap":
        return False
    lo, hi = spec.register.min, spec.register.max
    if track_max:
        safe = Register(bits_for_range(lo_known, hi_known), True)
        lo, hi = max(lo, safe.min), min(hi, safe.max)
    t_lo, t_hi = range_of(total)
    if t_lo < lo or t_hi > hi or lo > 0 or hi < 0:
        return False
    qs, js = split.open_pairs(lo, hi)
    if not qs.size:
        return True
    if qs.size > DOT_PAIRS_MAX_FRACTION * total.size:
        return False
    pos = split.exact_pos(qs, js)
    neg = split.exact[qs, js] - pos
    return not bool(((neg < lo) | (pos > hi)).any())


def _known_range(
    exact: np.ndarray, total: np.ndarray, pre: PreAdd | None, corr: np.ndarray | None
) -> tuple[int, int]:
    """Range (0 included) of values the register surely holds: every pair's final value and,
    when the offset correction is a separate last addition, the MAC part's result before it."""
    lo, hi = range_of(total)
    if corr is not None:
        mac = exact if pre is None or pre.delta is None else exact + pre.delta
        mlo, mhi = range_of(mac)
        lo, hi = min(lo, mlo), max(hi, mhi)
    return lo, hi


def _settled(
    lo_all: int, hi_all: int, total: np.ndarray, lo_known: int, hi_known: int,
    spec: MacSpec, track_max: bool,
) -> bool:
    """True if the bounds [lo_all, hi_all] on every partial sum of the MAC part rule out
    every accumulator event and (track_max) every partial sum outside the width of the known
    range: the final values then settle the run."""
    reg = spec.register
    lo = min(lo_all, int(total.min(initial=0)))
    hi = max(hi_all, int(total.max(initial=0)))
    if not reg.contains(lo, hi):
        return False
    if not track_max:
        return True
    return Register(bits_for_range(lo_known, hi_known), True).contains(lo, hi)


def _finish(
    stats: LaneStats, spec: MacSpec, pre: PreAdd | None,
    acc_first: tuple[int, int, int, int, int] | None, pair_rows: list[np.ndarray],
    query_offset: int, defer_errors: bool,
) -> None:
    """finish_stats, handing a single already merged pre-add event table over as is (no copy
    of millions of rows) when there are no accumulator events."""
    if pre is None or pair_rows or len(pre.rows) != 1 or not pre.rows_merged:
        finish_stats(stats, spec, pre, acc_first, pair_rows, query_offset, defer_errors)
        return
    rows = pre.rows
    pre.rows = []
    try:
        finish_stats(stats, spec, pre, acc_first, pair_rows, query_offset, defer_errors)
    finally:
        pre.rows = rows
    stats.pair_events = rows[0]


def _widen_exactly(
    x: np.ndarray,
    zx: int,
    ox: np.ndarray,
    ow: np.ndarray,
    corr: np.ndarray | None,
    spec: MacSpec,
    done: np.ndarray,
    lo_b: np.ndarray,
    hi_b: np.ndarray,
    acc: np.ndarray,
    stats: LaneStats,
    pair_rows: list[np.ndarray],
) -> None:
    """Make ``min_safe_acc_bits`` exact: evaluate, worst bound first, the pairs whose partial
    sums might need a wider register than the range seen so far, until none might."""
    done = done.copy()
    batch = 64
    while True:
        safe = Register(bits_for_range(stats.partial_min, stats.partial_max), True)
        excess = np.maximum(hi_b - safe.max, safe.min - lo_b)
        cand = np.flatnonzero((excess > 0).ravel() & ~done.ravel())
        if not cand.size:
            return
        if cand.size > batch:
            cand = cand[np.argpartition(-excess.ravel()[cand], batch)[:batch]]
        mask = np.zeros(done.size, dtype=bool)
        mask[cand] = True
        mask = mask.reshape(done.shape)
        _ordered(x, zx, ox, ow, corr, spec, mask, acc, stats, pair_rows)
        done |= mask
        batch *= 4


def _total(exact: np.ndarray, pre: PreAdd | None, corr: np.ndarray | None) -> np.ndarray:
    """Unbounded final accumulator: exact products + pre-add corrections + offset correction."""
    total = exact
    if pre is not None and pre.delta is not None:
        total = total + pre.delta
    if corr is not None:
        total = total + corr
    return total


def _ordered(
    x: np.ndarray,
    zx: int,
    ox: np.ndarray,
    ow: np.ndarray,
    corr: np.ndarray | None,
    spec: MacSpec,
    flagged: np.ndarray,
    acc: np.ndarray,
    stats: LaneStats,
    pair_rows: list[np.ndarray],
) -> tuple[int, int, int, int, int] | None:
    """Step-ordered evaluation of the flagged (query, neuron) pairs, in place.

    Returns the earliest accumulator event as (query, tile, step, neuron, exact value).
    """
    reg = spec.register
    k = ox.shape[1]
    g = spec.adder_tree_width
    p = spec.pre_add_width
    preg = spec.pre_register if p > 1 else None
    qs, js = np.nonzero(flagged)
    stats.ordered_pairs += int(qs.size)
    batch = max(1, _PAIR_BATCH_ELEMENTS // max(k, 1))
    best: tuple[int, int, int, int, int] | None = None
    for start in range(0, qs.size, batch):
        bq = qs[start : start + batch]
        bj = js[start : start + batch]
        f = bq.size
        prod = ox[bq] * ow[bj]
        if spec.event_driven:
            active = x[bq] != zx  # skipped inputs have x' = 0: their products are 0
            order = np.argsort(~active, axis=1, kind="stable")
            prod = np.take_along_axis(prod, order, axis=1)
            n_active = active.sum(axis=1)
        else:
            n_active = np.full(f, k, dtype=np.int64)
        if preg is not None:
            prod = _pad_to(prod, p)
            sums = prod.reshape(f, -1, p).sum(axis=2)
            prod = fit_policy(sums, preg, spec.pre_add_overflow)
            gg = g // p
            n_steps = _ceil_div(_ceil_div(n_active, p), gg)
        else:
            gg = g
            n_steps = _ceil_div(n_active, gg)
        prod = _pad_to(prod, gg)
        tree = prod.reshape(f, -1, gg).sum(axis=2)  # (F, T) exact tree outputs
        if corr is not None:
            tree = np.concatenate([tree, corr[bq, bj][:, None]], axis=1)
            n_steps = n_steps + 1
        final, wraps, sats, first_step, first_val = _run_register(
            tree, n_steps, reg, spec.overflow
        )
        exists = np.arange(tree.shape[1])[None, :] < n_steps[:, None]
        unbounded = np.where(exists, np.cumsum(tree, axis=1), 0)
        stats.partial_min = min(stats.partial_min, int(unbounded.min(initial=0)))
        stats.partial_max = max(stats.partial_max, int(unbounded.max(initial=0)))
        acc[bq, bj] = final
        np.add.at(stats.acc_wrap, bj, wraps)
        np.add.at(stats.acc_saturate, bj, sats)
        ev = np.flatnonzero(first_step >= 0)
        if ev.size:
            z = np.zeros(ev.size, dtype=np.int64)
            pair_rows.append(np.stack([bq[ev], bj[ev], wraps[ev], sats[ev], z], axis=1))
            tiles = bj[ev] // spec.lanes
            i0 = np.lexsort((bj[ev], first_step[ev], tiles, bq[ev]))[0]
            e = ev[i0]
            cand = (int(bq[e]), int(tiles[i0]), int(first_step[e]), int(bj[e]), int(first_val[e]))
            if best is None or cand[:4] < best[:4]:
                best = cand
    if best is not None:
        stats.first = (best[0], best[3], best[2])
    return best


def _pad_to(a: np.ndarray, m: int) -> np.ndarray:
    """Zero-pad the last axis of a 2-D array to a multiple of m."""
    r = -a.shape[1] % m
    if not r:
        return a
    return np.concatenate([a, np.zeros((a.shape[0], r), dtype=a.dtype)], axis=1)


def _run_register(
    tree: np.ndarray, n_steps: np.ndarray, reg: Register, policy: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Add tree outputs step by step into the register.

    tree: int64 (F, T); step t of pair i exists if t < n_steps[i].
    Returns (final value (F,), wrap events (F,), saturate events (F,), first event step (F,)
    or -1, exact result of that first event's addition (F,)). ``error`` counts as wrap.
    """
    f, t_count = tree.shape
    exists = np.arange(t_count)[None, :] < n_steps[:, None]
    zeros = np.zeros(f, dtype=np.int64)
    first = np.full(f, -1, dtype=np.int64)
    first_val = zeros.copy()
    if t_count == 0:
        return zeros.copy(), zeros.copy(), zeros.copy(), first, first_val
    if policy in ("wrap", "error"):
        prefix = np.cumsum(tree, axis=1)
        before = np.concatenate([np.zeros((f, 1), dtype=np.int64), prefix[:, :-1]], axis=1)
        exact_result = wrap(before, reg) + tree
        out = ((exact_result < reg.min) | (exact_result > reg.max)) & exists
        wraps = out.sum(axis=1).astype(np.int64)
        hit = np.flatnonzero(out.any(axis=1))
        first[hit] = np.argmax(out[hit], axis=1)
        first_val[hit] = exact_result[hit, first[hit]]
        return wrap(prefix[:, -1], reg), wraps, zeros.copy(), first, first_val
    # Saturate: the register equals the prefix sum until a pair's first out-of-range
    # addition; only pairs that get there are stepped, from that step on.
    prefix = np.cumsum(tree, axis=1)
    outside = ((prefix < reg.min) | (prefix > reg.max)) & exists
    hit = np.flatnonzero(outside.any(axis=1))
    last = np.maximum(n_steps - 1, 0)
    r = np.where(n_steps > 0, prefix[np.arange(f), last], 0)
    sats = zeros.copy()
    if hit.size:
        t0 = int(np.argmax(outside[hit], axis=1).min())
        sub = tree[hit]
        ex = exists[hit]
        rh = prefix[hit, t0 - 1] if t0 > 0 else np.zeros(hit.size, dtype=np.int64)
        sh = np.zeros(hit.size, dtype=np.int64)
        fh = np.full(hit.size, -1, dtype=np.int64)
        fv = np.zeros(hit.size, dtype=np.int64)
        for t in range(t0, t_count):
            e = ex[:, t]
            s = rh + sub[:, t]
            out = e & ((s < reg.min) | (s > reg.max))
            if out.any():
                sh += out
                new = (fh < 0) & out
                fh[new] = t
                fv[new] = s[new]
            rh = np.where(e, np.clip(s, reg.min, reg.max), rh)
        r[hit] = rh
        sats[hit] = sh
        first[hit] = fh
        first_val[hit] = fv
    return r, zeros.copy(), sats, first, first_val


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -(-a // b)
