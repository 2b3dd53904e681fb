"""cocotb 2.x drives the shipped datapath (simulator/rtl/) from a vectors folder's manifest
and .npy files under Icarus (tests/cocotb/hwsim_stream.py), checking every word and, with
--timing vectors, every cycle; a broken rounding mode fails the words, a requantizer one
cycle too slow fails the cycles."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from simulator.vectors import generate_corners
from simulator.vectors.bench import simulator_missing

cocotb_runner = pytest.importorskip("cocotb_tools.runner",
                                    reason="cocotb 2.x is not installed: pip install cocotb")
pytestmark = [pytest.mark.slow,  # two Icarus builds through cocotb's runner, ~10-25 s
              pytest.mark.skipif(bool(simulator_missing("icarus")),
                                 reason=simulator_missing("icarus") or "-")]

HERE = Path(__file__).resolve().parent
DUT_PARAMS = ("LANES", "TREE", "X_BITS", "X_SIGNED", "W_BITS", "ACC_BITS", "OVERFLOW", "EV_BITS",
              "M0_BITS", "SHIFT_BITS", "ROUNDING", "Y_BITS", "ZX", "ZY", "CLAMP_LO", "CLAMP_HI",
              "THROUGHPUT", "LATENCY")


def _run(vec: Path, layer: str, rtl: Path, build: Path) -> Path:
    import json

    man = json.loads((vec / "manifest.json").read_text())
    p = next(e for e in man["layers"] if e["dir"] == layer)["testbench"]["parameters"]
    runner = cocotb_runner.get_runner("icarus")
    runner.build(sources=[rtl / "hwsim_lane.v", rtl / "hwsim_requant.v",
                          rtl / "hwsim_datapath.v"],
                 hdl_toplevel="hwsim_datapath", parameters={k: p[k] for k in DUT_PARAMS},
                 build_dir=build, always=True, timescale=("1ns", "1ps"))
    return runner.test(test_module="hwsim_stream", hdl_toplevel="hwsim_datapath",
                       build_dir=build, test_dir=build,
                       extra_env={"HWSIM_VECTORS": str(vec), "HWSIM_LAYER": layer})


def _failures(results_xml: Path) -> int:
    text = results_xml.read_text()
    return text.count("<failure")


@pytest.fixture(autouse=True)
def _test_module_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # cocotb's runner hands the simulator's Python this process's sys.path
    monkeypatch.syspath_prepend(str(HERE / "cocotb"))


@pytest.fixture(scope="module")
def vec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cocotb") / "cv"
    generate_corners("int8_fixed_point", out, formats=["npy", "readmemh"], timing=True,
                     overrides=["accumulator.bits=18", "mac.lanes=8", "weights.banks=1",
                                "weights.word_bits=32", "schedule.mode='event_driven'",
                                "requant.throughput=3", "requant.latency=4"])
    return out


def test_cocotb_drives_the_datapath_from_the_manifest(vec: Path, tmp_path: Path) -> None:
    # event-driven: query 1 (every input at the zero point) has tiles without steps (in_skip)
    for layer in ("c_saturate", "c_wrap"):
        xml = _run(vec, layer, vec / "rtl", tmp_path / layer)
        assert _failures(xml) == 0, xml.read_text()
        assert "<testcase" in xml.read_text()


def test_cocotb_catches_a_wrong_rounding_mode(vec: Path, tmp_path: Path) -> None:
    rtl = tmp_path / "rtl"
    shutil.copytree(vec / "rtl", rtl)
    src = (rtl / "hwsim_requant.v").read_text()
    (rtl / "hwsim_requant.v").write_text(src.replace("case (ROUNDING)", "case (6)"))  # half_away
    with pytest.raises(SystemExit):  # cocotb's runner exits non-zero when a test fails
        _run(vec, "c_wrap", rtl, tmp_path / "b")
    (xml,) = (tmp_path / "b").glob("*.xml")
    assert _failures(xml) == 1 and "mismatches" in xml.read_text()


def test_cocotb_catches_a_slow_requantizer(vec: Path, tmp_path: Path) -> None:
    rtl = tmp_path / "rtl"
    shutil.copytree(vec / "rtl", rtl)
    src = (rtl / "hwsim_datapath.v").read_text()
    site = "localparam integer LAT = (LATENCY < 1) ? 1 : LATENCY;"
    assert site in src
    slow = src.replace(site, "localparam integer LAT = LATENCY + 1;")  # one cycle late
    (rtl / "hwsim_datapath.v").write_text(slow)
    with pytest.raises(SystemExit):
        _run(vec, "c_saturate", rtl, tmp_path / "b")
    (xml,) = (tmp_path / "b").glob("*.xml")
    text = xml.read_text()
    assert _failures(xml) == 1 and "cycle mismatches" in text, text
