"""Command line: ``hwsim run | config | report | bench | demo | train``.

Every user error (bad config, model, input or an ``error``-policy overflow) ends with one line
``hwsim: error: <file>: <problem>`` and exit status 2; nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .config import ConfigError, load_config, preset_names, schema_rows
from .engine import InputError
from .fixedpoint import RegisterOverflowError
from .network import ModelError

EXIT_USER_ERROR = 2
EXIT_OVERFLOW = 3


def _progress_bar(total: int, desc: str, quiet: bool):
    """A tqdm bar on stderr for long runs (hidden when quiet or not a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="query", disable=quiet or None, leave=False)


def _total_events(report: dict) -> int:
    return sum(
        ov["acc_wrap"] + ov["acc_saturate"] + ov["pre_add_overflow"]
        for ov in report["overflow"].values()
    )


def cmd_run(args: argparse.Namespace) -> int:
    from .report import summary_lines
    from .runner import load_input, run_job

    n = load_input(args.input).shape[0]
    with _progress_bar(n, "hwsim run", args.quiet) as bar:
        out = run_job(args.config, args.model, args.input, args.out, args.set, bar.update)
    for line in summary_lines(out.report):
        print(line)
    print(f"wrote {args.out}/outputs.npy, predictions.npy, report.json")
    if args.fail_on_overflow and _total_events(out.report):
        print(
            f"hwsim: overflow: {_total_events(out.report)} accumulator events "
            "(--fail-on-overflow)",
            file=sys.stderr,
        )
        return EXIT_OVERFLOW
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.file, args.set)
    if args.model:
        from .engine import check_fit
        from .loaders import load_model

        net = load_model(args.model)
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
    p = argparse.ArgumentParser(
        prog="hwsim",
        description="Bit-accurate, cycle-level hardware simulator for int8 VPRTempo.",
    )
    p.add_argument("--version", action="version", version=f"tempo-hwsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a model on a hardware config")
    run.add_argument("--config", required=True, help="preset name or TOML file")
    run.add_argument("--model", required=True, help=".npz, VPRTempo .pth, or seed mats folder")
    run.add_argument("--input", required=True, help=".npy (queries, inputs): float or uint8")
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set accumulator.bits=24")
    run.add_argument("--fail-on-overflow", action="store_true",
                     help="exit 3 if any accumulator or pre-add overflow event happened")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    cfg = sub.add_parser("config", help="check configs, list keys and presets")
    csub = cfg.add_subparsers(dest="config_command", required=True)
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, ModelError, InputError, RegisterOverflowError) as exc:
        print(f"hwsim: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("hwsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
