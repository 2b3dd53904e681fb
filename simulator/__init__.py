"""tempo-hwsim: a bit-accurate, cycle-level hardware simulator for the int8 VPRTempo SNN."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def sweep(*args: Any, **kwargs: Any) -> Any:
    """Run a bit-width sweep and return its table (pandas DataFrame); see
    :func:`simulator.exploration.sweep` and docs/sweeps.md."""
    from .exploration import sweep as run_sweep

    return run_sweep(*args, **kwargs)
