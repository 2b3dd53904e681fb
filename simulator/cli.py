"""Command line: ``hwsim run | demo | train | config | report | bench | vectors | export | sweep``.

Argument parsing and dispatch only: each subcommand lives in simulator/commands/<name>.py
(``bench`` in simulator/bench.py, ``vectors`` in simulator/vectors/command.py) and registers
its own parser. Every user error (bad option, config, model, input, output folder or an
``error``-policy overflow) ends with one line ``hwsim: error: <file or option>: <problem>`` and
exit status 2; options and the output folder are checked before any computing, and a run's
files are published as one set or not at all (simulator.outputs).
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__, _process_env  # noqa: F401  (_process_env: before numpy loads)
from .commands import config as config_command
from .commands import demo as demo_command
from .commands import export as export_command
from .commands import report as report_command
from .commands import run as run_command
from .commands import sweep as sweep_command
from .commands import train as train_command
from .commands._options import EXIT_CROSS_CHECK, EXIT_OVERFLOW, EXIT_USER_ERROR
from .config import ConfigError
from .engine import InputError
from .fixedpoint import RegisterOverflowError
from .network import ModelError
from .outputs import OutputError
from .trace import TraceError
from .vpr.datasets import DatasetError

__all__ = ["EXIT_CROSS_CHECK", "EXIT_OVERFLOW", "EXIT_USER_ERROR", "build_parser", "main"]


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


def build_parser() -> argparse.ArgumentParser:
    """The ``hwsim`` parser: each subcommand module registers its own subparser, in order."""
    p = _Parser(
        prog="hwsim",
        description="Bit-accurate, cycle-level hardware simulator for int8 VPRTempo.",
    )
    p.add_argument("--version", action="version", version=f"tempo-hwsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from .bench import add_bench_parser
    from .vectors import add_vectors_parser

    run_command.add_parser(sub)
    demo_command.add_parser(sub)
    train_command.add_parser(sub)
    config_command.add_parser(sub)
    report_command.add_parser(sub)
    add_bench_parser(sub)
    add_vectors_parser(sub)
    export_command.add_parser(sub)
    sweep_command.add_parser(sub)
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
