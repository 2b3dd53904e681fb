"""Engine graph formats: ONNX and TFLite export and import of VPRTempo-shaped networks.

Both are written and read through the engines' own libraries (``onnx``'s helper API; the
TFLite flatbuffer schema module that ships with ``ai-edge-litert`` / ``tflite-micro``), never
a hand-written binary writer. They need the ``engines`` extra: ``pip install
tempo-hwsim[engines]``.

* :func:`export_model` / :func:`import_model` dispatch on ``onnx`` / ``tflite``.
* Imported TFLite graphs have int8 activations; they are held here in the equivalent uint8
  form (every activation code and zero point + 128, exact for offset arithmetic: the products
  (x - zx) * w and every rounding are unchanged, and the clamp [-128, 127] becomes [0, 255]).
  ``net.metadata["activation_offset"] = 128`` records it; engine codes compare after adding it
  (:func:`simulator.formats.compare.engine_codes_as_hwsim`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..network import ModelError, QuantizedNetwork

FORMATS: tuple[str, ...] = ("onnx", "tflite")
SUFFIXES: dict[str, str] = {".onnx": "onnx", ".tflite": "tflite"}


class FormatUnavailableError(ModelError):
    """The engine library a format needs is not installed."""


def export_model(
    net: QuantizedNetwork,
    path: str | os.PathLike[str],
    fmt: str,
    form: str = "",
    batch: int = 1,
) -> Path:
    """Write ``net`` as an ``onnx`` or ``tflite`` graph; returns the path written.

    form (onnx): ``qlinear`` (QLinearMatMul, default) or ``matmulinteger`` (MatMulInteger ->
    Cast -> Mul -> QuantizeLinear). batch (tflite): the fixed batch dimension of the graph.
    """
    if fmt == "onnx":
        from .onnx import export_onnx

        return export_onnx(net, path, form or "qlinear")
    if fmt == "tflite":
        if form:
            raise ModelError(f"--form {form!r}: TFLite has one form (int8 FULLY_CONNECTED)")
        from .tflite import export_tflite

        return export_tflite(net, path, batch=batch)
    raise ModelError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")


def import_model(path: str | os.PathLike[str]) -> QuantizedNetwork:
    """Read an ``.onnx`` or ``.tflite`` two-layer network written by :func:`export_model`."""
    p = Path(path)
    fmt = SUFFIXES.get(p.suffix.lower())
    if fmt == "onnx":
        from .onnx import import_onnx

        return import_onnx(p)
    if fmt == "tflite":
        from .tflite import import_tflite

        return import_tflite(p)
    raise ModelError(f"{p}: not an engine graph; give a .onnx or .tflite file")


__all__ = ["FORMATS", "SUFFIXES", "FormatUnavailableError", "export_model", "import_model"]
