"""Stepwise execution: the schedule advanced cycle by cycle, one register write at a time.

The same units as the fast path (operands, pre-add and accumulator registers with their
overflow policies, requantizer, combiner) driven by an explicit cycle counter that follows the
output-stationary schedule of simulator/engine/schedule.py and docs/schedule.md:

    for each query, module, layer:
        for each tile of ``mac.lanes`` neurons:
            for each weight path (combined | excitatory, inhibitory):
                for each step (G = accumulator.adder_tree_width inputs, ascending; in
                event_driven mode only inputs != zero point):
                    c_t - 1 fetch (stall) cycles, then one cycle in which every busy lane
                    multiplies, pre-adds (groups of mac.pre_add_width), sums the tree and adds
                    it into its accumulator (overflow policy applied to that addition)
                    (schedule.order = time_bin: the tree output goes into an exact per-lane
                    bin register; each bin whose last input is in the step is added to the
                    accumulator, one write per bin, in bin order -- see BinAdd)
                [mac.operand = raw: one more step adding the offset correction]
            drain: ceil(n_t / requant.throughput) cycles through the requantizer / combiner
        requant.latency cycles to flush the requantizer pipeline

:class:`StepwiseRun` yields one op object per step (:class:`MacOp`, all lanes of a tile),
per requantizer issue cycle (:class:`DrainOp`) and per flush cycle (:class:`FlushOp`), and
collects a :class:`StepwiseResult` that :func:`compare_with_fast` checks bit for bit against
the fast path (outputs, accumulators, overflow counts per neuron and per pair, first events,
min_safe_acc_bits, clamps, cycles and stalls).

All values are exact Python-sized integers held in int64 arrays; registers are signed two's
complement of the configured width; roundings are those of the requantizer units.

This module holds the engine (:class:`StepwiseRun`, :func:`simulate_stepwise`); the window and
op records are in stepwise_ops.py, the collected result and :func:`compare_with_fast` in
stepwise_result.py, time-bin accumulation in stepwise_bins.py. Every name is importable from
here as before.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass

import numpy as np

from ..config import ConfigError, HwConfig, LayerHw, requant_clamp
from ..fixedpoint import Register, RegisterOverflowError
from ..network import Layer, QuantizedNetwork
from ..units.combiner import combine
from ..units.mac_array import fit_policy, overflow_error
from ..units.readout import join_modules
from ..units.requantizer import model_multipliers, requantize, seed_floor_divide
from ..units.spike_order import time_bin_of
from ..units.weight_memory import WeightMemory
from .fast import SimResult, check_fit, prepare_inputs
from .stepwise_bins import NO_EVENT, BinAdd, step_bins
from .stepwise_ops import DrainOp, FlushOp, MacOp, Op, Window
from .stepwise_result import PathStats, StepLayer, StepwiseResult, compare_with_fast

__all__ = [
    "BinAdd", "DrainOp", "FlushOp", "MacOp", "Op", "PathStats", "StepLayer", "StepwiseResult",
    "StepwiseRun", "Window", "check_steppable", "compare_with_fast", "simulate_stepwise",
]


@dataclass
class _LayerOutcome:
    acc: dict[str, np.ndarray]
    codes: np.ndarray
    unclamped: np.ndarray
    clamp_low: np.ndarray
    clamp_high: np.ndarray
    cycles: int
    stalls: int


def check_steppable(cfg: HwConfig) -> None:
    """Raise ConfigError for configs this engine does not step (and so cannot trace)."""
    if cfg.neuromorphic.datapath != "off":
        raise ConfigError(f"{cfg.source}: the stepwise (MAC-array) engine does not run "
                          f"'neuromorphic.datapath' = {cfg.neuromorphic.datapath!r}; its "
                          "reference is Lava (tests/golden/lava, docs/neuromorphic.md)")


class StepwiseRun:
    """Cycle-by-cycle run of ``net`` on ``cfg`` for the input codes of each module.

    codes_per_module: list of int64 (Q, K) codes (see fast.prepare_inputs).
    window: what to yield (and, with a ``reference``, what to compute at all).
    reference: a fast-path SimResult of the same run. With it, layer inputs and the cycle
        base of each query and layer come from the reference, so only tiles that overlap the
        window are stepped (for traces); ``result`` is then not meaningful. Without it every
        query up to the window's last one is stepped in full (the cross-check).
    """

    def __init__(
        self,
        net: QuantizedNetwork,
        cfg: HwConfig,
        codes_per_module: list[np.ndarray],
        window: Window | None = None,
        reference: SimResult | None = None,
    ) -> None:
        check_steppable(cfg)
        self.net = net
        self.cfg = cfg
        self.codes = codes_per_module
        self.window = window or Window()
        self.reference = reference
        self.wmem = WeightMemory(cfg.weights)
        self._result: StepwiseResult | None = None
        self._cyc = 0

    @property
    def result(self) -> StepwiseResult:
        if self._result is None:
            for _ in self.ops():
                pass
        assert self._result is not None
        return self._result

    def ops(self) -> Iterator[Op]:
        """Yield every op inside the window, in cycle order."""
        win = self.window
        q_total = self.codes[0].shape[0]
        q_last = q_total - 1 if win.queries is None else min(win.queries[1], q_total - 1)
        ref = self.reference
        q_count = q_last + 1
        layer_keys = [(mi, lay.name) for mi, mod in enumerate(self.net.modules)
                      for lay in mod.layers]
        acc_store: dict[tuple[int, str], dict[str, np.ndarray]] = {}
        out_store: dict[tuple[int, str], dict[str, np.ndarray]] = {}
        stats: dict[tuple[int, str], dict[str, PathStats]] = {}
        for mi, mod in enumerate(self.net.modules):
            for lay in mod.layers:
                n = lay.out_features
                key = (mi, lay.name)
                acc_store[key] = {p.name: np.zeros((q_count, n), np.int64) for p in lay.paths}
                out_store[key] = {
                    name: np.zeros((q_count, n), np.int64) for name in ("codes", "unclamped")
                }
                out_store[key]["cycles"] = np.zeros(q_count, np.int64)
                out_store[key]["stalls"] = np.zeros(q_count, np.int64)
                zeros = np.zeros(n, dtype=np.int64)
                stats[key] = {p.name: PathStats(zeros.copy(), zeros.copy(), zeros.copy())
                              for p in lay.paths}
                out_store[key]["clamp_low"] = zeros.copy()
                out_store[key]["clamp_high"] = zeros.copy()
        qbase = 0
        ref_qbase = None
        if ref is not None:
            ref_qbase = np.concatenate([[0], np.cumsum(ref.cycles_per_query)]).astype(np.int64)
        for q in range(q_count):
            if ref is not None:
                if not win.query_ok(q):
                    continue
                assert ref_qbase is not None
                qbase = int(ref_qbase[q])
            cyc = qbase
            for mi, mod in enumerate(self.net.modules):
                x = self.codes[mi][q]
                input_max = int(x.max())
                zx, sx = mod.input_zero_point, mod.input_scale
                for lay in mod.layers:
                    key = (mi, lay.name)
                    hw = self.cfg.for_layer(lay.name)
                    inside = win.query_ok(q) and win.module_ok(mi) and win.layer_ok(lay.name)
                    try:
                        x = yield from self._layer_step(
                            q, mi, lay, x, zx, sx, input_max, hw, cyc, inside, stats[key],
                            acc_store[key], out_store[key],
                        )
                    except RegisterOverflowError as exc:  # the same words as the fast path
                        raise RegisterOverflowError(
                            f"{self.net.source}: module {mi} layer {lay.name!r} on "
                            f"{self.cfg.source}: {exc}", exc.flat_index, exc.value,
                        ) from None
                    cyc = self._cyc
                    zx, sx = lay.output_zero_point, lay.output_scale
            qbase = cyc
        layers = []
        for key in layer_keys:
            st = out_store[key]
            layers.append(StepLayer(
                key[0], key[1], acc_store[key], st["codes"], st["unclamped"], stats[key],
                st["clamp_low"], st["clamp_high"], st["cycles"], st["stalls"],
            ))
        finals = [lr.codes for lr in layers if lr.layer == "output"]
        outputs = np.concatenate(finals, axis=1)
        cycles = np.sum([lr.cycles for lr in layers], axis=0).astype(np.int64)
        scores = join_modules(
            finals,
            [m.layer("output").output_scale for m in self.net.modules],
            [m.layer("output").output_zero_point for m in self.net.modules],
            self.cfg.readout.concat if self.net.layout == "combined" else "codes",
        )
        self._result = StepwiseResult(
            outputs, np.argmax(scores, axis=1).astype(np.int64), layers, cycles
        )

    def _layer_step(
        self,
        q: int,
        mi: int,
        lay: Layer,
        x: np.ndarray,
        zx: int,
        sx: float,
        input_max: int,
        hw: LayerHw,
        cyc: int,
        inside: bool,
        stats: dict[str, PathStats],
        acc_store: dict[str, np.ndarray],
        st: dict[str, np.ndarray],
    ) -> Generator[Op, None, np.ndarray]:
        """Step (or, with a reference, skip) one layer; returns the next layer's input codes
        and leaves the cycle after the layer in ``self._cyc``."""
        ref = self.reference
        if ref is not None:
            lr = ref.layer(mi, lay.name)
            if inside:
                yield from self._layer(q, mi, lay, x, zx, sx, input_max, hw, cyc, True, stats)
            self._cyc = cyc + int(lr.cycles[q])
            return lr.codes[q]
        outcome = yield from self._layer(
            q, mi, lay, x, zx, sx, input_max, hw, cyc, inside, stats
        )
        self._cyc = cyc + outcome.cycles
        for name, a in outcome.acc.items():
            acc_store[name][q] = a
        st["codes"][q] = outcome.codes
        st["unclamped"][q] = outcome.unclamped
        st["cycles"][q] = outcome.cycles
        st["stalls"][q] = outcome.stalls
        st["clamp_low"] += outcome.clamp_low
        st["clamp_high"] += outcome.clamp_high
        return outcome.codes

    def _layer(
        self,
        q: int,
        mi: int,
        lay: Layer,
        x: np.ndarray,
        zx: int,
        sx: float,
        input_max: int,
        hw: LayerHw,
        base: int,
        emit: bool,
        stats: dict[str, PathStats],
    ) -> Generator[Op, None, _LayerOutcome]:
        """Step one layer of one query from cycle ``base``; yields ops if ``emit``."""
        win = self.window
        skip_ok = self.reference is not None  # tiles outside the window need not be stepped
        event = hw.schedule.mode == "event_driven"
        raw = hw.mac.operand == "raw"
        g_width = hw.accumulator.adder_tree_width
        p_width = hw.mac.pre_add_width
        lanes = hw.mac.lanes
        bw = self.wmem.weights_per_cycle
        thr = hw.requant.throughput
        acc_reg = Register(hw.accumulator.bits, True)
        pre_reg = Register(hw.mac.pre_add_bits, True)
        x = np.asarray(x, dtype=np.int64)
        k = x.size
        n_out = lay.out_features
        idx = np.flatnonzero(x != zx) if event else np.arange(k)
        binned = hw.schedule.order == "time_bin"
        if hw.schedule.order in ("time", "time_bin"):  # larger code first, ties by index
            idx = idx[np.argsort(-x[idx], kind="stable")]
        # time_bin: bin of each input in time order (non-decreasing) and where each bin ends
        bin_pos = time_bin_of(x[idx], hw.schedule.time_bins,
                              Register(hw.spikes.bits, hw.spikes.signed)) if binned else None
        x_op = x if raw else x - zx
        steps_mac = -(-idx.size // g_width)
        n_steps = steps_mac + (1 if raw else 0)
        paths = lay.paths
        acc_out = {p.name: np.zeros(n_out, np.int64) for p in paths}
        codes = np.zeros(n_out, np.int64)
        unclamped = np.zeros(n_out, np.int64)
        clamp_low = np.zeros(n_out, np.int64)
        clamp_high = np.zeros(n_out, np.int64)
        cyc = base
        stalls = 0
        for t, n0 in enumerate(range(0, n_out, lanes)):
            nb = np.arange(n0, min(n0 + lanes, n_out))
            n = nb.size
            c = -(-(n * g_width) // bw)
            drain = -(-n // thr)
            span = len(paths) * n_steps * c + drain
            wanted = emit and win.neurons_overlap(n0, n0 + n - 1) and win.cycles_overlap(
                cyc, cyc + span - 1
            )
            if skip_ok and not wanted:
                cyc += span
                stalls += len(paths) * n_steps * (c - 1)
                continue
            for path in paths:
                st = stats[path.name]
                w = path.weight[nb].astype(np.int64)
                zw = path.zero_point[nb].astype(np.int64)
                w_op = w if raw else w - zw[:, None]
                acc = np.zeros(n, np.int64)
                unb = np.zeros(n, np.int64)
                open_sum = np.zeros(n, np.int64)  # time_bin: the open bin's exact sum
                for s in range(n_steps):
                    first_cycle = cyc
                    cyc += c
                    stalls += c - 1
                    if s < steps_mac:
                        ids = idx[s * g_width : (s + 1) * g_width]
                        prods = w_op[:, ids] * x_op[ids][None, :]
                        kind = "mac"
                        pre_exact = pre_value = pre_kind = None
                        if p_width > 1:
                            pad = -ids.size % p_width
                            pp = np.concatenate([prods, np.zeros((n, pad), np.int64)], axis=1)
                            pre_exact = pp.reshape(n, -1, p_width).sum(axis=2)
                            over = (pre_exact < pre_reg.min) | (pre_exact > pre_reg.max)
                            pre_kind = np.where(over, hw.mac.pre_add_overflow, NO_EVENT)
                            if over.any():
                                self._pre_events(q, nb, t, s, over, pre_exact, pre_reg, hw, st)
                            pre_value = fit_policy(pre_exact, pre_reg, hw.mac.pre_add_overflow)
                            tree = pre_value.sum(axis=1)
                        else:
                            tree = prods.sum(axis=1)
                        if bin_pos is not None:  # time_bin: the bins' writes, then next step
                            acc_start = acc
                            acc, open_sum, unb, adds = step_bins(
                                q, nb, s, g_width, idx, bin_pos, prods, acc, open_sum, unb,
                                acc_reg, hw.accumulator.overflow, st)
                            if emit and win.cycles_overlap(first_cycle, cyc - 1):
                                yield self._bin_op(q, mi, lay.name, path.name, t, s,
                                                   first_cycle, cyc - 1, nb, ids, x, x_op,
                                                   w_op, prods, tree, acc_start, adds, bw,
                                                   acc_reg.bits)
                            continue
                    else:  # raw operands: the offset correction is one more addition
                        ids = np.zeros(0, np.int64)
                        prods = np.zeros((n, 0), np.int64)
                        pre_exact = pre_value = pre_kind = None
                        kind = "correction"
                        tree = (-zx * w.sum(axis=1)) - zw * int(x.sum()) + k * zx * zw
                    exact = acc + tree
                    over = (exact < acc_reg.min) | (exact > acc_reg.max)
                    policy = hw.accumulator.overflow
                    if over.any():
                        self._acc_events(q, nb, s, over, exact, acc_reg, policy, st)
                    after = fit_policy(exact, acc_reg, policy)
                    unb = unb + tree
                    st.partial_min = min(st.partial_min, int(unb.min()))
                    st.partial_max = max(st.partial_max, int(unb.max()))
                    if emit and win.cycles_overlap(first_cycle, cyc - 1):
                        yield MacOp(
                            q, mi, lay.name, path.name, t, s, kind, first_cycle, cyc - 1, nb,
                            ids, x[ids], x_op[ids], w_op[:, ids], prods, pre_exact, pre_value,
                            pre_kind, tree, acc, exact, after,
                            np.where(over, policy, NO_EVENT), bw, acc_reg.bits, p_width,
                            pre_reg.bits,
                        )
                    acc = after
                if unb.size:
                    st.max_abs_acc = max(st.max_abs_acc, int(np.abs(unb).max()))
                acc_out[path.name][nb] = acc
            for d0 in range(0, n, thr):
                sel = slice(d0, d0 + thr)
                ch = nb[sel]
                op = self._drain(q, mi, lay, hw, t, cyc, ch, acc_out, sx, input_max)
                codes[ch] = op.codes
                unclamped[ch] = op.unclamped
                clamp_low[ch] += op.clamp_kind == "clamp_low"
                clamp_high[ch] += op.clamp_kind == "clamp_high"
                if emit and win.cycles_overlap(cyc, cyc):
                    yield op
                cyc += 1
        for i in range(hw.requant.latency):
            if emit and win.cycles_overlap(cyc, cyc):
                yield FlushOp(q, mi, lay.name, cyc, i)
            cyc += 1
        return _LayerOutcome(acc_out, codes, unclamped, clamp_low, clamp_high, cyc - base, stalls)

    @staticmethod
    def _bin_op(
        q: int, mi: int, layer: str, path: str, tile: int, step: int, first_cycle: int,
        cycle: int, nb: np.ndarray, ids: np.ndarray, x: np.ndarray, x_op: np.ndarray,
        w_op: np.ndarray, prods: np.ndarray, tree: np.ndarray, acc_start: np.ndarray,
        adds: list[BinAdd], bw: int, acc_bits: int,
    ) -> MacOp:
        """The MacOp of one time_bin step (see MacOp: acc_* summarise the step's writes)."""
        kinds = np.full(nb.size, NO_EVENT, dtype="<U8")
        exact = after = acc_start
        for a in adds:
            kinds = np.where(a.acc_kind != NO_EVENT, a.acc_kind, kinds)
            exact, after = a.acc_exact, a.acc_after
        return MacOp(q, mi, layer, path, tile, step, "mac", first_cycle, cycle, nb, ids, x[ids],
                     x_op[ids], w_op[:, ids], prods, None, None, None, tree, acc_start, exact,
                     after, kinds, bw, acc_bits, 1, 0, tuple(adds))

    def _pre_events(
        self,
        q: int,
        nb: np.ndarray,
        tile: int,
        step: int,
        over: np.ndarray,
        pre_exact: np.ndarray,
        reg: Register,
        hw: LayerHw,
        st: PathStats,
    ) -> None:
        cnt = over.sum(axis=1)
        st.pre_add_events[nb] += cnt
        for i in np.flatnonzero(cnt):
            st.pairs.setdefault((q, int(nb[i])), [0, 0, 0])[2] += int(cnt[i])
        i = int(np.flatnonzero(cnt)[0])  # lowest lane; its earliest group
        gi = int(np.flatnonzero(over[i])[0])
        if st.first_pre_add is None:
            st.first_pre_add = (q, int(nb[i]), step)
        if hw.mac.pre_add_overflow == "error":
            raise overflow_error("pre-add", q, int(nb[i]), step, int(pre_exact[i, gi]), reg)

    def _acc_events(
        self,
        q: int,
        nb: np.ndarray,
        step: int,
        over: np.ndarray,
        exact: np.ndarray,
        reg: Register,
        policy: str,
        st: PathStats,
    ) -> None:
        col = 0 if policy in ("wrap", "error") else 1
        target = st.acc_wrap if col == 0 else st.acc_saturate
        target[nb[over]] += 1
        for j in nb[over]:
            st.pairs.setdefault((q, int(j)), [0, 0, 0])[col] += 1
        i = int(np.flatnonzero(over)[0])
        if st.first is None:
            st.first = (q, int(nb[i]), step)
        if policy == "error":
            raise overflow_error("accumulator", q, int(nb[i]), step, int(exact[i]), reg)

    def _drain(
        self,
        q: int,
        mi: int,
        lay: Layer,
        hw: LayerHw,
        tile: int,
        cycle: int,
        ch: np.ndarray,
        acc_out: dict[str, np.ndarray],
        sx: float,
        input_max: int,
    ) -> DrainOp:
        """Requantize (and combine) the accumulators of neurons ``ch`` in one cycle."""
        rq = hw.requant
        acc = {name: a[ch].copy() for name, a in acc_out.items()}
        scaled: dict[str, np.ndarray] = {}
        out_reg = Register(rq.output_bits, rq.output_signed)
        if rq.scheme == "seed_floor_divide":
            f = lay.factors
            assert f is not None
            exc = seed_floor_divide(acc["excitatory"][None, :], f, rq.exc_divisors, 0, 0)
            inh = seed_floor_divide(
                acc["inhibitory"][None, :], f, rq.inh_divisors, rq.inh_pre_offset,
                rq.inh_post_offset,
            )
            scaled = {"excitatory": exc[0], "inhibitory": inh[0]}
            cb = hw.combiner
            if cb.clip_high == "input_max":
                hi = input_max
            elif cb.clip_high == "register":
                hi = out_reg.max
            else:
                hi = int(cb.clip_high)
            codes, unclamped, _ = combine(
                exc, inh, f, cb.exc_divisor, cb.inh_divisor, cb.inh_offset, cb.scale,
                cb.zero_point, cb.cast_rounding, cb.clip_low, np.array([hi], np.int64),
            )
            lo = cb.clip_low
        else:
            p = lay.paths[0]
            lo, hi = requant_clamp(rq)
            stored = model_multipliers(lay, rq, f"m{mi}.{lay.name}")
            codes, unclamped, _ = requantize(
                acc["combined"][None, :], rq.scheme, sx, p.scale[ch], lay.output_scale,
                lay.output_zero_point, rq.rounding, (lo, hi), rq.multiplier_bits, rq.shift,
                None if stored is None else stored.channels(ch),
            )
        u = unclamped[0]
        kind = np.where(u < lo, "clamp_low", np.where(u > hi, "clamp_high", NO_EVENT))
        return DrainOp(
            q, mi, lay.name, tile, cycle, ch, acc, scaled, u, codes[0], kind, out_reg.bits,
            rq.latency,
        )


def simulate_stepwise(
    net: QuantizedNetwork,
    cfg: HwConfig,
    inputs: np.ndarray,
    window: Window | None = None,
    source: str = "input",
) -> StepwiseResult:
    """Run ``inputs`` (as for engine.simulate) cycle by cycle; returns the collected result."""
    check_steppable(cfg)
    net.validate()
    check_fit(net, cfg)
    codes, _ = prepare_inputs(net, cfg, inputs, source)
    return StepwiseRun(net, cfg, codes, window).result
