"""The seed tutorial's mats folder (split layout).

Files: ``if_exc.npy``, ``if_inh.npy`` (input -> feature, shape (2*K0, K0)), ``fo_exc.npy``,
``fo_inh.npy`` (feature -> output, shape (places, 2*K0)), ``if_scales.npy``, ``fo_scales.npy``
(four scale factors each, seed order [per-slice exc, per-slice inh, per-channel exc,
per-channel inh]). Weights must be integers within int8 (any integer dtype is accepted and
converted losslessly); excitatory weights must be >= 0 and inhibitory weights <= 0.

The seed saves its scale factors with ``allow_pickle=True``; such object arrays are read only
through a numbers-only unpickler (numpy's array reconstruction and plain numbers, no other
global) and only if they hold exactly four finite numbers. The network input is the
patch-normalised image as integer codes 0..255 (input scale 1/255, zero point 0 for float spikes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..network import Layer, ModelError, Module, QuantizedNetwork, WeightPath
from .limits import ModelLimits
from .safe_npy import (
    MAX_MODEL_WEIGHTS,
    NpyHeader,
    check_numeric,
    load_npy,
    load_npy_numbers,
    read_npy_header,
)

SEED_FILES = ("if_exc.npy", "if_inh.npy", "if_scales.npy", "fo_exc.npy", "fo_inh.npy",
              "fo_scales.npy")


def _path(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise ModelError(f"{path}: missing; a seed mats folder needs {', '.join(SEED_FILES)}")
    return path


def _weight_header(folder: Path, name: str) -> NpyHeader:
    """The header of a weight file, checked (integer dtype, 2-D, non-empty) before its data."""
    path = _path(folder, name)
    try:
        with open(path, "rb") as fh:
            hdr = read_npy_header(fh, str(path), ModelError)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    check_numeric(hdr, str(path), ModelError, "iuf")
    if hdr.dtype.kind not in "iu":
        raise ModelError(f"{path}: dtype {hdr.dtype}; seed weights must be integers (int8)")
    if len(hdr.shape) != 2 or 0 in hdr.shape:
        raise ModelError(
            f"{path}: must be a 2-D (out, in) matrix with no empty dimension, found shape "
            f"{hdr.shape}"
        )
    return hdr


def _weights(folder: Path, name: str, sign: int) -> np.ndarray:
    path = _path(folder, name)
    w = load_npy(path, ModelError, MAX_MODEL_WEIGHTS, "MAX_MODEL_WEIGHTS", kinds="iu")
    lo, hi = int(w.min()), int(w.max())
    if lo < -128 or hi > 127:
        raise ModelError(f"{path}: weights span {lo}..{hi}, outside int8 (-128..127)")
    if sign > 0 and lo < 0:
        raise ModelError(f"{path}: excitatory weights must be >= 0, found {lo}")
    if sign < 0 and hi > 0:
        raise ModelError(f"{path}: inhibitory weights must be <= 0, found {hi}")
    return w.astype(np.int8)


def _factors(folder: Path, name: str) -> np.ndarray:
    """Four scale factors, kept in their stored float type (the seed multiplies them in it).

    float32 stays float32 (the seed's s0*s2 is then a float32 product); integers and Python
    floats become float64, which represents them exactly. The seed's object arrays are read
    through a numbers-only unpickler (see :func:`~simulator.loaders.safe_npy.load_npy_numbers`).
    """
    return load_npy_numbers(_path(folder, name), 4, ModelError)


def load_seed_mats(folder: str | Path, limits: ModelLimits | None = None) -> QuantizedNetwork:
    """Read a seed mats folder; every file's header is checked before its data is read."""
    folder = Path(folder)
    limits = limits or ModelLimits()
    heads = {n: _weight_header(folder, n)
             for n in ("if_exc.npy", "if_inh.npy", "fo_exc.npy", "fo_inh.npy")}
    for prefix in ("if", "fo"):
        a, b = heads[f"{prefix}_exc.npy"], heads[f"{prefix}_inh.npy"]
        if a.shape != b.shape:
            raise ModelError(
                f"{folder}: {prefix}_exc.npy {a.shape} and {prefix}_inh.npy {b.shape} differ; "
                "both paths of a layer have the same (out, in) shape"
            )
    limits.check_module(sum(h.size for h in heads.values()), str(folder), ModelError)
    layers = []
    for prefix, lname in (("if", "feature"), ("fo", "output")):
        exc = _weights(folder, f"{prefix}_exc.npy", +1)
        inh = _weights(folder, f"{prefix}_inh.npy", -1)
        n = exc.shape[0]
        ones = np.ones(n, dtype=np.float64)
        zeros = np.zeros(n, dtype=np.int64)
        layers.append(
            Layer(
                lname,
                (WeightPath("excitatory", exc, ones, zeros),
                 WeightPath("inhibitory", inh, ones.copy(), zeros.copy())),
                factors=_factors(folder, f"{prefix}_scales.npy"),
            )
        )
    meta = {"source": "seed mats folder", "inh_zero_point": 127, "combined_scale": 58,
            "combined_zero_point": 61}
    net = QuantizedNetwork("split", (Module(1.0 / 255.0, 0, tuple(layers)),), meta, str(folder))
    net.validate()
    return net
