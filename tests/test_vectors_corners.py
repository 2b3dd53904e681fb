"""``hwsim vectors --corners``: directed corner words, and mutants of the shipped RTL they catch.

The mutant tests edit the shipped bench's datapath (simulator/rtl/tb_layer.v) the way a
buggy RTL would differ -- another rounding mode, the other overflow policy, an accumulator one
bit short -- and require that the corner vectors fail every mutant while the unmodified bench
passes. Icarus Verilog is needed for those (skipped with the reason when it is missing).
"""

from __future__ import annotations

import itertools
import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from simulator.fixedpoint import ROUNDING_MODES, multiply_shift
from simulator.vectors import VectorsError, generate_corners, run_testbench
from simulator.vectors.layer import ROUNDING_CODES

HAVE_IVERILOG = shutil.which("iverilog") is not None and shutil.which("vvp") is not None
needs_iverilog = pytest.mark.skipif(
    not HAVE_IVERILOG,
    reason="Icarus Verilog (iverilog, vvp) is not installed: apt-get install -y iverilog",
)
ACC20 = ["accumulator.bits=20"]
REQUIRED = {"rounding", "clamp_low", "clamp_high", "clamp_low_edge", "clamp_high_edge",
            "most_negative_acc", "saturate_high", "saturate_low", "wrap_positive_to_negative",
            "wrap_negative_to_positive", "shift_zero", "widest_shift", "zero_input"}


@pytest.fixture(scope="module")
def corners(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corners") / "cv"
    generate_corners("int8_fixed_point", out, formats=["readmemh", "npy"], overrides=ACC20)
    return out


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_manifest_names_every_corner(corners: Path) -> None:
    man = _manifest(corners)
    assert man["corners"] is True
    dirs = {lay["dir"]: lay for lay in man["layers"]}
    assert set(dirs) == {"c_saturate", "c_wrap"}
    for lay in man["layers"]:
        assert REQUIRED <= set(lay["covers"])
        assert lay["hardware"]["accumulator"]["overflow"] == lay["policy"]
        n = lay["shape"]["neurons"]
        words = lay["corner_words"]
        assert [w["word"] for w in words] == list(range(2 * n))  # every word is named
        acc = np.load(corners / lay["dir"] / "acc.npy")
        y = np.load(corners / lay["dir"] / "y.npy")
        for w in words:
            assert acc[w["query"], w["neuron"]] == w["acc"]
            assert y[w["query"], w["neuron"]] == w["code"]
        syn = lay["synthetic_layer"]
        assert syn["inputs"] == lay["shape"]["inputs"] and syn["neurons"] == n


def test_corners_hit_their_corners(corners: Path) -> None:
    man = _manifest(corners)
    bits = 20
    amin, amax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    for lay in man["layers"]:
        d = corners / lay["dir"]
        acc = np.load(d / "acc.npy")[0]
        y = np.load(d / "y.npy")[0]
        flags = np.load(d / "flags.npy")[0].astype(np.int64)
        shift = np.load(d / "shift.npy")
        by = {w["corner"]: w for w in lay["corner_words"] if w["query"] == 0}
        assert acc[by["acc_most_negative_widest_shift"]["neuron"]] == amin
        assert shift.min() == 0 and shift.max() == bits + 31 - 1
        lo_edge, lo = by["clamp_low_edge"]["neuron"], by["clamp_low_past"]["neuron"]
        hi_edge, hi = by["clamp_high_edge"]["neuron"], by["clamp_high_past"]["neuron"]
        assert y[lo_edge] == y[lo] == 0 and y[hi_edge] == y[hi] == 255
        assert flags[lo] & 4 and not flags[lo_edge] & 4
        assert flags[hi] & 8 and not flags[hi_edge] & 8
        past_max, past_min = by["acc_past_max"]["neuron"], by["acc_past_min"]["neuron"]
        assert flags[past_max] & 1 and flags[past_min] & 1  # overflow events
        if lay["policy"] == "saturate":
            assert (acc[past_max], acc[past_min]) == (amax, amin)  # both rails
        else:
            assert acc[past_max] < 0 < acc[past_min]  # wrapped both ways
        assert np.all(np.load(d / "acc.npy")[1] == 0)  # the all-zero query


def test_every_pair_of_rounding_modes_disagrees_on_a_word(corners: Path) -> None:
    lay = _manifest(corners)["layers"][0]
    d = corners / lay["dir"]
    acc = np.load(d / "acc.npy")
    m0 = np.load(d / "m0.npy").astype(np.int64)
    shift = np.load(d / "shift.npy").astype(np.int64)
    zy = lay["output_zero_point"]
    codes = {m: np.clip(multiply_shift(acc, m0[None, :], shift[None, :], m) + zy, 0, 255)
             for m in ROUNDING_MODES}
    assert np.array_equal(codes["half_even"], np.load(d / "y.npy"))
    for a, b in itertools.combinations(ROUNDING_MODES, 2):
        assert not np.array_equal(codes[a], codes[b]), (a, b)


def test_corners_refuse_a_float_requantizer(tmp_path: Path) -> None:
    with pytest.raises(VectorsError, match="requant.scheme = 'fbgemm' has no integer"):
        generate_corners("pytorch_fbgemm", tmp_path / "cv")
    assert not (tmp_path / "cv").exists()


# --- the shipped RTL against the corners, and its mutants ----------------------------------

BENCH = resources.files("simulator").joinpath("rtl", "tb_layer.v").read_text()
ROUND_SITE = "else v = round_shift(wide, sh, ROUNDING);"
ACC_SITES = ("outside(acc + tree, ACC_BITS)", "fit(acc + tree, ACC_BITS, OVERFLOW)",
             "outside(acc + corr, ACC_BITS)", "fit(acc + corr, ACC_BITS, OVERFLOW)")


def _mutants() -> dict[str, str]:
    muts = {}
    assert ROUND_SITE in BENCH
    for mode, code in ROUNDING_CODES.items():
        if mode != "half_even":
            muts[f"rounding_{mode}"] = BENCH.replace(
                ROUND_SITE, f"else v = round_shift(wide, sh, {code});")
    policy, narrow = BENCH, BENCH
    for site in ACC_SITES:
        assert site in BENCH, site
        policy = policy.replace(site, site.replace("OVERFLOW)", "(OVERFLOW == 0) ? 1 : 0)"))
        narrow = narrow.replace(site, site.replace("ACC_BITS", "ACC_BITS - 1"))
    muts["overflow_policy_swapped"] = policy
    muts["accumulator_one_bit_short"] = narrow
    return muts


MUTANTS = _mutants()


@needs_iverilog
def test_shipped_bench_passes_the_corners(corners: Path) -> None:
    for lay in _manifest(corners)["layers"]:
        br = run_testbench(corners, lay["dir"])
        assert br.ok, br.output
        assert br.passed == lay["testbench"]["comparisons"]


@needs_iverilog
@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_corners_catch_mutant(corners: Path, tmp_path: Path, mutant: str) -> None:
    src = tmp_path / "tb_layer_mutant.v"
    src.write_text(MUTANTS[mutant])
    failed = 0
    for lay in _manifest(corners)["layers"]:
        br = run_testbench(corners, lay["dir"], testbench=src)
        assert "tb_layer:" in br.output, br.output  # it compiled and ran
        failed += not br.ok
    assert failed >= 1, f"mutant {mutant} passed every corner set"
