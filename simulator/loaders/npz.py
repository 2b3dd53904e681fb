"""Native model format: one uncompressed or compressed ``.npz`` file.

Format ``tempo-hwsim-model/1`` (documented in docs/model-format.md). Keys:

==============================================  =========  =================================
key                                             dtype      meaning
==============================================  =========  =================================
``format``                                      str        ``"tempo-hwsim-model/1"``
``layout``                                      str        ``"combined"`` or ``"split"``
``modules``                                     int64      number of modules M
``metadata``                                    str        JSON object (provenance, training)
``m{i}.input.scale`` / ``.zero_point``          f64 / i64  module i's input quantizer (quint8)
``m{i}.{layer}.{path}.weight``                  int8       (out, in)
``m{i}.{layer}.{path}.scale``                   f64        (out,) per-channel weight scales
``m{i}.{layer}.{path}.zero_point``              i64        (out,) weight zero points
``m{i}.{layer}.{path}.bias``                    f32        (out,) optional
``m{i}.{layer}.output.scale`` / ``.zero_point`` f64 / i64  layer output quantizer (combined)
``m{i}.{layer}.factors``                        f32/f64    (4,) seed scale factors (split)
==============================================  =========  =================================

``layer`` is ``feature`` or ``output``; ``path`` is ``combined``, ``excitatory`` or
``inhibitory``.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..network import (
    LAYER_NAMES,
    PATHS_BY_LAYOUT,
    Layer,
    ModelError,
    Module,
    QuantizedNetwork,
    WeightPath,
)

FORMAT = "tempo-hwsim-model/1"


def save_npz(net: QuantizedNetwork, path: str | os.PathLike[str], compress: bool = True) -> None:
    """Write ``net`` to ``path`` atomically (temporary file, then rename)."""
    net.validate()
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "layout": np.array(net.layout),
        "modules": np.array(len(net.modules), dtype=np.int64),
        "metadata": np.array(json.dumps(net.metadata, sort_keys=True)),
    }
    for i, mod in enumerate(net.modules):
        arrays[f"m{i}.input.scale"] = np.array(mod.input_scale, dtype=np.float64)
        arrays[f"m{i}.input.zero_point"] = np.array(mod.input_zero_point, dtype=np.int64)
        for lay in mod.layers:
            pre = f"m{i}.{lay.name}"
            for p in lay.paths:
                arrays[f"{pre}.{p.name}.weight"] = p.weight
                arrays[f"{pre}.{p.name}.scale"] = p.scale.astype(np.float64)
                arrays[f"{pre}.{p.name}.zero_point"] = p.zero_point.astype(np.int64)
                if p.bias is not None:
                    arrays[f"{pre}.{p.name}.bias"] = p.bias.astype(np.float32)
            arrays[f"{pre}.output.scale"] = np.array(lay.output_scale, dtype=np.float64)
            arrays[f"{pre}.output.zero_point"] = np.array(lay.output_zero_point, dtype=np.int64)
            if lay.factors is not None:
                arrays[f"{pre}.factors"] = lay.factors  # float32 or float64, as loaded
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            (np.savez_compressed if compress else np.savez)(fh, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_npz(path: str | os.PathLike[str]) -> QuantizedNetwork:
    """Read a native model; raise ModelError naming the file and the missing/bad key."""
    path = Path(path)
    src = str(path)
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ModelError(f"{src}: no such model file") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelError(f"{src}: not a readable .npz model ({exc}); is it truncated?") from None
    try:
        with data:
            files = set(data.files)

            def get(key: str) -> np.ndarray:
                if key not in files:
                    raise ModelError(f"{src}: missing key {key!r} (format {FORMAT})")
                try:
                    return data[key]
                except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                    raise ModelError(f"{src}: key {key!r} is unreadable ({exc})") from None

            fmt = str(get("format"))
            if fmt != FORMAT:
                raise ModelError(f"{src}: format is {fmt!r}, this version reads {FORMAT!r}")
            layout = str(get("layout"))
            if layout not in PATHS_BY_LAYOUT:
                raise ModelError(f"{src}: layout must be 'combined' or 'split', not {layout!r}")
            try:
                metadata = json.loads(str(get("metadata")))
            except json.JSONDecodeError as exc:
                raise ModelError(f"{src}: key 'metadata' is not valid JSON ({exc})") from None
            n_mod = int(get("modules"))
            if n_mod < 1:
                raise ModelError(f"{src}: 'modules' must be >= 1, found {n_mod}")
            mods = []
            for i in range(n_mod):
                layers = []
                for lname in LAYER_NAMES:
                    pre = f"m{i}.{lname}"
                    paths = []
                    for pname in PATHS_BY_LAYOUT[layout]:
                        w = get(f"{pre}.{pname}.weight")
                        if w.dtype != np.int8:
                            raise ModelError(
                                f"{src}: {pre}.{pname}.weight has dtype {w.dtype}; "
                                "weights must be stored as int8"
                            )
                        bias_key = f"{pre}.{pname}.bias"
                        paths.append(
                            WeightPath(
                                pname,
                                w,
                                get(f"{pre}.{pname}.scale").astype(np.float64),
                                get(f"{pre}.{pname}.zero_point").astype(np.int64),
                                get(bias_key).astype(np.float32) if bias_key in files else None,
                            )
                        )
                    factors = get(f"{pre}.factors") if layout == "split" else None
                    layers.append(
                        Layer(
                            lname,
                            tuple(paths),
                            float(get(f"{pre}.output.scale")),
                            int(get(f"{pre}.output.zero_point")),
                            None if factors is None else _float_factors(factors, src, pre),
                        )
                    )
                mods.append(
                    Module(
                        float(get(f"m{i}.input.scale")),
                        int(get(f"m{i}.input.zero_point")),
                        tuple(layers),
                    )
                )
    except ModelError:
        raise
    net = QuantizedNetwork(layout, tuple(mods), metadata, src)  # type: ignore[arg-type]
    net.validate()
    return net


def _float_factors(factors: np.ndarray, src: str, pre: str) -> np.ndarray:
    if factors.dtype not in (np.float32, np.float64):
        raise ModelError(f"{src}: {pre}.factors must be float32 or float64, not {factors.dtype}")
    return factors
