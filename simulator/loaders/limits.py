"""How large a model may be before its weights are read: the weight memory, or a default.

With a hardware config the limit is the config's weight memory (``weights.capacity_kib`` at
``weights.bits`` per weight), the same rule as :meth:`WeightMemory.check_fits`, applied to the
shapes in the file headers before any weight data is read. Without one it is
:data:`~simulator.loaders.safe_npy.MAX_MODEL_WEIGHTS` weights per module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .safe_npy import MAX_MODEL_WEIGHTS

if TYPE_CHECKING:
    from ..config import HwConfig


@dataclass(frozen=True)
class ModelLimits:
    """Largest module a loader reads: ``max_module_bytes`` at ``weight_bits`` per weight.

    ``config_source`` names the config the limit came from (None: the built-in default).
    """

    max_module_bytes: int = MAX_MODEL_WEIGHTS
    weight_bits: int = 8
    config_source: str | None = None

    @classmethod
    def for_config(cls, cfg: HwConfig) -> ModelLimits:
        """The weight memory of ``cfg``, or the built-in default if that is smaller."""
        cap = cfg.weights.capacity_kib * 1024
        default = -(-MAX_MODEL_WEIGHTS * cfg.weights.bits // 8)
        if cap >= default:
            return cls(default, cfg.weights.bits, None)
        return cls(cap, cfg.weights.bits, cfg.source)

    def check_module(self, n_weights: int, where: str, error: Callable[[str], Exception]) -> None:
        """Refuse a module of ``n_weights`` weights that cannot fit, naming the limit."""
        need = (n_weights * self.weight_bits + 7) // 8
        if need <= self.max_module_bytes:
            return
        if self.config_source is None:
            raise error(
                f"{where}: declares {n_weights:,} weights, more than MAX_MODEL_WEIGHTS "
                f"({MAX_MODEL_WEIGHTS:,}) per module; refusing to read it"
            )
        raise error(
            f"{where}: needs {need} bytes of weight memory ({n_weights:,} weights at "
            f"{self.weight_bits} bits) but {self.config_source}: 'weights.capacity_kib' = "
            f"{self.max_module_bytes // 1024} holds {self.max_module_bytes}; refusing to read its "
            f"weights (set weights.capacity_kib >= {-(-need // 1024)})"
        )
