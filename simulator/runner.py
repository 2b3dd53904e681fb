"""The ``run`` job: config + model + input -> outputs, predictions and report in a folder.

Files are written to a temporary folder beside the destination and moved in only when the
whole run succeeded, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import HwConfig, load_config
from .engine import InputError, SimResult, simulate
from .loaders import load_model
from .network import QuantizedNetwork
from .report import build_report, compare_outputs
from .units.weight_requant import narrow_network


@dataclass
class RunOutput:
    result: SimResult
    report: dict[str, Any]
    out_dir: Path | None
    net: QuantizedNetwork | None = None
    cfg: HwConfig | None = None


def sha256_file(path: str | os.PathLike[str]) -> str:
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(p.glob("*.npy")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
        return h.hexdigest()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_input(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an input ``.npy`` (queries, inputs); raise InputError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such input file")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{p}: not a readable .npy array ({exc}); is it truncated?") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        arr.close()
        raise InputError(f"{p}: is an .npz archive; give one .npy array (queries, inputs)")
    if arr.ndim == 1:
        raise InputError(
            f"{p}: is 1-D {arr.shape}; give a 2-D (queries, inputs) array, e.g. x[None, :]"
        )
    return arr


def execute(
    cfg: HwConfig,
    net: QuantizedNetwork,
    inputs: np.ndarray,
    provenance: dict[str, Any],
    progress: Callable[[int], None] | None = None,
    source: str = "input",
) -> tuple[SimResult, dict[str, Any]]:
    """Simulate and build the report, including the ``report.compare_with`` comparison.

    A model wider than ``weights.bits`` / ``spikes.bits`` is re-quantized first
    (units/weight_requant.py); the report's ``requantized`` block records it.
    """
    run_net, narrowed = narrow_network(net, cfg)
    result = simulate(run_net, cfg, inputs, progress=progress, source=source)
    report = build_report(result, run_net, cfg, provenance)
    if narrowed is not None:
        report["requantized"] = narrowed
    if cfg.report.compare_with:
        ref_cfg = load_config(cfg.report.compare_with)
        ref = simulate(narrow_network(net, ref_cfg)[0], ref_cfg, inputs, source=source)
        report["comparison"] = compare_outputs(result, ref, ref_cfg.name)
    return result, report


def write_outputs(out_dir: Path, files: dict[str, Any]) -> None:
    """Write ``files`` (name -> ndarray | dict | bytes) into out_dir atomically per run."""
    out_dir = Path(out_dir)
    parent = out_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=parent))
    try:
        for name, value in files.items():
            target = tmp / name
            if isinstance(value, np.ndarray):
                np.save(target, value, allow_pickle=False)
            elif isinstance(value, dict | list):
                target.write_text(json.dumps(value, indent=2) + "\n")
            else:
                target.write_bytes(value)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in files:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def readout_block(result: SimResult, tolerance: int) -> dict[str, Any]:
    """Recall@1/5/10 of the run's scores with aligned ground truth (query i = place i)."""
    from .vpr.readout import ground_truth, recalls

    q, places = result.scores.shape
    gt = ground_truth(q, places, tolerance)
    rec = recalls(result.scores.astype(np.float64), gt, (1, 5, 10))
    return {
        "ground_truth": "query i matches place i +- tolerance",
        "tolerance": tolerance,
        "queries_with_match": int(gt.any(axis=1).sum()),
        "recall": {f"R@{n}": v for n, v in rec.items()},
    }


def run_job(
    config: str | Path,
    model: str | Path,
    input_path: str | Path | np.ndarray,
    out_dir: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    progress: Callable[[int], None] | None = None,
    recall_tolerance: int | None = None,
) -> RunOutput:
    """Load everything, simulate, and write outputs, predictions, scores and report.json.

    ``input_path`` is a .npy file or an in-memory array (e.g. spikes from images).
    ``recall_tolerance``: when given, the report gains ``readout.recall`` (Recall@1/5/10)
    with VPRTempo's aligned ground truth: query i matches place i +- tolerance.
    """
    cfg = load_config(config, overrides)
    net = load_model(model)
    if isinstance(input_path, np.ndarray):
        inputs, source = input_path, "<images>"
        digest = hashlib.sha256(np.ascontiguousarray(inputs).tobytes()).hexdigest()
    else:
        inputs, source = load_input(input_path), str(input_path)
        digest = sha256_file(input_path)
    prov = {
        "model_sha256": sha256_file(model),
        "input_source": source,
        "input_sha256": digest,
        "input_dtype": str(inputs.dtype),
    }
    result, report = execute(cfg, net, inputs, prov, progress, source=source)
    if recall_tolerance is not None:
        report["readout"] = readout_block(result, recall_tolerance)
    if out_dir is not None:
        write_outputs(
            Path(out_dir),
            {
                "outputs.npy": result.outputs.astype(np.int64),
                "predictions.npy": result.predictions.astype(np.int64),
                "scores.npy": result.scores.astype(np.int64),
                "report.json": report,
            },
        )
    run_net = narrow_network(net, cfg)[0]  # the network the run used (traces, cross-checks)
    return RunOutput(result, report, None if out_dir is None else Path(out_dir), run_net, cfg)
