"""Execution engines: the fast vectorised path and the schedule (cycle formula).

``simulate`` runs the MAC-array datapath (engine/fast.py) or, when the config selects
``neuromorphic.datapath`` = prodneuron | lif, the Loihi-class time-stepped one
(engine/neuromorphic.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..config import HwConfig
from ..network import QuantizedNetwork
from .fast import InputError, LayerRun, SimResult, check_fit, prepare_inputs
from .fast import simulate as simulate_mac_array
from .neuromorphic import is_neuromorphic, simulate_neuromorphic


def simulate(
    net: QuantizedNetwork,
    cfg: HwConfig,
    inputs: np.ndarray,
    batch: int = 512,
    progress: Callable[[int], None] | None = None,
    source: str = "input",
) -> SimResult:
    """Run ``inputs`` (float spikes or uint8 codes, (Q, K)) through ``net`` on ``cfg``."""
    run = simulate_neuromorphic if is_neuromorphic(cfg) else simulate_mac_array
    return run(net, cfg, inputs, batch=batch, progress=progress, source=source)


__all__ = ["InputError", "LayerRun", "SimResult", "check_fit", "prepare_inputs", "simulate",
           "simulate_mac_array", "simulate_neuromorphic"]
