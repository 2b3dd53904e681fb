"""A sweep on a real Dask cluster (scheduler + two workers on 127.0.0.1) gives the local table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simulator
from simulator.loaders.npz import save_npz

pytest.importorskip("distributed")

from test_sweep import K0, Q, toy_net  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 90.0


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    fh = open(log, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=fh,
                            stderr=subprocess.STDOUT, env=env, cwd=log.parent)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


@pytest.mark.slow
def test_cluster_sweep_equals_local(tmp_path: Path) -> None:
    from distributed import Client

    model = tmp_path / "toy.npz"
    save_npz(toy_net(), model)
    x = np.random.default_rng(5).uniform(0, 1, (Q, K0)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    grid = ["accumulator.bits=1,12,13,14", "accumulator.overflow=wrap,saturate,error"]
    local = simulator.sweep("int8_fixed_point", model, tmp_path / "x.npy", grid=grid,
                            tolerance=1, out=tmp_path / "local")
    sched_file = tmp_path / "scheduler.json"
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(sched_file)], tmp_path / "scheduler.log")]
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not sched_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sched_file.is_file(), (tmp_path / "scheduler.log").read_text()
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for i in range(2):
            procs.append(_start(["worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                                 "--no-dashboard", "--name", f"w{i}"],
                                tmp_path / f"worker{i}.log"))
        with Client(address, timeout=START_TIMEOUT) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT)
            assert len(client.scheduler_info()["workers"]) == 2
        remote = simulator.sweep("int8_fixed_point", model, tmp_path / "x.npy", grid=grid,
                                 tolerance=1, out=tmp_path / "remote", scheduler=address,
                                 cluster_timeout=300)
    finally:
        _stop(procs)
    assert all(p.poll() is not None for p in procs)
    cols = [c for c in local.columns if c != "seconds"]
    pd.testing.assert_frame_equal(local[cols], remote[cols])
    # errors: bits=1 (3 points) and overflow=error wherever saturate had events
    sat = local[(local["accumulator.overflow"] == "saturate") & (local["status"] == "ok")]
    assert (local["status"] == "error").sum() == 3 + int((sat["acc_events"] > 0).sum()) > 3
    for name in local.loc[local["status"] == "ok", "point"]:
        a = json.loads((tmp_path / "local" / "points" / name / "report.json").read_text())
        b = json.loads((tmp_path / "remote" / "points" / name / "report.json").read_text())
        # Workers run the numpy fallbacks (off the main thread), the local sweep numba: the
        # partial-sum range is "exact wherever it decides the width" (docs/reports.md), so
        # its ends may differ between paths; the width they imply may not.
        for rep in (a, b):
            for lay in rep["overflow"].values():
                lo, hi = lay.pop("partial_sum_range")
                assert lo <= 0 <= hi and lay["min_safe_acc_bits"] >= 2
        assert a == b


@pytest.mark.slow
def test_local_cluster_jobs_2_equals_in_process(tmp_path: Path) -> None:
    model = tmp_path / "toy.npz"
    save_npz(toy_net(), model)
    x = np.random.default_rng(6).uniform(0, 1, (Q, K0)).astype(np.float32)
    grid = {"accumulator.bits": [12, 20], "requant.rounding": ["half_even", "floor"]}
    one = simulator.sweep("int8_fixed_point", model, x, grid=grid, tolerance=1)
    two = simulator.sweep("int8_fixed_point", model, x, grid=grid, tolerance=1, jobs=2,
                          out=tmp_path / "o", cluster_timeout=300)
    cols = [c for c in one.columns if c != "seconds"]
    pd.testing.assert_frame_equal(one[cols], two[cols])
    assert len(list((tmp_path / "o" / "points").iterdir())) == 4
