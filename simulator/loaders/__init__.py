"""Model loaders: native ``.npz``, VPRTempo ``.pth`` (needs torch) and the seed's mats folder."""

from __future__ import annotations

import os
from pathlib import Path

from ..network import ModelError, QuantizedNetwork
from .limits import ModelLimits
from .npz import load_npz, save_npz

__all__ = ["load_model", "load_npz", "save_npz", "ModelError", "ModelLimits"]


def load_model(
    path: str | os.PathLike[str], limits: ModelLimits | None = None
) -> QuantizedNetwork:
    """Load a model by its form: ``.npz`` native, ``.pth``/``.pt`` VPRTempo, folder = seed mats.

    No loader ever unpickles Python objects. ``limits`` (e.g.
    ``ModelLimits.for_config(cfg)``) bounds each module's weights, checked from the file
    headers before weight data is read; the default is ``MAX_MODEL_WEIGHTS`` per module.
    """
    p = Path(path)
    if p.is_dir():
        from .seed_mats import load_seed_mats

        return load_seed_mats(p, limits)
    if not p.exists():
        raise ModelError(f"{p}: no such model file or folder")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return load_npz(p, limits)
    if suffix in (".onnx", ".tflite"):  # engine graphs: simulator/formats (engines extra)
        from ..formats import import_model

        return import_model(p)
    if suffix in (".pth", ".pt"):
        from .vprtempo_pth import load_vprtempo_pth

        return load_vprtempo_pth(p, limits=limits)
    raise ModelError(
        f"{p}: unknown model form {suffix!r}; give a .npz (native), a .pth (VPRTempoQuant), "
        "a folder with the seed's mats (if_exc.npy ...), or an engine graph (.onnx, .tflite)"
    )
