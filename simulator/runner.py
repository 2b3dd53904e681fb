"""The ``run`` job: config + model + input -> outputs, predictions and report in a folder.

The run's files (outputs, predictions, scores, its trace and report.json, which lists them)
form one result set: they are staged inside the output folder and published together under
the folder's lock, or not at all (see simulator.outputs and docs/security.md).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .compare import compare_external, load_external_codes, reference_run
from .config import HwConfig, load_config
from .engine import InputError, SimResult, simulate
from .loaders import ModelLimits, load_model
from .loaders.safe_npy import MAX_INPUT_ELEMENTS, NpyHeader, load_npy, sniff
from .network import QuantizedNetwork
from .outputs import ResultSet, owned_by_patterns
from .report import build_report, compare_outputs
from .trace import TRACE_OWNED, TraceError, TraceRequest, TraceSummary, write_trace
from .units.weight_requant import narrow_network

REPORT_NAME = "report.json"
RESULT_ARRAYS = ("outputs.npy", "predictions.npy", "scores.npy")
#: names of an earlier run's set that a new run into the same folder replaces or removes
RUN_OWNED = owned_by_patterns(
    [r"outputs\.npy", r"predictions\.npy", r"scores\.npy", TRACE_OWNED,
     r"events_per_neuron\.png", r"acc_range\.png", r"events_over_time\.png",
     r"input_codes(_m\d+)?\.npy"]
)


@dataclass
class RunOutput:
    result: SimResult
    report: dict[str, Any]
    out_dir: Path | None
    net: QuantizedNetwork | None = None
    cfg: HwConfig | None = None
    trace: TraceSummary | None = None


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
    """Read an input ``.npy`` (queries, inputs); raise InputError naming the file.

    The header is checked first (a 2-D float or integer array of at most
    ``MAX_INPUT_ELEMENTS`` values) and only then the data is read; nothing is unpickled.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such input file")
    try:
        form = sniff(p)
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if form == "zip":
        raise InputError(f"{p}: is an .npz archive; give one .npy array (queries, inputs)")
    if form == "empty":
        raise InputError(f"{p}: is empty; give a 2-D (queries, inputs) .npy array")
    if form != "npy":
        raise InputError(
            f"{p}: not a readable .npy array (no NUMPY magic string); is it truncated?"
        )

    def check(hdr: NpyHeader) -> None:
        if len(hdr.shape) == 0:
            raise InputError(
                f"{p}: holds a single number (a 0-D array); give a 2-D (queries, inputs) array"
            )
        if len(hdr.shape) == 1:
            raise InputError(
                f"{p}: is 1-D {hdr.shape}; give a 2-D (queries, inputs) array, e.g. x[None, :]"
            )
        if len(hdr.shape) != 2:
            raise InputError(
                f"{p}: is {len(hdr.shape)}-D {hdr.shape}; give a 2-D (queries, inputs) array, "
                "e.g. x.reshape(len(x), -1)"
            )
        if hdr.dtype.kind == "b":
            raise InputError(
                f"{p}: dtype bool is not supported; give float spikes in [0, 1] or uint8 codes"
            )

    return load_npy(p, InputError, MAX_INPUT_ELEMENTS, "the input limit MAX_INPUT_ELEMENTS",
                    kinds="biuf", check=check,
                    hint="; give float spikes in [0, 1] or uint8 codes")


def execute(
    cfg: HwConfig,
    net: QuantizedNetwork,
    inputs: np.ndarray,
    provenance: dict[str, Any],
    progress: Callable[[int], None] | None = None,
    source: str = "input",
    check: Callable[[SimResult], None] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> tuple[SimResult, dict[str, Any]]:
    """Simulate and build the report, including the ``report.compare_with`` comparison.

    ``check(result)`` runs right after the fast simulation, before the reference run and any
    writing (e.g. the trace-row limit). A model wider than ``weights.bits`` / ``spikes.bits``
    is re-quantized first (units/weight_requant.py); the report's ``requantized`` block
    records it.
    """
    run_net, narrowed = narrow_network(net, cfg)
    result = simulate(run_net, cfg, inputs, progress=progress, source=source)
    if check is not None:
        check(result)
    report = build_report(result, run_net, cfg, provenance)
    if narrowed is not None:
        report["requantized"] = narrowed
    if cfg.report.compare_with:
        ref, ref_cfg, applied, skipped = reference_run(net, cfg, inputs, overrides, source)
        report["comparison"] = compare_outputs(result, ref, ref_cfg.name)
        report["comparison"]["overrides_applied"] = applied
        report["comparison"]["overrides_not_applied"] = skipped
    return result, report


def open_run_set(out_dir: str | os.PathLike[str]) -> ResultSet:
    """The (unopened) result set of a run in ``out_dir``: index report.json, RUN_OWNED names."""
    return ResultSet(out_dir, index=REPORT_NAME, owned=RUN_OWNED)


def _same_folder(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def stage_run(rs: ResultSet, result: SimResult, save_codes: bool = False) -> None:
    """Stage outputs, predictions and scores (int64) into an open run set; with
    ``save_codes`` also the quantized input codes (``input_codes.npy``, module 0's; a module
    whose codes differ gets ``input_codes_m<i>.npy``), uint8 when they fit, else int64 --
    ready for ``hwsim vectors --input``."""
    rs.save_npy("outputs.npy", result.outputs.astype(np.int64))
    rs.save_npy("predictions.npy", result.predictions.astype(np.int64))
    rs.save_npy("scores.npy", result.scores.astype(np.int64))
    if save_codes:
        for i, codes in enumerate(result.input_codes):
            if i and np.array_equal(codes, result.input_codes[0]):
                continue
            fits = codes.size == 0 or (int(codes.min()) >= 0 and int(codes.max()) <= 255)
            rs.save_npy("input_codes.npy" if i == 0 else f"input_codes_m{i}.npy",
                        codes.astype(np.uint8 if fits else np.int64))


def write_outputs(out_dir: Path, files: dict[str, Any]) -> list[Path]:
    """Publish ``files`` (name -> ndarray | dict | bytes) in out_dir as one set.

    A ``report.json`` dict is the set's index: written last, it gains ``files``.
    """
    with open_run_set(out_dir) as rs:
        for name, value in files.items():
            if name == REPORT_NAME:
                continue
            if isinstance(value, np.ndarray):
                rs.save_npy(name, value)
            elif isinstance(value, dict | list):
                rs.write_json(name, value)
            else:
                rs.write_bytes(name, value)
        return rs.commit(files.get(REPORT_NAME))


class RunSets:
    """The run's result set, plus a second one when --trace-dir names another folder.

    Opened (checked, locked) before any computing; ``publish`` stages everything and commits
    the trace folder first, then the run folder (report.json last).
    """

    def __init__(self, out_dir: str | os.PathLike[str] | None,
                 trace: TraceRequest | None) -> None:
        self.trace = trace if trace is not None and trace.level != "off" else None
        self.run: ResultSet | None = None
        self.trace_set: ResultSet | None = None
        if self.trace is not None and out_dir is None and self.trace.dir is None:
            raise TraceError(f"--trace {self.trace.level}: a trace needs an output folder (--out)")
        try:
            if out_dir is not None:
                self.run = open_run_set(out_dir).open()
            if self.trace is not None and self.trace.dir is not None and (
                out_dir is None or not _same_folder(self.trace.dir, out_dir)
            ):
                self.trace_set = ResultSet(self.trace.dir, option="--trace-dir").open()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for rs in (self.trace_set, self.run):
            if rs is not None:
                rs.close()

    def __enter__(self) -> RunSets:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def publish(self, result: SimResult, report: dict[str, Any], net: QuantizedNetwork,
                cfg: HwConfig, save_codes: bool = False) -> TraceSummary | None:
        summary = None
        if self.trace is not None:
            target = self.trace_set or self.run
            assert target is not None
            t = self.trace
            summary = write_trace(
                result, net, cfg, None, target, t.level, t.filter, t.format, t.max_rows,
                provenance={"run_out": str(self.run.out) if self.run else ""},
            )
        if self.trace_set is not None:
            self.trace_set.commit()
        if self.run is not None:
            stage_run(self.run, result, save_codes)
            self.run.commit(report)
        return summary


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
    trace: TraceRequest | None = None,
    compare_codes: str | Path | None = None,
    save_codes: bool = False,
    input_file: str | Path | None = None,
) -> RunOutput:
    """Load everything, simulate, and publish outputs, predictions, scores, the trace and
    report.json in ``out_dir`` as one result set.

    ``input_path`` is a .npy file or an in-memory array (e.g. spikes from images).
    ``recall_tolerance``: when given, the report gains ``readout.recall`` (Recall@1/5/10)
    with VPRTempo's aligned ground truth: query i matches place i +- tolerance.
    ``trace``: a trace written into the same set (or its own folder, ``trace.dir``); its
    filter and row limit are checked before anything is written.
    The output folder is checked and locked before the simulation starts.
    ``save_codes``: also publish the quantized input codes (see :func:`stage_run`).
    ``input_file``: the .npy an in-memory ``input_path`` array was read from (named and
    hashed in the report as if the path had been given; the file is not read again).
    """
    cfg = load_config(config, overrides)
    net = load_model(model, ModelLimits.for_config(cfg))
    if isinstance(input_path, np.ndarray) and input_file is not None:
        inputs, source = input_path, str(input_file)  # already read from this .npy
        digest = sha256_file(input_file)
    elif isinstance(input_path, np.ndarray):
        inputs, source = input_path, "<images>"
        digest = hashlib.sha256(np.ascontiguousarray(inputs).tobytes()).hexdigest()
    else:
        inputs, source = load_input(input_path), str(input_path)
        digest = sha256_file(input_path)
    if trace is not None and trace.level != "off":
        trace.check_before_run(net, cfg, int(inputs.shape[0]))
    codes = (None if compare_codes is None
             else load_external_codes(compare_codes, net, int(inputs.shape[0])))
    prov = {
        "model_sha256": sha256_file(model),
        "input_source": source,
        "input_sha256": digest,
        "input_dtype": str(inputs.dtype),
    }
    run_net = narrow_network(net, cfg)[0]  # the network the run uses (traces, cross-checks)
    with RunSets(out_dir, trace) as sets:
        check = None
        if sets.trace is not None:
            req = sets.trace

            def check(res: SimResult) -> None:
                req.check_size(res, run_net, cfg)

        result, report = execute(cfg, net, inputs, prov, progress, source=source, check=check,
                                 overrides=overrides)
        if codes is not None:
            report["compare_with_codes"] = compare_external(result, run_net, cfg, codes,
                                                            str(compare_codes))
        if recall_tolerance is not None:
            report["readout"] = readout_block(result, recall_tolerance)
        summary = sets.publish(result, report, run_net, cfg, save_codes)
    return RunOutput(result, report, None if out_dir is None else Path(out_dir), run_net, cfg,
                     summary)
