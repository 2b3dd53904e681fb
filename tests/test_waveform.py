"""``--trace op|cycle --trace-format vcd``: waveforms written with pyvcd, read back with vcdvcd
(a parser nobody here wrote), checked against report.json and the op/cycle trace rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main
from simulator.loaders import save_npz
from simulator.network import make_combined_network
from simulator.trace import TraceError, TraceRequest, read_trace

vcdvcd = pytest.importorskip("vcdvcd", reason="pip install vcdvcd (the test extra)")
pytest.importorskip("vcd", reason="pip install pyvcd (the test extra)")

NARROW = ["--set", "accumulator.bits=16", "--set", "accumulator.overflow='wrap'",
          "--set", "mac.lanes=4", "--set", "clock.mhz=250"]


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)

    def lay(o: int, i: int, zp: int) -> dict:
        return {"weight": rng.integers(-128, 128, (o, i)).astype(np.int8),
                "scale": rng.uniform(0.002, 0.01, o), "output_scale": 0.05,
                "output_zero_point": zp}

    net = make_combined_network([{"input_scale": 1 / 255, "input_zero_point": 0,
                                  "feature": lay(16, 12, 3), "output": lay(4, 16, 7)}])
    save_npz(net, tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", rng.random((3, 12)).astype(np.float32))
    return tmp_path


def _run(work: Path, out: str, *extra: str) -> Path:
    rc = main(["run", "--config", "int8_fixed_point", "--model", str(work / "m.npz"),
               "--input", str(work / "x.npy"), "--out", str(work / out), *NARROW, *extra])
    assert rc == 0
    return work / out


def _rises(wave: object, suffix: str) -> list[int]:
    times = []
    for ref in wave.references_to_ids:  # type: ignore[attr-defined]
        if ref.endswith(suffix):
            times += [t for t, v in wave[ref].tv if v == "1"]  # type: ignore[index]
    return sorted(times)


def test_first_overflow_time_matches_report(work: Path) -> None:
    out = _run(work, "r", "--trace", "cycle", "--trace-format", "vcd")
    report = json.loads((out / "report.json").read_text())
    first = report["overflow"]["0/feature"]["first"]
    assert first["kind"] == "acc_wrap"
    meta = json.loads((out / "trace_cycle.json").read_text())
    assert meta["format"] == "vcd" and meta["period_ps"] == 4000  # 250 MHz
    wave = vcdvcd.VCDVCD(str(out / "trace_cycle.vcd"))
    assert wave.timescale["unit"] == "ps"
    rises = _rises(wave, ".overflow")
    assert rises and rises[0] == first["cycle"] * 4000
    # the lane that rose first holds the report's neuron at that time
    lane = first["neuron"] % 4
    neuron = wave[f"hwsim.lane{lane}.neuron"]
    assert int(neuron[first["cycle"] * 4000], 2) == first["neuron"]
    # one strobe per accumulator event: a rise, or a strobe held high over back-to-back cycles
    total = sum(lay["acc_wrap"] + lay["acc_saturate"] for lay in report["overflow"].values())
    high_cycles = 0
    for ref in wave.references_to_ids:
        if ref.endswith(".overflow"):
            tv = wave[ref].tv
            for (t, v), (t2, _) in zip(tv, [*tv[1:], (None, None)], strict=True):
                if v == "1":
                    high_cycles += (t2 - t) // 4000
    assert high_cycles == total > 0


def test_waveform_values_match_the_cycle_trace(work: Path) -> None:
    out = _run(work, "r", "--trace", "op", "--trace-format", "vcd",
               "--trace-filter", "query=1:1,layer=feature")
    csv = _run(work, "c", "--trace", "op", "--trace-format", "csv",
               "--trace-filter", "query=1:1,layer=feature")
    rows = read_trace(csv / "trace_op.csv")
    wave = vcdvcd.VCDVCD(str(out / "trace_op.vcd"))
    acc_rows = rows[(rows["unit"] == "accumulator")]
    assert len(acc_rows) > 0
    checked = 0
    for _, r in acc_rows.iterrows():
        lane = int(r["neuron"]) % 4
        t = int(r["cycle"]) * 4000
        bits = wave[f"hwsim.lane{lane}.acc"][t]
        val = int(bits, 2)
        if val >= 1 << 15:
            val -= 1 << 16
        assert val == int(r["result"]), (r["cycle"], r["neuron"])
        checked += 1
    assert checked == len(acc_rows)


def test_vcd_needs_op_or_cycle_level() -> None:
    with pytest.raises(TraceError, match="--trace-format vcd: a waveform needs --trace op"):
        TraceRequest("neuron", "", "vcd").check()


@pytest.mark.parametrize("how", [["--trace-around-first", "3"], ["--trace-filter", "first=3"]])
def test_trace_around_first_event_in_one_run(work: Path, how: list[str]) -> None:
    out = _run(work, "r", "--trace", "cycle", "--trace-format", "csv", *how)
    report = json.loads((out / "report.json").read_text())
    first = report["overflow"]["0/feature"]["first"]
    rows = read_trace(out / "trace_cycle.csv")
    assert len(rows) > 0
    assert set(rows["layer"]) == {"feature"}  # the output layer had no overflow event
    cyc = rows["cycle"].astype(int)
    assert cyc.min() == max(0, first["cycle"] - 3) and cyc.max() == first["cycle"] + 3
    hit = rows[(rows["cycle"] == first["cycle"]) & (rows["neuron"] == first["neuron"])
               & (rows["unit"] == "accumulator")]
    assert len(hit) == 1 and str(hit["overflow"].iloc[0]) == "wrap"


def test_first_filter_checks(work: Path) -> None:
    with pytest.raises(TraceError, match="'first' chooses the cycle window"):
        TraceRequest("cycle", "first=2,cycle=0:9").check()
    with pytest.raises(TraceError, match="it needs --trace op or cycle"):
        TraceRequest("neuron", "first").check()
    with pytest.raises(TraceError, match="first='x'"):
        TraceRequest("op", "first=x").check()
