"""tempo-hwsim: a bit-accurate, cycle-level hardware simulator for the int8 VPRTempo SNN.

``simulator.sweep(...)`` runs a bit-width sweep and returns its table as a pandas DataFrame
(:func:`simulator.exploration.sweep`, docs/sweeps.md); it is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .exploration import sweep


def __getattr__(name: str) -> Any:
    if name == "sweep":
        from .exploration import sweep

        return sweep
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")


__all__ = ["__version__", "sweep"]
