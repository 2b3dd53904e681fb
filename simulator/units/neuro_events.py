"""Event counters of the neuromorphic datapath: per kind, per neuron, with the first event.

Lava's models never report an overflow; here every silent narrowing of the Loihi-class
datapath (int32 dot and shift wraps, product wraps, u's 24-bit correction, v's clamp, ...)
is an event kind counted per output neuron, with the earliest (time step, neuron) at which it
happened and the query it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FirstEvent:
    """Where an event kind first happened: global time step, query and neuron."""

    step: int
    query: int
    neuron: int


@dataclass
class EventCounter:
    """Per-neuron counts (int64 (N,)) and the first event of each kind, for one layer."""

    neurons: int
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    first: dict[str, FirstEvent] = field(default_factory=dict)

    def declare(self, *kinds: str) -> None:
        """Make ``kinds`` appear (with zero counts) even when nothing happens."""
        for kind in kinds:
            self.counts.setdefault(kind, np.zeros(self.neurons, dtype=np.int64))

    def add(self, kind: str, mask: np.ndarray, steps: np.ndarray, query_offset: int = 0) -> None:
        """Count events ``mask`` bool (Q, N); ``steps`` int64 (Q,) is each row's time step."""
        self.declare(kind)
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            return
        self.counts[kind] += m.sum(axis=0, dtype=np.int64)
        rows = np.flatnonzero(m.any(axis=1))
        st = np.asarray(steps, dtype=np.int64)[rows]
        best = rows[st == st.min()]
        # among rows at the same step, the lowest neuron (then the lowest query) is first
        cand = [(int(np.flatnonzero(m[r])[0]), int(r)) for r in best]
        neuron, row = min(cand)
        ev = FirstEvent(int(st.min()), row + query_offset, neuron)
        old = self.first.get(kind)
        if old is None or (ev.step, ev.neuron) < (old.step, old.neuron):
            self.first[kind] = ev

    def total(self, kind: str) -> int:
        return int(self.counts[kind].sum()) if kind in self.counts else 0

    def to_report(self) -> dict[str, dict]:
        """{kind: {count, neurons_with_events, first, per_neuron}} for report.json."""
        out = {}
        for kind, c in self.counts.items():
            idx = np.flatnonzero(c)
            fe = self.first.get(kind)
            out[kind] = {
                "count": int(c.sum()),
                "neurons_with_events": int(idx.size),
                "first": None if fe is None else {"step": fe.step, "query": fe.query,
                                                   "neuron": fe.neuron},
                "per_neuron": [[int(i), int(c[i])] for i in idx],
            }
        return out
