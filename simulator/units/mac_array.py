"""MAC array with per-lane accumulators (functional model, vectorised, bit-exact).

Datapath of one lane (one output neuron j, one query q), in accumulation order:

* operands: input code x_k (``spikes.bits``), weight w_jk (``weights.bits``, int8);
  ``mac.operand = "offset"`` multiplies (x_k - zx) * (w_jk - zw_j) exactly;
  ``mac.operand = "raw"`` multiplies x_k * w_jk and the accumulator ends with one more addition
  of -zx * sum_k w_jk (the column-sum correction fbgemm applies);
* optional pre-add stage: ``mac.pre_add_width`` consecutive products summed into a
  ``mac.pre_add_bits`` signed register with its own overflow policy (AVX2 VPMADDUBSW: 2, 16,
  saturate);
* adder tree: ``accumulator.adder_tree_width`` consecutive (pre-added) products summed exactly;
* accumulator: ``accumulator.bits`` signed register; each tree output is added in one step and
  the overflow policy is applied to that addition. An *overflow event* is one addition whose
  exact result lies outside the register's range.

Inputs are taken in ascending index. In ``event_driven`` mode inputs equal to the zero point
are skipped and the tree groups consecutive non-skipped inputs.

Fast path: the exact sum comes from float64 BLAS (exact: every partial sum < 2**53). A pair
(q, j) needs ordered evaluation only if its abs-sum bound sum_k |x'_k w'_jk| exceeds the
register range; only such pairs are evaluated step by step (vectorised over pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixedpoint import Register, RegisterOverflowError, wrap

_PAIR_BATCH_ELEMENTS = 1 << 24  # products held at once during ordered evaluation
_BOUND_CHUNKS = 16  # K chunks for the partial-sum bounds


@dataclass
class LaneStats:
    """Overflow accounting of one accumulation (one layer path, all queries).

    acc_wrap / acc_saturate / pre_add_events: int64 (N,) event counts per output neuron.
    max_abs_acc: largest |exact final sum| over all (query, neuron) pairs.
    partial_min / partial_max: exact extremes of every accumulator addition's result had the
        register been unbounded (0 included) — what the register must hold for no event.
        Pairs are screened by exact bounds; only pairs that could widen the range are
        evaluated step by step, so the extremes are exact where they matter for the width.
    first: (query, neuron, step) of the earliest event in schedule order, or None.
    ordered_pairs: number of (query, neuron) pairs evaluated step by step.
    """

    acc_wrap: np.ndarray
    acc_saturate: np.ndarray
    pre_add_events: np.ndarray
    max_abs_acc: int
    first: tuple[int, int, int] | None
    ordered_pairs: int
    partial_min: int = 0
    partial_max: int = 0

    @property
    def min_safe_acc_bits(self) -> int:
        return bits_for_range(self.partial_min, self.partial_max)


@dataclass(frozen=True)
class MacSpec:
    """Everything the MAC array needs to know about one layer's hardware."""

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


def exact_matmul(a: np.ndarray, b_t: np.ndarray) -> np.ndarray:
    """Exact int64 a @ b_t.T for small-integer operands via float64 BLAS.

    a: (Q, K) integers, b_t: (N, K) integers with K * max|a| * max|b| < 2**53.
    """
    amax = float(np.abs(a).max()) if a.size else 0.0
    bmax = float(np.abs(b_t).max()) if b_t.size else 0.0
    k = a.shape[1]
    if k * amax * bmax >= 2.0**53:
        raise OverflowError("operands too large for exact float64 accumulation")
    out = a.astype(np.float64) @ b_t.astype(np.float64).T
    return out.astype(np.int64)


def accumulate(
    x: np.ndarray,
    zx: int,
    w: np.ndarray,
    zw: np.ndarray,
    spec: MacSpec,
    track_max: bool = True,
    query_offset: int = 0,
) -> tuple[np.ndarray, LaneStats]:
    """Run the MAC array over all queries.

    x: int64 (Q, K) input codes; zx: input zero point; w: int8 (N, K); zw: int64 (N,).
    Returns (acc, stats): acc int64 (Q, N) accumulator register values after the last step.
    Raises RegisterOverflowError (policy ``error``) with the first event's location
    (query numbers in messages are offset by ``query_offset``).
    """
    q_count, k = x.shape
    n = w.shape[0]
    xo = x.astype(np.int64) - zx
    wo = w.astype(np.int64) - zw[:, None]
    reg = spec.register
    zeros = np.zeros(n, dtype=np.int64)
    stats = LaneStats(zeros.copy(), zeros.copy(), zeros.copy(), 0, None, 0, 0, 0)
    simple = spec.operand == "offset" and spec.pre_add_width == 1
    ax = np.abs(xo)
    aw = np.abs(wo)
    # Separable bound on every partial sum of every pair.
    sep = min(
        int(ax.sum(axis=1).max(initial=0)) * int(aw.max(initial=0)),
        int(ax.max(initial=0)) * int(aw.sum(axis=1).max(initial=0)),
    )
    limit = min(reg.max, -reg.min)
    if simple and sep <= limit and not track_max:
        return exact_matmul(xo, wo), stats
    if simple and sep <= limit:
        exact = exact_matmul(xo, wo)
        stats.max_abs_acc = int(np.abs(exact).max(initial=0))
        lo_known, hi_known = _range_of(exact)
        b = bits_for_range(lo_known, hi_known)
        if sep <= min(Register(b, True).max, -Register(b, True).min):
            stats.partial_min, stats.partial_max = lo_known, hi_known
            return exact, stats
    exact, lo_b, hi_b = _chunked_bounds(xo, wo, ax, aw)
    stats.max_abs_acc = int(np.abs(exact).max(initial=0))
    lo_known, hi_known = _range_of(exact)
    stats.partial_min, stats.partial_max = lo_known, hi_known
    if simple:
        flag_events = (hi_b > reg.max) | (lo_b < reg.min)
        if track_max:
            safe = Register(bits_for_range(lo_known, hi_known), True)
            flagged = flag_events | (hi_b > safe.max) | (lo_b < safe.min)
        else:
            flagged = flag_events
    else:
        flagged = np.ones((q_count, n), dtype=bool)
    if not flagged.any():
        return exact, stats
    acc = exact.copy()
    _ordered(x, zx, xo, w, wo, spec, flagged, acc, stats, query_offset)
    return acc, stats


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
    abs-sum bounds every partial sum inside the chunk (two BLAS passes in all).
    """
    k = xo.shape[1]
    cs = max(64, -(-k // _BOUND_CHUNKS))
    prefix = np.zeros((xo.shape[0], wo.shape[0]), dtype=np.int64)
    hi = np.zeros_like(prefix)
    lo = np.zeros_like(prefix)
    for c0 in range(0, k, cs):
        sl = slice(c0, min(c0 + cs, k))
        a = exact_matmul(ax[:, sl], aw[:, sl])
        np.maximum(hi, prefix + a, out=hi)
        np.minimum(lo, prefix - a, out=lo)
        prefix += exact_matmul(xo[:, sl], wo[:, sl])
    return prefix, lo, hi


def _ordered(
    x: np.ndarray,
    zx: int,
    xo: np.ndarray,
    w: np.ndarray,
    wo: np.ndarray,
    spec: MacSpec,
    flagged: np.ndarray,
    acc: np.ndarray,
    stats: LaneStats,
    query_offset: int = 0,
) -> None:
    """Step-ordered evaluation of the flagged (query, neuron) pairs, in place."""
    reg = spec.register
    k = x.shape[1]
    g = spec.adder_tree_width
    p = spec.pre_add_width
    raw = spec.operand == "raw"
    pre_reg = Register(spec.pre_add_bits, True) if p > 1 else None
    colsum = w.astype(np.int64).sum(axis=1) if raw else None
    qs, js = np.nonzero(flagged)
    stats.ordered_pairs += int(qs.size)
    # order of pairs by schedule: query, lane tile, then neuron (steps handled inside)
    batch = max(1, _PAIR_BATCH_ELEMENTS // max(k, 1))
    first_key: tuple[int, int, int, int] | None = None
    for start in range(0, qs.size, batch):
        bq = qs[start : start + batch]
        bj = js[start : start + batch]
        xr = x[bq].astype(np.int64)
        if raw:
            prod = xr * w[bj].astype(np.int64)
        else:
            prod = xo[bq] * wo[bj]
        if spec.event_driven:
            active = xr != zx
            order = np.argsort(~active, axis=1, kind="stable")
            prod = np.take_along_axis(prod, order, axis=1)
            prod = np.where(np.take_along_axis(active, order, axis=1), prod, 0)
            n_active = active.sum(axis=1)
        else:
            n_active = np.full(bq.size, k, dtype=np.int64)
        pre_events = np.zeros(bq.size, dtype=np.int64)
        if pre_reg is not None:
            kp = -(-k // p) * p
            pp = np.zeros((bq.size, kp), dtype=np.int64)
            pp[:, :k] = prod
            sums = pp.reshape(bq.size, kp // p, p).sum(axis=2)
            over = (sums < pre_reg.min) | (sums > pre_reg.max)
            pre_events = over.sum(axis=1)
            if spec.pre_add_overflow == "error" and over.any():
                i = int(np.flatnonzero(over.any(axis=1))[0])
                raise RegisterOverflowError(
                    f"pre-add overflow: query {int(bq[i]) + query_offset}, neuron {int(bj[i])} does not fit "
                    f"{pre_reg.describe()}",
                    int(bq[i]) + query_offset,
                    int(sums[i][over[i]][0]),
                )
            if spec.pre_add_overflow == "saturate":
                sums = np.clip(sums, pre_reg.min, pre_reg.max)
            else:
                sums = wrap(sums, pre_reg)
            prod = sums
            unit = g // p if g % p == 0 else None
            if unit is None:
                raise ValueError(
                    "accumulator.adder_tree_width must be a multiple of mac.pre_add_width"
                )
            gg = unit
            n_steps = _ceil_div(_ceil_div(n_active, p), gg)
        else:
            gg = g
            n_steps = _ceil_div(n_active, gg)
        kk = prod.shape[1]
        kt = -(-kk // gg) * gg
        if kt != kk:
            prod = np.concatenate([prod, np.zeros((bq.size, kt - kk), dtype=np.int64)], axis=1)
        tree = prod.reshape(bq.size, kt // gg, gg).sum(axis=2)  # (F, T) exact tree outputs
        steps = tree.shape[1]
        if raw:
            # the column-sum correction is one more addition after the last step
            tree = np.concatenate([tree, (-zx * colsum[bj])[:, None]], axis=1)
            n_steps = n_steps + 1
            steps += 1
        # only the first n_steps[i] steps exist for pair i (event-driven); later ones are zero
        r, wraps, sats, maxabs, first_step = _run_register(tree, n_steps, reg, spec.overflow)
        exists = np.arange(tree.shape[1])[None, :] < n_steps[:, None]
        unbounded = np.where(exists, np.cumsum(tree, axis=1), 0)
        stats.partial_min = min(stats.partial_min, int(unbounded.min(initial=0)))
        stats.partial_max = max(stats.partial_max, int(unbounded.max(initial=0)))
        acc[bq, bj] = r
        np.add.at(stats.acc_wrap, bj, wraps)
        np.add.at(stats.acc_saturate, bj, sats)
        np.add.at(stats.pre_add_events, bj, pre_events)
        ev = np.flatnonzero(first_step >= 0)
        if ev.size:
            lanes = spec.lanes
            keys = np.stack(
                [bq[ev], bj[ev] // lanes, first_step[ev], bj[ev]], axis=1
            )
            best = keys[np.lexsort(keys.T[::-1])[0]]
            cand = (int(best[0]), int(best[1]), int(best[2]), int(best[3]))
            if first_key is None or cand < first_key:
                first_key = cand
            if spec.overflow == "error":
                q0, _, s0, j0 = cand
                raise RegisterOverflowError(
                    f"accumulator overflow: query {q0 + query_offset}, neuron {j0}, step {s0}: the sum does "
                    f"not fit {reg.describe()}; widen accumulator.bits or choose wrap/saturate",
                    q0 + query_offset,
                    0,
                )
        # pre-add events also count as 'first' candidates at step 0 of their pair
    if first_key is not None:
        stats.first = (first_key[0], first_key[3], first_key[2])


def _run_register(
    tree: np.ndarray, n_steps: np.ndarray, reg: Register, policy: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """Add tree outputs step by step into the register.

    tree: int64 (F, T); step t of pair i exists if t < n_steps[i].
    Returns (final value (F,), wrap events (F,), saturate events (F,), max |exact result|,
    first event step (F,) or -1).
    """
    f, t_count = tree.shape
    exists = np.arange(t_count)[None, :] < n_steps[:, None]
    wraps = np.zeros(f, dtype=np.int64)
    sats = np.zeros(f, dtype=np.int64)
    first = np.full(f, -1, dtype=np.int64)
    if policy in ("wrap", "error"):
        prefix = np.cumsum(tree, axis=1)
        before = np.concatenate([np.zeros((f, 1), dtype=np.int64), prefix[:, :-1]], axis=1)
        reg_before = wrap(before, reg)
        exact_result = reg_before + tree
        out = ((exact_result < reg.min) | (exact_result > reg.max)) & exists
        wraps = out.sum(axis=1)
        maxabs = int(np.abs(np.where(exists, exact_result, 0)).max(initial=0))
        hit = out.any(axis=1)
        first[hit] = np.argmax(out[hit], axis=1)
        final = wrap(prefix[:, -1], reg) if t_count else np.zeros(f, dtype=np.int64)
        return final, wraps, sats, maxabs, first
    r = np.zeros(f, dtype=np.int64)
    maxabs = 0
    for t in range(t_count):
        e = exists[:, t]
        s = r + tree[:, t]
        out = e & ((s < reg.min) | (s > reg.max))
        if out.any():
            sats += out
            first[(first < 0) & out] = t
        m = int(np.abs(np.where(e, s, 0)).max(initial=0))
        maxabs = max(maxabs, m)
        r = np.where(e, np.clip(s, reg.min, reg.max), r)
    return r, wraps, sats, maxabs, first


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -(-a // b)
