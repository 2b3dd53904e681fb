"""``hwsim demo``: the main job on the embedded default model and synthetic route (no
downloads); the work is :func:`simulator.demo.run_demo`."""

from __future__ import annotations

import argparse
from typing import Any

from ..outputs import check_out_dir
from ..trace import add_trace_arguments, trace_request


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``hwsim demo`` on the CLI's subparsers; sets ``func=cmd_demo``."""
    demo = sub.add_parser("demo", help="the main job on the embedded default (no downloads)")
    demo.add_argument("--config", default="int8_fixed_point", help="preset or TOML file")
    demo.add_argument("--query", default="summer", help="query traversal of the synthetic route")
    demo.add_argument("--out", default="traces/demo", help="output folder")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    demo.add_argument("--quiet", action="store_true")
    add_trace_arguments(demo, default="neuron", with_dir=False)
    demo.set_defaults(func=cmd_demo)
    return demo


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ..report import summary_lines

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
