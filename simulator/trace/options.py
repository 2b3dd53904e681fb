"""The trace options of ``hwsim run``/``demo`` (``--trace``, ``--trace-filter``, ...):
adding them to a parser, checking them, and writing the trace they ask for."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .request import TraceRequest, TraceSummary
from .schema import DEFAULT_MAX_ROWS, FORMATS, LEVELS, TraceError
from .writers import write_trace


def add_trace_arguments(parser: argparse.ArgumentParser, default: str = "off",
                        with_dir: bool = True) -> None:
    """Add --trace, --trace-filter, --trace-format, --max-trace-rows (--trace-dir) options."""
    g = parser.add_argument_group("traces (docs/traces.md)")
    g.add_argument("--trace", choices=LEVELS, default=default,
                   help="trace level: layer/neuron from the fast path, op/cycle stepwise "
                        f"(default {default})")
    g.add_argument("--trace-filter", default="", metavar="EXPR",
                   help="e.g. module=0,layer=feature,neuron=0:63,query=0:9,cycle=0:5000 "
                        "(inclusive ranges)")
    g.add_argument("--trace-around-first", type=int, default=None, metavar="N",
                   help="trace N cycles either side of each layer's first overflow event "
                        "(same as adding first=N to --trace-filter)")
    g.add_argument("--trace-format", choices=FORMATS, default="parquet",
                   help="parquet or csv rows, or vcd (a waveform; --trace op or cycle)")
    g.add_argument("--max-trace-rows", type=int, default=DEFAULT_MAX_ROWS, metavar="N",
                   help=f"stop (writing nothing) above N rows (default {DEFAULT_MAX_ROWS:,})")
    if with_dir:
        g.add_argument("--trace-dir", default=None, metavar="DIR",
                       help="where traces go (default: the --out folder, published with the "
                            "run's result set)")


def trace_request(args: argparse.Namespace) -> TraceRequest:
    """The TraceRequest of ``run``/``demo`` options (validated; raises TraceError)."""
    tdir = getattr(args, "trace_dir", None)
    if tdir is not None and not str(tdir).strip():
        raise TraceError("--trace-dir '': an empty path; give a folder or drop the option")
    expr = getattr(args, "trace_filter", "") or ""
    around = getattr(args, "trace_around_first", None)
    if around is not None:
        if around < 0:
            raise TraceError(f"--trace-around-first {around}: give cycles >= 0, e.g. 16")
        expr = f"{expr},first={around}" if expr.strip() else f"first={around}"
    req = TraceRequest(
        getattr(args, "trace", "off"), expr,
        getattr(args, "trace_format", "parquet"),
        getattr(args, "max_trace_rows", DEFAULT_MAX_ROWS),
        Path(tdir) if tdir else None,
    )
    req.check()
    return req


def check_trace_arguments(args: argparse.Namespace) -> None:
    """Validate the trace options before a (long) run; raises TraceError."""
    trace_request(args)


def trace_dir(args: argparse.Namespace) -> Path:
    """--trace-dir, else the run's --out folder, else traces/run."""
    if args.trace_dir:
        return Path(args.trace_dir)
    if getattr(args, "out", None):
        return Path(args.out)
    return Path("traces") / "run"


def handle_trace(args: argparse.Namespace, run_output: Any) -> TraceSummary | None:
    """Write the trace the ``run`` options ask for; returns its summary (None when off).

    run_output: the runner's RunOutput (``result``; ``net`` and ``cfg`` if it carries them,
    else they are loaded again from --config/--set and --model).
    """
    if getattr(args, "trace", "off") == "off":
        return None
    net = getattr(run_output, "net", None)
    cfg = getattr(run_output, "cfg", None)
    if cfg is None:
        from ..config import load_config

        cfg = load_config(args.config, getattr(args, "set", []) or [])
    if net is None:
        from ..loaders import load_model

        net = load_model(args.model)
    summary = write_trace(
        run_output.result, net, cfg, None, trace_dir(args), args.trace, trace_request(args).filter,
        args.trace_format, args.max_trace_rows,
        provenance={"run_out": str(getattr(args, "out", ""))},
    )
    return summary
