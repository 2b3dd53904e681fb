"""Place recognition around the simulator: images -> spikes, datasets, synthetic route,
VPRTempo training in numpy, quantization to the int8 network, and Recall@N readout.

Submodules (import what you need; nothing heavy happens at import time):

* :mod:`~simulator.vpr.preprocess` - VPRTempo's image preprocessing (numpy + OpenCV).
* :mod:`~simulator.vpr.datasets` - VPRTempo-layout datasets and plain image folders.
* :mod:`~simulator.vpr.synthroute` - deterministic synthetic route generator and cache.
* :mod:`~simulator.vpr.training` - STDP / spike-forcing training, ``train(...)``.
* :mod:`~simulator.vpr.quantize` - per-channel int8 weights, MinMax-calibrated quint8.
* :mod:`~simulator.vpr.readout` - best match, Recall@N, PR curve.
"""

from __future__ import annotations

from .datasets import DatasetError, Traversal, load_codes, load_image, load_traversal
from .preprocess import PreprocessConfig, codes_to_spikes, process_image, process_images
from .readout import best_match, ground_truth, pr_curve, recall_at_n, recalls
from .synthroute import cached_route, generate_route

__all__ = [
    "DatasetError",
    "PreprocessConfig",
    "Traversal",
    "best_match",
    "cached_route",
    "codes_to_spikes",
    "generate_route",
    "ground_truth",
    "load_codes",
    "load_image",
    "load_traversal",
    "pr_curve",
    "process_image",
    "process_images",
    "recall_at_n",
    "recalls",
]
