"""Weight memory: stores each layer's int8 weights; checks width and capacity; gives bandwidth.

Organisation: ``weights.banks`` banks of ``weights.word_bits``-bit words, each with
``weights.read_ports`` read ports. Weights are packed floor(word_bits / weights.bits) to a
word, so the memory delivers ``banks * read_ports * floor(word_bits / bits)`` weights per
cycle. Capacity (``weights.capacity_kib``) must hold all layers of the largest module at
``weights.bits`` per weight (modules are loaded in turn).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ConfigError, WeightsConfig
from ..fixedpoint import Register
from ..network import QuantizedNetwork


@dataclass(frozen=True)
class WeightMemory:
    cfg: WeightsConfig

    @property
    def register(self) -> Register:
        return Register(self.cfg.bits, self.cfg.signed)

    @property
    def weights_per_cycle(self) -> int:
        per_word = self.cfg.word_bits // self.cfg.bits
        return self.cfg.banks * self.cfg.read_ports * per_word

    @property
    def capacity_bytes(self) -> int:
        return self.cfg.capacity_kib * 1024

    def check_fits(self, net: QuantizedNetwork, config_name: str) -> None:
        """Raise ConfigError if any weight needs more bits than the memory stores, or if the
        largest module does not fit."""
        if self.cfg.word_bits < self.cfg.bits:
            raise ConfigError(
                f"{config_name}: 'weights.word_bits' = {self.cfg.word_bits} is narrower than "
                f"one weight ('weights.bits' = {self.cfg.bits})"
            )
        reg = self.register
        for mi, mod in enumerate(net.modules):
            for lay in mod.layers:
                for p in lay.paths:
                    lo, hi = weight_range(p.weight)
                    if not reg.contains(lo, hi):
                        raise ConfigError(
                            f"{config_name}: module {mi} layer {lay.name!r} {p.name} weights "
                            f"span {lo}..{hi} but 'weights.bits' = {self.cfg.bits} "
                            f"({'signed' if self.cfg.signed else 'unsigned'}) holds "
                            f"{reg.min}..{reg.max}; widen weights.bits or requantize the model"
                        )
        need = max(net.weight_bytes(i, self.cfg.bits) for i in range(len(net.modules)))
        if need > self.capacity_bytes:
            raise ConfigError(
                f"{config_name}: the largest module needs {need} bytes of weight memory but "
                f"'weights.capacity_kib' = {self.cfg.capacity_kib} holds {self.capacity_bytes}; "
                f"set weights.capacity_kib >= {-(-need // 1024)}"
            )

    def bytes_read(self, weights_read: int | np.ndarray) -> np.ndarray:
        """Bytes read for a number of weights (whole words)."""
        per_word = self.cfg.word_bits // self.cfg.bits
        words = -(-np.asarray(weights_read, dtype=np.int64) // per_word)
        return words * (self.cfg.word_bits // 8)


def weight_range(w: np.ndarray) -> tuple[int, int]:
    """(min, max) of a weight matrix; kept with a read-only one (a run checks them each time,
    ~3 ms for the bench's 6272 x 3136 layer)."""
    from ..kernels_ort import _sessions_for  # the per-matrix dict kept with read-only arrays

    if not w.size:
        return 0, 0
    store = _sessions_for(w, None)
    if store is not None and "weight_range" in store:
        return store["weight_range"]
    lo, hi = int(w.min()), int(w.max())
    if store is not None:
        store["weight_range"] = (lo, hi)
    return lo, hi
