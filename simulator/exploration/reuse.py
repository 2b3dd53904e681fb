"""Exact reuse between sweep points: the same network run as ``engine.simulate``, except that a
layer whose hardware, weights and input codes equal those of an earlier point is not run again.

A layer's result (accumulators, overflow counts, codes, cycles) depends only on its input codes,
its weights and quantizers and its own hardware section (``cfg.for_layer``), the weight memory
and ``report.headroom``; the key below holds all of them, so reuse is exact. Points that differ
only in ``energy.*``, ``clock.*``, ``readout.*`` or the output layer's keys reuse everything up
to that point; an input quantization is shared by every point with the same ``[spikes]``.

Not reused (needs an engine change, see docs/sweeps.md): the accumulators of a layer whose
requantizer alone differs, because ``engine.fast.run_layer`` accumulates and requantizes in one
call.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import HwConfig
from ..engine import fast
from ..engine.fast import LayerRun, SimResult
from ..network import QuantizedNetwork
from ..units.readout import join_modules
from ..units.weight_memory import WeightMemory

_BATCH = 512  # the same query batches as engine.simulate (event order and merging)


@dataclass
class LayerCache:
    """Bounded LRU store of layer results and input codes (one per worker process)."""

    max_layers: int = 8
    layers: OrderedDict[Any, list[LayerRun]] = field(default_factory=OrderedDict)
    inputs: dict[Any, tuple[list[np.ndarray], list[tuple[int, int]]]] = field(
        default_factory=dict
    )
    refs: dict[tuple[str, tuple[str, ...]], SimResult] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

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


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def simulate_reusing(
    net: QuantizedNetwork,
    cfg: HwConfig,
    inputs: np.ndarray,
    cache: LayerCache,
    source: str = "input",
) -> SimResult:
    """``engine.simulate(net, cfg, inputs)`` with exact reuse of layers through ``cache``.

    ``net`` must already be narrowed for ``cfg`` (units/weight_requant.py); its weights are
    then fixed by (the original model, ``cfg.weights``), which the key holds.
    """
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
                   tuple(_digest(p.scale) for p in lay.paths))
            runs = cache.get(key)
            if runs is None:
                runs = []
                for s, x, xmax in zip(starts, xs, input_max, strict=True):
                    runs.append(fast.run_layer(mi, mod, lay, x, zx, sx, xmax, hw, wmem, s,
                                               exact))
                cache.put(key, runs)
            per_layer.append(runs)
            xs = [r.codes for r in runs]
            x_digest = _digest(np.concatenate(xs)) if len(xs) > 1 else _digest(xs[0])
            zx, sx = lay.output_zero_point, lay.output_scale
    for bi in range(len(starts)):  # the error policy: earliest event per batch, as simulate
        fast._raise_earliest_error([runs[bi] for runs in per_layer], net, cfg)
    layers = [fast._merge(runs, _BATCH) for runs in per_layer]
    final = [lr.codes for lr in layers if lr.layer == "output"]
    outputs = np.concatenate(final, axis=1)
    scores = join_modules(
        final,
        [m.layer("output").output_scale for m in net.modules],
        [m.layer("output").output_zero_point for m in net.modules],
        cfg.readout.concat if net.layout == "combined" else "codes",
    )
    predictions = np.argmax(scores, axis=1).astype(np.int64)
    cycles = np.sum([lr.cycles for lr in layers], axis=0).astype(np.int64)
    return SimResult(outputs, predictions, codes_per_module, clamps, layers, cycles, scores)
