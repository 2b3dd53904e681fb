"""Plots an RTL engineer reads at a glance (simulator/plots.py): PNGs drawn from report.json,
with the data they show checked against the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main
from simulator.loaders import save_npz
from simulator.network import make_combined_network

pytest.importorskip("matplotlib", reason="pip install matplotlib (the plot extra)")

from simulator.plots import (  # noqa: E402
    _SERIES,
    RANGE_PNG,
    TIME_PNG,
    plot_report,
    signed_bits,
)


@pytest.fixture()
def report_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)

    def lay(o: int, i: int, zp: int) -> dict:
        return {"weight": rng.integers(-128, 128, (o, i)).astype(np.int8),
                "scale": rng.uniform(0.002, 0.01, o), "output_scale": 0.05,
                "output_zero_point": zp}

    save_npz(make_combined_network([{"input_scale": 1 / 255, "input_zero_point": 0,
                                     "feature": lay(16, 12, 3), "output": lay(4, 16, 7)}]),
             tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", rng.random((3, 12)).astype(np.float32))
    assert main(["run", "--config", "int8_fixed_point", "--model", str(tmp_path / "m.npz"),
                 "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r"), "--quiet",
                 "--set", "accumulator.bits=16", "--set", "accumulator.overflow='wrap'"]) == 0
    return tmp_path / "r"


def test_signed_bits_axis() -> None:
    assert signed_bits(0) == 0
    assert signed_bits(-(1 << 15)) == pytest.approx(-15.0, abs=1e-4)
    assert signed_bits((1 << 15) - 1) == 15.0
    assert math.isclose(signed_bits(1), 1.0)


def test_per_query_counts_add_up(report_dir: Path) -> None:
    rep = json.loads((report_dir / "report.json").read_text())
    for o in rep["overflow"].values():
        pq = o["per_query"]
        assert sum(n for _, n in pq["acc"]) == o["acc_wrap"] + o["acc_saturate"]
        assert sum(n for _, n in pq["pre_add"]) == o["pre_add_overflow"]
        assert sum(n for _, n in pq["clamp"]) == o["requant_clamp_low"] + o["requant_clamp_high"]


def test_series_never_share_an_x_position() -> None:
    offsets = [s[4] for s in _SERIES]
    assert len(set(offsets)) == len(offsets) and all(abs(d) < 0.5 for d in offsets)
    assert len({s[3] for s in _SERIES}) == len(_SERIES)  # distinct markers too


def test_plot_report_writes_three_pngs(report_dir: Path) -> None:
    paths = plot_report(json.loads((report_dir / "report.json").read_text()), report_dir)
    names = sorted(Path(p).name for p in paths)
    assert names == sorted(["events_per_neuron.png", RANGE_PNG, TIME_PNG])
    for p in paths:
        data = Path(p).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
