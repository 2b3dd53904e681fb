"""``hwsim run``: a model on a hardware config, from a .npy of spikes or a folder of images.

Options and the output folder are checked before anything is loaded; the run itself is
:func:`simulator.runner.run_job` (one result set in --out, published all or nothing).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..engine import InputError
from ..outputs import check_out_dir
from ..trace import add_trace_arguments, trace_request
from ._options import (
    EXIT_CROSS_CHECK,
    EXIT_OVERFLOW,
    check_patch_fits,
    dims,
    int_at_least,
    patch_size,
    progress_bar,
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``hwsim run`` on the CLI's subparsers; sets ``func=cmd_run``."""
    run = sub.add_parser("run", help="run a model on a hardware config")
    run.add_argument("--config", required=True, help="preset name or TOML file")
    run.add_argument("--model", required=True, help=".npz, VPRTempo .pth, or seed mats folder")
    src = run.add_argument_group("input (one of)")
    src.add_argument("--input", help=".npy (queries, inputs): float spikes in [0, 1] or uint8")
    src.add_argument("--data-dir", help="images: a VPRTempo-layout dataset or image folder")
    src.add_argument("--query", help="traversal name in --data-dir (e.g. summer)")
    src.add_argument("--dims", type=dims,
                     help="H,W image size (default: the model's metadata)")
    src.add_argument("--patch", type=patch_size,
                     help="patch-normalisation window, odd >= 3 (default: the model's, or 15)")
    src.add_argument("--max-samples", type=int_at_least(1),
                     help="use at most this many images")
    src.add_argument("--tolerance", type=int_at_least(0), default=None,
                     help="ground truth for Recall@N with --data-dir: query i = place i +- N "
                          "(default 0)")
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set accumulator.bits=24")
    run.add_argument("--save-codes", action="store_true",
                     help="also write the quantized input codes (input_codes.npy, uint8) for "
                          "hwsim vectors --input")
    run.add_argument("--fail-on-overflow", action="store_true",
                     help="exit 3 if any accumulator or pre-add overflow event happened")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--cross-check", type=int_at_least(1, "; leave the option out for none"),
                     default=None, metavar="N",
                     help="also step the first N queries cycle by cycle and compare every "
                          "register, count and cycle with the fast engine (exit 4 on a "
                          "difference)")
    add_trace_arguments(run)
    add_compare_with_argument(run)
    run.set_defaults(func=cmd_run)
    return run


def add_compare_with_argument(run_parser: argparse.ArgumentParser) -> None:
    """``hwsim run --compare-with CODES.npy``."""
    run_parser.add_argument(
        "--compare-with", dest="compare_with", metavar="CODES.npy",
        help="output codes produced elsewhere (an engine, an RTL simulation), shape (queries, "
        "places): report.json gains compare_with_codes (differing codes and argmaxes)",
    )


def _total_events(report: dict) -> int:
    from ..report import overflow_event_total

    return overflow_event_total(report)


def _images_input(args: argparse.Namespace, model_path: str) -> tuple[object, str]:
    """Float spikes (Q, K) from --data-dir/--query with the model's preprocessing; the model
    is read within the config's weight-memory limit (the config is loaded first)."""
    from ..config import load_config
    from ..loaders import ModelLimits, load_model
    from ..vpr.model_inputs import traversal_spikes

    net = load_model(model_path, ModelLimits.for_config(load_config(args.config, args.set)))
    return traversal_spikes(net, model_path, args.data_dir, args.query, args.dims, args.patch,
                            args.max_samples, progress=not args.quiet)


def _check_run_options(args: argparse.Namespace) -> None:
    """Everything about ``run``'s options that can be checked before loading anything."""
    if (args.input is None) == (args.data_dir is None):
        raise InputError("give either --input FILE.npy or --data-dir DIR [--query NAME]")
    if args.input is not None:
        given = [f"--{n.replace('_', '-')}" for n in ("query", "dims", "patch", "max_samples",
                                                       "tolerance")
                 if getattr(args, n) is not None]
        if given:
            raise InputError(f"{', '.join(given)}: only used with --data-dir (images); drop "
                             "it or give --data-dir instead of --input")
    if args.patch is not None and args.dims is not None:
        check_patch_fits(args.patch, args.dims)
    check_out_dir(args.out)
    if args.trace != "off" and args.trace_dir:
        check_out_dir(args.trace_dir, "--trace-dir")


def cmd_run(args: argparse.Namespace) -> int:
    from ..report import input_warning_lines, summary_lines
    from ..runner import load_input, run_job

    treq = trace_request(args)
    _check_run_options(args)
    if args.input is not None:  # read once, before the model: a bad input fails first
        inputs: object = load_input(args.input)
        n = inputs.shape[0]  # type: ignore[attr-defined]
    else:
        inputs, _ = _images_input(args, args.model)
        n = inputs.shape[0]  # type: ignore[attr-defined]
    tol = (args.tolerance or 0) if args.data_dir is not None else None
    with progress_bar(n, "hwsim run", args.quiet) as bar:
        out = run_job(args.config, args.model, inputs, args.out, args.set, bar.update, tol,
                      trace=treq, compare_codes=args.compare_with,
                      save_codes=args.save_codes, input_file=args.input)
    for line in input_warning_lines(out.report):
        print(line, file=sys.stderr)
    for line in summary_lines(out.report):
        print(line)
    for note in out.report.get("notes", []):
        print(f"hwsim: warning: {note}", file=sys.stderr)
    if "readout" in out.report:
        r = out.report["readout"]["recall"]
        print(f"Recall@1 {r['R@1']:.3f}  Recall@5 {r['R@5']:.3f}  Recall@10 {r['R@10']:.3f}"
              f"  (query i = place i +- {tol})")
    print(f"wrote {args.out}/outputs.npy, predictions.npy, scores.npy, report.json")
    if out.trace is not None:
        print(out.trace.line())
    if args.cross_check:
        rc = _cross_check(out, inputs, args.cross_check)
        if rc:
            return rc
    if args.fail_on_overflow and _total_events(out.report):
        print(
            f"hwsim: overflow: {_total_events(out.report)} overflow events "
            "(--fail-on-overflow)",
            file=sys.stderr,
        )
        return EXIT_OVERFLOW
    return 0


def _cross_check(out: object, inputs: object, n: int) -> int:
    """Re-run the first ``n`` queries on the stepwise (cycle-by-cycle) engine and compare."""
    import time

    from ..engine import simulate
    from ..engine.stepwise import compare_with_fast, simulate_stepwise
    from ..runner import load_input

    x = load_input(inputs) if isinstance(inputs, str) else inputs
    x = x[:n]  # type: ignore[index]
    t0 = time.perf_counter()
    fast = simulate(out.net, out.cfg, x)  # type: ignore[attr-defined]
    step = simulate_stepwise(out.net, out.cfg, x)  # type: ignore[attr-defined]
    diffs = compare_with_fast(fast, step)
    if diffs:
        print(f"hwsim: cross-check FAILED on {len(x)} queries: the stepwise and fast engines "
              "differ (please report this):", file=sys.stderr)
        for d in diffs[:20]:
            print(f"  {d}", file=sys.stderr)
        return EXIT_CROSS_CHECK
    print(f"cross-check: {len(x)} queries stepped cycle by cycle "
          f"({int(step.cycles_per_query.sum()):,} cycles) agree with the fast engine bit for bit"
          f" ({time.perf_counter() - t0:.1f} s)")
    return 0
