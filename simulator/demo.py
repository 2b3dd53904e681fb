"""``hwsim demo``: the main job on the embedded default, with nothing to download.

1. generate (or reuse from the user cache) the synthetic route the default model was trained on;
2. load the bundled default model (``simulator/data/default_model.npz``: 28x28 -> 1568 -> 100
   places, trained by ``tools/train_default.py``; its metadata records the command and seed);
3. run a query traversal the model never saw through the simulator on the default hwconfig;
4. print Recall@1/5/10, cycles per query and the overflow summary, and write report.json,
   outputs, predictions and a neuron-level trace under ``traces/demo``.
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
) -> DemoResult:
    from .runner import execute, readout_block, sha256_file, write_outputs
    from .vpr.datasets import load_codes, load_traversal, require_places
    from .vpr.synthroute import cached_route

    t0 = time.perf_counter()
    cfg = load_config(config, overrides)
    net = load_npz(model)
    rp = _route_params(net)
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
    prov = {
        "model_sha256": sha256_file(model),
        "input_source": f"{route_dir} traversal {query!r}",
        "input_sha256": None,
        "input_dtype": "float32",
    }
    result, report = execute(cfg, net, spikes, prov, source=str(route_dir / query))
    report["readout"] = {"query_traversal": query, **readout_block(result, rp["tolerance"])}
    rec = {int(k[2:]): v for k, v in report["readout"]["recall"].items()}
    out = Path(out_dir)
    write_outputs(
        out,
        {
            "outputs.npy": result.outputs.astype(np.int64),
            "predictions.npy": result.predictions.astype(np.int64),
            "scores.npy": result.scores.astype(np.int64),
            "report.json": report,
        },
    )
    trace = None
    if trace_level != "off":
        from .trace import write_trace
        from .units.weight_requant import narrow_network

        trace = write_trace(result, narrow_network(net, cfg)[0], cfg, None, out, trace_level)
    return DemoResult(rec, report, out, time.perf_counter() - t0, trace)
