"""Narrow wrap/saturate accumulators (no pre-add) by chunked partial sums.

Two exact products give every pair's sum S and absolute sum A (or, for inputs >= 0, the
sign hull [S - U, U]); pairs whose bounds stay inside the register (and inside the width of
the final sums, for ``min_safe_acc_bits``) are settled by S alone; the rest go to the SIMD
or float tiles (whole pairs), the streamed wrap pass, or
:func:`simulator.units.partial_sums.evaluate_pairs`, which steps only the K-chunks that may
hold an event. When a sample shows events nearly everywhere, :func:`_every_pair` steps
every pair in the SIMD tiles first and takes S from them (no full product).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..fixedpoint import Register
from ..kernels import _mm_frozen, exact_matmul
from .acc_screened import weight_info
from .accumulator import (
    LaneStats,
    MacSpec,
    PairRows,
    _per_query,
    bits_for_range,
    finish_stats,
    fit_policy,
    narrow,
    operands,
    range_of,
)
from .chunk_stepper import numba_enabled
from .offset_inputs import narrow_offset
from .partial_sums import ChunkPlan, ChunkResult, abs_wide, chunk_size, evaluate_pairs
from .sign_split import DOT_PAIRS_MAX_FRACTION, SplitSums, positive_bound
from .tile_stepper import evaluate_tiles, simd_applies, tiles_available
from .wrap_stream import evaluate_wrap_streamed


def _abs_weights(ow: np.ndarray, cache: dict | None) -> np.ndarray:
    """|w'| (uint8 when it fits: its float32 copy is then kept by exact_matmul), cached with
    the read-only weight matrix."""
    if cache is not None and "abs" in cache:
        return cache["abs"]
    aw = abs_wide(ow)
    if aw.size and int(aw.max()) <= 255:
        aw = aw.astype(np.uint8)
    if cache is not None:
        aw.flags.writeable = False
        cache["abs"] = aw
    return aw


WIDE = Register(62, True)  # a register no exact partial sum here can leave


def _partial_range(
    plan: ChunkPlan, oxs: np.ndarray, ows: np.ndarray, qs: np.ndarray, js: np.ndarray,
    safe: Register | None, xr: tuple[int, int], wr: tuple[int, int], cache: dict | None,
) -> tuple[int, int] | None:
    """(min, max) of the checkpoint partial sums of pairs (qs, js), exact wherever they leave
    ``safe`` (the final sums' width), by the streamed pass with an unbounded register: the
    same numbers the event-free run of this layer finds, as partial sums do not depend on the
    register's policy. Dense schedule only (its checkpoints are the stream's). Cheaper than
    tracking them in every tile step. None when the streamed pass does not apply."""
    if safe is None:
        return None
    res = evaluate_wrap_streamed(plan, oxs, ows, qs, js, WIDE, safe, xr, wr, cache)
    if res is None or res.wraps.any():
        return None
    return res.partial_min, res.partial_max


def _sign_hull(oxs: np.ndarray, ows: np.ndarray, s: np.ndarray, xmax: int, reg: Register,
               safe: Register | None, cache: dict | None
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """(neg, pos) bounds int64 (Q, N) for inputs x' >= 0 without the absolute-sum product:
    [S - U, U] from sign_split.positive_bound (a product 4x shorter), made exact (one dot
    product each) for the pairs it leaves open when they are few; the others' bounds
    already keep them inside the register and ``safe``. Where the open pairs are many (dense
    events: the SIMD tiles step them whole anyway), the hull itself. None when U's float
    products would not be exact."""
    ub = positive_bound(oxs, ows, xmax, cache)
    if ub is None:
        return None
    neg = s - ub
    lo = reg.min if safe is None else max(reg.min, safe.min)  # open: leaves either range
    hi = reg.max if safe is None else min(reg.max, safe.max)
    open_ = neg < lo
    open_ |= ub > hi
    if 0 < np.count_nonzero(open_) <= DOT_PAIRS_MAX_FRACTION * s.size:
        qs, js = np.nonzero(open_)
        split = SplitSums(s, ub, oxs, ows, [], np.float64, {} if cache is None else cache)
        ub[qs, js] = split.exact_pos(qs, js)
        neg[qs, js] = s[qs, js] - ub[qs, js]
    return neg, ub


def _outside_hull(oxs: np.ndarray, ows: np.ndarray, s: np.ndarray, xr: tuple[int, int],
                  wr: tuple[int, int], safe: Register, cache: dict | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(qs, js) of the pairs whose partial sums may leave ``safe``. Inputs x' >= 0: outside
    the sign hull [S - U, U] (sign_split.positive_bound) and, when those are few, outside
    [neg, pos] from exact positive sums too (every pair when U's float products would not
    be exact). Some x' < 0: outside [neg, pos] = (S -+ A) / 2, A the absolute-sum product."""
    if xr[0] < 0:
        a = exact_matmul(abs_wide(oxs), _abs_weights(ows, cache),
                         a_range=(0, max(-xr[0], xr[1])), b_range=(0, max(-wr[0], wr[1])))
        return np.nonzero(((s - a) >> 1 < safe.min) | ((s + a) >> 1 > safe.max))
    ub = positive_bound(oxs, ows, xr[1], cache, exact_float=True)
    if ub is None:
        q_count, n = s.shape
        return (np.repeat(np.arange(q_count, dtype=np.int64), n),
                np.tile(np.arange(n, dtype=np.int64), q_count))
    split = SplitSums(s, ub, oxs, ows, [], np.float64, {} if cache is None else cache)
    qs, js = split.open_pairs(safe.min, safe.max)
    if 0 < qs.size <= DOT_PAIRS_MAX_FRACTION * s.size:
        pos = split.exact_pos(qs, js)
        neg = s[qs, js] - pos
        keep = (neg < safe.min) | (pos > safe.max)
        qs, js = qs[keep], js[keep]
    return qs, js


def _every_prefix_inside(
    oxs: np.ndarray, ows: np.ndarray, qs: np.ndarray, js: np.ndarray, reg: Register,
    safe: Register, xr: tuple[int, int], wr: tuple[int, int], cache: dict | None,
) -> ChunkResult | None:
    """Event-driven pairs with no possible event: if no index-order prefix sum at all (the
    dense schedule with G = 1, every input a checkpoint) leaves ``safe``, neither does any
    event-driven checkpoint (each is such a prefix: skipped inputs add x' = 0), so the dense
    streamed path settles the width. None when it does not apply or a prefix leaves ``safe``
    (the event-driven evaluation then runs)."""
    k = oxs.shape[1]
    plan1 = ChunkPlan(np.ones(oxs.shape, dtype=bool), 1, chunk_size(k, 1), dense=True)
    res = evaluate_wrap_streamed(plan1, oxs, ows, qs, js, reg, safe, xr, wr, cache)
    if res is None or res.partial_min < safe.min or res.partial_max > safe.max:
        return None
    return res


def events_dense(neg: np.ndarray, pos: np.ndarray, reg: Register, chunks: int,
                 policy: str = "wrap") -> bool:
    """True when the pairs' bounds span so many register ranges that most chunks would be
    stepped anyway: stepping whole pairs then beats computing chunk statistics first.

    Saturate: after a pair's first clip the register sits at a range edge and nearly every
    later chunk that adds products of that sign must be stepped, so a smaller span suffices
    when the compiled tile loop (:mod:`simulator.units.tile_stepper`) steps whole pairs.
    A performance choice only (both ways give the same integers); tests force either.
    """
    if not neg.size:
        return False
    spans = ((pos - reg.min) >> reg.bits) - ((neg - reg.min) >> reg.bits)
    need = max(2.0, chunks / 6)
    if policy == "saturate" and tiles_available():
        need = 1.5
    return float(spans.mean()) >= need


SAMPLE_EVERY = 8  # queries: the absolute-sum sample of _most_pairs_live
MOST_LIVE = 0.9  # share of sampled pairs


def _most_pairs_live(
    oxs: np.ndarray, ows: np.ndarray, s: np.ndarray, reg: Register, safe: Register,
    xr: tuple[int, int], wr: tuple[int, int], cache: dict | None, chunks: int,
) -> bool:
    """True when, in every 8th query, at least 90 % of the pairs' bounds (S -+ A) / 2 leave
    the register or ``safe`` and events are not dense: the streamed pass then visits nearly
    every pair, and the full absolute-sum product would only cost time. A performance
    choice only: every pair handed to the streamed pass comes out exact."""
    q_count = oxs.shape[0]
    if q_count < 8 * SAMPLE_EVERY:
        return False
    a = exact_matmul(abs_wide(oxs[::SAMPLE_EVERY]), _abs_weights(ows, cache),
                     a_range=(0, max(-xr[0], xr[1])), b_range=(0, max(-wr[0], wr[1])))
    ss = s[::SAMPLE_EVERY]
    neg = (ss - a) >> 1
    pos = (ss + a) >> 1
    live = (neg < reg.min) | (pos > reg.max) | (neg < safe.min) | (pos > safe.max)
    if float(live.mean()) < MOST_LIVE:
        return False
    narrowest = safe if safe.bits < reg.bits else reg
    return not events_dense(neg[live], pos[live], narrowest, chunks, "wrap")


def _pair_rows_later(qs: np.ndarray, js: np.ndarray, wraps: np.ndarray, sats: np.ndarray
                     ) -> Callable[[], np.ndarray]:
    """Builder of the pair event rows of the pairs with an event (sorted by (query, neuron):
    qs, js come from ``np.nonzero``), for LaneStats.pair_events."""

    def build() -> np.ndarray:
        ev = np.flatnonzero(wraps + sats)
        rows = np.zeros((ev.size, 5), dtype=np.int64)
        for col, src in enumerate((qs, js, wraps, sats)):
            rows[:, col] = src[ev]
        return rows

    def per_query(q_count: int) -> tuple[np.ndarray, np.ndarray]:
        return _per_query(qs, wraps + sats, np.zeros(qs.size, np.int64), q_count)

    build.per_query = per_query  # type: ignore[attr-defined]
    return build


def _first_of(*keys: np.ndarray) -> int:
    """Index of the lexicographically smallest (keys[0], keys[1], ...) row: the first element
    of ``np.lexsort(keys[::-1])`` in linear time."""
    cand = np.flatnonzero(keys[0] == keys[0].min())
    for key in keys[1:]:
        v = key[cand]
        cand = cand[v == v.min()]
    return int(cand[0])


SAMPLE_EVERY_PAIR = 16  # queries: the sums sample of _events_nearly_everywhere
EVENTS_EVERYWHERE = 0.9  # share of sampled sums outside the register


def _events_nearly_everywhere(oxs: np.ndarray, ows: np.ndarray, reg: Register,
                              xr: tuple[int, int], wr: tuple[int, int]) -> bool:
    """True when, in every 16th query, at least 90 % of the pairs' exact sums lie outside
    the register: each of them wraps or clips at least once, so nearly every pair is
    stepped whole in any case. A performance choice only (1/16 of the full product)."""
    ss = exact_matmul(oxs[::SAMPLE_EVERY_PAIR], ows, a_range=xr, b_range=wr)
    return bool(ss.size) and float(((ss < reg.min) | (ss > reg.max)).mean()) >= EVENTS_EVERYWHERE


def _every_pair(
    x: np.ndarray, zx: int, oxs: np.ndarray, ows: np.ndarray, xr: tuple[int, int],
    wr: tuple[int, int], spec: MacSpec, cache: dict | None, track_max: bool,
    exact_headroom: bool,
) -> tuple[np.ndarray, ChunkResult, np.ndarray, np.ndarray] | None:
    """(exact sums S int64 (Q, N), ChunkResult of every pair, and the pairs (qs, js) in
    row-major order) for a register that wraps or clips in nearly every pair, when the SIMD
    tiles apply: every pair is stepped whole first, and the loop gives S too (free when
    wrapping: it carries the exact partial sum; one addition per step when saturating), so
    no separate product computes it. Partial sums are tracked only where the final sums'
    width needs them, in a second pass over the pairs whose hull leaves that width
    (:func:`_outside_hull`); wrapping with a bound headroom, in the one pass for every
    pair. None when this does not apply (the usual path then runs; saturating with a bound
    headroom, where tracking every pair would cost twice the steps)."""
    reg = spec.register
    q_count, k = oxs.shape
    n = ows.shape[0]
    g = spec.adder_tree_width
    dense = not spec.event_driven
    wrap = spec.overflow == "wrap"
    by_hull = track_max and exact_headroom
    if not (q_count and n and k) or not simd_applies(dense, g, k, reg, xr, wr, wrap):
        return None
    if not wrap and track_max and not by_hull:
        return None
    if not _events_nearly_everywhere(oxs, ows, reg, xr, wr):
        return None
    active = (x != zx) if spec.event_driven else np.ones(x.shape, dtype=bool)
    plan = ChunkPlan(active, g, chunk_size(k, g), dense=dense)
    qs = np.repeat(np.arange(q_count, dtype=np.int64), n)
    js = np.tile(np.arange(n, dtype=np.int64), q_count)
    track = None if track_max and not by_hull else np.zeros(qs.size, dtype=bool)
    res = evaluate_tiles(plan, oxs, ows, qs, js, reg, spec.overflow, xr, wr, cache, track,
                         sums=True)
    if res is None or res.sums is None:
        return None
    s = res.sums.reshape(q_count, n).astype(np.int64)
    if by_hull:
        safe = Register(bits_for_range(*range_of(s)), True)
        tq, tj = _outside_hull(oxs, ows, s, xr, wr, safe, cache)
        if tq.size:  # their partial sums' range, in a second pass
            again = evaluate_tiles(plan, oxs, ows, tq, tj, reg, spec.overflow, xr, wr, cache,
                                   None)
            if again is None:
                return None
            res.partial_min, res.partial_max = again.partial_min, again.partial_max
    return s, res, qs, js


def accumulate_chunked(
    x: np.ndarray,
    zx: int,
    w: np.ndarray,
    zw: np.ndarray,
    spec: MacSpec,
    track_max: bool = True,
    exact_headroom: bool = True,
    query_offset: int = 0,
    defer_errors: bool = False,
    sums: np.ndarray | None = None,
) -> tuple[np.ndarray, LaneStats] | None:
    """Wrap or saturate accumulators without pre-add, by chunked partial sums.

    ``sums``: the exact products x' @ w'.T when already known (offset operands); given only
    by acc_screened.py, after its separable bound ruled out every register event.

    Two exact products give every pair's sums S and absolute sums A; pairs whose bounds
    (S -+ A) / 2 stay inside the register (and inside the width of the final sums, for
    ``min_safe_acc_bits``) are settled by S; the others go to
    :func:`simulator.units.partial_sums.evaluate_pairs`. Returns None for configurations it
    does not cover (pre-add stage, ``error`` policy, registers wider than 48 bits).
    """
    if spec.pre_add_width != 1 or spec.overflow not in ("wrap", "saturate"):
        return None
    if spec.acc_bits > 48 or (spec.operand == "raw" and spec.event_driven):
        return None
    reg = spec.register
    q_count, k = x.shape
    n = w.shape[0]
    if spec.operand == "offset":  # narrow operands; weight facts cached per weight matrix
        winfo = weight_info(w, zw)
        cache = winfo.derived if _mm_frozen(w) else None
        ows, wr = winfo.ow, (winfo.lo, winfo.hi)
        oxs, xr = narrow_offset(x, zx)
        corr = None
    else:
        ox, ow, corr = operands(x, zx, w, zw, spec.operand)
        oxs, xr = narrow(ox)
        ows, wr = narrow(ow)
        del ox, ow
        cache = None
    pre = None  # events nearly everywhere: every pair stepped in SIMD tiles, S from them
    if sums is None and corr is None and numba_enabled():
        pre = _every_pair(x, zx, oxs, ows, xr, wr, spec, cache, track_max, exact_headroom)
    if pre is not None:
        s = pre[0]
    else:
        s = sums if sums is not None else exact_matmul(oxs, ows, a_range=xr, b_range=wr)
    total = s if corr is None else s + corr
    total_range = range_of(total)
    lo_known, hi_known = total_range
    if corr is not None:  # the last MAC step's partial sum comes before the correction
        lo_s, hi_s = range_of(s)
        lo_known, hi_known = min(lo_known, lo_s), max(hi_known, hi_s)
    safe = None
    if track_max and exact_headroom:
        safe = Register(bits_for_range(lo_known, hi_known), True)
    keep_bounds = track_max and not exact_headroom
    a = neg = pos = None
    # inputs >= 0 with SIMD tiles: the sign hull below costs less than the live-pair sample
    hull_ok = corr is None and xr[0] >= 0 and not keep_bounds and simd_applies(
        not spec.event_driven, spec.adder_tree_width, k, reg, xr, wr, spec.overflow == "wrap")
    if pre is not None:  # every pair, stepped already
        _, _, qs, js = pre
        event_possible = True
        policy = spec.overflow
    elif (safe is not None and corr is None and (spec.overflow == "wrap" or sums is not None)
            and (not spec.event_driven or sums is not None) and numba_enabled()
            and not (hull_ok and sums is None)
            and _most_pairs_live(oxs, ows, s, reg, safe, xr, wr, cache, chunk_size(k, 1))):
        # The streamed pass (or, event-driven, the every-prefix pass) visits every pair in
        # any case: hand it all of them and skip the full absolute-sum product.
        qs = np.repeat(np.arange(q_count, dtype=np.int64), n)
        js = np.tile(np.arange(n, dtype=np.int64), q_count)
        event_possible = sums is None  # given sums: the screened bound ruled out every event
        policy = "wrap"
    else:
        hull = _sign_hull(oxs, ows, s, xr[1], reg, safe, cache) if hull_ok else None
        if hull is not None:
            neg, pos = hull
        else:
            a = exact_matmul(abs_wide(oxs), _abs_weights(ows, cache),
                             a_range=(0, max(-xr[0], xr[1])), b_range=(0, max(-wr[0], wr[1])))
            neg = (s - a) >> 1  # sum of the negative products (S - A is even)
            pos = (s + a) >> 1
        live = (neg < reg.min) | (pos > reg.max)
        if corr is not None:
            live |= (total < reg.min) | (total > reg.max)
        # With no event possible anywhere a saturating register never clips: it holds the
        # same integers as a wrapping one that never wraps, so the wrap paths may evaluate it.
        event_possible = bool(live.any())
        policy = spec.overflow if event_possible else "wrap"
        if safe is not None:
            live |= (neg < safe.min) | (pos > safe.max)
        if np.count_nonzero(live) == live.size:  # every pair, row-major, without nonzero()
            qs = np.repeat(np.arange(q_count, dtype=np.int64), n)
            js = np.tile(np.arange(n, dtype=np.int64), q_count)
        else:
            qs, js = np.nonzero(live)
        del live
    zeros = np.zeros(n, dtype=np.int64)
    stats = LaneStats(zeros.copy(), zeros.copy(), zeros.copy(), 0, None, 0)
    stats.max_abs_acc = max(-total_range[0], total_range[1])
    acc = total  # updated in place for the evaluated pairs
    pair_rows: list[PairRows] = []
    acc_first = None
    pmin, pmax = lo_known, hi_known
    if qs.size:
        active = (x != zx) if spec.event_driven else np.ones(x.shape, dtype=bool)
        g = spec.adder_tree_width
        cs = chunk_size(k, g)
        every = qs.size == q_count * n  # (qs, js) are distinct and row-major: every pair

        def pick(v: np.ndarray) -> np.ndarray:
            """v's values at the pairs (qs, js), (F,); a view when they are every pair."""
            return v.reshape(-1) if every and v.flags.c_contiguous else v[qs, js]

        if pre is not None:
            res = pre[1]
        else:
            narrowest = safe if safe is not None and safe.bits < reg.bits else reg
            sub = slice(None, None, max(1, qs.size >> 18))  # a heuristic: ~256 k pairs decide
            dense_events = neg is not None and pos is not None and events_dense(
                neg[qs[sub], js[sub]], pos[qs[sub], js[sub]], narrowest, -(-k // cs), policy)
            # wrap, most pairs: whole pairs in SIMD tiles beat the streamed pass's chunk products
            simd_wrap = (not dense_events and policy == "wrap" and qs.size * 2 >= q_count * n
                         and simd_applies(not spec.event_driven, g, k, reg, xr, wr, True))
            track = None  # pairs whose partial sums may widen min_safe_acc_bits (tiles only)
            if (dense_events or simd_wrap) and safe is not None and neg is not None:
                track = (pick(neg) < safe.min) | (pick(pos) > safe.max)
            elif simd_wrap and not track_max:
                track = np.zeros(qs.size, dtype=bool)
            elif simd_wrap and safe is not None and xr[0] >= 0:  # the sign hull [S - U, U]
                ub = positive_bound(oxs, ows, xr[1], cache)  # ~1/3 of S's cost: most pairs'
                if ub is not None:  # partial sums provably stay inside the final sums' width
                    track = pick((s - ub < safe.min) | (ub > safe.max))
                del ub
            if not keep_bounds:
                del neg, pos
            if dense_events:
                cs = max(g, -(-k // g) * g)  # one chunk: step whole pairs, S and A known already
            plan = ChunkPlan(active, g, cs, dense=not spec.event_driven)
            res = None
            if spec.event_driven and not event_possible and not keep_bounds and safe is not None:
                res = _every_prefix_inside(oxs, ows, qs, js, reg, safe, xr, wr, cache)
            if res is not None:
                pass
            elif dense_events or simd_wrap:  # whole pairs in tiles, vectorised across neurons
                width = None  # the float tiles track partial sums slowly: the streamed pass
                if track is not None and bool(track.any()) and plan.dense and \
                        not simd_applies(True, g, k, reg, xr, wr, policy == "wrap"):
                    width = _partial_range(plan, oxs, ows, qs[track], js[track], safe, xr, wr,
                                           cache)
                if width is not None:  # the tiles need not track partial sums
                    track = np.zeros(qs.size, dtype=bool)
                res = evaluate_tiles(plan, oxs, ows, qs, js, reg, policy, xr, wr, cache, track)
                if res is not None and width is not None:
                    res.partial_min, res.partial_max = width
            elif policy == "wrap":  # all queries' chunk statistics, one chunk at a time
                res = evaluate_wrap_streamed(plan, oxs, ows, qs, js, reg, safe, xr, wr, cache)
            if res is None:
                given = (pick(s), pick(a)) if dense_events and a is not None else None
                res = evaluate_pairs(plan, oxs, ows, qs, js, reg, policy, safe, xr, wr, cache,
                                     given)
        stats.ordered_pairs = int(qs.size)
        pmin, pmax = min(pmin, res.partial_min), max(pmax, res.partial_max)
        r = res.acc
        wraps, sats = res.wraps, res.sats
        first_step, first_value = res.first_step, res.first_value
        if corr is not None:  # one more addition: the offset correction
            e = r + pick(corr)
            out = (e < reg.min) | (e > reg.max)
            if spec.overflow == "wrap":
                wraps = wraps + out
            else:
                sats = sats + out
            new = out & (first_step < 0)
            first_step = np.where(new, plan.steps[qs], first_step)
            first_value = np.where(new, e, first_value)
            r = fit_policy(e, reg, spec.overflow)
        if every and acc.flags.c_contiguous:
            acc.reshape(-1)[:] = r
        else:
            acc[qs, js] = r
        for dst, cnt in ((stats.acc_wrap, wraps), (stats.acc_saturate, sats)):
            if not cnt.any():
                continue
            if every:  # per-neuron sums: rows of neurons
                dst += cnt.reshape(q_count, n).sum(axis=0, dtype=np.int64)
            else:  # exact: far below 2**53
                dst += np.bincount(js, weights=cnt, minlength=n).astype(np.int64)
        has = wraps != 0
        if sats.any():
            has |= sats != 0
        if has.any():
            pair_rows.append(_pair_rows_later(qs, js, wraps, sats))
            # the first event lies in the first query that has one (qs is sorted)
            e_first = int(np.argmax(has))
            end = int(np.searchsorted(qs, qs[e_first], side="right"))
            sel = e_first + np.flatnonzero(has[e_first:end])
            tiles = js[sel] // spec.lanes
            i0 = _first_of(qs[sel], tiles, first_step[sel], js[sel])
            e0 = sel[i0]
            acc_first = (int(qs[e0]), int(tiles[i0]), int(first_step[e0]), int(js[e0]),
                         int(first_value[e0]))
            stats.first = (acc_first[0], acc_first[3], acc_first[2])
    stats.partial_min, stats.partial_max = pmin, pmax
    if track_max and not exact_headroom and pre is None:  # pre: every pair tracked, exact
        wide = Register(bits_for_range(pmin, pmax), True)
        if bool(((neg < wide.min) | (pos > wide.max)).any()):
            stats.partial_exact = False
            stats.partial_bound = max(-int(neg.min(initial=0)), int(pos.max(initial=0)),
                                      -pmin, pmax)
    finish_stats(stats, spec, None, acc_first, pair_rows, query_offset, defer_errors)
    return acc, stats
