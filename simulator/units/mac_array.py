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

Strategies, tried in order (each returns the same integers; the stepwise engine
simulator/engine/stepwise.py is the reference): acc_screened.py (no event possible: one exact
product), acc_chunked.py (wrap/saturate without pre-add: chunked partial sums, see
partial_sums.py), acc_ordered.py (everything else). Shared types: accumulator.py; the pre-add
stage: pre_add.py.

Pre-add groups that cannot overflow are never looked at (pre_add.py); a (query, neuron)
pair, or a K-chunk of it, is evaluated step by step only if exact bounds on its partial sums
leave the register (or the range seen so far, for ``min_safe_acc_bits``).
"""

from __future__ import annotations

import numpy as np

from .acc_chunked import accumulate_chunked
from .acc_ordered import accumulate_ordered
from .acc_screened import accumulate_screened
from .accumulator import (
    PAIR_EVENT_COLUMNS,
    LaneStats,
    MacSpec,
    bits_for_range,
    fit_policy,
    operands,
    overflow_error,
)

__all__ = [
    "PAIR_EVENT_COLUMNS", "LaneStats", "MacSpec", "accumulate", "accumulate_chunked",
    "bits_for_range", "fit_policy", "operands", "overflow_error",
]


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
    known: dict[str, np.ndarray] = {}
    if spec.operand == "offset" and spec.pre_add_width == 1:
        done = accumulate_screened(x, zx, w, zw, spec, track_max, exact_headroom, known)
        if done is not None:
            return done
    if not (spec.operand == "raw" and spec.event_driven):
        done = accumulate_chunked(x, zx, w, zw, spec, track_max, exact_headroom, query_offset,
                                  defer_errors, known.get("sums"))
        if done is not None:
            return done
    if spec.operand == "raw" and spec.event_driven:
        raise ValueError("mac.operand = 'raw' cannot skip inputs (event_driven schedule)")
    return accumulate_ordered(x, zx, w, zw, spec, track_max, query_offset, defer_errors)
