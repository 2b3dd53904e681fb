"""Loader for VPRTempoQuant ``.pth`` files (VPRTempo 1.1.x, the PyPI ``vprtempo`` package).

VPRTempoQuant saves ``torch.save({"model_0": state_dict, "model_1": ...})``: one converted
(eager-mode, QAT) module per group of places. Each module state dict holds

=====================================================  ==========================================
key                                                    meaning
=====================================================  ==========================================
``quant.scale`` / ``quant.zero_point``                 input quantizer (quint8, shape (1,))
``{layer}.w.scale`` / ``{layer}.w.zero_point``         layer output quantizer (quint8, float32)
``{layer}.w._packed_params._packed_params``            ``(weight, bias)``: qint8 (out, in), bias
``{layer}.w._packed_params.dtype``                     ``torch.qint8``
``{layer}.thr``                                        firing thresholds; unused at inference
=====================================================  ==========================================

with ``layer`` = ``feature_layer`` / ``output_layer``. VPRTempoQuant's inference
(``VPRTempoQuant.forward``) quantizes the input once with ``models[0].quant`` and feeds the
same quint8 tensor to every module, so by default (``input_quantizer="shared"``) every
module of the returned network gets module 0's input quantizer; the per-module values are
kept in the metadata. Keys the simulator does not know are errors, never silently dropped.

torch is needed only here and is imported lazily (``pip install tempo-hwsim[torch]``).
"""

from __future__ import annotations

import os
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..network import (
    LAYER_NAMES,
    ModelError,
    QuantizedNetwork,
    check_scales,
    make_combined_network,
)
from .limits import ModelLimits
from .safe_npy import sniff

TORCH_LAYERS: dict[str, str] = {"feature": "feature_layer", "output": "output_layer"}
"""Simulator layer name -> VPRTempoQuant attribute name."""

IGNORED_SUFFIXES: tuple[str, ...] = ("thr",)
"""Per-layer keys that VPRTempoQuant's inference never reads (``SNNLayer.thr``)."""

_MODULE_KEY = re.compile(r"model_(\d+)")

InputQuantizer = Literal["shared", "per_module"]


def _import_torch(src: str) -> Any:
    try:
        import torch
    except ImportError:
        raise ModelError(
            f"{src}: reading a VPRTempoQuant .pth model needs torch; "
            "install it with: pip install tempo-hwsim[torch]"
        ) from None
    return torch


REFUSED_PICKLE = re.compile(
    r"Unsupported global: GLOBAL (\S+)"  # torch < 2.13 and allow-list misses in 2.13
    r"|unsupported GLOBAL (\S+) whose module"  # torch 2.13: a blocked module (os, posix, ...)
    r"|Can only (?:create new object|build) .*? but got (<[^>]*>|\S+)"  # instances
    r"|(Unsupported operand \S+)"  # an opcode torch never writes
)
"""torch's ``weights_only`` refusals of a Python object, as worded by torch 2.x up to 2.13."""


def _refusal(text: str) -> str | None:
    """The refused object named in a torch ``weights_only`` error, or None if not a refusal."""
    m = REFUSED_PICKLE.search(text)
    if m is None:
        return None
    return next(g for g in m.groups() if g).rstrip(".")


def _check_archive(p: Path, src: str) -> bool:
    """Cheap structural checks before torch reads the file; True for a torch zip archive.

    torch.save writes stored (uncompressed) zip members, so the data torch reads is at most the
    file's size; compressed members (a zip bomb) are refused before torch sees them.
    """
    try:
        form = sniff(p)
    except OSError as exc:
        raise ModelError(f"{src}: cannot read ({exc.strerror or exc})") from None
    if form == "empty":
        raise ModelError(f"{src}: not a readable torch file (it is empty); is it truncated?")
    if form == "npy":
        raise ModelError(f"{src}: not a readable torch file (it is a .npy array)")
    if form == "zip":
        try:
            with zipfile.ZipFile(p) as zf:
                for info in zf.infolist():
                    if info.compress_type != zipfile.ZIP_STORED:
                        raise ModelError(
                            f"{src}: archive member {info.filename!r} is compressed; torch.save "
                            "never compresses, so this is not a file torch wrote"
                        )
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
                RuntimeError, struct.error) as exc:
            if isinstance(exc, ModelError):
                raise
            raise ModelError(
                f"{src}: not a readable torch file (damaged zip archive: "
                f"{' '.join(str(exc).split())[:160]}); is it truncated?"
            ) from None
        return True
    with open(p, "rb") as fh:
        if fh.read(1) != b"\x80":  # the legacy format starts with a pickle protocol opcode
            raise ModelError(f"{src}: not a readable torch file (neither a torch zip archive "
                             "nor a tensor pickle); is it truncated?")
    return False


def load_vprtempo_pth(
    path: str | os.PathLike[str],
    input_quantizer: InputQuantizer = "shared",
    limits: ModelLimits | None = None,
) -> QuantizedNetwork:
    """Read a VPRTempoQuant ``.pth`` into a combined-layout :class:`QuantizedNetwork`.

    ``input_quantizer="shared"`` reproduces VPRTempoQuant (module 0's ``quant`` for all
    modules); ``"per_module"`` gives each module its own ``quant.scale``/``zero_point``.
    The file is read with torch's ``weights_only`` unpickler (tensors and state dicts only);
    a file holding any other Python object is refused. ``limits`` bounds each module's weights
    before they are copied out of the (memory-mapped) file.
    Raises :class:`ModelError` naming the file and the offending key.
    """
    p = Path(path)
    src = str(p)
    if input_quantizer not in ("shared", "per_module"):
        raise ModelError(f"{src}: input_quantizer must be 'shared' or 'per_module'")
    if not p.is_file():
        raise ModelError(f"{src}: no such model file")
    is_zip = _check_archive(p, src)
    torch = _import_torch(src)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=True, mmap=is_zip)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        text = " ".join(str(exc).split())
        refused = _refusal(text)
        if refused:
            raise ModelError(
                f"{src}: holds a Python object ({refused}) besides tensors and state "
                "dicts; refusing to unpickle it (VPRTempoQuant saves plain state dicts)"
            ) from None
        if "Weights only load failed" in text:
            text = "neither a torch zip archive nor a tensor pickle"
        text = text.split(". ")[0][:160] or "unexpected end of file"
        raise ModelError(
            f"{src}: not a readable torch file ({type(exc).__name__}: {text}); is it truncated?"
        ) from None
    state_dicts = _module_state_dicts(obj, src)
    _check_sizes(state_dicts, src, torch, limits or ModelLimits())
    torch_info = {"torch_version": str(torch.__version__)}
    return _build_network(state_dicts, src, torch, input_quantizer, torch_info)


def _check_sizes(
    state_dicts: list[tuple[str, Mapping[str, Any]]], src: str, torch: Any, limits: ModelLimits
) -> None:
    """Each module's weight count against ``limits`` before any weight is copied."""
    for name, sd in state_dicts:
        n = 0
        for tl in TORCH_LAYERS.values():
            packed = sd.get(f"{tl}.w._packed_params._packed_params")
            if isinstance(packed, tuple | list) and packed and isinstance(packed[0], torch.Tensor):
                n += int(packed[0].numel())
        limits.check_module(n, f"{src}: {name}", ModelError)


def _module_state_dicts(obj: Any, src: str) -> list[tuple[str, Mapping[str, Any]]]:
    """Return ``[("model_0", sd0), ...]`` in numeric order; a bare state dict is one module."""
    if not isinstance(obj, Mapping):
        raise ModelError(
            f"{src}: top level is a {type(obj).__name__}, expected a dict "
            '{"model_0": state_dict, ...} as VPRTempoQuant saves'
        )
    if "quant.scale" in obj:
        return [("<state_dict>", obj)]
    indexed: dict[int, str] = {}
    for key in obj:
        m = _MODULE_KEY.fullmatch(str(key))
        if m is None:
            raise ModelError(
                f"{src}: unexpected top-level key {key!r}; expected model_0, model_1, ..."
            )
        indexed[int(m.group(1))] = str(key)
    if not indexed:
        raise ModelError(f"{src}: no modules (expected keys model_0, model_1, ...)")
    n = len(indexed)
    missing = [i for i in range(n) if i not in indexed]
    if missing:
        raise ModelError(
            f"{src}: module keys must be model_0..model_{n - 1}; missing model_{missing[0]}"
        )
    out = []
    for i in range(n):
        key = indexed[i]
        sd = obj[key]
        if not isinstance(sd, Mapping):
            raise ModelError(f"{src}: {key!r} is a {type(sd).__name__}, expected a state dict")
        out.append((key, sd))
    return out


def _scalar(sd: Mapping[str, Any], key: str, where: str, torch: Any, integer: bool) -> float:
    """One number stored as a 1-element tensor or a Python number."""
    if key not in sd:
        raise ModelError(f"{where}: missing key {key!r}")
    val = sd[key]
    if isinstance(val, torch.Tensor):
        if val.numel() != 1 or val.is_quantized or val.is_complex():
            raise ModelError(f"{where}: key {key!r} must hold one real number, not {val!r}")
        num: float = val.item()
    elif isinstance(val, int | float) and not isinstance(val, bool):
        num = val
    else:
        raise ModelError(f"{where}: key {key!r} must hold a number, not {type(val).__name__}")
    if integer:
        if float(num) != int(num):
            raise ModelError(f"{where}: key {key!r} must be an integer, found {num!r}")
        return int(num)
    num = float(num)
    check_scales(num, f"{where}: key {key!r}")
    return num


def _check_keys(sd: Mapping[str, Any], where: str) -> list[str]:
    """Reject keys that are not part of a converted VPRTempoQuant module; return ignored ones."""
    known = {"quant.scale", "quant.zero_point"}
    ignored_known = set()
    for tl in TORCH_LAYERS.values():
        known |= {
            f"{tl}.w.scale",
            f"{tl}.w.zero_point",
            f"{tl}.w._packed_params._packed_params",
            f"{tl}.w._packed_params.dtype",
        }
        ignored_known |= {f"{tl}.{s}" for s in IGNORED_SUFFIXES}
    ignored = []
    for key in sd:
        if key in known:
            continue
        if key in ignored_known:
            ignored.append(str(key))
            continue
        hint = ""
        if str(key).endswith(".w.weight"):
            hint = "; this is a float (unquantized) model, the simulator runs VPRTempoQuant"
        elif "fake_quant" in str(key) or "activation_post_process" in str(key):
            hint = "; this QAT model was not converted (torch.ao.quantization.convert)"
        elif str(key).endswith(".bias"):
            hint = "; a bias outside the packed params is not part of VPRTempoQuant"
        raise ModelError(
            f"{where}: unexpected key {key!r}; it is not part of a converted VPRTempoQuant "
            f"module and could change the arithmetic{hint}"
        )
    return ignored


def _layer(sd: Mapping[str, Any], tl: str, where: str, torch: Any) -> dict[str, Any]:
    """Extract one quantized Linear: int8 weight, per-channel scales/zps, bias, output qparams."""
    pkey = f"{tl}.w._packed_params._packed_params"
    dkey = f"{tl}.w._packed_params.dtype"
    if dkey in sd and sd[dkey] != torch.qint8:
        raise ModelError(
            f"{where}: key {dkey!r} is {sd[dkey]}; only static qint8 Linear layers are supported"
        )
    if pkey not in sd:
        raise ModelError(f"{where}: missing key {pkey!r}")
    packed = sd[pkey]
    if not isinstance(packed, tuple | list) or len(packed) != 2:
        raise ModelError(f"{where}: key {pkey!r} must be a (weight, bias) pair")
    w, b = packed
    if not isinstance(w, torch.Tensor) or not w.is_quantized:
        raise ModelError(f"{where}: key {pkey!r} weight is not a quantized tensor")
    if w.dtype != torch.qint8:
        raise ModelError(f"{where}: key {pkey!r} weight has dtype {w.dtype}; expected qint8")
    if w.dim() != 2 or 0 in w.shape:
        raise ModelError(f"{where}: key {pkey!r} weight has shape {tuple(w.shape)}; need (out, in)")
    out_f = int(w.shape[0])
    qs = w.qscheme()
    if qs in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        scale = np.full(out_f, float(w.q_scale()), dtype=np.float64)
        zp = np.full(out_f, int(w.q_zero_point()), dtype=np.int64)
    elif qs in (torch.per_channel_affine, torch.per_channel_symmetric):
        if w.q_per_channel_axis() != 0:
            raise ModelError(
                f"{where}: key {pkey!r} weight is quantized along axis "
                f"{w.q_per_channel_axis()}; expected per-output-channel (axis 0)"
            )
        scale = w.q_per_channel_scales().to(torch.float64).numpy().copy()
        zp = w.q_per_channel_zero_points().to(torch.int64).numpy().copy()
    else:
        raise ModelError(f"{where}: key {pkey!r} weight has unsupported qscheme {qs}")
    check_scales(scale, f"{where}: key {pkey!r} weight scales")
    weight = w.int_repr().numpy().astype(np.int8, copy=True)
    bias = None
    if b is not None:
        if not isinstance(b, torch.Tensor) or b.is_quantized or b.shape != (out_f,):
            raise ModelError(
                f"{where}: key {pkey!r} bias must be a float tensor of shape ({out_f},)"
            )
        bias = b.detach().to(torch.float32).numpy().copy()
        if not np.all(np.isfinite(bias)):
            raise ModelError(f"{where}: key {pkey!r} bias has NaN or infinite values")
    out_zp = int(_scalar(sd, f"{tl}.w.zero_point", where, torch, integer=True))
    if not 0 <= out_zp <= 255:
        raise ModelError(f"{where}: key '{tl}.w.zero_point' must lie in [0, 255], not {out_zp}")
    return {
        "weight": weight,
        "scale": scale,
        "zero_point": zp,
        "bias": bias,
        "output_scale": _scalar(sd, f"{tl}.w.scale", where, torch, integer=False),
        "output_zero_point": out_zp,
        "qscheme": str(qs).removeprefix("torch."),
    }


def _build_network(
    state_dicts: list[tuple[str, Mapping[str, Any]]],
    src: str,
    torch: Any,
    input_quantizer: InputQuantizer,
    info: dict[str, Any],
) -> QuantizedNetwork:
    modules: list[dict[str, Any]] = []
    per_module_quant: list[list[float]] = []
    ignored: list[str] = []
    qschemes: set[str] = set()
    k0: int | None = None
    for name, sd in state_dicts:
        where = f"{src}: {name}"
        ignored += [f"{name}.{k}" for k in _check_keys(sd, where)]
        sx = _scalar(sd, "quant.scale", where, torch, integer=False)
        zx = int(_scalar(sd, "quant.zero_point", where, torch, integer=True))
        if not 0 <= zx <= 255:
            raise ModelError(f"{where}: key 'quant.zero_point' must lie in [0, 255], not {zx}")
        per_module_quant.append([sx, zx])
        mod: dict[str, Any] = {"input_scale": sx, "input_zero_point": zx}
        prev: tuple[str, int] | None = None
        for lname in LAYER_NAMES:
            tl = TORCH_LAYERS[lname]
            lay = _layer(sd, tl, where, torch)
            qschemes.add(lay.pop("qscheme"))
            in_f = lay["weight"].shape[1]
            if prev is not None and in_f != prev[1]:
                raise ModelError(
                    f"{where}: key '{tl}.w._packed_params._packed_params' takes {in_f} inputs "
                    f"but {prev[0]} gives {prev[1]} outputs"
                )
            prev = (tl, lay["weight"].shape[0])
            mod[lname] = lay
        in0 = mod[LAYER_NAMES[0]]["weight"].shape[1]
        if k0 is None:
            k0 = in0
        elif in0 != k0:
            raise ModelError(
                f"{where}: takes {in0} inputs but {state_dicts[0][0]} takes {k0}; "
                "every module must see the same input"
            )
        modules.append(mod)
    if input_quantizer == "shared":
        for mod in modules[1:]:
            mod["input_scale"] = modules[0]["input_scale"]
            mod["input_zero_point"] = modules[0]["input_zero_point"]
    metadata = {
        "source_format": "vprtempo-pth",
        "input_quantizer": input_quantizer,
        "module_input_quant": per_module_quant,
        "weight_qscheme": sorted(qschemes),
        "ignored_keys": ignored,
        **info,
    }
    try:
        return make_combined_network(modules, metadata, src)
    except ModelError:
        raise
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{src}: {exc}") from None
