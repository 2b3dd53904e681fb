"""The clocked reference datapath (simulator/rtl/hwsim_*.v) and its bench tb_stream.v.

* ``verilator --lint-only -Wall`` passes with no waivers for several parameter sets;
* Icarus Verilog AND Verilator run the same vector sets (a random model under several
  configs, and the corner set, all with ``--timing``: weight-memory stalls, partial tiles,
  several requantizer throughputs and latencies) through the datapath with zero mismatches,
  every word AND every cycle (accumulator writes, requantizer issues, output words);
* the corner vectors fail every mutant of the datapath (each wrong rounding mode, the other
  overflow policy, an accumulator one bit short), and a missing vector file fails the bench;
* a datapath whose requantizer latency is one cycle off or whose throughput is wrong passes
  every word and fails the cycle checks; a DUT without the timing ports still runs
  functionally.

A simulator that is not installed skips its tests with the reason (CI installs both).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from simulator.loaders import save_npz
from simulator.network import make_combined_network
from simulator.vectors import generate, generate_corners
from simulator.vectors.bench import lint_datapath, run_stream_bench, simulator_missing
from simulator.vectors.layer import ROUNDING_CODES

K0 = 20
RTL = resources.files("simulator").joinpath("rtl")


def _skip(sim: str) -> bool:
    """Skip a missing simulator outside CI; in CI (CI=1 or HWSIM_REQUIRE_SIMULATORS=1) the
    tests run and fail with the install hint instead."""
    required = os.environ.get("CI") or os.environ.get("HWSIM_REQUIRE_SIMULATORS")
    return bool(simulator_missing(sim)) and not required

# a Verilator build takes 15-45 s of C++ compilation: the slow mark, and one build per set
SIMS = [
    pytest.param("icarus", marks=pytest.mark.skipif(
        _skip("icarus"), reason=simulator_missing("icarus") or "-")),
    pytest.param("verilator", marks=[pytest.mark.slow, pytest.mark.skipif(
        _skip("verilator"), reason=simulator_missing("verilator") or "-")]),
]
VERILATOR_CASE = "acc16_wrap_tree4_event_driven_half_away"
needs_icarus = pytest.mark.skipif(_skip("icarus"), reason=simulator_missing("icarus") or "-")
needs_verilator = pytest.mark.skipif(_skip("verilator"),
                                     reason=simulator_missing("verilator") or "-")

CASES = {
    "int8_fixed_point_lanes5": ["mac.lanes=5", "requant.throughput=2", "requant.latency=1"],
    "acc16_wrap_tree4_event_driven_half_away": [
        "accumulator.bits=16", "accumulator.overflow='wrap'", "accumulator.adder_tree_width=4",
        "schedule.mode='event_driven'", "requant.rounding='half_away'", "mac.lanes=7",
        "requant.throughput=3", "requant.latency=5", "weights.banks=1", "weights.word_bits=16"],
    "acc15_saturate_signed_out_floor": [
        "accumulator.bits=15", "requant.output_signed=true", "requant.rounding='floor'",
        "mac.lanes=16", "requant.clamp_low=-100", "requant.clamp_high=90",
        "layers.output.spikes.signed=true", "requant.throughput=64", "requant.latency=2"],
}
#: the corner set: 20 words per query on 8 lanes (tiles 8, 8, 4), 4 weights per cycle (a step
#: of a full tile takes 2 cycles), the preset's requantizer (throughput 4, latency 3)
CORNER_OVERRIDES = ["accumulator.bits=18", "mac.lanes=8", "weights.banks=1",
                    "weights.word_bits=32"]


def _layer(rng: np.random.Generator, n_out: int, n_in: int, zp: int) -> dict:
    return {"weight": rng.integers(-128, 128, (n_out, n_in)).astype(np.int8),
            "scale": rng.uniform(0.002, 0.01, n_out), "output_scale": 0.05,
            "output_zero_point": zp}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("dp")
    rng = np.random.default_rng(11)
    mod = {"input_scale": 1 / 255, "input_zero_point": 0,
           "feature": _layer(rng, 2 * K0, K0, 3), "output": _layer(rng, 6, 2 * K0, 7)}
    save_npz(make_combined_network([mod]), d / "m.npz")
    x = rng.random((4, K0)).astype(np.float32)
    x[:, ::3] = 0.0
    np.save(d / "x.npy", x)
    return d


@pytest.fixture(scope="module")
def corners(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dpc") / "cv"
    generate_corners("int8_fixed_point", out, formats=["readmemh"], overrides=CORNER_OVERRIDES,
                     timing=True)
    return out


@needs_verilator
@pytest.mark.parametrize("params", [
    {}, {"LANES": 3, "TREE": 4, "X_SIGNED": 1, "OVERFLOW": 0, "ACC_BITS": 20, "THROUGHPUT": 2,
         "LATENCY": 1},
    {"ACC_BITS": 64, "M0_BITS": 32, "SHIFT_BITS": 16, "EV_BITS": 32, "Y_BITS": 16,
     "THROUGHPUT": 64, "LATENCY": 2},
    {"TREE": 3, "W_BITS": 4, "X_BITS": 4, "ACC_BITS": 12, "ROUNDING": 0, "LANES": 1,
     "LATENCY": 6},
    {"LANES": 64, "THROUGHPUT": 4, "LATENCY": 3},
])
def test_datapath_is_lint_clean(params: dict[str, int]) -> None:
    ok, text = lint_datapath(Path(str(RTL)), params)
    assert ok, text


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("case", list(CASES))
def test_datapath_passes_model_vectors(model: Path, tmp_path: Path, case: str, sim: str) -> None:
    if sim == "verilator" and case != VERILATOR_CASE:
        pytest.skip(f"Verilator runs one model case ({VERILATOR_CASE}) to keep builds few")
    job = generate("int8_fixed_point", model / "m.npz", model / "x.npy", tmp_path / "v",
                   formats=["readmemh"], overrides=CASES[case], timing=True,
                   layer="feature" if sim == "verilator" else "all")
    events = 0
    for lv, entry in zip(job.layers, job.manifest["layers"], strict=True):
        dp = entry["datapath"]
        assert dp["supported"], dp["reason"]
        cyc = dp["cycle_checks"]
        assert cyc["checked"], cyc["reason"]
        br = run_stream_bench(tmp_path / "v", lv.dir, sim)
        assert br.ok, br.output
        assert br.passed == dp["comparisons"] == 4 * lv.q * lv.n + cyc["comparisons"]
        assert br.failed == 0 and br.cycles == (cyc["comparisons"], 0)
        # one per (query, tile, step) accumulator write, two per word (issue, output word)
        assert cyc["comparisons"] > 2 * lv.q * lv.n
        events += entry["overflow_events"]["accumulator"]
    if "acc1" in case:
        assert events > 0  # narrow accumulators overflowed and the datapath agreed per word


@pytest.mark.parametrize("sim", SIMS)
def test_datapath_passes_corners(corners: Path, sim: str) -> None:
    man = json.loads((corners / "manifest.json").read_text())
    for d in ("c_saturate", "c_wrap"):
        dp = next(e for e in man["layers"] if e["dir"] == d)["datapath"]
        br = run_stream_bench(corners, d, sim)
        assert br.ok, br.output
        assert "cycle checks on" in br.output
        # 40 words x 4; per query 3 tiles x 7 steps accumulator writes; 2 per word
        assert dp["cycle_checks"]["comparisons"] == 2 * 3 * 7 + 2 * 40
        assert br.passed == dp["comparisons"] == 2 * 20 * 4 + 2 * 3 * 7 + 2 * 40
        assert br.cycles == (2 * 3 * 7 + 2 * 40, 0)


@needs_icarus
def test_missing_vector_file_fails_the_clocked_bench(corners: Path, tmp_path: Path) -> None:
    work = tmp_path / "cv"
    shutil.copytree(corners, work)
    (work / "c_wrap" / "m0.hex").unlink()
    br = run_stream_bench(work, "c_wrap", "icarus")
    assert not br.ok and br.returncode != 0
    assert "c_wrap/m0.hex: missing" in br.output


# --- mutants of the shipped datapath --------------------------------------------------------

def _src(name: str) -> str:
    return RTL.joinpath(name).read_text()


def _mutants() -> dict[str, tuple[str, str]]:
    """name -> (file, mutated source)."""
    rq, lane = _src("hwsim_requant.v"), _src("hwsim_lane.v")
    site = "case (ROUNDING)"
    assert site in rq
    muts = {f"rounding_{m}": ("hwsim_requant.v", rq.replace(site, f"case ({c})"))
            for m, c in ROUNDING_CODES.items() if m != "half_even"}
    pol = "if (OVERFLOW != 0 && above)", "else if (OVERFLOW != 0 && below)"
    assert all(p in lane for p in pol)
    swapped = lane
    for p in pol:
        swapped = swapped.replace(p, p.replace("OVERFLOW != 0", "OVERFLOW == 0"))
    muts["overflow_policy_swapped"] = ("hwsim_lane.v", swapped)
    short = lane.replace("<<< (ACC_BITS - 1)", "<<< (ACC_BITS - 2)").replace(
        "else next = exact[ACC_BITS-1:0];",
        "else next = {exact[ACC_BITS-2], exact[ACC_BITS-2:0]};")
    assert short.count("ACC_BITS - 2") == 2 and "exact[ACC_BITS-2]" in short
    muts["accumulator_one_bit_short"] = ("hwsim_lane.v", short)
    return muts


MUTANTS = _mutants()


@needs_icarus
@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_corners_catch_datapath_mutant(corners: Path, tmp_path: Path, mutant: str) -> None:
    name, text = MUTANTS[mutant]
    files = []
    for f in ("hwsim_lane.v", "hwsim_requant.v", "hwsim_datapath.v"):
        p = tmp_path / f
        p.write_text(text if f == name else _src(f))
        files.append(p)
    results = [run_stream_bench(corners, d, "icarus", rtl=files) for d in ("c_saturate", "c_wrap")]
    assert all("tb_stream:" in r.output for r in results), results[0].output
    assert any(not r.ok for r in results), f"mutant {mutant} passed the corners"


@needs_verilator
def test_stream_bench_is_lint_clean(corners: Path) -> None:
    import os
    import subprocess

    from simulator.vectors.bench import verilator_command

    cmd = verilator_command()
    assert cmd is not None
    run = subprocess.run(
        [*cmd[0], "--lint-only", "-Wall", "--timing", "+define+HWSIM_TIMING",
         "--top-module", "tb_stream_top",
         "rtl/hwsim_lane.v", "rtl/hwsim_requant.v", "rtl/hwsim_datapath.v", "rtl/tb_stream.v",
         "c_wrap/tb_stream_top.v"],
        cwd=corners, capture_output=True, text=True, env={**os.environ, **cmd[1]}, timeout=300)
    assert run.returncode == 0 and "%Warning" not in run.stderr, run.stderr


# --- cycle checks: timing mutants and a DUT without the timing ports ------------------------

TIMING_SITES = {
    "LAT": "localparam integer LAT = (LATENCY < 1) ? 1 : LATENCY;",
    "TP": "localparam integer TP = (THROUGHPUT < LANES) ? THROUGHPUT : LANES;",
}
TIMING_MUTANTS = {
    "latency_one_more": ("LAT", "localparam integer LAT = LATENCY + 1;"),
    "latency_one_less": ("LAT", "localparam integer LAT = LATENCY - 1;"),
    "throughput_one_less": ("TP", "localparam integer TP = THROUGHPUT - 1;"),
    "throughput_one_more": ("TP", "localparam integer TP = THROUGHPUT + 1;"),
}


@needs_icarus
@pytest.mark.parametrize("mutant", sorted(TIMING_MUTANTS))
def test_cycle_checks_catch_timing_mutant(corners: Path, tmp_path: Path, mutant: str) -> None:
    """Every word still right, but the schedule's cycles wrong: only the cycle checks fail."""
    site, repl = TIMING_MUTANTS[mutant]
    dp = _src("hwsim_datapath.v")
    assert TIMING_SITES[site] in dp
    files = []
    for f in ("hwsim_lane.v", "hwsim_requant.v", "hwsim_datapath.v"):
        p = tmp_path / f
        p.write_text(dp.replace(TIMING_SITES[site], repl) if f == "hwsim_datapath.v"
                     else _src(f))
        files.append(p)
    for d in ("c_saturate", "c_wrap"):
        br = run_stream_bench(corners, d, "icarus", rtl=files)
        assert not br.ok and br.returncode != 0, br.output
        assert br.cycles is not None and br.cycles[1] > 0, br.output
        words = re.search(r"tb_stream: words (\d+) passed, (\d+) failed", br.output)
        assert words and (int(words.group(1)), int(words.group(2))) == (2 * 20 * 4, 0), br.output
        assert "MISMATCH cycle" in br.output
        assert not re.search(r"MISMATCH (acc|code|acc_ev|flags) ", br.output)


LEGACY_DUT = """
module legacy_dp #(
    parameter integer LANES = 4, parameter integer TREE = 1, parameter integer X_BITS = 8,
    parameter integer X_SIGNED = 0, parameter integer W_BITS = 8,
    parameter integer ACC_BITS = 32, parameter integer OVERFLOW = 1,
    parameter integer EV_BITS = 16, parameter integer M0_BITS = 31,
    parameter integer SHIFT_BITS = 8, parameter integer ROUNDING = 5,
    parameter integer Y_BITS = 8, parameter signed [63:0] ZX = 0,
    parameter signed [63:0] ZY = 0, parameter signed [63:0] CLAMP_LO = 0,
    parameter signed [63:0] CLAMP_HI = 255
) (
    input wire clk, input wire rst_n, input wire in_valid, output wire in_ready,
    input wire in_first, input wire in_last, input wire [TREE*X_BITS-1:0] in_x,
    input wire [LANES*TREE*W_BITS-1:0] in_w, input wire [LANES*W_BITS-1:0] in_wzp,
    input wire [LANES*M0_BITS-1:0] in_m0, input wire [LANES*SHIFT_BITS-1:0] in_shift,
    output wire out_valid, input wire out_ready, output wire [LANES*ACC_BITS-1:0] out_acc,
    output wire [LANES*Y_BITS-1:0] out_y, output wire [LANES*EV_BITS-1:0] out_ev,
    output wire [LANES*4-1:0] out_flags
);
    // the functional port list only: every lane drains (in_lanes = 0), no strobes
    hwsim_datapath #(.LANES(LANES), .TREE(TREE), .X_BITS(X_BITS), .X_SIGNED(X_SIGNED),
        .W_BITS(W_BITS), .ACC_BITS(ACC_BITS), .OVERFLOW(OVERFLOW), .EV_BITS(EV_BITS),
        .M0_BITS(M0_BITS), .SHIFT_BITS(SHIFT_BITS), .ROUNDING(ROUNDING), .Y_BITS(Y_BITS),
        .ZX(ZX), .ZY(ZY), .CLAMP_LO(CLAMP_LO), .CLAMP_HI(CLAMP_HI), .THROUGHPUT(1),
        .LATENCY(1)) core (
        .clk(clk), .rst_n(rst_n), .in_valid(in_valid), .in_ready(in_ready),
        .in_first(in_first), .in_last(in_last), .in_x(in_x), .in_w(in_w), .in_wzp(in_wzp),
        .in_m0(in_m0), .in_shift(in_shift), .in_lanes({$clog2(LANES + 1){1'b0}}), .in_skip(1'b0),
        .out_valid(out_valid), .out_ready(out_ready), .out_acc(out_acc), .out_y(out_y),
        .out_ev(out_ev), .out_flags(out_flags), .acc_we(), .rq_issue(), .out_word_valid());
endmodule
"""


@needs_icarus
def test_dut_without_timing_ports_runs_functionally(corners: Path, tmp_path: Path) -> None:
    (tmp_path / "legacy_dp.v").write_text(LEGACY_DUT)
    files = [tmp_path / "legacy_dp.v", *(Path(str(RTL.joinpath(f))) for f in
                                         ("hwsim_lane.v", "hwsim_requant.v", "hwsim_datapath.v"))]
    br = run_stream_bench(corners, "c_wrap", "icarus", rtl=files, dut="legacy_dp")
    assert br.ok, br.output
    assert br.passed == 2 * 20 * 4 and br.cycles is None
    assert "cycle checks off" in br.output


@needs_icarus
def test_latency_zero_is_not_cycle_checked_and_runs_functionally(tmp_path: Path) -> None:
    out = tmp_path / "cv"
    generate_corners("int8_fixed_point", out, formats=["readmemh"], timing=True,
                     overrides=[*CORNER_OVERRIDES, "requant.latency=0"], policies=("wrap",))
    (entry,) = json.loads((out / "manifest.json").read_text())["layers"]
    cyc = entry["datapath"]["cycle_checks"]
    assert not cyc["checked"] and "requant.latency 0" in cyc["reason"]
    assert cyc["comparisons"] == 0
    br = run_stream_bench(out, entry["dir"], "icarus")
    assert br.ok and br.passed == entry["datapath"]["comparisons"] == 2 * 20 * 4, br.output
    assert br.cycles is None


@needs_icarus
def test_event_driven_tiles_without_steps_are_cycle_checked(tmp_path: Path) -> None:
    """Query 1 of the corner set has every input at the zero point: event-driven, its tiles
    have no step and drain at once (in_skip beats); a late requantizer still fails."""
    out = tmp_path / "cv"
    generate_corners("int8_fixed_point", out, formats=["readmemh"], timing=True,
                     overrides=[*CORNER_OVERRIDES, "schedule.mode='event_driven'",
                                "requant.throughput=3", "requant.latency=4"],
                     policies=("saturate",))
    (entry,) = json.loads((out / "manifest.json").read_text())["layers"]
    assert entry["timing"]["steps_per_query"][1] == 0
    cyc = entry["datapath"]["cycle_checks"]
    assert cyc["checked"], cyc["reason"]
    br = run_stream_bench(out, entry["dir"], "icarus")
    assert br.ok and br.cycles == (cyc["comparisons"], 0), br.output
    assert br.passed == entry["datapath"]["comparisons"] == 2 * 20 * 4 + cyc["comparisons"]
    site, repl = TIMING_MUTANTS["latency_one_more"]
    dp = tmp_path / "hwsim_datapath.v"
    dp.write_text(_src("hwsim_datapath.v").replace(TIMING_SITES[site], repl))
    files = [Path(str(RTL.joinpath("hwsim_lane.v"))), Path(str(RTL.joinpath("hwsim_requant.v"))),
             dp]
    bad = run_stream_bench(out, entry["dir"], "icarus", rtl=files)
    assert not bad.ok and bad.cycles is not None and bad.cycles[1] > 0, bad.output
