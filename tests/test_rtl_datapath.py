"""The clocked reference datapath (simulator/rtl/hwsim_*.v) and its bench tb_stream.v.

* ``verilator --lint-only -Wall`` passes with no waivers for several parameter sets;
* Icarus Verilog AND Verilator run the same vector sets (a random model under several
  configs, and the corner set) through the datapath with zero mismatches;
* the corner vectors fail every mutant of the datapath (each wrong rounding mode, the other
  overflow policy, an accumulator one bit short), and a missing vector file fails the bench.

A simulator that is not installed skips its tests with the reason (CI installs both).
"""

from __future__ import annotations

import os
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
    "int8_fixed_point_lanes5": ["mac.lanes=5"],
    "acc16_wrap_tree4_event_driven_half_away": [
        "accumulator.bits=16", "accumulator.overflow='wrap'", "accumulator.adder_tree_width=4",
        "schedule.mode='event_driven'", "requant.rounding='half_away'", "mac.lanes=7"],
    "acc15_saturate_signed_out_floor": [
        "accumulator.bits=15", "requant.output_signed=true", "requant.rounding='floor'",
        "mac.lanes=16", "requant.clamp_low=-100", "requant.clamp_high=90",
        "layers.output.spikes.signed=true"],
}


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
    generate_corners("int8_fixed_point", out, formats=["readmemh"],
                     overrides=["accumulator.bits=18", "mac.lanes=8"])
    return out


@needs_verilator
@pytest.mark.parametrize("params", [
    {}, {"LANES": 3, "TREE": 4, "X_SIGNED": 1, "OVERFLOW": 0, "ACC_BITS": 20},
    {"ACC_BITS": 64, "M0_BITS": 32, "SHIFT_BITS": 16, "EV_BITS": 32, "Y_BITS": 16},
    {"TREE": 3, "W_BITS": 4, "X_BITS": 4, "ACC_BITS": 12, "ROUNDING": 0},
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
                   formats=["readmemh"], overrides=CASES[case],
                   layer="feature" if sim == "verilator" else "all")
    events = 0
    for lv, entry in zip(job.layers, job.manifest["layers"], strict=True):
        dp = entry["datapath"]
        assert dp["supported"], dp["reason"]
        br = run_stream_bench(tmp_path / "v", lv.dir, sim)
        assert br.ok, br.output
        assert br.passed == dp["comparisons"] == 4 * lv.q * lv.n and br.failed == 0
        events += entry["overflow_events"]["accumulator"]
    if "acc1" in case:
        assert events > 0  # narrow accumulators overflowed and the datapath agreed per word


@pytest.mark.parametrize("sim", SIMS)
def test_datapath_passes_corners(corners: Path, sim: str) -> None:
    for d in ("c_saturate", "c_wrap"):
        br = run_stream_bench(corners, d, sim)
        assert br.ok, br.output
        assert br.passed == 2 * 20 * 4


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
        [*cmd[0], "--lint-only", "-Wall", "--timing", "--top-module", "tb_stream_top",
         "rtl/hwsim_lane.v", "rtl/hwsim_requant.v", "rtl/hwsim_datapath.v", "rtl/tb_stream.v",
         "c_wrap/tb_stream_top.v"],
        cwd=corners, capture_output=True, text=True, env={**os.environ, **cmd[1]}, timeout=300)
    assert run.returncode == 0 and "%Warning" not in run.stderr, run.stderr
