"""``hwsim export``: write a model as an ONNX or TFLite engine graph (simulator/formats/;
docs/engines.md). ``hwsim run --compare-with`` is an option of run (commands/run.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..formats import FORMATS, SUFFIXES, export_model
from ..formats.onnx import ONNX_FORMS
from ..network import ModelError, QuantizedNetwork


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``hwsim export --format onnx|tflite --model M --out F [--form ...] [--batch N]``."""
    ex = sub.add_parser(
        "export",
        help="write a model as an ONNX or TFLite graph (engines extra)",
        description="Write a combined-layout model as an engine graph through the engine's own "
        "library: ONNX (QLinearMatMul, or MatMulInteger -> Cast -> Mul -> QuantizeLinear) or "
        "TFLite (QUANTIZE + int8 FULLY_CONNECTED). Run it back with hwsim run --model F and "
        "the preset named in docs/engines.md.",
    )
    ex.add_argument("--format", required=True, choices=FORMATS, help="graph format")
    ex.add_argument("--model", required=True, help="model: .npz, VPRTempo .pth, .onnx, .tflite")
    ex.add_argument("--out", required=True, help="file to write (.onnx or .tflite)")
    ex.add_argument("--form", default="", choices=ONNX_FORMS,
                    help="onnx only: qlinear (default), matmulinteger, qdq or qgemm")
    ex.add_argument("--batch", type=int, default=1,
                    help="tflite only: the graph's fixed batch (queries per invoke; TFLite Micro "
                    "cannot resize), default 1")
    ex.set_defaults(func=cmd_export)
    return ex


def check_export_arguments(args: argparse.Namespace) -> Path:
    """Check --out, --form and --batch before anything is loaded; returns the target path."""
    out = Path(args.out)
    want = {v: k for k, v in SUFFIXES.items()}[args.format]
    if out.suffix.lower() != want:
        raise ModelError(f"--out {out}: a {args.format} graph is written to a '{want}' file; "
                         f"name it e.g. {out.with_suffix(want).name}")
    if not out.is_symlink() and out.exists() and not out.is_file():
        raise ModelError(f"--out {out}: exists and is not a regular file; choose another path")
    # a symlink at --out is replaced by the graph, never followed (as every writer does)
    if not out.resolve().parent.is_dir():
        raise ModelError(f"--out {out}: folder {out.parent} does not exist; create it first")
    if args.form and args.format != "onnx":
        raise ModelError(f"--form {args.form}: only the onnx format has forms")
    if args.batch < 1:
        raise ModelError(f"--batch {args.batch}: must be >= 1")
    if args.batch != 1 and args.format != "tflite":
        raise ModelError("--batch: only TFLite graphs have a fixed batch (ONNX's is dynamic)")
    return out


def cmd_export(args: argparse.Namespace) -> int:
    """Load the model and publish the graph at --out through the shared single-file writer
    (staged inside the destination folder under its lock; a link planted at --out is replaced,
    never followed)."""
    from ..loaders import load_model
    from ..outputs import write_file_atomic

    out = check_export_arguments(args)
    net = load_model(args.model)
    write_file_atomic(out, lambda tmp: export_model(net, tmp, args.format, form=args.form,
                                                    batch=args.batch))
    form = f" ({args.form or 'qlinear'})" if args.format == "onnx" else f" (batch {args.batch})"
    print(f"wrote {out}: {args.format}{form}, {len(net.modules)} module(s), "
          f"{net.in_features} inputs, {net.places} places")
    n = non_float32_scales(net)
    if n:
        print(f"note: {n} scales of {args.model} are not float32 numbers; the graph holds them "
              f"rounded to float32, as the engines read them: compare engine codes with "
              f"hwsim run --model {out}")
    return 0


def non_float32_scales(net: QuantizedNetwork) -> int:
    """How many of the network's scales change when rounded to float32."""
    vals = []
    for mod in net.modules:
        vals.append(np.array([mod.input_scale]))
        for lay in mod.layers:
            vals += [lay.paths[0].scale, np.array([lay.output_scale])]
    allv = np.concatenate(vals).astype(np.float64)
    return int(np.count_nonzero(allv.astype(np.float32).astype(np.float64) != allv))


add_export_parser = add_parser  # the name simulator/formats/cli.py exported

__all__ = ["add_export_parser", "add_parser", "check_export_arguments", "cmd_export",
           "non_float32_scales"]
