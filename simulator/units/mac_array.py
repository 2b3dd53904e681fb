"""MAC array with per-lane accumulators (functional model, vectorised, bit-exact).

Datapath of one lane (one output neuron j, one query q), in accumulation order:

* operands: input code x_k (``spikes.bits``), weight w_jk (``weights.bits``, int8);
  ``mac.operand = "offset"`` multiplies (x_k - zx) * (w_jk - zw_j) exactly;
  ``mac.operand = "raw"`` multiplies the raw codes x_k * w_jk and the accumulator ends with
  one more addition, the *offset correction* -zx * sum_k w_jk - zw_j * sum_k x_k + K * zx * zw_j
  (fbgemm's column-offset correction; zw_j = 0 for symmetric weights);
* optional pre-add stage (``mac.pre_add_width`` P > 1): P consecutive products are summed
  exactly and written to a ``mac.pre_add_bits`` signed register under its own overflow policy
  (AVX2 VPMADDUBSW: P = 2, 16 bits, saturate); a trailing partial group is padded with zero
  products;
* adder tree: ``accumulator.adder_tree_width`` G consecutive products (G / P pre-add register
  values) summed exactly per lane per step;
* accumulator: ``accumulator.bits`` signed register; each tree output is added in one step and
  the overflow policy (wrap | saturate | error) is applied to that addition.

An *overflow event* is one register write whose exact value lies outside the register's
range: per accumulator addition (``acc_wrap`` / ``acc_saturate``) and per pre-add register
write (``pre_add_events``). Inputs are taken in ascending index. In ``event_driven`` mode
inputs equal to the zero point are skipped; pre-add groups and tree steps then take
consecutive *non-skipped* inputs.

Fast path: exact sums from :func:`simulator.kernels.exact_matmul`. With offset operands and no
pre-add, a separable bound (sum_k |x'_qk| max|w'|, max|x'| max_j sum_k |w'_jk|) often proves
that no event can happen: one exact product then settles the layer. Pre-add groups that cannot
overflow (bound sum_k |x'_k| max_j |w'_jk| inside the register) are never looked at; the others
are evaluated exactly for all neurons, giving per-(query, neuron) corrections. A (query, neuron)
pair needs step-ordered accumulator evaluation only if exact bounds on its partial sums leave
the register (or the range seen so far, for ``min_safe_acc_bits``); only such pairs are
evaluated step by step. The stepwise engine (simulator/engine/stepwise.py) evaluates every
register write cycle by cycle and is tested to agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..fixedpoint import Register, RegisterOverflowError, saturate, wrap
from ..kernels import _mm_frozen, exact_matmul
from .partial_sums import ChunkPlan, abs_wide, chunk_size, evaluate_pairs

_PAIR_BATCH_ELEMENTS = 1 << 24  # products held at once during ordered evaluation
_PRE_BATCH_ELEMENTS = 1 << 23  # pre-add products held at once
_BOUND_CHUNKS = 16  # K chunks for the partial-sum bounds
PAIR_EVENT_COLUMNS: tuple[str, ...] = ("query", "neuron", "acc_wrap", "acc_saturate", "pre_add")


def _no_pair_events() -> np.ndarray:
    return np.zeros((0, len(PAIR_EVENT_COLUMNS)), dtype=np.int64)


@dataclass
class LaneStats:
    """Overflow accounting of one accumulation (one layer path, all queries).

    acc_wrap / acc_saturate / pre_add_events: int64 (N,) event counts per output neuron.
    max_abs_acc: largest |final accumulator value had the register been unbounded| over all
        (query, neuron) pairs (the exact sum of every tree output, offset correction included).
    partial_min / partial_max: bounds on the results of every accumulator addition had the
        register been unbounded (0 included); exact wherever they decide the width, so
        ``min_safe_acc_bits`` (the smallest width with no accumulator event) is exact.
    first: (query, neuron, step) of the earliest accumulator event in schedule order
        (query, lane tile, step, neuron), or None. first_pre_add: the same for pre-add events.
    ordered_pairs: number of (query, neuron) pairs evaluated step by step.
    pair_events: int64 (E, 5) rows (query, neuron, acc_wrap, acc_saturate, pre_add) for every
        pair with at least one event, sorted by (query, neuron); see PAIR_EVENT_COLUMNS.
    error / error_at: with ``accumulate(..., defer_errors=True)``, the ``error``-policy
        exception of the earliest event and its (query, neuron, step) (query within the
        batch), instead of raising; the caller raises the earliest over layers and paths.
    partial_exact: False when ``accumulate(..., exact_headroom=False)`` proved that no event
        can happen but did not evaluate partial sums: partial_min/max then hold the final
        sums' range (a lower bound on the width) and partial_bound an abs-sum bound.
    """

    acc_wrap: np.ndarray
    acc_saturate: np.ndarray
    pre_add_events: np.ndarray
    max_abs_acc: int
    first: tuple[int, int, int] | None
    ordered_pairs: int
    partial_min: int = 0
    partial_max: int = 0
    first_pre_add: tuple[int, int, int] | None = None
    pair_events: np.ndarray = field(default_factory=_no_pair_events)
    error: RegisterOverflowError | None = None
    error_at: tuple[int, int, int] | None = None
    partial_exact: bool = True
    partial_bound: int = 0

    @property
    def min_safe_acc_bits(self) -> int:
        return bits_for_range(self.partial_min, self.partial_max)

    @property
    def min_safe_acc_bits_upper(self) -> int:
        """Width proven sufficient: exact, or from the abs-sum bound when not evaluated."""
        if self.partial_exact:
            return self.min_safe_acc_bits
        return max(self.min_safe_acc_bits, bits_for_range(-self.partial_bound,
                                                          self.partial_bound))

    @staticmethod
    def concat(parts: list[LaneStats], query_offsets: list[int]) -> LaneStats:
        """Merge the stats of consecutive query batches (batch i starts at query_offsets[i])."""

        def shift(ev: tuple[int, int, int] | None, off: int) -> tuple[int, int, int] | None:
            return None if ev is None else (ev[0] + off, ev[1], ev[2])

        first = next((shift(s.first, o) for s, o in zip(parts, query_offsets, strict=True)
                      if s.first is not None), None)
        first_pre = next((shift(s.first_pre_add, o) for s, o in
                          zip(parts, query_offsets, strict=True) if s.first_pre_add is not None),
                         None)
        rows = []
        for s, o in zip(parts, query_offsets, strict=True):
            if s.pair_events.size:
                r = s.pair_events.copy()
                r[:, 0] += o
                rows.append(r)
        return LaneStats(
            np.sum([s.acc_wrap for s in parts], axis=0),
            np.sum([s.acc_saturate for s in parts], axis=0),
            np.sum([s.pre_add_events for s in parts], axis=0),
            max(s.max_abs_acc for s in parts),
            first,
            sum(s.ordered_pairs for s in parts),
            min(s.partial_min for s in parts),
            max(s.partial_max for s in parts),
            first_pre,
            np.concatenate(rows) if rows else _no_pair_events(),
            next((s.error for s in parts if s.error is not None), None),
            next((shift(s.error_at, o) for s, o in zip(parts, query_offsets, strict=True)
                  if s.error_at is not None), None),
            all(s.partial_exact for s in parts),
            max(s.partial_bound for s in parts),
        )


@dataclass(frozen=True)
class MacSpec:
    """Everything the MAC array needs to know about one layer's hardware.

    acc_bits: signed accumulator width; overflow: wrap | saturate | error; adder_tree_width G
    (a multiple of pre_add_width P); operand: offset | raw; pre_add_bits: signed pre-add
    register width; lanes: MAC lanes (neurons per tile, orders events).
    """

    acc_bits: int
    overflow: str  # wrap | saturate | error
    adder_tree_width: int
    operand: str = "offset"  # offset | raw
    pre_add_width: int = 1
    pre_add_bits: int = 16
    pre_add_overflow: str = "saturate"
    event_driven: bool = False
    lanes: int = 1

    @property
    def register(self) -> Register:
        return Register(self.acc_bits, True)

    @property
    def pre_register(self) -> Register:
        return Register(self.pre_add_bits, True)


def overflow_error(
    unit: str, query: int, neuron: int, step: int, value: int, reg: Register
) -> RegisterOverflowError:
    """The error raised by the ``error`` policy (same text from the fast and stepwise paths).

    unit: "accumulator" or "pre-add"; query is the run's query number.
    """
    knob = "accumulator.bits" if unit == "accumulator" else "mac.pre_add_bits"
    pol = "accumulator.overflow" if unit == "accumulator" else "mac.pre_add_overflow"
    return RegisterOverflowError(
        f"{unit} overflow: query {query}, neuron {neuron}, step {step}: value {value} does not "
        f"fit {reg.describe()}; widen {knob} or set {pol} to wrap or saturate",
        query,
        value,
    )


def fit_policy(values: np.ndarray, reg: Register, policy: str) -> np.ndarray:
    """Values narrowed into ``reg``: wrap, or saturate (also used for ``error`` once the
    first event has been recorded: the run stops there, later values do not matter)."""
    return wrap(values, reg) if policy == "wrap" else saturate(values, reg)


def operands(
    x: np.ndarray, zx: int, w: np.ndarray, zw: np.ndarray, operand: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(x', w', correction) int64: the multiplier operands and the raw-mode offset correction.

    offset: x' = x - zx (Q, K), w' = w - zw (N, K), correction None.
    raw:    x' = x, w' = w, correction (Q, N) = -zx*sum_k w_jk - zw_j*sum_k x_k + K*zx*zw_j.
    """
    xi = x.astype(np.int64)
    wi = w.astype(np.int64)
    zw = np.asarray(zw, dtype=np.int64)
    if operand == "offset":
        return xi - zx, wi - zw[:, None], None
    k = x.shape[1]
    corr = (-zx * wi.sum(axis=1))[None, :] - zw[None, :] * xi.sum(axis=1)[:, None]
    corr = corr + k * zx * zw[None, :]
    return xi, wi, corr


def accumulate(
    x: np.ndarray,
    zx: int,
    w: np.ndarray,
    zw: np.ndarray,
    spec: MacSpec,
    track_max: bool = True,
    query_offset: int = 0,
    defer_errors: bool = False,
    exact_headroom: bool = True,
) -> tuple[np.ndarray, LaneStats]:
    """Run the MAC array over all queries.

    x: int64 (Q, K) input codes; zx: input zero point; w: int8 (N, K); zw: int64 (N,).
    Returns (acc, stats): acc int64 (Q, N) accumulator register values after the last step
    (signed ``spec.acc_bits`` wide). Raises RegisterOverflowError (policy ``error``) at the
    first event in schedule order (query numbers offset by ``query_offset``), or with
    ``defer_errors`` stores it in ``stats.error`` and returns values computed as if the
    failing register saturated (values after the first error do not matter).
    ``exact_headroom=False`` skips the step-ordered search for the exact widest partial sum
    when no event is possible (see LaneStats.partial_exact); event counts stay exact.
    """
    if spec.operand == "offset" and spec.pre_add_width == 1:
        done = _accumulate_screened(x, zx, w, zw, spec, track_max, exact_headroom)
        if done is not None:
            return done
    if not (spec.operand == "raw" and spec.event_driven):
        done = accumulate_chunked(x, zx, w, zw, spec, track_max, exact_headroom, query_offset,
                                  defer_errors)
        if done is not None:
            return done
    if spec.operand == "raw" and spec.event_driven:
        raise ValueError("mac.operand = 'raw' cannot skip inputs (event_driven schedule)")
    if spec.adder_tree_width % spec.pre_add_width:
        raise ValueError("accumulator.adder_tree_width must be a multiple of mac.pre_add_width")
    n = w.shape[0]
    reg = spec.register
    zeros = np.zeros(n, dtype=np.int64)
    stats = LaneStats(zeros.copy(), zeros.copy(), zeros.copy(), 0, None, 0)
    ox, ow, corr = operands(x, zx, w, zw, spec.operand)
    ax = np.abs(ox)
    aw = np.abs(ow)
    # Separable bound on |every partial sum| of every pair (pre-add fits never grow a value).
    sep = min(
        int(ax.sum(axis=1).max(initial=0)) * int(aw.max(initial=0)),
        int(ax.max(initial=0)) * int(aw.sum(axis=1).max(initial=0)),
    )
    limit = min(reg.max, -reg.min)
    pre = _pre_add_stage(x, zx, ox, ow, aw, spec) if spec.pre_add_width > 1 else None
    simple = pre is None and corr is None
    if simple and sep <= limit and not track_max:
        return exact_matmul(ox, ow), stats
    if sep <= limit:
        total = _total(exact_matmul(ox, ow), pre, corr)
        lo_known, hi_known = _range_of(total)
        if reg.contains(lo_known, hi_known):
            safe = Register(bits_for_range(lo_known, hi_known), True)
            if not track_max or sep <= min(safe.max, -safe.min):
                stats.max_abs_acc = max(-lo_known, hi_known)
                stats.partial_min, stats.partial_max = lo_known, hi_known
                _finish(stats, spec, pre, None, [], query_offset, defer_errors)
                return total, stats
    exact, lo_b, hi_b = _chunked_bounds(ox, ow, ax, aw)
    total = _total(exact, pre, corr)
    if pre is not None and pre.dpos is not None:
        lo_b += pre.dneg
        hi_b += pre.dpos
    np.minimum(lo_b, total, out=lo_b)  # the offset correction's addition ends at the total
    np.maximum(hi_b, total, out=hi_b)
    lo_known, hi_known = _range_of(total)
    stats.max_abs_acc = max(-lo_known, hi_known)
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
) -> tuple[np.ndarray, LaneStats] | None:
    """Wrap or saturate accumulators without pre-add, by chunked partial sums.

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
    ox, ow, corr = operands(x, zx, w, zw, spec.operand)
    oxs, xr = _narrow(ox)
    ows, wr = _narrow(ow)
    del ox, ow
    s = exact_matmul(oxs, ows, a_range=xr, b_range=wr)
    a = exact_matmul(abs_wide(oxs), abs_wide(ows), a_range=(0, max(-xr[0], xr[1])),
                     b_range=(0, max(-wr[0], wr[1])))
    neg = (s - a) // 2
    pos = (s + a) // 2
    del a
    total = s if corr is None else s + corr
    lo_known, hi_known = _range_of(total)
    if corr is not None:  # the last MAC step's partial sum comes before the correction
        lo_s, hi_s = _range_of(s)
        lo_known, hi_known = min(lo_known, lo_s), max(hi_known, hi_s)
    live = (neg < reg.min) | (pos > reg.max)
    if corr is not None:
        live |= (total < reg.min) | (total > reg.max)
    safe = None
    if track_max and exact_headroom:
        safe = Register(bits_for_range(lo_known, hi_known), True)
        live |= (neg < safe.min) | (pos > safe.max)
    zeros = np.zeros(n, dtype=np.int64)
    stats = LaneStats(zeros.copy(), zeros.copy(), zeros.copy(), 0, None, 0)
    stats.max_abs_acc = max(-_range_of(total)[0], _range_of(total)[1])
    acc = total.copy()
    qs, js = np.nonzero(live)
    pair_rows: list[np.ndarray] = []
    acc_first = None
    pmin, pmax = lo_known, hi_known
    if qs.size:
        active = (x != zx) if spec.event_driven else np.ones(x.shape, dtype=bool)
        g = spec.adder_tree_width
        plan = ChunkPlan(active, g, chunk_size(k, g), dense=not spec.event_driven)
        res = evaluate_pairs(plan, oxs, ows, qs, js, reg, spec.overflow, safe, xr, wr)
        stats.ordered_pairs = int(qs.size)
        pmin, pmax = min(pmin, res.partial_min), max(pmax, res.partial_max)
        r = res.acc
        wraps, sats = res.wraps, res.sats
        first_step, first_value = res.first_step, res.first_value
        if corr is not None:  # one more addition: the offset correction
            e = r + corr[qs, js]
            out = (e < reg.min) | (e > reg.max)
            if spec.overflow == "wrap":
                wraps = wraps + out
            else:
                sats = sats + out
            new = out & (first_step < 0)
            first_step = np.where(new, plan.steps[qs], first_step)
            first_value = np.where(new, e, first_value)
            r = fit_policy(e, reg, spec.overflow)
        acc[qs, js] = r
        np.add.at(stats.acc_wrap, js, wraps)
        np.add.at(stats.acc_saturate, js, sats)
        ev = np.flatnonzero(wraps + sats)
        if ev.size:
            z = np.zeros(ev.size, dtype=np.int64)
            pair_rows.append(np.stack([qs[ev], js[ev], wraps[ev], sats[ev], z], axis=1))
            tiles = js[ev] // spec.lanes
            i0 = np.lexsort((js[ev], first_step[ev], tiles, qs[ev]))[0]
            e0 = ev[i0]
            acc_first = (int(qs[e0]), int(tiles[i0]), int(first_step[e0]), int(js[e0]),
                         int(first_value[e0]))
            stats.first = (acc_first[0], acc_first[3], acc_first[2])
    stats.partial_min, stats.partial_max = pmin, pmax
    if track_max and not exact_headroom:
        wide = Register(bits_for_range(pmin, pmax), True)
        if bool(((neg < wide.min) | (pos > wide.max)).any()):
            stats.partial_exact = False
            stats.partial_bound = max(-int(neg.min(initial=0)), int(pos.max(initial=0)),
                                      -pmin, pmax)
    _finish(stats, spec, None, acc_first, pair_rows, query_offset, defer_errors)
    return acc, stats


@dataclass(frozen=True)
class _WeightInfo:
    """Per weight matrix, computed once: w' = w - zw in a small dtype and its abs bounds."""

    ow: np.ndarray  # (N, K) int8 when zw == 0, else int16
    lo: int
    hi: int
    abs_max: int
    abs_row_sum_max: int


_WEIGHT_INFO: dict[int, tuple[object, object, _WeightInfo]] = {}


def _weight_info(w: np.ndarray, zw: np.ndarray) -> _WeightInfo:
    """Cached by identity of the (read-only) weight and zero-point arrays."""
    import weakref

    key = id(w)
    hit = _WEIGHT_INFO.get(key)
    if hit is not None and hit[0]() is w and hit[1]() is zw:  # type: ignore[operator]
        return hit[2]
    zw64 = np.asarray(zw, dtype=np.int64)
    if w.dtype == np.int8 and not zw64.any():
        ow = w
    else:
        ow = (w.astype(np.int16) - zw64.astype(np.int16)[:, None]).astype(np.int16)
    lo, hi = int(ow.min(initial=0)), int(ow.max(initial=0))
    aw = np.abs(ow.astype(np.int16))
    info = _WeightInfo(ow, lo, hi, int(aw.max(initial=0)),
                       int(aw.sum(axis=1, dtype=np.int64).max(initial=0)))
    if not (_mm_frozen(w) and isinstance(zw, np.ndarray) and _mm_frozen(zw)):
        return info
    if len(_WEIGHT_INFO) >= 16:
        _WEIGHT_INFO.pop(next(iter(_WEIGHT_INFO)))
    _WEIGHT_INFO[key] = (weakref.ref(w, lambda _r, d=_WEIGHT_INFO: d.pop(key, None)),
                         weakref.ref(zw), info)
    return info


def _accumulate_screened(
    x: np.ndarray,
    zx: int,
    w: np.ndarray,
    zw: np.ndarray,
    spec: MacSpec,
    track_max: bool,
    exact_headroom: bool,
) -> tuple[np.ndarray, LaneStats] | None:
    """Offset operands without pre-add, when a separable bound proves no event can happen.

    |every partial sum of (q, j)| <= min(sum_k |x'_qk| * max|w'|, max|x'| * sum_k |w'_jk|).
    Returns None when that bound does not settle the run (the general path then runs).
    """
    reg = spec.register
    wi = _weight_info(w, zw)
    xlo, xhi = int(x.min(initial=0)) - zx, int(x.max(initial=0)) - zx
    xdt = np.int16 if -(1 << 15) <= xlo and xhi < (1 << 15) else np.int64
    ox = (x - zx).astype(xdt, copy=False)
    ax_row = np.abs(ox).sum(axis=1, dtype=np.int64)
    ax_max = max(-xlo, xhi, 0)
    sep = min(int(ax_row.max(initial=0)) * wi.abs_max, ax_max * wi.abs_row_sum_max)
    if sep > min(reg.max, -reg.min):
        return None
    total = exact_matmul(ox, wi.ow, a_range=(min(xlo, 0), max(xhi, 0)), b_range=(wi.lo, wi.hi))
    n = w.shape[0]
    zeros = np.zeros(n, dtype=np.int64)
    stats = LaneStats(zeros, zeros.copy(), zeros.copy(), 0, None, 0)
    if not track_max:
        return total, stats
    lo_known, hi_known = _range_of(total)
    stats.max_abs_acc = max(-lo_known, hi_known)
    stats.partial_min, stats.partial_max = lo_known, hi_known
    safe = Register(bits_for_range(lo_known, hi_known), True)
    if sep <= min(safe.max, -safe.min):
        return total, stats  # the bound proves the final range is the widest: exact
    if not exact_headroom:
        stats.partial_exact = False
        stats.partial_bound = sep
        return total, stats
    return None


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


@dataclass
class _PreAdd:
    """Pre-add stage results: per-(query, neuron) corrections (fitted - exact) and events."""

    q_count: int
    n: int
    delta: np.ndarray | None = None  # (Q, N) sum of corrections
    dpos: np.ndarray | None = None  # (Q, N) sum of positive corrections
    dneg: np.ndarray | None = None  # (Q, N) sum of negative corrections
    counts: np.ndarray | None = None  # (N,) events per neuron
    rows: list[np.ndarray] = field(default_factory=list)  # pair event rows
    first: tuple[int, int, int, int] | None = None  # (query, tile, step, neuron)
    first_value: int = 0

    def alloc(self) -> None:
        if self.delta is None:
            shape = (self.q_count, self.n)
            self.delta = np.zeros(shape, dtype=np.int64)
            self.dpos = np.zeros(shape, dtype=np.int64)
            self.dneg = np.zeros(shape, dtype=np.int64)
            self.counts = np.zeros(self.n, dtype=np.int64)


def _pre_add_stage(
    x: np.ndarray, zx: int, ox: np.ndarray, ow: np.ndarray, aw: np.ndarray, spec: MacSpec
) -> _PreAdd:
    """Find every pre-add register write that overflows, exactly.

    Dense: a (group, neuron) entry can overflow only if max|x'| * sum_{k in group} |w'_jk|
    leaves the register ("hot" entries, few for real weights); per query, hot entries whose
    bound sum_k |x'_qk| |w'_jk| still leaves it are summed exactly. Event-driven (groups
    differ per query): groups with sum_k |x'_qk| max_j |w'_jk| outside the register are summed
    exactly for every neuron. Either way only true overflows are recorded.
    """
    q_count, k = ox.shape
    n = ow.shape[0]
    p = spec.pre_add_width
    preg = spec.pre_register
    res = _PreAdd(q_count, n)
    if not spec.event_driven:
        groups = _groups(np.arange(k), p, k)  # (G, P); index k is the zero padding
        xmax = int(np.abs(ox).max(initial=0))
        if xmax == 0:
            return res
        wsum = np.zeros((n, groups.shape[0]), dtype=np.int64)  # sum_{k in group} |w'_jk|
        for r in range(p):
            part = aw[:, r::p]
            wsum[:, : part.shape[1]] += part
        hot_j, hot_g = np.nonzero(wsum > preg.max // xmax)  # wsum * xmax > max
        del wsum
        step = max(1, _PRE_BATCH_ELEMENTS // p)
        for e0 in range(0, hot_j.size, step):
            hj = hot_j[e0 : e0 + step]
            hg = hot_g[e0 : e0 + step]
            cols = groups[hg]  # (E, P)
            valid = cols < k
            cols = np.minimum(cols, k - 1)
            wv = np.where(valid, ow[hj[:, None], cols], 0)
            awv = np.abs(wv)
            for q in range(q_count):
                xv = ox[q, cols]  # padded slots meet a zero weight
                c = np.flatnonzero((np.abs(xv) * awv).sum(axis=1) > preg.max)
                if not c.size:
                    continue
                s = (xv[c] * wv[c]).sum(axis=1)
                over = (s < preg.min) | (s > preg.max)
                if over.any():
                    _record(res, spec, q, hj[c][over], hg[c][over], s[over])
        return res
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


def _record(
    res: _PreAdd, spec: MacSpec, q: int, jj: np.ndarray, gg: np.ndarray, s: np.ndarray
) -> None:
    """Record pre-add overflows of query q: neurons jj, group numbers gg, exact sums s."""
    res.alloc()
    assert res.delta is not None and res.dpos is not None and res.dneg is not None
    assert res.counts is not None
    n = res.n
    d = fit_policy(s, spec.pre_register, spec.pre_add_overflow) - s
    np.add.at(res.delta[q], jj, d)
    np.add.at(res.dpos[q], jj, np.maximum(d, 0))
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


def _groups(idx: np.ndarray, p: int, pad: int) -> np.ndarray:
    """Consecutive groups of ``p`` indices (G, p), the last padded with ``pad``."""
    ng = -(-idx.size // p)
    g = np.full(ng * p, pad, dtype=np.int64)
    g[: idx.size] = idx
    return g.reshape(ng, p)


def _total(exact: np.ndarray, pre: _PreAdd | None, corr: np.ndarray | None) -> np.ndarray:
    """Unbounded final accumulator: exact products + pre-add corrections + offset correction."""
    total = exact
    if pre is not None and pre.delta is not None:
        total = total + pre.delta
    if corr is not None:
        total = total + corr
    return total


def _finish(
    stats: LaneStats,
    spec: MacSpec,
    pre: _PreAdd | None,
    acc_first: tuple[int, int, int, int, int] | None,
    pair_rows: list[np.ndarray],
    query_offset: int,
    defer_errors: bool = False,
) -> None:
    """Fold pre-add results into ``stats``; raise the earliest ``error``-policy event."""
    rows = list(pair_rows)
    pre_key = None
    if pre is not None and pre.counts is not None:
        stats.pre_add_events += pre.counts
        rows += pre.rows
        assert pre.first is not None
        q, tile, step, j = pre.first
        stats.first_pre_add = (q, j, step)
        if spec.pre_add_overflow == "error":
            pre_key = (q, tile, step, 0, j)  # a step's pre-adds come before its additions
    if rows:
        allr = np.concatenate(rows)
        keys, inv = np.unique(allr[:, :2], axis=0, return_inverse=True)
        sums = np.zeros((keys.shape[0], 3), dtype=np.int64)
        np.add.at(sums, inv.ravel(), allr[:, 2:])
        stats.pair_events = np.concatenate([keys, sums], axis=1)
    acc_key = None
    if acc_first is not None and spec.overflow == "error":
        q, tile, step, j = acc_first[:4]
        acc_key = (q, tile, step, 1, j)
    cands = [c for c in (pre_key, acc_key) if c is not None]
    if not cands:
        return
    q, _, step, which, j = min(cands)
    if which == 0:
        assert pre is not None
        err = overflow_error(
            "pre-add", q + query_offset, j, step, pre.first_value, spec.pre_register
        )
    else:
        assert acc_first is not None
        err = overflow_error(
            "accumulator", q + query_offset, j, step, acc_first[4], spec.register
        )
    if not defer_errors:
        raise err
    stats.error = err
    stats.error_at = (q, j, step)


def bits_for_range(lo: int, hi: int) -> int:
    """Smallest signed register width (>= 2) holding every value in [lo, hi]."""
    b = 2
    while not Register(b, True).contains(lo, hi):
        b += 1
        if b > 64:
            return 65
    return b


def _range_of(a: np.ndarray) -> tuple[int, int]:
    if a.size == 0:
        return 0, 0
    return min(int(a.min()), 0), max(int(a.max()), 0)


def _chunked_bounds(
    xo: np.ndarray, wo: np.ndarray, ax: np.ndarray, aw: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact sums and per-pair bounds [lo, hi] on every partial sum in index order.

    K is cut into chunks; the exact prefix P at each chunk start plus/minus the chunk's
    abs-sum bounds every partial sum inside the chunk (two exact products in all). Operands
    are narrowed to the smallest integer type that holds them, with their ranges passed on,
    so exact_matmul neither rescans nor widens them.
    """
    k = xo.shape[1]
    cs = max(64, -(-k // _BOUND_CHUNKS))
    xs, xr = _narrow(xo)
    ws, wr = _narrow(wo)
    axs, axr = _narrow(ax)
    aws, awr = _narrow(aw)
    prefix = np.zeros((xo.shape[0], wo.shape[0]), dtype=np.int64)
    hi = np.zeros_like(prefix)
    lo = np.zeros_like(prefix)
    tmp = np.empty_like(prefix)
    for c0 in range(0, k, cs):
        sl = slice(c0, min(c0 + cs, k))
        a = exact_matmul(axs[:, sl], aws[:, sl], a_range=axr, b_range=awr)
        np.add(prefix, a, out=tmp)
        np.maximum(hi, tmp, out=hi)
        np.subtract(prefix, a, out=tmp)
        np.minimum(lo, tmp, out=lo)
        prefix += exact_matmul(xs[:, sl], ws[:, sl], a_range=xr, b_range=wr)
    return prefix, lo, hi


def _narrow(a: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """(a in the smallest of int8/uint8/int16/int32/int64 holding it, (min, max))."""
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for dt in (np.int8, np.uint8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return a.astype(dt, copy=False), (min(lo, 0), max(hi, 0))
    return a, (min(lo, 0), max(hi, 0))


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
