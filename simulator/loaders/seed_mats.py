"""The seed tutorial's mats folder (split layout).

Files: ``if_exc.npy``, ``if_inh.npy`` (input -> feature, shape (2*K0, K0)), ``fo_exc.npy``,
``fo_inh.npy`` (feature -> output, shape (places, 2*K0)), ``if_scales.npy``, ``fo_scales.npy``
(four scale factors each, seed order [per-slice exc, per-slice inh, per-channel exc,
per-channel inh]). Weights must be integers within int8 (any integer dtype is accepted and
converted losslessly); excitatory weights must be >= 0 and inhibitory weights <= 0.

The seed saves its scale factors with ``allow_pickle=True``; such object arrays are read only
if they hold exactly four finite numbers. The network input is the patch-normalised image as
integer codes 0..255 (input scale 1/255, zero point 0 for float spikes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..network import Layer, ModelError, Module, QuantizedNetwork, WeightPath

SEED_FILES = ("if_exc.npy", "if_inh.npy", "if_scales.npy", "fo_exc.npy", "fo_inh.npy",
              "fo_scales.npy")


def _load(folder: Path, name: str, allow_pickle: bool = False) -> np.ndarray:
    path = folder / name
    if not path.is_file():
        raise ModelError(f"{path}: missing; a seed mats folder needs {', '.join(SEED_FILES)}")
    try:
        return np.load(path, allow_pickle=allow_pickle)
    except ValueError as exc:
        if not allow_pickle and "allow_pickle" in str(exc):
            return _load(folder, name, allow_pickle=True)
        raise ModelError(f"{path}: not a readable .npy ({exc}); is it truncated?") from None
    except (OSError, EOFError) as exc:
        raise ModelError(f"{path}: not a readable .npy ({exc}); is it truncated?") from None


def _weights(folder: Path, name: str, sign: int) -> np.ndarray:
    w = _load(folder, name)
    path = folder / name
    if w.dtype.kind not in "iu":
        raise ModelError(f"{path}: dtype {w.dtype}; seed weights must be integers (int8)")
    if w.ndim != 2 or 0 in w.shape:
        raise ModelError(f"{path}: must be a 2-D (out, in) matrix, found shape {w.shape}")
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
    floats become float64, which represents them exactly.
    """
    raw = np.asarray(_load(folder, name, allow_pickle=False))
    path = folder / name
    values = list(raw.ravel())
    try:
        if raw.dtype == object:
            kinds = {np.asarray(v).dtype for v in values}
            dtype = np.float32 if kinds == {np.dtype(np.float32)} else np.float64
        else:
            dtype = np.float32 if raw.dtype == np.float32 else np.float64
        f = np.array([float(v) for v in values], dtype=dtype)
    except (TypeError, ValueError):
        raise ModelError(f"{path}: scale factors must be 4 numbers") from None
    if f.shape != (4,):
        raise ModelError(f"{path}: needs exactly 4 scale factors, found {f.size}")
    return f


def load_seed_mats(folder: str | Path) -> QuantizedNetwork:
    folder = Path(folder)
    layers = []
    for prefix, lname in (("if", "feature"), ("fo", "output")):
        exc = _weights(folder, f"{prefix}_exc.npy", +1)
        inh = _weights(folder, f"{prefix}_inh.npy", -1)
        if exc.shape != inh.shape:
            raise ModelError(
                f"{folder}: {prefix}_exc.npy {exc.shape} and {prefix}_inh.npy {inh.shape} differ"
            )
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
