"""The accumulator register of a MAC lane: spec, overflow accounting, shared helpers.

:class:`MacSpec` is one layer's MAC hardware (widths, policies, adder tree, pre-add stage);
:class:`LaneStats` its overflow accounting over all queries. The accumulation strategies
(simulator/units/acc_*.py) fill a LaneStats and finish it with :func:`finish_stats`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..fixedpoint import Register, RegisterOverflowError, saturate, wrap
from .pre_add import PreAdd

PAIR_EVENT_COLUMNS: tuple[str, ...] = ("query", "neuron", "acc_wrap", "acc_saturate", "pre_add")


PairRows = np.ndarray | Callable[[], np.ndarray]
"""Pair event rows: an int64 (E, 5) table, or a function that builds it on first use."""


def _per_query(qs: np.ndarray, acc: np.ndarray, pre: np.ndarray, q_count: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per-query sums (int64 (q_count,)) of per-pair accumulator and pre-add event counts of
    pairs in queries ``qs`` (exact: bincount sums integers in float64, far below 2**53)."""
    def total(w: np.ndarray) -> np.ndarray:
        if not qs.size:
            return np.zeros(q_count, dtype=np.int64)
        return np.bincount(qs, weights=w, minlength=q_count).astype(np.int64)[:q_count]

    return total(acc), total(pre)


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
        Built on first use when the strategy left a builder in ``pair_event_rows`` (millions
        of rows cost ~0.5 s of fresh memory here; callers that need only the per-neuron
        counts never read them).
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
    pair_event_rows: PairRows = field(default_factory=_no_pair_events, repr=False)
    error: RegisterOverflowError | None = None
    error_at: tuple[int, int, int] | None = None
    partial_exact: bool = True
    partial_bound: int = 0

    @property
    def pair_events(self) -> np.ndarray:
        """int64 (E, 5) pair event rows (see the class docstring), built on first use."""
        if callable(self.pair_event_rows):
            self.pair_event_rows = self.pair_event_rows()
        return self.pair_event_rows

    @pair_events.setter
    def pair_events(self, rows: PairRows) -> None:
        self.pair_event_rows = rows

    def per_query_counts(self, q_count: int) -> tuple[np.ndarray, np.ndarray]:
        """int64 (q_count,) accumulator (wrap + saturate) and pre-add events per query: from
        the builder's ``per_query`` when the table is not built yet (reports need only these
        sums; a 3 M-row table costs ~0.3-0.6 s here), else from the table."""
        quick = getattr(self.pair_event_rows, "per_query", None)
        if callable(self.pair_event_rows) and quick is not None:
            return quick(q_count)
        ev = self.pair_events
        return _per_query(ev[:, 0], ev[:, 2] + ev[:, 3], ev[:, 4], q_count)

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
        def merged_rows() -> np.ndarray:
            rows = []
            for s, o in zip(parts, query_offsets, strict=True):
                if s.pair_events.size:
                    r = s.pair_events.copy()
                    r[:, 0] += o
                    rows.append(r)
            return np.concatenate(rows) if rows else _no_pair_events()

        def per_query(q_count: int) -> tuple[np.ndarray, np.ndarray]:
            acc = np.zeros(q_count, dtype=np.int64)
            pre = np.zeros(q_count, dtype=np.int64)
            ends = [*query_offsets[1:], q_count]
            for s, o, e in zip(parts, query_offsets, ends, strict=True):
                a, p = s.per_query_counts(e - o)
                acc[o:e] += a
                pre[o:e] += p
            return acc, pre

        merged_rows.per_query = per_query  # type: ignore[attr-defined]

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
            merged_rows,
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


def finish_stats(
    stats: LaneStats,
    spec: MacSpec,
    pre: PreAdd | None,
    acc_first: tuple[int, int, int, int, int] | None,
    pair_rows: list[PairRows],
    query_offset: int,
    defer_errors: bool = False,
) -> None:
    """Fold pre-add results into ``stats``; raise the earliest ``error``-policy event.

    ``pair_rows``: blocks of pair event rows; a builder (callable) must yield rows sorted by
    (query, neuron), one per pair: when it is the only block it is kept unbuilt."""
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
    if len(rows) == 1 and callable(rows[0]):
        stats.pair_events = rows[0]
        rows = []
    rows = [r() if callable(r) else r for r in rows]
    if rows:
        allr = rows[0] if len(rows) == 1 else np.concatenate(rows)
        if len(rows) == 1 and _sorted_unique_pairs(allr):
            stats.pair_events = allr
            rows = []
    if rows:
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


def _sorted_unique_pairs(rows: np.ndarray) -> bool:
    """True if rows' (query, neuron) keys are strictly increasing (already merged)."""
    if rows.shape[0] < 2:
        return True
    q, j = rows[:, 0], rows[:, 1]
    return bool(np.all((q[1:] > q[:-1]) | ((q[1:] == q[:-1]) & (j[1:] > j[:-1]))))


def bits_for_range(lo: int, hi: int) -> int:
    """Smallest signed register width (>= 2) holding every value in [lo, hi]."""
    b = 2
    while not Register(b, True).contains(lo, hi):
        b += 1
        if b > 64:
            return 65
    return b


def range_of(a: np.ndarray) -> tuple[int, int]:
    """(min(a, 0), max(a, 0)) as Python ints; (0, 0) for an empty array."""
    if a.size == 0:
        return 0, 0
    from .offset_inputs import value_range

    lo, hi = value_range(a)
    return min(lo, 0), max(hi, 0)


def narrow(a: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """(a in the smallest of int8/uint8/int16/int32/int64 holding it, (min, max))."""
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for dt in (np.int8, np.uint8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return a.astype(dt, copy=False), (min(lo, 0), max(hi, 0))
    return a, (min(lo, 0), max(hi, 0))
