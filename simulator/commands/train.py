"""``hwsim train``: train a VPRTempo model in numpy and quantize it to int8
(:func:`simulator.vpr.training.train`; docs/training.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import ConfigError
from ..engine import InputError
from ..network import ModelError
from ..outputs import check_out_file, write_file_atomic
from ..trace import TraceError
from ..vpr.datasets import DatasetError
from ._options import check_patch_fits, dims, int_at_least, patch_size


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``hwsim train`` on the CLI's subparsers; sets ``func=cmd_train``."""
    tr = sub.add_parser("train", help="train a VPRTempo model in numpy and quantize it to int8")
    tr.add_argument("--data-dir", required=True, help="dataset in VPRTempo layout")
    tr.add_argument("--database", default="spring,fall", help="traversals to learn, comma list")
    tr.add_argument("--queries", default=None, help="held-out traversals for Recall@N")
    tr.add_argument("--places", type=int_at_least(1), default=100)
    tr.add_argument("--dims", type=dims, default=(28, 28), help="H,W (default 28,28)")
    tr.add_argument("--patch", type=patch_size, default=15,
                    help="patch-normalisation window, odd >= 3 (default 15)")
    tr.add_argument("--seed", type=int_at_least(0), default=0)
    tr.add_argument("--max-module", type=int_at_least(1), default=500,
                    help="places per module (default 500)")
    tr.add_argument("--epochs", type=int_at_least(1), default=4)
    tr.add_argument("--out", required=True, help="model .npz to write")
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=cmd_train)
    return tr


def cmd_train(args: argparse.Namespace) -> int:
    import shlex

    from ..loaders import save_npz
    from ..vpr.training import train

    check_patch_fits(args.patch, args.dims)
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
