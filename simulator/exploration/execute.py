"""Running sweep points: in this process, or on a Dask cluster (local or at an address).

The model and the (already preprocessed) inputs travel once, in one :class:`SweepData`
object (scattered to every worker); each task is one point and returns its table row and its
report. Only the client writes files. Every worker keeps its own :class:`LayerCache` in the
scattered object, so points differing only downstream reuse upstream layers exactly.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import __version__
from ..config import ConfigError, HwConfig, load_config
from ..engine import InputError, SimResult
from ..fixedpoint import RegisterOverflowError
from ..network import ModelError, QuantizedNetwork
from ..report import build_report, compare_outputs
from ..units.weight_requant import narrow_network
from .grid import Point
from .reuse import LayerCache, simulate_reusing
from .table import metrics_from_report

SWEEP_FORMAT = 1  # bump when a row's meaning changes: resumed rows are then recomputed
POINT_ERRORS = (ConfigError, ModelError, InputError, RegisterOverflowError)


@dataclass
class SweepData:
    """What every point shares: the model, the preprocessed inputs and the ground truth.

    inputs: float32 spikes or uint8 codes (Q, K). tolerance: ground truth query i = place
    i +- tolerance, or None when the inputs have none (no recall columns). readout_extra:
    fields added to each report's ``readout`` block (e.g. the query traversal).
    """

    net: QuantizedNetwork
    inputs: np.ndarray
    source: str
    provenance: dict[str, Any]
    tolerance: int | None
    readout_extra: dict[str, Any] = field(default_factory=dict)
    cache: LayerCache = field(default_factory=LayerCache)


@dataclass(frozen=True)
class Baseline:
    """The reference point's output codes and argmaxes (codes_differ, argmax_differ)."""

    name: str
    outputs: np.ndarray
    predictions: np.ndarray


def point_config(base_config: str, point: Point) -> HwConfig:
    return load_config(point.config or base_config, list(point.overrides))


def weight_memory_bits(net: QuantizedNetwork, cfg: HwConfig) -> int:
    """Bits of weight storage of the whole network at ``weights.bits`` per weight."""
    n = sum(p.weight.size for m in net.modules for lay in m.layers for p in lay.paths)
    return int(n) * cfg.weights.bits


def simulate_point(
    data: SweepData, cfg: HwConfig, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[SimResult, dict[str, Any], QuantizedNetwork]:
    """(result, report, narrowed net) of one config, as ``runner.execute`` would give them
    (``overrides``: the point's ``--set`` items, shared with the hidden reference run where
    they change no output code, as in ``compare.reference_run``)."""
    from ..runner import readout_block

    net, narrowed = narrow_network(data.net, cfg)
    result = simulate_reusing(net, cfg, data.inputs, data.cache, data.source)
    report = build_report(result, net, cfg, data.provenance)
    if narrowed is not None:
        report["requantized"] = narrowed
    if cfg.report.compare_with:
        from ..compare import reference_overrides

        applied, skipped = reference_overrides(cfg.report.compare_with, overrides)
        ref_key = (cfg.report.compare_with, tuple(applied))
        ref_cfg = load_config(cfg.report.compare_with, applied)
        ref = data.cache.refs.get(ref_key)
        if ref is None:
            ref_net = narrow_network(data.net, ref_cfg)[0]
            ref = simulate_reusing(ref_net, ref_cfg, data.inputs, data.cache, data.source)
            data.cache.refs[ref_key] = ref
        report["comparison"] = compare_outputs(result, ref, ref_cfg.name)
        report["comparison"]["overrides_applied"] = applied
        report["comparison"]["overrides_not_applied"] = skipped
    if data.tolerance is not None:
        report["readout"] = {**data.readout_extra, **readout_block(result, data.tolerance)}
    return result, report, net


def run_baseline(data: SweepData, base_config: str, overrides: list[str]) -> Baseline:
    cfg = load_config(base_config, overrides)
    result, _, _ = simulate_point(data, cfg, overrides)
    return Baseline(cfg.name, result.outputs, result.predictions)


def run_point(
    data: SweepData, base_config: str, point: Point, baseline: Baseline
) -> dict[str, Any]:
    """One point -> {"row": table row, "report": report.json or None}; an impossible point
    gives status error with its one-line message."""
    t0 = time.perf_counter()
    row: dict[str, Any] = {**point.values, "point": point.name}
    try:
        cfg = point_config(base_config, point)
        result, report, net = simulate_point(data, cfg, point.overrides)
    except POINT_ERRORS as exc:
        msg = " ".join(str(exc).split())
        row.update(status="error", error=msg, seconds=time.perf_counter() - t0)
        return {"row": row, "report": None}
    row.update(status="ok", error="")
    row.update(metrics_from_report(report, weight_memory_bits(net, cfg)))
    row["codes_differ"] = int(np.count_nonzero(result.outputs != baseline.outputs))
    row["argmax_differ"] = int(np.count_nonzero(result.predictions != baseline.predictions))
    row["seconds"] = time.perf_counter() - t0
    report["sweep"] = {"point": point.name, "overrides": list(point.overrides),
                       "config": point.config or base_config, "baseline": baseline.name,
                       "codes_differ": row["codes_differ"],
                       "argmax_differ": row["argmax_differ"]}
    return {"row": row, "report": report}


def point_key(base_config: str, point: Point, data: SweepData, baseline_key: str) -> str:
    """Resume key: hashes of the config (file bytes + overrides), model and input, with the
    ground truth, the baseline and the simulator's version."""
    from ..config import resolve_config_path

    h = hashlib.sha256()
    try:
        h.update(resolve_config_path(point.config or base_config).read_bytes())
    except (ConfigError, OSError):
        h.update(str(point.config).encode())
    h.update(json.dumps({
        "format": SWEEP_FORMAT, "tool": __version__, "overrides": list(point.overrides),
        "name": point.name,
        "model": data.provenance.get("model_sha256"), "input": data.provenance.get(
            "input_sha256"), "tolerance": data.tolerance, "baseline": baseline_key,
    }, sort_keys=True).encode())
    return h.hexdigest()


# --- executors -------------------------------------------------------------------------------


def run_local(
    data: SweepData, base_config: str, points: list[Point], baseline: Baseline
) -> Generator[tuple[int, dict[str, Any]], None, None]:
    """(index, result) in point order, in this process."""
    for i, pt in enumerate(points):
        yield i, run_point(data, base_config, pt, baseline)


def _task(data: SweepData, base_config: str, point: Point, baseline: Baseline,
          index: int) -> tuple[int, dict[str, Any]]:
    return index, run_point(data, base_config, point, baseline)


class ClusterError(ConfigError):
    """The Dask cluster cannot be reached or started."""


@contextmanager
def dask_client(jobs: int, scheduler: str | None) -> Iterator[Any]:
    """A connected ``distributed.Client``: to the scheduler at ``scheduler``, or to a local
    cluster of ``jobs`` single-threaded worker processes bound to 127.0.0.1 (closed on exit).
    Raises ClusterError (one line) when dask is missing or the scheduler cannot be reached."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError(
            "--jobs/--scheduler: dask.distributed is not installed: pip install "
            "'dask[distributed]' (or --jobs 1 to run in this process)"
        ) from None
    if scheduler:
        try:
            client = Client(scheduler, timeout=20)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(
                f"--scheduler {scheduler}: cannot reach a Dask scheduler ({exc}); start one "
                "with `dask scheduler` or drop --scheduler for a local cluster"
            ) from None
        with client:
            yield client
        return
    one = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1"}
    with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, env=one) as cluster, Client(cluster) as client:
        yield client


def run_dask(
    client: Any,
    data: SweepData,
    base_config: str,
    points: list[Point],
    baseline: Baseline,
    timeout: float | None = None,
) -> Generator[tuple[int, dict[str, Any]], None, None]:
    """(index, result) as points finish on the cluster of ``client`` (see dask_client); the
    model and inputs are scattered to every worker once. ``timeout``: seconds for all points,
    after which ClusterError is raised (None = no limit)."""
    from distributed import as_completed

    shared = client.scatter(data, broadcast=True)
    base = client.scatter(baseline, broadcast=True)
    futures = [client.submit(_task, shared, base_config, pt, base, i, pure=False)
               for i, pt in enumerate(points)]
    try:
        for fut in as_completed(futures, timeout=timeout):
            yield fut.result()
    except TimeoutError:
        raise ClusterError(
            f"dask: the points did not finish within {timeout} s; are the workers alive? "
            "(finished points are kept: run again to resume)"
        ) from None
    finally:
        client.cancel(futures)
