"""Output-stationary schedule and its cycle formula (see docs/schedule.md).

One layer path on an array of L = ``mac.lanes`` lanes with adder-tree width G:

* output neurons are processed in tiles of L consecutive neurons (the last tile may be
  partial, n_t lanes busy); each lane keeps one accumulator;
* a tile takes S = ceil(K_active / G) steps (+1 for the column-sum correction when
  ``mac.operand = "raw"``); K_active = K (dense) or the number of inputs != zero point
  (event_driven, per query); with a pre-add stage of width P, S = ceil(ceil(K_active/P) / (G/P));
* each step needs n_t * G weights; the weight memory delivers B per cycle, so a step costs
  c_t = ceil(n_t * G / B) cycles, c_t - 1 of them stall cycles;
* after its last step a tile's n_t accumulators drain through the requantizer at
  ``requant.throughput`` per cycle: ceil(n_t / throughput) cycles;
* split layouts run the excitatory then the inhibitory path through the array; the combiner
  runs in the requantizer's drain slot;
* the requantizer's pipeline latency is paid once per layer.

cycles(layer, query) = paths * sum_t (S * c_t) + sum_t ceil(n_t / throughput) + latency
Layers run in order, modules in order, queries in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TileSchedule:
    """Static per-layer schedule parameters."""

    n_out: int
    lanes: int
    tree_width: int
    pre_add_width: int
    weights_per_cycle: int
    requant_throughput: int
    requant_latency: int
    paths: int
    extra_steps: int  # 1 for the raw-operand correction step

    @property
    def tile_sizes(self) -> np.ndarray:
        full, rem = divmod(self.n_out, self.lanes)
        sizes = [self.lanes] * full + ([rem] if rem else [])
        return np.asarray(sizes, dtype=np.int64)

    @property
    def cycles_per_step(self) -> np.ndarray:
        return -(-(self.tile_sizes * self.tree_width) // self.weights_per_cycle)

    def steps(self, k_active: np.ndarray) -> np.ndarray:
        """Steps per tile for each query (int64 (Q,))."""
        k = np.asarray(k_active, dtype=np.int64)
        p = self.pre_add_width
        if p > 1:
            units = -(-k // p)
            return -(-units // (self.tree_width // p)) + self.extra_steps
        return -(-k // self.tree_width) + self.extra_steps

    def drain_cycles(self) -> int:
        return int((-(-self.tile_sizes // self.requant_throughput)).sum())

    def cycles(self, k_active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(total cycles, stall cycles) per query, int64 (Q,)."""
        s = self.steps(k_active)
        cps = self.cycles_per_step
        mac = self.paths * s * int(cps.sum())
        stall = self.paths * s * int((cps - 1).sum())
        return mac + self.drain_cycles() + self.requant_latency, stall

    def event_offset(self, steps_q: int, tile: int, step: int, path_index: int = 0) -> int:
        """Cycle (from the layer's start for that query) at which step ``step`` of tile
        ``tile`` completes its accumulator addition."""
        cps = self.cycles_per_step
        drain = -(-self.tile_sizes // self.requant_throughput)
        before = int((self.paths * steps_q * cps[:tile]).sum() + drain[:tile].sum())
        before += path_index * steps_q * int(cps[tile])
        return before + (step + 1) * int(cps[tile]) - 1
