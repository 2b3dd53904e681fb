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
``m{i}.{layer}.requant.m0`` / ``.shift``        i64 / i64  (out,) optional engine multipliers
``m{i}.{layer}.requant.multiplier``             f32/f64    (out,) optional float multiplier
==============================================  =========  =================================

``layer`` is ``feature`` or ``output``; ``path`` is ``combined``, ``excitatory`` or
``inhibitory``.
"""

from __future__ import annotations

import json
import os
import tempfile
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
from .limits import ModelLimits
from .safe_npy import MAX_ARRAY_BYTES, NpyHeader, open_npz

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
            for name, value in (("m0", lay.requant_m0), ("shift", lay.requant_shift),
                                ("multiplier", lay.requant_multiplier)):
                if value is not None:
                    arrays[f"{pre}.requant.{name}"] = np.asarray(value)
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


def load_npz(
    path: str | os.PathLike[str], limits: ModelLimits | None = None
) -> QuantizedNetwork:
    """Read a native model; raise ModelError naming the file and the missing/bad key.

    Every array's header is checked (dtype, shape, and each module's weight count against
    ``limits``, by default :data:`~simulator.loaders.safe_npy.MAX_MODEL_WEIGHTS`) before any
    array data is decompressed; nothing is unpickled.
    """
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise ModelError(f"{src}: no such model file")
    limits = limits or ModelLimits()
    with open_npz(path, ModelError) as data:
        files = set(data.files)
        heads = data.headers

        def head(key: str) -> NpyHeader:
            if key not in files:
                raise ModelError(f"{src}: missing key {key!r} (format {FORMAT})")
            return heads[key]

        def get(key: str, kinds: str, ndim: int | None = 0) -> np.ndarray:
            h = head(key)
            if h.dtype.kind not in kinds:
                raise ModelError(f"{src}: key {key!r} has dtype {h.dtype}; expected "
                                 f"{_KIND_NAMES.get(kinds, kinds)}")
            if ndim is not None and len(h.shape) != ndim:
                want = "a single value (shape ())" if ndim == 0 else f"a {ndim}-D array"
                raise ModelError(f"{src}: key {key!r} has shape {h.shape}; expected {want}")
            if h.nbytes > MAX_ARRAY_BYTES and not key.endswith(".weight"):
                raise ModelError(f"{src}: key {key!r} declares {h.nbytes:,} bytes, more than "
                                 f"MAX_ARRAY_BYTES ({MAX_ARRAY_BYTES:,})")
            return data.read(key)

        fmt = str(get("format", "US"))
        if fmt != FORMAT:
            raise ModelError(f"{src}: format is {fmt!r}, this version reads {FORMAT!r}")
        layout = str(get("layout", "US"))
        if layout not in PATHS_BY_LAYOUT:
            raise ModelError(f"{src}: layout must be 'combined' or 'split', not {layout!r}")
        try:
            metadata = json.loads(str(get("metadata", "US")))
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ModelError(f"{src}: key 'metadata' is not valid JSON ({exc})") from None
        if not isinstance(metadata, dict):
            raise ModelError(f"{src}: key 'metadata' must be a JSON object")
        n_mod = int(get("modules", "iu"))
        if n_mod < 1:
            raise ModelError(f"{src}: 'modules' must be >= 1, found {n_mod}")
        # headers first: every module's weight count against the limit, before any weight data
        for i in range(n_mod):
            n_weights = 0
            for lname in LAYER_NAMES:
                for pname in PATHS_BY_LAYOUT[layout]:
                    key = f"m{i}.{lname}.{pname}.weight"
                    h = head(key)
                    if h.dtype != np.int8:
                        raise ModelError(
                            f"{src}: {key} has dtype {h.dtype}; weights must be stored as int8"
                        )
                    if len(h.shape) != 2:
                        raise ModelError(f"{src}: {key} has shape {h.shape}; a weight memory "
                                         "image is a 2-D (out_features, in_features) matrix")
                    n_weights += h.size
            limits.check_module(n_weights, f"{src}: module {i}", ModelError)
        mods = []
        for i in range(n_mod):
            layers = []
            for lname in LAYER_NAMES:
                pre = f"m{i}.{lname}"
                paths = []
                for pname in PATHS_BY_LAYOUT[layout]:
                    w = get(f"{pre}.{pname}.weight", "i", 2)
                    bias_key = f"{pre}.{pname}.bias"
                    paths.append(
                        WeightPath(
                            pname,
                            w,
                            get(f"{pre}.{pname}.scale", "fiu", None).astype(np.float64),
                            get(f"{pre}.{pname}.zero_point", "iu", None).astype(np.int64),
                            get(bias_key, "fiu", None).astype(np.float32)
                            if bias_key in files else None,
                        )
                    )
                factors = get(f"{pre}.factors", "f", None) if layout == "split" else None
                layers.append(
                    Layer(
                        lname,
                        tuple(paths),
                        float(get(f"{pre}.output.scale", "fiu")),
                        int(get(f"{pre}.output.zero_point", "iu")),
                        None if factors is None else _float_factors(factors, src, pre),
                        *_stored_multipliers(get, files, src, pre, paths[0].out_features),
                    )
                )
            mods.append(
                Module(
                    float(get(f"m{i}.input.scale", "fiu")),
                    int(get(f"m{i}.input.zero_point", "iu")),
                    tuple(layers),
                )
            )
    net = QuantizedNetwork(layout, tuple(mods), metadata, src)  # type: ignore[arg-type]
    net.validate()
    return net


_KIND_NAMES = {"US": "a string", "iu": "an integer", "fiu": "a number", "f": "a float"}


def _float_factors(factors: np.ndarray, src: str, pre: str) -> np.ndarray:
    if factors.dtype not in (np.float32, np.float64):
        raise ModelError(f"{src}: {pre}.factors must be float32 or float64, not {factors.dtype}")
    return factors


MAX_STORED_M0_BITS = 32  # requant.multiplier_bits is at most 32
MAX_STORED_SHIFT = 62  # acc * M0 >> shift: a right shift of an int64-sized product


def _stored_multipliers(get, files: set[str], src: str, pre: str, n_out: int) -> tuple:
    """Optional ``{pre}.requant.m0`` / ``.shift`` (int) or ``.multiplier`` (float), each (n_out,).

    Returns (m0 int64 | None, shift int64 | None, multiplier float64 | None); a bad array is a
    ModelError naming its key: M0 in [1, 2^32), shift in [0, 62], multiplier finite and > 0.
    """
    keys = {name: f"{pre}.requant.{name}" for name in ("m0", "shift", "multiplier")}
    have = {name for name, key in keys.items() if key in files}
    if not have:
        return None, None, None
    if "multiplier" in have and have & {"m0", "shift"}:
        raise ModelError(f"{src}: {keys['multiplier']}: a layer stores either requant.m0 + "
                         "requant.shift or requant.multiplier, not both; drop one")
    if have & {"m0", "shift"} and have != {"m0", "shift"}:
        missing = keys["shift"] if "m0" in have else keys["m0"]
        raise ModelError(f"{src}: missing key {missing!r}: requant.m0 and requant.shift are "
                         "stored together")

    def arr(name: str, kinds: str) -> np.ndarray:
        a = get(keys[name], kinds, 1)
        if a.shape != (n_out,):
            raise ModelError(f"{src}: {keys[name]} has shape {a.shape}; expected ({n_out},), "
                             "one value per output channel")
        return a

    if "multiplier" in have:
        m = arr("multiplier", "f")
        if m.dtype not in (np.float32, np.float64):
            raise ModelError(f"{src}: {keys['multiplier']} must be float32 or float64, not "
                             f"{m.dtype}")
        bad = ~(np.isfinite(m) & (m > 0))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ModelError(f"{src}: {keys['multiplier']}[{j}] = {float(m[j])!r}; "
                             "multipliers must be finite and > 0")
        return None, None, m.astype(np.float64)
    m0 = arr("m0", "iu")
    shift = arr("shift", "iu")
    for key, a, lo, hi in ((keys["m0"], m0, 1, (1 << MAX_STORED_M0_BITS) - 1),
                           (keys["shift"], shift, 0, MAX_STORED_SHIFT)):
        bad = (a < lo) | (a > hi)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ModelError(f"{src}: {key}[{j}] = {int(a[j])} lies outside [{lo}, {hi}]; "
                             "store M0 >= 1 of at most 32 bits and a right shift in [0, 62]")
    return m0.astype(np.int64), shift.astype(np.int64), None
