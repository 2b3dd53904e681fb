"""What a stepwise run collects (:class:`StepwiseResult`: per layer accumulators, output
codes, clamps, cycles and stalls; per weight path the overflow accounting :class:`PathStats`)
and :func:`compare_with_fast`, its bit-for-bit check against the fast path.

Arrays are int64: (Q, N) per query and neuron, (N,) per neuron, (Q,) per query."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..units.mac_array import bits_for_range
from .fast import SimResult


@dataclass
class PathStats:
    """Overflow accounting of one weight path (same meaning as LaneStats)."""

    acc_wrap: np.ndarray
    acc_saturate: np.ndarray
    pre_add_events: np.ndarray
    pairs: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    first: tuple[int, int, int] | None = None
    first_pre_add: tuple[int, int, int] | None = None
    partial_min: int = 0
    partial_max: int = 0
    max_abs_acc: int = 0

    @property
    def min_safe_acc_bits(self) -> int:
        return bits_for_range(self.partial_min, self.partial_max)

    def pair_events(self) -> np.ndarray:
        """int64 (E, 5) rows (query, neuron, acc_wrap, acc_saturate, pre_add), sorted."""
        rows = [[q, j, *v] for (q, j), v in sorted(self.pairs.items())]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 5)


@dataclass
class StepLayer:
    """One layer of one module over the queries stepped (arrays (Q, N) / (Q,) / (N,))."""

    module: int
    layer: str
    acc: dict[str, np.ndarray]
    codes: np.ndarray
    unclamped: np.ndarray
    stats: dict[str, PathStats]
    clamp_low: np.ndarray
    clamp_high: np.ndarray
    cycles: np.ndarray
    stalls: np.ndarray

    @property
    def key(self) -> str:
        return f"{self.module}/{self.layer}"


@dataclass
class StepwiseResult:
    """Outputs (Q, places) and per-layer results of a stepwise run over queries 0..Q-1."""

    outputs: np.ndarray
    predictions: np.ndarray
    layers: list[StepLayer]
    cycles_per_query: np.ndarray

    def layer(self, module: int, name: str) -> StepLayer:
        for lr in self.layers:
            if lr.module == module and lr.layer == name:
                return lr
        raise KeyError(f"{module}/{name}")


def compare_with_fast(fast: SimResult, step: StepwiseResult) -> list[str]:
    """Every difference between a fast-path and a stepwise result (empty = bit for bit).

    Compares the first Q queries (Q = queries stepped): outputs, per layer and path the
    accumulator values, per-neuron wrap/saturate/pre-add counts, per-pair events, first
    events, min_safe_acc_bits, max_abs_acc, output codes, clamps, cycles and stalls.
    """
    q = step.outputs.shape[0]
    diffs: list[str] = []

    def check(name: str, a: object, b: object) -> None:
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            same = np.array_equal(np.asarray(a), np.asarray(b))
        else:
            same = a == b
        if not same:
            diffs.append(f"{name}: fast {a!r} != stepwise {b!r}")

    check("outputs", fast.outputs[:q], step.outputs)
    check("predictions", fast.predictions[:q], step.predictions)
    check("cycles_per_query", fast.cycles_per_query[:q], step.cycles_per_query)
    full = q == fast.outputs.shape[0]
    for sl in step.layers:
        fl = fast.layer(sl.module, sl.layer)
        key = sl.key
        check(f"{key} codes", fl.codes[:q], sl.codes)
        check(f"{key} unclamped", fl.unclamped[:q], sl.unclamped)
        check(f"{key} cycles", fl.cycles[:q], sl.cycles)
        check(f"{key} stalls", fl.stalls[:q], sl.stalls)
        for name, st in sl.stats.items():
            fs = fl.mac[name]
            check(f"{key} {name} acc", fl.acc[name][:q], sl.acc[name])
            if not full:
                continue
            check(f"{key} {name} acc_wrap", fs.acc_wrap, st.acc_wrap)
            check(f"{key} {name} acc_saturate", fs.acc_saturate, st.acc_saturate)
            check(f"{key} {name} pre_add_events", fs.pre_add_events, st.pre_add_events)
            check(f"{key} {name} pair_events", fs.pair_events, st.pair_events())
            check(f"{key} {name} first", fs.first, st.first)
            check(f"{key} {name} first_pre_add", fs.first_pre_add, st.first_pre_add)
            if fs.partial_exact:  # report.headroom = "bound" reports a bracket instead
                check(f"{key} {name} min_safe_acc_bits", fs.min_safe_acc_bits,
                      st.min_safe_acc_bits)
            check(f"{key} {name} max_abs_acc", fs.max_abs_acc, st.max_abs_acc)
        if full:
            check(f"{key} clamp_low", fl.clamp.low, sl.clamp_low)
            check(f"{key} clamp_high", fl.clamp.high, sl.clamp_high)
    return diffs
