"""Command line: ``hwsim run | demo | train | config | report | bench | vectors``.

Every user error (bad option, config, model, input, output folder or an ``error``-policy
overflow) ends with one line ``hwsim: error: <file or option>: <problem>`` and exit status 2;
options and the output folder are checked before any computing, and a run's files are
published as one set or not at all (simulator.outputs).
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import __version__
from .config import ConfigError, load_config, preset_names, schema_rows
from .engine import InputError
from .fixedpoint import RegisterOverflowError
from .network import ModelError
from .outputs import OutputError, check_out_dir, check_out_file, write_file_atomic
from .trace import TraceError, add_trace_arguments, trace_request
from .vpr.datasets import DatasetError

EXIT_USER_ERROR = 2
EXIT_OVERFLOW = 3
EXIT_CROSS_CHECK = 4


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``hwsim: error: <option>: <problem>; see --help``."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        m = re.match(r"argument ([^:]+): (.*)", message, re.S)
        if m:
            opt = m.group(1).split("/")[-1]
            message = f"{opt}: {m.group(2)}"
        elif message.startswith("the following arguments are required: "):
            message = f"{message.split(': ', 1)[1]}: required"
        message = " ".join(message.split())
        print(f"hwsim: error: {message}; see '{self.prog} --help'", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def _int_at_least(low: int, what: str = "") -> Callable[[str], int]:
    """argparse type: an integer >= low (``what`` explains the bound)."""

    def parse(text: str) -> int:
        try:
            v = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{v} must be >= {low}{what}")
        return v

    parse.__name__ = "integer"
    return parse


def _patch_size(text: str) -> int:
    """argparse type: an odd patch-normalisation window >= 3."""
    v = _int_at_least(3, " (a 1x1 window has no spread: every pixel would map to 127)")(text)
    if v % 2 == 0:
        raise argparse.ArgumentTypeError(
            f"{v} must be odd (the window is centred on each pixel), e.g. {v - 1} or {v + 1}")
    return v


def _dims(text: str) -> tuple[int, int]:
    """argparse type: ``H,W`` positive image size."""
    parts = [p.strip() for p in text.split(",")]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not H,W (two integers, e.g. 28,28)") from None
    if len(dims) != 2 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not H,W (two integers >= 1, e.g. 28,28)")
    return dims  # type: ignore[return-value]


def _check_patch_fits(patch: int, dims: tuple[int, int], option: str = "--patch") -> None:
    """A window wider than 2*max(H,W)-1 already covers the whole image from every pixel."""
    biggest = 2 * max(dims) - 1
    if patch > biggest:
        raise InputError(f"{option} {patch}: larger than {biggest}, the widest window a "
                         f"{dims[0]}x{dims[1]} image can use; choose an odd size <= {biggest}")


def _progress_bar(total: int, desc: str, quiet: bool):
    """A tqdm bar on stderr for long runs (hidden when quiet or not a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="query", disable=quiet or None, leave=False)


def _total_events(report: dict) -> int:
    from .report import overflow_event_total

    return overflow_event_total(report)


def _images_input(args: argparse.Namespace, model_path: str) -> tuple[object, str]:
    """Float spikes (Q, K) from --data-dir/--query with the model's preprocessing."""
    from .loaders import load_model
    from .vpr.datasets import load_codes, load_traversal

    net = load_model(model_path)
    meta = net.metadata
    dims: tuple[int, ...] = args.dims or tuple(int(d) for d in meta.get("dims", ()))
    if len(dims) != 2:
        side = int(round(net.in_features**0.5))
        if side * side != net.in_features:
            raise InputError(
                f"{model_path}: cannot infer image dims for {net.in_features} inputs; "
                "pass --dims H,W"
            )
        dims = (side, side)
    if dims[0] * dims[1] != net.in_features:
        raise InputError(
            f"--dims {dims[0]},{dims[1]} gives {dims[0] * dims[1]} inputs but the model "
            f"({model_path}) takes {net.in_features}"
        )
    patch = args.patch or int(meta.get("patch", 15))
    _check_patch_fits(patch, dims)  # type: ignore[arg-type]
    trav = load_traversal(args.data_dir, args.query, max_samples=args.max_samples)
    codes = load_codes(trav, dims=dims, patch=patch, progress=not args.quiet)
    import numpy as np

    return (codes.astype(np.float32) / np.float32(255.0)), f"{args.data_dir} traversal {args.query}"


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
        _check_patch_fits(args.patch, args.dims)
    check_out_dir(args.out)
    if args.trace != "off" and args.trace_dir:
        check_out_dir(args.trace_dir, "--trace-dir")


def cmd_run(args: argparse.Namespace) -> int:
    from .report import input_warning_lines, summary_lines
    from .runner import load_input, run_job

    treq = trace_request(args)
    _check_run_options(args)
    if args.input is not None:  # read once, before the model: a bad input fails first
        inputs: object = load_input(args.input)
        n = inputs.shape[0]  # type: ignore[attr-defined]
    else:
        inputs, _ = _images_input(args, args.model)
        n = inputs.shape[0]  # type: ignore[attr-defined]
    tol = (args.tolerance or 0) if args.data_dir is not None else None
    with _progress_bar(n, "hwsim run", args.quiet) as bar:
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


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .report import summary_lines

    treq = trace_request(args)
    check_out_dir(args.out)
    res = run_demo(args.config, args.query, args.out, overrides=args.set,
                   trace_level=treq.level, quiet=args.quiet, trace=treq)
    for line in summary_lines(res.report):
        print(line)
    r = res.recalls
    print(f"Recall@1 {r[1]:.3f}  Recall@5 {r[5]:.3f}  Recall@10 {r[10]:.3f}  "
          f"(query traversal {args.query!r}, {res.report['queries']} places)")
    if res.trace is not None:
        print(res.trace.line())
    print(f"wrote {res.out_dir}/ (report.json, outputs.npy, predictions.npy, scores.npy)"
          f"  in {res.seconds:.1f} s")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import shlex

    from .loaders import save_npz
    from .vpr.training import train

    _check_patch_fits(args.patch, args.dims)
    database = [d.strip() for d in args.database.split(",") if d.strip()]
    if not database:
        raise InputError(f"--database {args.database!r}: give traversal names, e.g. spring,fall")
    queries = [q.strip() for q in args.queries.split(",") if q.strip()] if args.queries else None
    if args.queries is not None and not queries:
        raise InputError(f"--queries {args.queries!r}: give traversal names, e.g. summer")
    out = check_out_file(args.out)
    if out.suffix != ".npz":
        raise InputError(f"--out {args.out}: the model is written as .npz; name it "
                         f"{out.with_suffix('.npz').name}")
    argv = ["hwsim", "train"] + list(sys.argv[2:] if len(sys.argv) > 2 else [])
    try:
        net, report = train(
            args.data_dir,
            database=database,
            places=args.places,
            dims=args.dims,
            patch=args.patch,
            seed=args.seed,
            max_module=args.max_module,
            progress=not args.quiet,
            queries=queries,
            epochs=args.epochs,
            command=shlex.join(argv),
        )
    except ValueError as exc:
        if isinstance(exc, ConfigError | ModelError | InputError | DatasetError | TraceError):
            raise
        raise InputError(f"hwsim train: {exc}") from None
    write_file_atomic(out, lambda tmp: save_npz(net, tmp))
    print(report.summary())
    print(f"wrote {args.out}")
    return 0


def _cross_check(out: object, inputs: object, n: int) -> int:
    """Re-run the first ``n`` queries on the stepwise (cycle-by-cycle) engine and compare."""
    import time

    from .engine import simulate
    from .engine.stepwise import compare_with_fast, simulate_stepwise
    from .runner import load_input

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


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.file, args.set)
    if args.model:
        from .engine import check_fit
        from .loaders import ModelLimits, load_model

        net = load_model(args.model, ModelLimits.for_config(cfg))
        check_fit(net, cfg)
        print(f"{cfg.source}: ok for model {args.model}")
    else:
        print(f"{cfg.source}: ok ({cfg.name}, sha256 {cfg.sha256[:12]})")
    if args.show:
        for lname in ("feature", "output"):
            print(f"[{lname}] {cfg.for_layer(lname)}")
    return 0


def cmd_config_keys(args: argparse.Namespace) -> int:
    for key, default, allowed, doc in schema_rows():
        print(f"{key:32} default {default:14} allowed {allowed:40} {doc}")
    return 0


def cmd_config_presets(args: argparse.Namespace) -> int:
    for name in preset_names():
        cfg = load_config(name)
        print(f"{name:20} {cfg.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="hwsim",
        description="Bit-accurate, cycle-level hardware simulator for int8 VPRTempo.",
    )
    p.add_argument("--version", action="version", version=f"tempo-hwsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a model on a hardware config")
    run.add_argument("--config", required=True, help="preset name or TOML file")
    run.add_argument("--model", required=True, help=".npz, VPRTempo .pth, or seed mats folder")
    src = run.add_argument_group("input (one of)")
    src.add_argument("--input", help=".npy (queries, inputs): float spikes in [0, 1] or uint8")
    src.add_argument("--data-dir", help="images: a VPRTempo-layout dataset or image folder")
    src.add_argument("--query", help="traversal name in --data-dir (e.g. summer)")
    src.add_argument("--dims", type=_dims,
                     help="H,W image size (default: the model's metadata)")
    src.add_argument("--patch", type=_patch_size,
                     help="patch-normalisation window, odd >= 3 (default: the model's, or 15)")
    src.add_argument("--max-samples", type=_int_at_least(1),
                     help="use at most this many images")
    src.add_argument("--tolerance", type=_int_at_least(0), default=None,
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
    run.add_argument("--cross-check", type=_int_at_least(1, "; leave the option out for none"),
                     default=None, metavar="N",
                     help="also step the first N queries cycle by cycle and compare every "
                          "register, count and cycle with the fast engine (exit 4 on a "
                          "difference)")
    add_trace_arguments(run)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="the main job on the embedded default (no downloads)")
    demo.add_argument("--config", default="int8_fixed_point", help="preset or TOML file")
    demo.add_argument("--query", default="summer", help="query traversal of the synthetic route")
    demo.add_argument("--out", default="traces/demo", help="output folder")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    demo.add_argument("--quiet", action="store_true")
    add_trace_arguments(demo, default="neuron", with_dir=False)
    demo.set_defaults(func=cmd_demo)

    tr = sub.add_parser("train", help="train a VPRTempo model in numpy and quantize it to int8")
    tr.add_argument("--data-dir", required=True, help="dataset in VPRTempo layout")
    tr.add_argument("--database", default="spring,fall", help="traversals to learn, comma list")
    tr.add_argument("--queries", default=None, help="held-out traversals for Recall@N")
    tr.add_argument("--places", type=_int_at_least(1), default=100)
    tr.add_argument("--dims", type=_dims, default=(28, 28), help="H,W (default 28,28)")
    tr.add_argument("--patch", type=_patch_size, default=15,
                    help="patch-normalisation window, odd >= 3 (default 15)")
    tr.add_argument("--seed", type=_int_at_least(0), default=0)
    tr.add_argument("--max-module", type=_int_at_least(1), default=500,
                    help="places per module (default 500)")
    tr.add_argument("--epochs", type=_int_at_least(1), default=4)
    tr.add_argument("--out", required=True, help="model .npz to write")
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)

    cfg = sub.add_parser("config", help="check configs, list keys and presets")
    csub = cfg.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    chk = csub.add_parser("check", help="validate a config (and its fit to a model)")
    chk.add_argument("file")
    chk.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    chk.add_argument("--model", help="also check that this model fits the config")
    chk.add_argument("--show", action="store_true", help="print the resolved per-layer config")
    chk.set_defaults(func=cmd_config_check)
    keys = csub.add_parser("keys", help="list every config key with default and range")
    keys.set_defaults(func=cmd_config_keys)
    pre = csub.add_parser("presets", help="list the presets in hwconfig/")
    pre.set_defaults(func=cmd_config_presets)

    from .bench import add_bench_parser
    from .exploration.cli import add_sweep_parser
    from .report_cli import add_report_parser
    from .vectors import add_vectors_parser

    add_report_parser(sub)
    add_bench_parser(sub)
    add_vectors_parser(sub)
    from .formats.cli import add_compare_with_argument, add_export_parser

    add_export_parser(sub)
    add_compare_with_argument(run)
    add_sweep_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a one-line option error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    previous = _terminate_as_exception()
    try:
        return int(args.func(args))
    except _Terminated:
        print("hwsim: terminated (nothing was published)", file=sys.stderr)
        return 143
    except (
        ConfigError, ModelError, InputError, RegisterOverflowError, DatasetError, TraceError,
        OutputError,
    ) as exc:
        print(f"hwsim: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("hwsim: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM, raised so that staging folders are removed and locks released on the way out."""


def _terminate_as_exception() -> Any:
    """Turn SIGTERM into _Terminated while a command runs; return the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: object) -> None:
        raise _Terminated()

    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
