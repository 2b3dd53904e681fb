"""Spike-time accumulation order (``schedule.order``): which input the accumulator sees first.

VPRTempo reads a spike's amplitude as its time within a step: the brightest input fires first.
With wrapping accumulators the order changes only the event counts; with saturating ones it
changes results and the width a layer needs.

* ``index``: ascending input index (the MAC array's native order, units/mac_array.py).
* ``time``: per query, larger code first, ties by ascending index; then exactly as ``index``
  on the permuted inputs (adder tree, pre-add, policies, event_driven skipping). Implemented as
  a per-query permutation of the K axis: accumulate() is run once per query on x[q, perm_q]
  and w[:, perm_q], so every event, first event (step = position in time order) and
  ``min_safe_acc_bits`` is in time order.
* ``time_bin``: the code range of the input register is cut into ``schedule.time_bins`` equal
  time bins (time = register max - code, bin = time * B // range); the products of each bin
  are summed exactly and added to the accumulator once, earliest bin first (one addition per
  bin; offset operands, no pre-add). An event's step is the adder-tree step (time order) at
  which its bin's last input arrives, so the schedule's cycle formula is unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..fixedpoint import Register
from .loihi_dense import exact_dot
from .mac_array import LaneStats, MacSpec, accumulate, fit_policy, overflow_error

ORDERS = ("index", "time", "time_bin")


def time_order(x: np.ndarray) -> np.ndarray:
    """int64 (Q, K) permutation per query: larger code first, ties by ascending index."""
    return np.argsort(-np.asarray(x, dtype=np.int64), axis=1, kind="stable").astype(np.int64)


def time_bin_of(x: np.ndarray, bins: int, reg: Register) -> np.ndarray:
    """int64 (Q, K) time bin of every input code: (reg.max - x) * bins // (reg range)."""
    span = reg.max - reg.min + 1
    return (reg.max - np.asarray(x, dtype=np.int64)) * bins // span


def bin_write_steps(codes: np.ndarray, bins: int, reg: Register, tree_width: int) -> np.ndarray:
    """int64 step (time order, ``tree_width`` inputs per step) of each non-empty bin's
    accumulator write, earliest bin first, for one query's accumulated input codes (1-D)."""
    b = time_bin_of(np.asarray(codes, dtype=np.int64), bins, reg)
    counts = np.bincount(b, minlength=bins)
    ends = np.cumsum(counts)[counts > 0]
    return ((ends - 1) // tree_width).astype(np.int64)


def accumulate_in_order(
    x: np.ndarray,
    zx: int,
    w: np.ndarray,
    zw: np.ndarray,
    spec: MacSpec,
    order: str = "index",
    bins: int = 8,
    in_reg: Register | None = None,
    **kwargs: Any,
) -> tuple[np.ndarray, LaneStats]:
    """accumulate() in ``order`` (see the module docstring); kwargs go to accumulate()."""
    if order == "index":
        return accumulate(x, zx, w, zw, spec, **kwargs)
    if order == "time":
        perm = time_order(x)
        q0 = int(kwargs.pop("query_offset", 0))
        accs, parts = [], []
        for q in range(x.shape[0]):
            p = perm[q]
            a, st = accumulate(x[q : q + 1, p], zx, w[:, p], zw, spec, query_offset=q0 + q,
                               **kwargs)
            accs.append(a)
            parts.append(st)
        return np.concatenate(accs), LaneStats.concat(parts, list(range(x.shape[0])))
    if order == "time_bin":
        assert in_reg is not None
        return _accumulate_time_bins(x, zx, w, zw, spec, bins, in_reg,
                                     int(kwargs.get("query_offset", 0)),
                                     bool(kwargs.get("defer_errors", False)))
    raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")


def _accumulate_time_bins(
    x: np.ndarray, zx: int, w: np.ndarray, zw: np.ndarray, spec: MacSpec, bins: int,
    in_reg: Register, query_offset: int, defer_errors: bool,
) -> tuple[np.ndarray, LaneStats]:
    if spec.operand != "offset" or spec.pre_add_width != 1:
        raise ValueError("schedule.order = 'time_bin' needs mac.operand = 'offset' and "
                         "mac.pre_add_width = 1")
    xi = np.asarray(x, dtype=np.int64)
    q, _ = xi.shape
    n = w.shape[0]
    xo = xi - zx
    wo = np.asarray(w, dtype=np.int64) - np.asarray(zw, dtype=np.int64)[:, None]
    b = time_bin_of(xi, bins, in_reg)
    active = xo != 0 if spec.event_driven else np.ones_like(xo, dtype=bool)
    # the adder-tree step (time order) at which each bin's last input arrives
    counts = np.stack([(active & (b <= i)).sum(axis=1) for i in range(bins)], axis=1)
    steps = np.maximum(-(-counts // spec.adder_tree_width) - 1, 0)  # (Q, bins)
    reg = spec.register
    acc = np.zeros((q, n), dtype=np.int64)
    running = np.zeros((q, n), dtype=np.int64)  # the unbounded sum
    wraps = np.zeros(n, dtype=np.int64)
    sats = np.zeros(n, dtype=np.int64)
    lo = hi = 0
    first: tuple[int, int, int] | None = None
    first_value = 0
    per_pair = np.zeros((q, n, 2), dtype=np.int64)
    for i in range(bins):
        sel = (b == i) & active
        if not sel.any():
            continue
        s = exact_dot(np.where(sel, xo, 0), wo)
        rows = sel.any(axis=1)  # queries with an addition in this bin
        running = running + s
        lo = min(lo, int(running[rows].min(initial=0)))
        hi = max(hi, int(running[rows].max(initial=0)))
        new = acc + s
        bad = ((new < reg.min) | (new > reg.max)) & rows[:, None]
        if bad.any():
            kind = 0 if spec.overflow == "wrap" else 1
            per_pair[:, :, kind] += bad
            (wraps if kind == 0 else sats)[:] += bad.sum(axis=0)
            earlier = _earliest(first, bad, steps[:, i], spec.lanes)
            if earlier != first:
                first, first_value = earlier, int(new[earlier[0], earlier[1]])
        acc = np.where(rows[:, None], fit_policy(new, reg, spec.overflow), acc)
    ev = np.argwhere(per_pair.sum(axis=2) > 0)
    pair_rows = np.column_stack([ev[:, 0], ev[:, 1], per_pair[ev[:, 0], ev[:, 1], 0],
                                 per_pair[ev[:, 0], ev[:, 1], 1], np.zeros(len(ev), np.int64)]
                                ).astype(np.int64) if len(ev) else np.zeros((0, 5), np.int64)
    st = LaneStats(wraps, sats, np.zeros(n, np.int64), int(np.abs(running).max(initial=0)),
                   first, 0, lo, hi, None, pair_rows)
    if spec.overflow == "error" and first is not None:
        qq, j, step = first
        err = overflow_error("accumulator", qq + query_offset, j, step, first_value, reg)
        if not defer_errors:
            raise err
        st.error, st.error_at = err, first
    return acc, st


def _earliest(
    old: tuple[int, int, int] | None, bad: np.ndarray, steps: np.ndarray, lanes: int
) -> tuple[int, int, int]:
    """Earliest event in schedule order (query, lane tile, step, neuron)."""
    qs, js = np.nonzero(bad)
    keys = np.stack([qs, js // lanes, steps[qs], js], axis=1)
    k = keys[np.lexsort(keys.T[::-1])[0]]
    cand = (int(k[0]), int(k[3]), int(k[2]))
    if old is None:
        return cand
    ko = (old[0], old[1] // lanes, old[2], old[1])
    return cand if (int(k[0]), int(k[1]), int(k[2]), int(k[3])) < ko else old
