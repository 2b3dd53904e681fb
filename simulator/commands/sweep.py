"""``hwsim sweep``: the argument parser and the command (the work is in
simulator/exploration/api.py; docs/sweeps.md)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..exploration.table import OutputError, accuracy_column, format_table, pareto_front
from ._options import EXIT_USER_ERROR


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``sweep`` subcommand to the ``hwsim`` subparsers."""
    sw = sub.add_parser(
        "sweep", help="run a grid of config points; one table, Pareto points, plots",
        description="Run every point of --grid (Cartesian product) and --points on one model "
                    "and one set of inputs; write DIR/sweep.parquet, DIR/sweep.csv and "
                    "DIR/points/<point>/report.json (docs/sweeps.md).")
    sw.add_argument("--config", default="int8_fixed_point",
                    help="preset or TOML file every point starts from (default int8_fixed_point)")
    sw.add_argument("--model", help=".npz, VPRTempo .pth or seed mats folder (--demo: the "
                                    "bundled default)")
    src = sw.add_argument_group("input (one of)")
    src.add_argument("--input", help=".npy (queries, inputs): float spikes or uint8 codes")
    src.add_argument("--data-dir", help="images: a VPRTempo-layout dataset or image folder")
    src.add_argument("--demo", action="store_true",
                     help="the demo's synthetic route and default model (as `hwsim demo`)")
    src.add_argument("--query", help="traversal to run (--data-dir, --demo; demo default "
                                     "summer)")
    src.add_argument("--dims", help="H,W image size (default: the model's metadata)")
    src.add_argument("--patch", type=int, help="patch-normalisation window (default 15)")
    src.add_argument("--max-samples", type=int, help="use at most this many images")
    src.add_argument("--tolerance", type=int, default=None,
                     help="ground truth for Recall@N: query i = place i +- N (default 0 with "
                          "images; with --input only when given)")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=VALUES",
                    help="a swept key: a,b,c | 16..32 | 16..32:2 (repeat for a product)")
    sw.add_argument("--points", metavar="FILE.toml",
                    help="named points: [points.<name>] tables of keys, optional config=")
    sw.add_argument("--out", required=True, metavar="DIR", help="output folder (resumable)")
    sw.add_argument("--baseline", metavar="KEY=VALUE,...",
                    help="overrides of the baseline point for codes_differ/argmax_differ "
                         "(default: the config as given)")
    sw.add_argument("--jobs", type=int, default=None,
                    help="worker processes of a local Dask cluster (default: one per CPU; "
                         "1 = run in this process)")
    sw.add_argument("--scheduler", metavar="ADDRESS",
                    help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786")
    sw.add_argument("--plot", action="store_true", help="also write PNG plots into DIR")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=cmd_sweep)
    return sw


def _dims(text: str | None) -> tuple[int, int] | None:
    from ..config import ConfigError

    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--dims {text}: expected H,W, e.g. 28,28") from None
    return h, w


def pareto_text(df: Any) -> str:
    """The Pareto points as tables: accuracy against energy and against weight memory."""
    acc, direction, gain = accuracy_column(df)
    view = df.assign(_gain=gain)
    swept = list(df.columns[: list(df.columns).index("point")])
    out = []
    for cost in ("energy_uj_per_query", "weight_memory_bits"):
        front = pareto_front(view, cost, "_gain")
        cols = [*(swept or ["point"]), acc, cost]
        title = (f"Pareto points: {acc} ({direction} is better) against {cost} ({len(front)} "
                 f"of {int((df['status'] == 'ok').sum())} ok points)")
        out.append(title + "\n" + format_table(front, cols))
    return "\n\n".join(out)


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..exploration.api import sweep
    from ..plots import PlotError, _pyplot

    if args.jobs is None:
        args.jobs = os.cpu_count() or 1
    if args.jobs < 1:
        print(f"hwsim: error: --jobs {args.jobs}: must be at least 1", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        if args.plot:
            _pyplot()
        df = sweep(
            args.config, args.model, args.input, grid=args.grid, points=args.points,
            out=args.out, baseline=args.baseline or (), jobs=args.jobs,
            scheduler=args.scheduler, plot=args.plot, data_dir=args.data_dir,
            query=args.query, tolerance=args.tolerance, demo=args.demo,
            dims=_dims(args.dims), patch=args.patch, max_samples=args.max_samples,
            progress=not args.quiet, log=lambda m: print(f"hwsim sweep: {m}", file=sys.stderr),
        )
    except (PlotError, OutputError) as exc:
        print(f"hwsim: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    n_err = int((df["status"] == "error").sum())
    print(f"{len(df)} points, {len(df) - n_err} ok, {n_err} error")
    if len(df) - n_err:
        print(pareto_text(df))
    files = "sweep.parquet, sweep.csv, points/<point>/report.json"
    print(f"wrote {args.out}/{{{files}}}" + (" and PNG plots" if args.plot else ""))
    return 0


add_sweep_parser = add_parser  # the name simulator/exploration/cli.py exported
