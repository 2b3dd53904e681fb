"""``simulator.sweep(...)``: many (config, model, inputs) points -> one pandas table.

Everything is checked before any point runs (grids, points file, config, model, inputs,
baseline); then each point runs once (a finished point in ``out`` is not run again) and the
table lands in ``out/sweep.parquet`` and ``out/sweep.csv``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Generator, Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ..config import load_config
from ..engine import InputError
from ..outputs import HeldFolder
from .execute import (
    POINT_ERRORS,
    Baseline,
    SweepData,
    dask_client,
    point_key,
    run_baseline,
    run_dask,
    run_local,
)
from .grid import GridError, Point, all_points, grid_points, parse_assignments, point_folder
from .table import (
    OutputError,
    make_frame,
    safe_dir,
    table_bytes,
    write_atomic,
)

SWEEP_PARQUET = "sweep.parquet"
SWEEP_CSV = "sweep.csv"


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def load_sweep_data(
    model: str | os.PathLike[str] | None,
    inputs: str | os.PathLike[str] | np.ndarray | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    query: str | None = None,
    tolerance: int | None = None,
    demo: bool = False,
    dims: tuple[int, int] | None = None,
    patch: int | None = None,
    max_samples: int | None = None,
    quiet: bool = True,
) -> SweepData:
    """Load the model once and the inputs once (images preprocessed once)."""
    from ..loaders import load_model
    from ..runner import load_input, sha256_file

    if demo:
        from ..demo import DEFAULT_MODEL, DEFAULT_QUERY

        model = model or DEFAULT_MODEL
        query = query or DEFAULT_QUERY
    if model is None:
        raise InputError("--model: give a model file (or --demo for the bundled default)")
    if sum(x is not None for x in (inputs, data_dir)) + int(demo) != 1:
        raise InputError("give exactly one of --input FILE.npy, --data-dir DIR --query NAME, "
                         "--demo")
    net = load_model(model)
    prov: dict[str, Any] = {"model_sha256": sha256_file(model)}
    extra: dict[str, Any] = {}
    if demo or data_dir is not None:
        from ..vpr.datasets import load_codes, load_traversal, require_places

        meta = net.metadata
        if demo:
            from ..demo import _route_params
            from ..vpr.synthroute import cached_route

            rp = _route_params(net)
            root = cached_route(**rp["route"])
            trav = require_places(load_traversal(root, query), net.places)
            dims_, patch_, resize = rp["dims"], rp["patch"], rp["resize"]
            tol = rp["tolerance"] if tolerance is None else tolerance
            src = f"{root} traversal {query!r}"
        else:
            if not query:
                raise InputError("--data-dir needs --query NAME (the traversal to run)")
            trav = load_traversal(data_dir, query, max_samples=max_samples)
            dims_ = tuple(dims or meta.get("dims", ())) or None
            if dims_ is None or len(dims_) != 2:
                side = int(round(net.in_features ** 0.5))
                dims_ = (side, side)
            if dims_[0] * dims_[1] != net.in_features:
                raise InputError(
                    f"--dims {dims_[0]},{dims_[1]} gives {dims_[0] * dims_[1]} inputs but the "
                    f"model ({model}) takes {net.in_features}"
                )
            patch_ = patch or int(meta.get("patch", 15))
            resize = str(meta.get("preprocess", {}).get("resize", "torch"))
            tol = 0 if tolerance is None else tolerance
            src = f"{data_dir} traversal {query!r}"
        codes = load_codes(trav, dims=tuple(dims_), patch=patch_, resize=resize,  # type: ignore[arg-type]
                           progress=not quiet)
        if demo:
            codes = codes[: net.places]
        x = (codes.astype(np.float32) / np.float32(255.0)).astype(np.float32)
        extra = {"query_traversal": query}
        prov.update(input_source=src, input_sha256=_digest(codes), input_dtype="float32")
        return SweepData(net, x, src, prov, tol, extra)
    if isinstance(inputs, np.ndarray):
        x, src, digest = inputs, "<images>", _digest(inputs)
    else:
        assert inputs is not None
        x, src, digest = load_input(inputs), str(inputs), sha256_file(inputs)
    prov.update(input_source=src, input_sha256=digest, input_dtype=str(x.dtype))
    return SweepData(net, x, src, prov, tolerance)


def _grid_items(grid: Iterable[str] | Mapping[str, Iterable[Any]]) -> tuple[list[str], list[Point]]:
    """CLI strings stay strings; a mapping {key: values} becomes points directly."""
    if isinstance(grid, Mapping):
        from .grid import check_key

        for k in grid:
            check_key(k, f"grid {k}")
        return [], grid_points([(k, list(v)) for k, v in grid.items()])
    return list(grid), []


def sweep(
    config: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    inputs: str | os.PathLike[str] | np.ndarray | None = None,
    *,
    grid: Iterable[str] | Mapping[str, Iterable[Any]] = (),
    points: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    baseline: str | Iterable[str] = (),
    jobs: int = 1,
    scheduler: str | None = None,
    plot: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
    query: str | None = None,
    tolerance: int | None = None,
    demo: bool = False,
    dims: tuple[int, int] | None = None,
    patch: int | None = None,
    max_samples: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    cluster_timeout: float | None = None,
) -> Any:
    """Run every point of the grid (and ``points`` file) and return the table (DataFrame).

    ``grid``: ``["accumulator.bits=16..32", "accumulator.overflow=wrap,saturate"]`` or
    ``{"accumulator.bits": range(16, 33)}``. ``baseline``: ``"KEY=VALUE,..."`` (default: the
    config as given). ``out``: folder for the table, per-point reports and plots; a finished
    point found there is not run again. ``jobs`` > 1 or ``scheduler`` run points on Dask
    (``cluster_timeout``: seconds for all points there, then ClusterError).
    """
    grid_strings, grid_pts = _grid_items(grid)
    pts = grid_pts + (all_points(grid_strings, points) if grid_strings or points else [])
    names = [p.name for p in pts]
    if not pts:
        raise GridError("grid/points: nothing to sweep; give --grid KEY=VALUES or --points")
    if len(set(names)) != len(names):
        raise GridError("--points: a point name is used twice (also among the grid's names)")
    base_ov = (parse_assignments(baseline, "--baseline") if isinstance(baseline, str)
               else list(baseline))
    if jobs < 1:
        raise GridError(f"--jobs {jobs}: must be at least 1")
    base_cfg = load_config(config, base_ov)  # the config (and baseline) must load
    swept = list(dict.fromkeys(k for p in pts for k in p.values))
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        _check_out(out_dir, pts)
    data = load_sweep_data(model, inputs, data_dir, query, tolerance, demo, dims, patch,
                           max_samples, quiet=not progress)
    with ExitStack() as stack:
        if out_dir is not None:  # one sweep per folder at a time (a second fails at once)
            stack.enter_context(HeldFolder(out_dir))
        client = None
        if scheduler or jobs > 1:  # connect before anything is written
            client = stack.enter_context(dask_client(jobs, scheduler))
            if log is not None:
                log(f"dask scheduler {client.scheduler.address}")
        rows = _run_points(data, str(config), pts, base_ov, base_cfg.sha256, out_dir, client,
                           cluster_timeout, progress, log)
        df = make_frame(rows, swept, data.tolerance is not None)
        if out_dir is not None:
            pq, csv = table_bytes(df)
            write_atomic(out_dir, SWEEP_PARQUET, pq)
            write_atomic(out_dir, SWEEP_CSV, csv)
            if plot:
                from .plots import write_plots

                write_plots(df, swept, out_dir)
    return df


def _run_points(
    data: SweepData,
    config: str,
    pts: list[Point],
    base_ov: list[str],
    base_key: str,
    out_dir: Path | None,
    client: Any,
    timeout: float | None,
    progress: bool,
    log: Callable[[str], None] | None,
) -> list[dict[str, Any]]:
    """Rows of every point: finished ones read back from ``out_dir``, the others run (in
    this process, or on ``client``'s cluster) and saved as they finish."""
    keys = [point_key(config, p, data, base_key) for p in pts]
    rows: list[dict[str, Any] | None] = [None] * len(pts)
    pdir = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        safe_dir(out_dir)
        pdir = safe_dir(out_dir / "points")
        for i, p in enumerate(pts):
            rows[i] = _finished_row(pdir / point_folder(p.name), keys[i])
    todo = [i for i, r in enumerate(rows) if r is None]
    if log is not None and len(todo) < len(pts):
        log(f"resuming: {len(pts) - len(todo)} of {len(pts)} points already done in {out_dir}")
    bar = _bar(len(pts), progress)
    bar.update(len(pts) - len(todo))
    sub = [pts[i] for i in todo]
    it: Generator[tuple[int, dict[str, Any]], None, None]
    if not sub:
        it = (r for r in ())
    elif client is not None:
        it = run_dask(client, data, config, sub, _baseline(data, config, base_ov), timeout)
    else:
        it = run_local(data, config, sub, _baseline(data, config, base_ov))
    try:
        for j, res in it:
            i = todo[j]
            rows[i] = res["row"]
            if pdir is not None:
                _save_point(pdir / point_folder(pts[i].name), keys[i], res)
            bar.update(1)
    finally:
        bar.close()
        it.close()
    return [r for r in rows if r is not None]


def _check_out(out_dir: Path, pts: list[Point]) -> None:
    """Refuse an output folder that is a file, or holds a link or file where a folder goes."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    for folder in [out_dir / "points", *(out_dir / "points" / point_folder(p.name)
                                         for p in pts)]:
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise OutputError(f"{folder}: exists and is not a folder (a link or a file); "
                              "remove it")


def _baseline(data: SweepData, config: str, overrides: list[str]) -> Baseline:
    """The baseline point's outputs; an error names --baseline."""
    try:
        return run_baseline(data, config, overrides)
    except POINT_ERRORS as exc:
        what = f"--baseline {','.join(overrides)}" if overrides else f"--config {config}"
        raise GridError(f"{what}: the baseline point cannot run: {exc}") from None


def _bar(total: int, show: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="hwsim sweep", unit="point", disable=not show,
                leave=False, file=sys.stderr)


def _finished_row(folder: Path, key: str) -> dict[str, Any] | None:
    """The stored row of a point finished with the same key, else None."""
    f = folder / "row.json"
    if folder.is_symlink() or not f.is_file() or f.is_symlink():
        return None
    try:
        saved = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        return None
    row = saved.get("row")
    return row if isinstance(row, dict) else None


def _save_point(folder: Path, key: str, res: dict[str, Any]) -> None:
    safe_dir(folder)
    if res["report"] is not None:
        write_atomic(folder, "report.json", (json.dumps(res["report"], indent=2) + "\n").encode())
    # row.json last: its presence marks the point finished
    write_atomic(folder, "row.json", (json.dumps({"key": key, "row": res["row"]}, indent=2)
                                      + "\n").encode())


__all__ = ["Baseline", "SweepData", "load_sweep_data", "sweep"]
