"""Exact reuse between sweep points: the same network run as ``engine.simulate``, except that
work whose inputs equal those of an earlier point is not done again, at two levels.

* Whole layers. A layer's result (accumulators, overflow counts, codes, cycles) depends only on
  its input codes, its weights and quantizers and its own hardware section (``cfg.for_layer``),
  the weight memory and ``report.headroom``; the layer key holds all of them. Points that
  differ only in ``energy.*``, ``clock.*``, ``readout.*`` or the output layer's keys reuse
  everything up to that point; an input quantization is shared by every point with the same
  ``[spikes]``.
* Accumulators. ``engine.fast.run_layer`` is ``finish_layer(accumulate_layer(...))``; the
  accumulate step (accumulators, overflow counts and a deferred ``error``-policy stop,
  ``k_active``) reads only the input codes and zero point, the paths' weights and zero points
  and ``engine.fast.AccumulateHw`` (accumulator.*, mac.*, schedule.mode/order/time_bins, the
  spike register, report.headroom). It is cached on exactly those, so a layer whose
  requantizer alone differs (``requant.rounding``, ``scheme``, ``multiplier_bits``,
  ``shift``, output clamps, ``throughput``/``latency``, ``[combiner]``, the weight memory's
  port) only reruns ``finish_layer``: a rounding sweep computes the accumulators once.

Both keys hold every input of the cached step, so reuse is exact (bit for bit the results of
``engine.simulate``; tests/test_sweep.py checks reports against single runs).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import HwConfig
from ..engine import fast, simulate
from ..engine.fast import LayerAcc, LayerRun, SimResult
from ..engine.neuromorphic import is_neuromorphic
from ..network import Layer, QuantizedNetwork
from ..units.weight_memory import WeightMemory

_BATCH = 512  # the same query batches as engine.simulate (event order and merging)


@dataclass
class LayerCache:
    """Bounded LRU store of layer results, accumulate steps and input codes (one per worker
    process). ``hits``/``misses`` count whole layers, ``acc_hits``/``acc_misses`` the
    accumulate steps looked up on a whole-layer miss."""

    max_layers: int = 8
    max_accs: int = 8
    layers: OrderedDict[Any, list[LayerRun]] = field(default_factory=OrderedDict)
    accs: OrderedDict[Any, list[LayerAcc]] = field(default_factory=OrderedDict)
    inputs: dict[Any, tuple[list[np.ndarray], list[tuple[int, int]]]] = field(
        default_factory=dict
    )
    refs: dict[tuple[str, tuple[str, ...]], SimResult] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    acc_hits: int = 0
    acc_misses: int = 0

    def get(self, key: Any) -> list[LayerRun] | None:
        got = self.layers.get(key)
        if got is not None:
            self.layers.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
        return got

    def put(self, key: Any, value: list[LayerRun]) -> None:
        self.layers[key] = value
        self.layers.move_to_end(key)
        while len(self.layers) > self.max_layers:
            self.layers.popitem(last=False)

    def get_acc(self, key: Any) -> list[LayerAcc] | None:
        got = self.accs.get(key)
        if got is not None:
            self.accs.move_to_end(key)
            self.acc_hits += 1
        else:
            self.acc_misses += 1
        return got

    def put_acc(self, key: Any, value: list[LayerAcc]) -> None:
        self.accs[key] = value
        self.accs.move_to_end(key)
        while len(self.accs) > self.max_accs:
            self.accs.popitem(last=False)


def _digest(a: np.ndarray) -> str:
    """Content hash of an array: its dtype, shape and bytes."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _paths_key(lay: Layer) -> tuple[tuple[str, str, str], ...]:
    """What the accumulate step reads of a layer: each path's name, weights and zero points."""
    return tuple((p.name, _digest(p.weight), _digest(np.asarray(p.zero_point))) for p in lay.paths)


def _multipliers_key(lay: Layer) -> tuple[str | None, ...]:
    """The layer's stored requantizer multipliers (requant.multipliers = "model")."""
    return tuple(None if a is None else _digest(a)
                 for a in (lay.requant_m0, lay.requant_shift, lay.requant_multiplier))


def simulate_reusing(
    net: QuantizedNetwork,
    cfg: HwConfig,
    inputs: np.ndarray,
    cache: LayerCache,
    source: str = "input",
) -> SimResult:
    """``engine.simulate(net, cfg, inputs)`` with exact reuse of layers through ``cache``.

    ``net`` must already be narrowed for ``cfg`` (units/weight_requant.py); its weights are
    then fixed by (the original model, ``cfg.weights``), which the layer key holds. A
    neuromorphic datapath (engine/neuromorphic.py) runs ``engine.simulate`` without reuse.
    """
    if is_neuromorphic(cfg):
        return simulate(net, cfg, inputs, batch=_BATCH, source=source)
    net.validate()
    fast.check_fit(net, cfg)
    feat = cfg.for_layer("feature")
    in_key = (feat.spikes, tuple((m.input_scale, m.input_zero_point) for m in net.modules),
              _digest(inputs), str(np.asarray(inputs).dtype), source)
    if in_key not in cache.inputs:
        cache.inputs[in_key] = fast.prepare_inputs(net, cfg, inputs, source)
    codes_per_module, clamps = cache.inputs[in_key]
    q_total = codes_per_module[0].shape[0]
    wmem = WeightMemory(cfg.weights)
    exact = cfg.report.headroom == "exact"
    starts = list(range(0, q_total, _BATCH))
    per_layer: list[list[LayerRun]] = []
    for mi, mod in enumerate(net.modules):
        xs = [codes_per_module[mi][s : min(s + _BATCH, q_total)] for s in starts]
        input_max = [x.max(axis=1) for x in xs]  # the module input's, for every layer
        module_digest = x_digest = _digest(codes_per_module[mi])
        zx, sx = mod.input_zero_point, mod.input_scale
        for lay in mod.layers:
            hw = cfg.for_layer(lay.name)
            key = (mi, lay.name, hw, cfg.weights, exact, module_digest, x_digest, zx, sx,
                   lay.output_scale, lay.output_zero_point,
                   tuple(_digest(p.scale) for p in lay.paths), _multipliers_key(lay))
            runs = cache.get(key)
            if runs is None:
                ahw = fast.accumulate_hw(hw, exact)
                acc_key = (ahw, x_digest, zx, _paths_key(lay))
                accs = cache.get_acc(acc_key)
                if accs is None:
                    accs = [fast.accumulate_layer(lay, x, zx, ahw, s)
                            for s, x in zip(starts, xs, strict=True)]
                    cache.put_acc(acc_key, accs)
                runs = [fast.finish_layer(mi, lay, la, sx, xmax, hw, wmem)
                        for la, xmax in zip(accs, input_max, strict=True)]
                cache.put(key, runs)
            per_layer.append(runs)
            xs = [r.codes for r in runs]
            x_digest = _digest(np.concatenate(xs)) if len(xs) > 1 else _digest(xs[0])
            zx, sx = lay.output_zero_point, lay.output_scale
    for bi in range(len(starts)):  # the error policy: earliest event per batch, as simulate
        fast._raise_earliest_error([runs[bi] for runs in per_layer], net, cfg)
    layers = [fast._merge(runs, _BATCH) for runs in per_layer]
    return fast.assemble_result(net, cfg, layers, codes_per_module, clamps)
