"""Cycle checks of the clocked datapath on a real model: the demo's default model, --timing.

* the t_accw / t_issue vectors follow simulator/engine/schedule.py (TileSchedule, the
  schedule the engine's cycle counts come from), recomputed here from the manifest;
* Icarus (both layers) and Verilator (the output layer: one build) run the shipped datapath
  on them with zero mismatches in every word and every cycle: weight-memory stalls (1 bank:
  8 weights per cycle for 16 lanes), a tile of 4 busy lanes (the output layer's last, neurons
  96..99), selections that start mid-tile, the output layer starting after the feature layer.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from simulator.demo import DEFAULT_MODEL
from simulator.engine.schedule import TileSchedule
from simulator.vectors import generate
from simulator.vectors.bench import run_stream_bench, simulator_missing


def _skip(sim: str) -> bool:
    required = os.environ.get("CI") or os.environ.get("HWSIM_REQUIRE_SIMULATORS")
    return bool(simulator_missing(sim)) and not required


pytestmark = pytest.mark.slow  # ~10-30 s under Icarus, + one Verilator build (15-45 s)


@pytest.fixture(scope="module")
def vec(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("timing")
    rng = np.random.default_rng(5)
    np.save(d / "x.npy", rng.random((2, 784)).astype(np.float32))
    job = generate("int8_fixed_point", DEFAULT_MODEL, d / "x.npy", d / "v",
                   formats=["readmemh", "npy"], neurons="88:99", timing=True,
                   overrides=["mac.lanes=16", "weights.banks=1"])
    return d / "v", job.manifest


def test_timing_vectors_follow_the_engine_schedule(vec: tuple[Path, dict]) -> None:
    root, man = vec
    for e in man["layers"]:
        hw, p = e["hardware"], e["testbench"]["parameters"]
        thr, lat = hw["requant_pipeline"]["throughput"], hw["requant_pipeline"]["latency"]
        assert (p["THROUGHPUT"], p["LATENCY"], p["LANES"]) == (thr, lat, hw["mac_array"]["lanes"])
        sched = TileSchedule(n_out=p["N_OUT"], lanes=p["LANES"], tree_width=p["TREE"],
                             pre_add_width=1,
                             weights_per_cycle=hw["weight_memory"]["weights_per_cycle"],
                             requant_throughput=thr, requant_latency=lat, paths=1,
                             extra_steps=0)
        assert hw["weight_memory"]["weights_per_cycle"] == 8  # stalls: 16 lanes need 2 cycles
        d = root / e["dir"]
        t_accw, t_issue, t_out = (np.load(d / f"{v}.npy").astype(np.int64)
                                  for v in ("t_accw", "t_issue", "t_out"))
        tiles = range(e["timing"]["tiles"][0], e["timing"]["tiles"][1] + 1)
        n0, lanes = p["N0"], p["LANES"]
        for q, steps in enumerate(e["timing"]["steps_per_query"]):
            # the layer's start: step 0 of the first tile ends at start + event_offset(...)
            start = int(t_accw[q, 0, 0]) - sched.event_offset(steps, tiles[0], 0)
            for i, t in enumerate(tiles):
                want = [start + sched.event_offset(steps, t, s) for s in range(steps)]
                assert t_accw[q, i, :steps].tolist() == want
                assert (t_accw[q, i, steps:] == -1).all()
                # lane l of tile t enters the requantizer floor(l / thr) cycles after the
                # tile's last step; its word leaves `latency` cycles later
                for lane in range(lanes):
                    j = t * lanes + lane - n0
                    if 0 <= j < p["N"]:
                        assert t_issue[q, j] == want[-1] + 1 + lane // thr
                        assert t_out[q, j] == t_issue[q, j] + lat
    feat, out = man["layers"]
    assert out["dir"] == "m0_output"
    # the output layer of query 0 starts after the feature layer's cycles of query 0
    t_out_layer = np.load(root / "m0_output" / "t_accw.npy")
    assert t_out_layer[t_out_layer >= 0].min() >= feat["timing"]["cycles_per_query"][0]


@pytest.mark.skipif(_skip("icarus"), reason=simulator_missing("icarus") or "-")
def test_icarus_checks_every_cycle_of_the_demo_model(vec: tuple[Path, dict]) -> None:
    root, man = vec
    for e in man["layers"]:
        dp = e["datapath"]
        assert dp["supported"] and dp["cycle_checks"]["checked"], dp
        br = run_stream_bench(root, e["dir"], "icarus")
        assert br.ok, br.output
        ncyc = dp["cycle_checks"]["comparisons"]
        assert br.passed == dp["comparisons"] == 4 * 2 * 12 + ncyc and br.failed == 0
        assert br.cycles == (ncyc, 0)


@pytest.mark.skipif(_skip("verilator"), reason=simulator_missing("verilator") or "-")
def test_verilator_checks_every_cycle_of_the_demo_model(vec: tuple[Path, dict]) -> None:
    root, man = vec
    e = next(e for e in man["layers"] if e["dir"] == "m0_output")  # one build
    br = run_stream_bench(root, e["dir"], "verilator")
    assert br.ok, br.output
    assert br.passed == e["datapath"]["comparisons"] and br.failed == 0
    assert br.cycles == (e["datapath"]["cycle_checks"]["comparisons"], 0)
