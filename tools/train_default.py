#!/usr/bin/env python3
"""Train the bundled default model: synthetic route (cached) -> 28x28 -> 1568 -> 100 places.

    python tools/train_default.py            # writes simulator/data/default_model.npz

The model's metadata records this exact command line and the seeds; retraining with them
gives the same weights on the same numpy version (training is deterministic).
Exits with status 1 if the quantized Recall@1 falls more than 0.03 below the float model's.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulator.loaders.npz import save_npz  # noqa: E402
from simulator.vpr.synthroute import cached_route  # noqa: E402
from simulator.vpr.training import MAX_QUANT_DROP, train  # noqa: E402

DEFAULT_OUT = ROOT / "simulator" / "data" / "default_model.npz"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--places", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--route-seed", type=int, default=0, help="synthetic route seed")
    ap.add_argument("--dims", default="28,28")
    ap.add_argument("--patch", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    dims = tuple(int(v) for v in args.dims.split(","))
    command = shlex.join(
        [
            "python", "tools/train_default.py", "--places", str(args.places),
            "--seed", str(args.seed), "--route-seed", str(args.route_seed),
            "--dims", args.dims, "--patch", str(args.patch), "--epochs", str(args.epochs),
        ]
    )
    t0 = time.perf_counter()
    route = cached_route(places=args.places, seed=args.route_seed)
    t_route = time.perf_counter() - t0
    net, report = train(
        route, database=("spring", "fall"), places=args.places, dims=dims,  # type: ignore[arg-type]
        patch=args.patch, seed=args.seed, max_module=500, progress=not args.no_progress,
        epochs=args.epochs, command=command,
    )
    save_npz(net, args.out)
    print(f"route: {route} ({t_route:.1f}s)")
    print(report.summary())
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    if report.warnings:
        return 1 if any(r.drop > MAX_QUANT_DROP for r in report.recalls) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
