"""What the stepwise engine yields: the :class:`Window` to step through and one op record
per step (:class:`MacOp`, all lanes of a tile), per requantizer issue cycle (:class:`DrainOp`)
and per pipeline-flush cycle (:class:`FlushOp`).

Values are exact integers in int64 arrays; registers are signed two's complement of the
configured width (acc_bits, pre_add_bits; out_bits signed as requant.output_signed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .stepwise_bins import BinAdd


@dataclass(frozen=True)
class Window:
    """What to step through and report. Ranges are inclusive; None = everything.

    queries (lo, hi), modules (indices), layers (names), neurons (lo, hi), cycles (lo, hi).
    """

    queries: tuple[int, int] | None = None
    modules: tuple[int, ...] | None = None
    layers: tuple[str, ...] | None = None
    neurons: tuple[int, int] | None = None
    cycles: tuple[int, int] | None = None

    def query_ok(self, q: int) -> bool:
        return self.queries is None or self.queries[0] <= q <= self.queries[1]

    def module_ok(self, m: int) -> bool:
        return self.modules is None or m in self.modules

    def layer_ok(self, name: str) -> bool:
        return self.layers is None or name in self.layers

    def neurons_overlap(self, lo: int, hi: int) -> bool:
        return self.neurons is None or (lo <= self.neurons[1] and self.neurons[0] <= hi)

    def cycles_overlap(self, lo: int, hi: int) -> bool:
        return self.cycles is None or (lo <= self.cycles[1] and self.cycles[0] <= hi)


@dataclass
class MacOp:
    """One step of one lane tile: fetch cycles first_cycle..cycle-1, then at ``cycle`` every
    busy lane adds its adder-tree output into its accumulator.

    kind: "mac" (products of ``inputs``) or "correction" (raw operands: the offset correction
    is the tree value, no products). Lane i holds neuron ``neurons[i]``. Arrays are int64:
    inputs/x/x_op (m,), w_op/products (n, m), pre_exact/pre_value (n, g) with g = ceil(m/P)
    (pre-add stage only, else None), tree/acc_before/acc_exact/acc_after (n,). *_kind arrays
    hold "" (no event) or the policy applied: "wrap", "saturate" or "error".

    ``schedule.order = "time_bin"``: ``tree`` is the exact sum of the step's products and the
    register writes are ``bin_adds`` (one per bin whose last input is in this step, in bin
    order; none if no bin closes here). acc_before is the accumulator at the start of the
    step, acc_after after its last write, acc_exact the exact value of its last write
    (acc_before if none), acc_kind the policy if any write of the step overflowed.
    """

    query: int
    module: int
    layer: str
    path: str
    tile: int
    step: int
    kind: str
    first_cycle: int
    cycle: int
    neurons: np.ndarray
    inputs: np.ndarray
    x: np.ndarray
    x_op: np.ndarray
    w_op: np.ndarray
    products: np.ndarray
    pre_exact: np.ndarray | None
    pre_value: np.ndarray | None
    pre_kind: np.ndarray | None
    tree: np.ndarray
    acc_before: np.ndarray
    acc_exact: np.ndarray
    acc_after: np.ndarray
    acc_kind: np.ndarray
    weights_per_cycle: int
    acc_bits: int
    pre_add_width: int
    pre_add_bits: int
    bin_adds: tuple[BinAdd, ...] | None = None


@dataclass
class DrainOp:
    """One requantizer issue cycle: up to ``requant.throughput`` accumulators of a tile become
    output codes (the result leaves the pipeline ``latency`` cycles later).

    acc[path] int64 (n,) accumulator values; scaled[path] the split layout's per-path values
    (else empty); unclamped/codes (n,); clamp_kind "" | "clamp_low" | "clamp_high".
    """

    query: int
    module: int
    layer: str
    tile: int
    cycle: int
    neurons: np.ndarray
    acc: dict[str, np.ndarray]
    scaled: dict[str, np.ndarray]
    unclamped: np.ndarray
    codes: np.ndarray
    clamp_kind: np.ndarray
    out_bits: int
    latency: int


@dataclass
class FlushOp:
    """One of the requantizer's ``latency`` pipeline-flush cycles at the end of a layer."""

    query: int
    module: int
    layer: str
    cycle: int
    index: int


Op = MacOp | DrainOp | FlushOp
