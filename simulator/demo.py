"""``hwsim demo``: the main job on the embedded default, with nothing to download.

1. generate (or reuse from the user cache) the synthetic route the default model was trained on;
2. load the bundled default model (``simulator/data/default_model.npz``: 28x28 -> 1568 -> 100
   places, trained by ``tools/train_default.py``; its metadata records the command and seed);
3. run a query traversal the model never saw through the simulator on the default hwconfig;
4. print Recall@1/5/10, cycles per query and the overflow summary, and write report.json,
   outputs, predictions and a neuron-level trace under ``traces/demo`` as one result set.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import load_config
from .loaders import load_npz
from .network import QuantizedNetwork
from .trace import TraceRequest

DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "default_model.npz"
DEFAULT_CONFIG = "int8_fixed_point"
DEFAULT_QUERY = "summer"


@dataclass
class DemoResult:
    recalls: dict[int, float]
    report: dict[str, Any]
    out_dir: Path
    seconds: float
    trace: Any = None


def _route_params(net: QuantizedNetwork) -> dict[str, Any]:
    meta = net.metadata
    route = meta.get("route", {})
    route_kwargs = {"places": int(route.get("places", net.places)),
                    "seed": int(route.get("seed", 0))}
    for key in ("spacing", "jitter"):
        if key in route:
            route_kwargs[key] = route[key]
    if "traversals" in route:
        route_kwargs["traversals"] = tuple(route["traversals"])
    return {
        "route": route_kwargs,
        "dims": tuple(meta.get("dims", (28, 28))),
        "patch": int(meta.get("patch", 15)),
        "resize": str(meta.get("preprocess", {}).get("resize", "torch")),
        "tolerance": int(meta.get("tolerance", 0)),
        "database": list(meta.get("database", [])),
    }


def run_demo(
    config: str = DEFAULT_CONFIG,
    query: str = DEFAULT_QUERY,
    out_dir: str | Path = "traces/demo",
    model: str | Path = DEFAULT_MODEL,
    overrides: list[str] | tuple[str, ...] = (),
    trace_level: str = "neuron",
    quiet: bool = False,
    trace: TraceRequest | None = None,
) -> DemoResult:
    """Run the demo and publish its result set (outputs, report, trace) in ``out_dir``.

    ``trace`` (filter, format, row limit) overrides ``trace_level`` when given. The output
    folder is checked and locked before the route is generated or anything is simulated.
    """
    from .runner import RunSets, execute, readout_block, sha256_file
    from .units.weight_requant import narrow_network
    from .vpr.datasets import load_codes, load_traversal, require_places
    from .vpr.synthroute import cached_route

    t0 = time.perf_counter()
    req = trace if trace is not None else TraceRequest(trace_level)
    req.check()
    cfg = load_config(config, overrides)
    net = load_npz(model)
    rp = _route_params(net)
    with RunSets(out_dir, req) as sets:
        if query in rp["database"]:
            print(
                f"hwsim demo: note: query traversal {query!r} was also used for training",
                file=sys.stderr,
            )
        route_dir = cached_route(
            **rp["route"], announce=None if quiet else lambda m: print(f"hwsim demo: {m}",
                                                                       file=sys.stderr)
        )
        trav = require_places(load_traversal(route_dir, query), net.places)
        codes = load_codes(
            trav, dims=rp["dims"], patch=rp["patch"], resize=rp["resize"], progress=not quiet
        )
        codes = codes[: net.places]
        spikes = (codes.astype(np.float32) / np.float32(255.0)).astype(np.float32)
        run_net = narrow_network(net, cfg)[0]  # the network the run uses (for the trace)
        if sets.trace is not None:
            req.check_before_run(run_net, cfg, int(spikes.shape[0]))
        prov = {
            "model_sha256": sha256_file(model),
            "input_source": f"{route_dir} traversal {query!r}",
            "input_sha256": None,
            "input_dtype": "float32",
        }

        def check(res: Any) -> None:
            if sets.trace is not None:
                req.check_size(res, run_net, cfg)

        result, report = execute(cfg, net, spikes, prov, source=str(route_dir / query),
                                 check=check, overrides=list(overrides))
        report["readout"] = {"query_traversal": query, **readout_block(result, rp["tolerance"])}
        rec = {int(k[2:]): v for k, v in report["readout"]["recall"].items()}
        summary = sets.publish(result, report, run_net, cfg)
    return DemoResult(rec, report, Path(out_dir), time.perf_counter() - t0, summary)
