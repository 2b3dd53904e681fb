"""A plain step loop over one query: the benchmark's exact reference for the MAC array.

Independent of the fast path's strategies (no bounds, no chunks, no matrix products): for
one query it walks the accumulation order of docs/schedule.md step by step, all neurons at
once, and applies the pre-add and accumulator policies at every register write. Slow
(Q x K / G numpy steps) but simple enough to read against the hardware description;
``hwsim bench`` runs it on the first queries of configurations whose arithmetic torch does
not share. The stepwise engine (stepwise.py) remains the reference of the test suite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import HwConfig
from ..network import QuantizedNetwork
from ..units.mac_array import MacSpec, fit_policy
from .fast import SimResult


@dataclass
class QueryAccumulation:
    """One query of one layer path: final registers and events per neuron (int64 (N,)).

    first / first_pre_add: (neuron, step) of the earliest event in schedule order
    (lane tile, step, neuron), or None.
    """

    acc: np.ndarray
    acc_wrap: np.ndarray
    acc_saturate: np.ndarray
    pre_add: np.ndarray
    first: tuple[int, int] | None
    first_pre_add: tuple[int, int] | None


def accumulate_query(
    x: np.ndarray, zx: int, w: np.ndarray, zw: np.ndarray, spec: MacSpec
) -> QueryAccumulation:
    """Step one query's codes x (K,) through the MAC array of weights w (N, K)."""
    x = np.asarray(x, dtype=np.int64)
    wi = np.asarray(w, dtype=np.int64)
    zwi = np.asarray(zw, dtype=np.int64)
    raw = spec.operand == "raw"
    xo = x if raw else x - zx
    wo = wi if raw else wi - zwi[:, None]
    idx = np.flatnonzero(x != zx) if spec.event_driven else np.arange(x.size)
    n = wo.shape[0]
    g, p = spec.adder_tree_width, spec.pre_add_width
    preg = spec.pre_register
    acc = np.zeros(n, dtype=np.int64)
    ev_acc = np.zeros(n, dtype=np.int64)
    ev_pre = np.zeros(n, dtype=np.int64)
    firsts: list[tuple[int, int, int]] = []  # (tile, step, neuron)
    firsts_pre: list[tuple[int, int, int]] = []
    steps = -(-idx.size // g)
    for s in range(steps):
        ids = idx[s * g: (s + 1) * g]
        prods = wo[:, ids] * xo[ids][None, :]
        if p > 1:
            pad = -ids.size % p
            prods = np.concatenate([prods, np.zeros((n, pad), np.int64)], axis=1)
            pre = prods.reshape(n, -1, p).sum(axis=2)
            over = (pre < preg.min) | (pre > preg.max)
            if over.any():
                ev_pre += over.sum(axis=1)
                j = int(np.flatnonzero(over.any(axis=1))[0])
                firsts_pre.append((j // spec.lanes, s, j))
            tree = fit_policy(pre, preg, spec.pre_add_overflow).sum(axis=1)
        else:
            tree = prods.sum(axis=1)
        acc = _add(acc, tree, spec, s, ev_acc, firsts)
    if raw:
        k = x.size
        corr = -zx * wi.sum(axis=1) - zwi * int(x.sum()) + k * zx * zwi
        acc = _add(acc, corr, spec, steps, ev_acc, firsts)
    wraps = ev_acc if spec.overflow in ("wrap", "error") else np.zeros(n, np.int64)
    sats = ev_acc if spec.overflow == "saturate" else np.zeros(n, np.int64)
    first = min(firsts) if firsts else None
    first_pre = min(firsts_pre) if firsts_pre else None
    return QueryAccumulation(
        acc, wraps, sats, ev_pre,
        None if first is None else (first[2], first[1]),
        None if first_pre is None else (first_pre[2], first_pre[1]),
    )


def _add(acc: np.ndarray, tree: np.ndarray, spec: MacSpec, step: int, events: np.ndarray,
         firsts: list[tuple[int, int, int]]) -> np.ndarray:
    """One accumulator addition for every lane; count and remember events."""
    reg = spec.register
    exact = acc + tree
    over = (exact < reg.min) | (exact > reg.max)
    if over.any():
        events += over
        tiles = np.flatnonzero(over) // spec.lanes
        j = int(np.flatnonzero(over)[np.argmin(tiles)])
        firsts.append((j // spec.lanes, step, j))
    return fit_policy(exact, reg, spec.overflow)


def reference_check(net: QuantizedNetwork, cfg: HwConfig, res: SimResult, queries: int
                    ) -> list[str]:
    """Differences between the fast result and a plain step loop on the first queries.

    Per layer and weight path: final accumulators, per-(query, neuron) wrap, saturate and
    pre-add counts, and the first accumulator / pre-add event (simulator/engine/reference.py).
    Layer inputs are the fast path's codes (the feature layer's are checked first).
    """
    from .fast import _mac_spec

    m = min(queries, res.outputs.shape[0])
    diffs: list[str] = []
    for mi, mod in enumerate(net.modules):
        x, zx = res.input_codes[mi][:m], mod.input_zero_point
        for lay in mod.layers:
            hw = cfg.for_layer(lay.name)
            spec = _mac_spec(hw, hw.schedule.mode == "event_driven")
            lr = res.layer(mi, lay.name)
            for p in lay.paths:
                st = lr.mac[p.name]
                rows = {(int(r[0]), int(r[1])): tuple(int(v) for v in r[2:])
                        for r in st.pair_events if r[0] < m}
                want_first = st.first if st.first and st.first[0] < m else None
                want_pre = st.first_pre_add if st.first_pre_add and st.first_pre_add[0] < m \
                    else None
                got_first = got_pre = None
                for q in range(m):
                    ra = accumulate_query(x[q], zx, p.weight, p.zero_point, spec)
                    key = f"{mi}/{lay.name} {p.name} query {q}"
                    if not np.array_equal(ra.acc, lr.acc[p.name][q]):
                        bad = int(np.flatnonzero(ra.acc != lr.acc[p.name][q])[0])
                        diffs.append(f"{key}: accumulator of neuron {bad} differs")
                    ev = np.stack([ra.acc_wrap, ra.acc_saturate, ra.pre_add], axis=1)
                    for j in np.flatnonzero(ev.sum(axis=1)):
                        if rows.pop((q, int(j)), None) != tuple(int(v) for v in ev[j]):
                            diffs.append(f"{key}: events of neuron {j} differ")
                    if got_first is None and ra.first is not None:
                        got_first = (q, *ra.first)
                    if got_pre is None and ra.first_pre_add is not None:
                        got_pre = (q, *ra.first_pre_add)
                for (q, j) in rows:
                    diffs.append(f"{mi}/{lay.name} {p.name} query {q}: fast path has events "
                                 f"on neuron {j}, the reference none")
                if got_first != want_first:
                    diffs.append(f"{mi}/{lay.name} {p.name}: first event {want_first} != "
                                 f"reference {got_first}")
                if got_pre != want_pre:
                    diffs.append(f"{mi}/{lay.name} {p.name}: first pre-add event {want_pre} != "
                                 f"reference {got_pre}")
            x, zx = lr.codes[:m], lay.output_zero_point
    return diffs
