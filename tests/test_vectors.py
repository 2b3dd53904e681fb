"""``hwsim vectors``: word encoding, manifest, atomic writing, and the Verilog reference bench.

The bench tests compile simulator/rtl/tb_layer.v with Icarus Verilog (``iverilog -g2005``)
and run it on vectors of small random models: it recomputes every accumulator and code in
Verilog, so they check the simulator against an independent implementation, including
narrow wrapping/saturating accumulators with overflow events. They are skipped only when
Icarus Verilog is not installed (CI installs it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from simulator.config import load_config
from simulator.engine import InputError, simulate
from simulator.loaders import load_model, save_npz
from simulator.network import make_combined_network
from simulator.runner import sha256_file
from simulator.vectors import (
    FORMATS,
    VectorsError,
    add_vectors_parser,
    coe_bytes,
    generate,
    hex_words,
    mif_bytes,
    npy_dtype,
    parse_range,
    readmemh_bytes,
    run_testbench,
    to_words,
)

K0 = 24  # 24 inputs -> 48 feature neurons -> 5 places
PLACES = 5
NQ = 6
HAVE_IVERILOG = shutil.which("iverilog") is not None and shutil.which("vvp") is not None
needs_iverilog = pytest.mark.skipif(
    not HAVE_IVERILOG,
    reason="Icarus Verilog (iverilog, vvp) is not installed: apt-get install -y iverilog",
)

NARROW_WRAP = ["accumulator.bits=16", "accumulator.overflow='wrap'"]
NARROW_SAT = ["accumulator.bits=16", "accumulator.overflow='saturate'"]


def _layer(rng: np.random.Generator, n_out: int, n_in: int, zp: int) -> dict:
    return {
        "weight": rng.integers(-128, 128, (n_out, n_in)).astype(np.int8),
        "scale": rng.uniform(0.002, 0.01, n_out),
        "output_scale": 0.05,
        "output_zero_point": zp,
    }


def _module(rng: np.random.Generator, in_zp: int = 0) -> dict:
    return {"input_scale": 1 / 255, "input_zero_point": in_zp,
            "feature": _layer(rng, 2 * K0, K0, 3), "output": _layer(rng, PLACES, 2 * K0, 7)}


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    """m.npz (one module), m2.npz (two modules), float spikes x.npy (6 queries)."""
    rng = np.random.default_rng(7)
    save_npz(make_combined_network([_module(rng)]), tmp_path / "m.npz")
    save_npz(make_combined_network([_module(rng), _module(rng, in_zp=2)]), tmp_path / "m2.npz")
    x = rng.random((NQ, K0)).astype(np.float32)
    x[:, ::5] = 0.0  # some inputs at the zero point (event-driven skipping)
    np.save(tmp_path / "x.npy", x)
    return tmp_path


def _gen(work: Path, config: str = "int8_fixed_point", overrides: list[str] | None = None,
         out: str = "vec", **kw: object):
    return generate(config, work / "m.npz", work / "x.npy", work / out,
                    overrides=overrides or [], **kw)  # type: ignore[arg-type]


def _no_temp_left(parent: Path) -> None:
    left = [p.name for p in parent.iterdir() if p.name.startswith(".")]
    assert not left, left


# --- word encoding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "bits", "signed", "text"),
    [
        (-1, 8, True, "ff"),
        (-128, 8, True, "80"),
        (127, 8, True, "7f"),
        (0, 8, True, "00"),
        (255, 8, False, "ff"),
        (-2, 32, True, "fffffffe"),
        (-(1 << 31), 32, True, "80000000"),
        (1234567, 32, True, "0012d687"),
        (-1, 16, True, "ffff"),
        (-1, 20, True, "fffff"),  # 5 digits for 20 bits
        (-3, 3, True, "5"),
        (7, 3, False, "7"),
        (-(1 << 63), 64, True, "8000000000000000"),
        ((1 << 63) - 1, 64, True, "7fffffffffffffff"),
        ((1 << 31) + 5, 31, False, None),  # does not fit
        (-129, 8, True, None),
        (-1, 8, False, None),
        (256, 8, False, None),
    ],
)
def test_hex_word_encoding(value: int, bits: int, signed: bool, text: str | None) -> None:
    arr = np.array([value], dtype=np.int64)
    if text is None:
        with pytest.raises(VectorsError, match="register holds"):
            to_words(arr, bits, signed)
        return
    assert hex_words(arr, bits, signed) == [text]
    assert readmemh_bytes(arr, bits, signed) == (text + "\n").encode()
    assert len(text) == -(-bits // 4)
    # two's complement round trip
    word = int(text, 16)
    back = word - (1 << bits) if signed and word >> (bits - 1) else word
    assert back == value


def test_readmemh_one_word_per_line_in_order() -> None:
    v = np.array([[1, -1, 300], [-300, 0, 32767]], dtype=np.int64)
    lines = readmemh_bytes(v, 16, True).decode().splitlines()
    assert lines == ["0001", "ffff", "012c", "fed4", "0000", "7fff"]


def test_coe_and_mif_layout() -> None:
    v = np.array([-1, 2, -128], dtype=np.int64)
    coe = coe_bytes(v, 8, True, "hello\nworld").decode().splitlines()
    assert coe == ["; hello", "; world", "memory_initialization_radix=16;",
                   "memory_initialization_vector=", "ff,", "02,", "80;"]
    mif = mif_bytes(v, 8, True, "hi").decode().splitlines()
    assert mif[0] == "-- hi"
    assert "WIDTH=8;" in mif and "DEPTH=3;" in mif
    assert "ADDRESS_RADIX=UNS;" in mif and "DATA_RADIX=HEX;" in mif
    body = mif[mif.index("CONTENT BEGIN") + 1:]
    assert [s.strip() for s in body] == ["0 : ff;", "1 : 02;", "2 : 80;", "END;"]


def test_npy_dtypes() -> None:
    assert npy_dtype(8, True) == np.int8 and npy_dtype(8, False) == np.uint8
    assert npy_dtype(16, True) == np.int16 and npy_dtype(20, True) == np.int32
    assert npy_dtype(31, False) == np.uint32 and npy_dtype(33, True) == np.int64


@pytest.mark.parametrize(("text", "want"), [("0:8", (0, 9)), (":3", (0, 4)), ("2:", (2, 10)),
                                            ("4", (4, 5)), (":", (0, 10)), ("5:5", (5, 6)),
                                            (" 1 : 2 ", (1, 3))])
def test_parse_range_is_inclusive(text: str, want: tuple[int, int]) -> None:
    """Both ends included (as --trace-filter); the result is a Python slice."""
    assert parse_range(text, 10, "--queries") == want


@pytest.mark.parametrize("text", ["a:b", "-1:3", "3:1", "1.5", "", "1:2:3", "0x3"])
def test_parse_range_errors(text: str) -> None:
    with pytest.raises(VectorsError, match="--queries"):
        parse_range(text, 10, "--queries")


# --- manifest and contents ----------------------------------------------------------------


def test_manifest_describes_every_file(work: Path) -> None:
    job = _gen(work, overrides=NARROW_WRAP)
    root = work / "vec"
    man = json.loads((root / "manifest.json").read_text())
    assert man == job.manifest
    assert man["schema"] == {"name": "tempo-hwsim-vectors", "version": 2}
    cfg = load_config("int8_fixed_point", NARROW_WRAP)
    assert man["config"]["name"] == "int8_fixed_point"
    assert man["config"]["sha256"] == cfg.sha256
    assert man["config"]["overrides"] == NARROW_WRAP
    assert man["model"]["sha256"] == sha256_file(work / "m.npz")
    assert man["input"]["sha256"] == sha256_file(work / "x.npy")
    assert man["input"]["queries"] == [0, NQ - 1]  # inclusive, like every hwsim range
    assert man["ranges"]["queries"] == {"given": ":", "written": [0, NQ - 1]}
    assert man["ranges"]["cycles"] is None
    listed = {f["path"] for f in man["files"]}
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert on_disk - listed == {"manifest.json"}
    assert listed <= on_disk
    for f in man["files"]:
        data = (root / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]
        if f["format"] == "verilog":
            continue
        assert {"width_bits", "signed", "depth", "layout", "shape"} <= set(f)
        assert f["depth"] == int(np.prod(f["shape"]))
        if f["format"] == "readmemh":
            lines = data.decode().splitlines()
            assert len(lines) == f["depth"]
            assert {len(s) for s in lines} == {f["hex_digits"]}
        elif f["format"] == "npy":
            arr = np.load(root / f["path"])
            assert list(arr.shape) == f["shape"] and str(arr.dtype) == f["dtype"]
        elif f["format"] == "coe":
            assert data.decode().count("\n") - data.decode().count(";") + 1 >= f["depth"]
        elif f["format"] == "mif":
            assert f"DEPTH={f['depth']};" in data.decode()
            assert f"WIDTH={f['width_bits']};" in data.decode()
    by = {(f["layer"], f["vector"], f["format"]): f for f in man["files"] if "vector" in f}
    acc = by[("feature", "acc", "readmemh")]
    assert (acc["width_bits"], acc["signed"], acc["depth"]) == (16, True, NQ * 2 * K0)
    assert acc["layout"] == "row-major [query][neuron]"
    w = by[("feature", "w", "readmemh")]
    assert (w["width_bits"], w["signed"], w["depth"]) == (8, True, 2 * K0 * K0)
    assert w["layout"] == "row-major [neuron][input]"
    y = by[("output", "y", "readmemh")]
    assert (y["width_bits"], y["signed"], y["depth"]) == (8, False, NQ * PLACES)
    m0 = by[("feature", "m0", "readmemh")]
    assert (m0["width_bits"], m0["signed"], m0["depth"]) == (31, False, 2 * K0)
    lay = man["layers"][0]
    assert lay["overflow_events"]["accumulator"] > 0  # the narrow accumulator wrapped
    assert lay["testbench"]["supported"] and lay["testbench"]["checks_codes"]
    assert lay["testbench"]["comparisons"] == (2 + 3) * NQ * 2 * K0 + 2


def test_vectors_are_the_simulated_values(work: Path) -> None:
    job = _gen(work, overrides=NARROW_SAT, queries="1:4", neurons="3:39")  # inclusive ends
    man = job.manifest
    assert man["input"]["queries"] == [1, 4]
    assert man["ranges"]["neurons"] == {"given": "3:39",
                                        "written": {"m0_feature": [3, 39], "m0_output": [3, 4]}}
    assert [(lay["queries"], lay["neurons"], lay["shape"]["queries"], lay["shape"]["neurons"])
            for lay in man["layers"]] == [([1, 4], [3, 39], 4, 37), ([1, 4], [3, 4], 4, 2)]
    root = work / "vec"
    net = load_model(work / "m.npz")
    cfg = load_config("int8_fixed_point", NARROW_SAT)
    x = np.load(work / "x.npy")
    res = simulate(net, cfg, x)
    feat, out = res.layer(0, "feature"), res.layer(0, "output")
    f = root / "m0_feature"
    assert np.array_equal(np.load(f / "x.npy"), res.input_codes[0][1:5])
    assert np.array_equal(np.load(f / "acc.npy"), feat.acc["combined"][1:5, 3:40])
    assert np.array_equal(np.load(f / "y.npy"), feat.codes[1:5, 3:40])
    assert np.array_equal(np.load(f / "w.npy"), net.modules[0].layer("feature").paths[0]
                          .weight[3:40])
    o = root / "m0_output"  # neurons clipped to the 5 places; input = all feature codes
    assert np.array_equal(np.load(o / "x.npy"), feat.codes[1:5])
    assert np.array_equal(np.load(o / "y.npy"), out.codes[1:5, 3:5])
    acc_hex = [int(s, 16) for s in (f / "acc.hex").read_text().split()]
    acc = np.array([a - (1 << 16) if a >> 15 else a for a in acc_hex])
    assert np.array_equal(acc, feat.acc["combined"][1:5, 3:40].ravel())
    assert np.load(f / "acc.npy").dtype == np.int16


def test_float_scheme_exports_float32_multiplier_bits(work: Path) -> None:
    job = _gen(work, config="pytorch_fbgemm", layer="feature", formats=["readmemh", "npy"])
    root = work / "vec" / "m0_feature"
    assert not (root / "m0.hex").exists() and (root / "mult.hex").exists()
    bits = np.load(root / "mult.npy")
    assert bits.dtype == np.uint32
    net = load_model(work / "m.npz")
    lay, mod = net.modules[0].layer("feature"), net.modules[0]
    sx, sw, sy = np.float32(mod.input_scale), lay.paths[0].scale.astype(np.float32), np.float32(
        lay.output_scale)
    assert np.array_equal(bits.view(np.float32), (sx * sw) / sy)
    tb = job.manifest["layers"][0]["testbench"]
    assert tb["supported"] and not tb["checks_codes"] and "float32" in tb["codes_note"]
    assert not list((work / "vec").glob("**/*.coe"))


def test_all_modules(work: Path) -> None:
    job = generate("int8_fixed_point", work / "m2.npz", work / "x.npy", work / "vec",
                   modules="all", layer="output")
    assert [lv.dir for lv in job.layers] == ["m0_output", "m1_output"]
    with pytest.raises(VectorsError, match="2 module"):
        generate("int8_fixed_point", work / "m2.npz", work / "x.npy", work / "v2", modules="2")


# --- atomic writing and errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"queries": "3:99"}, "has 6 queries"),
        ({"neurons": "60:70", "layer": "feature"}, "has 48 neurons"),
        ({"formats": ["readmemh", "vhdl"]}, "--format vhdl"),
        ({"modules": "x"}, "--module"),
    ],
)
def test_errors_write_nothing(work: Path, kw: dict, fragment: str) -> None:
    with pytest.raises(VectorsError, match=fragment):
        _gen(work, **kw)
    assert not (work / "vec").exists()
    _no_temp_left(work)


def test_refuses_foreign_folder_and_replaces_earlier_vectors(work: Path) -> None:
    foreign = work / "vec"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(VectorsError, match="refusing to replace"):
        _gen(work)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    _gen(work, out="vec2", layer="feature")
    _gen(work, out="vec2", layer="output")  # an earlier vectors folder is replaced whole
    assert sorted(p.name for p in (work / "vec2").iterdir()) == [
        "m0_output", "manifest.json", "rtl", "tb_layer.v"]
    _no_temp_left(work)


def test_failure_while_writing_keeps_previous_folder(work: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _gen(work)
    before = {p: p.read_bytes() for p in (work / "vec").rglob("*") if p.is_file()}
    import simulator.vectors.writer as vectors

    calls = {"n": 0}
    real = vectors._encode

    def flaky(*args: object) -> bytes:
        calls["n"] += 1
        if calls["n"] == 9:
            raise VectorsError("disk on fire")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(vectors, "_encode", flaky)
    with pytest.raises(VectorsError, match="disk on fire"):
        _gen(work, overrides=NARROW_WRAP)
    after = {p: p.read_bytes() for p in (work / "vec").rglob("*") if p.is_file()}
    assert after == before
    _no_temp_left(work)


def test_vectors_error_is_an_input_error() -> None:
    # simulator.cli.main turns InputError into "hwsim: error: ..." and exit status 2
    assert issubclass(VectorsError, InputError)


def test_split_layout_is_refused(work: Path) -> None:
    mats = work / "mats"
    mats.mkdir()
    rng = np.random.default_rng(0)
    for pre, shape in (("if", (2 * K0, K0)), ("fo", (PLACES, 2 * K0))):
        np.save(mats / f"{pre}_exc.npy", rng.integers(0, 128, shape).astype(np.int8))
        np.save(mats / f"{pre}_inh.npy", -rng.integers(0, 129, shape).astype(np.int8))
    np.save(mats / "if_scales.npy", np.array([50.0, 50.0, 20.0, 20.0]))
    np.save(mats / "fo_scales.npy", np.array([300.0, 300.0, 40.0, 40.0]))
    with pytest.raises(VectorsError, match="combined-layout"):
        generate("seed_tutorial", mats, work / "x.npy", work / "vec")
    assert not (work / "vec").exists()


# --- the Verilog reference bench ----------------------------------------------------------

BENCH_CASES = {
    "int8_fixed_point": ("int8_fixed_point", []),
    "acc16_wrap": ("int8_fixed_point", NARROW_WRAP),
    "acc16_saturate": ("int8_fixed_point", NARROW_SAT),
    "acc17_wrap_tree4_event_driven_half_away": (
        "int8_fixed_point",
        ["accumulator.bits=17", "accumulator.overflow='wrap'", "accumulator.adder_tree_width=4",
         "schedule.mode='event_driven'", "requant.rounding='half_away'"],
    ),
    "raw_operand_preadd_saturate_floor": (
        "int8_fixed_point",
        ["mac.operand='raw'", "mac.pre_add_width=2", "mac.pre_add_bits=16",
         "accumulator.adder_tree_width=6", "accumulator.bits=20",
         "accumulator.overflow='saturate'", "requant.rounding='floor'"],
    ),
    "signed_output_clamped": (
        "int8_fixed_point",
        ["requant.output_signed=true", "requant.clamp_low=-100", "requant.clamp_high=90",
         "requant.rounding='toward_zero'", "layers.output.spikes.signed=true"],
    ),
    "pytorch_fbgemm_acc_only": ("pytorch_fbgemm", []),
    "x86_avx2_fbgemm_acc_only": ("x86_avx2_fbgemm", []),
}


@needs_iverilog
@pytest.mark.parametrize("case", list(BENCH_CASES))
def test_bench_passes(work: Path, case: str) -> None:
    config, overrides = BENCH_CASES[case]
    job = _gen(work, config=config, overrides=overrides, formats=["readmemh"])
    events = 0
    for lv, entry in zip(job.layers, job.manifest["layers"], strict=True):
        tb = entry["testbench"]
        assert tb["supported"], tb["reason"]
        br = run_testbench(work / "vec", lv.dir)
        assert br.ok, br.output
        assert br.failed == 0 and br.passed == tb["comparisons"] == lv.comparisons
        per_word = (2 if tb["checks_codes"] else 1) + 3  # + acc_ev, pre_ev, flags
        assert lv.comparisons == NQ * lv.n * per_word + 2
        assert f"{br.passed} passed, 0 failed" in br.output
        events += sum(entry["overflow_events"].values())
        _check_word_files(work / "vec", entry)
    if case.startswith(("acc16", "acc17", "raw_operand", "x86")):
        assert events > 0  # the bench reproduced overflow events, counted one by one


def _bench_on(work: Path, overrides: list[str]) -> Path:
    _gen(work, overrides=overrides, formats=["readmemh"], layer="feature")
    return work / "vec"


def _corrupt_line(path: Path, index: int) -> None:
    lines = path.read_text().splitlines()
    word = int(lines[index], 16) ^ 1
    lines[index] = f"{word:0{len(lines[index])}x}"
    path.write_text("\n".join(lines) + "\n")


@needs_iverilog
@pytest.mark.parametrize("vector", ["acc", "y"])
def test_bench_catches_a_corrupted_expected_word(work: Path, vector: str) -> None:
    root = _bench_on(work, NARROW_WRAP)
    _corrupt_line(root / "m0_feature" / f"{vector}.hex", 17)
    br = run_testbench(root, "m0_feature")
    assert not br.ok and br.returncode != 0
    assert br.failed == 1, br.output
    kind = "acc" if vector == "acc" else "code"
    assert f"MISMATCH {kind} query 0 neuron 17 (word 17)" in br.output
    assert "FAILED" in br.output


@needs_iverilog
def test_bench_catches_a_corrupted_input(work: Path) -> None:
    root = _bench_on(work, [])
    _corrupt_line(root / "m0_feature" / "w.hex", 6)  # neuron 0, input 6 (input 5 is zero)
    br = run_testbench(root, "m0_feature")
    assert not br.ok and br.failed >= 1 and "MISMATCH acc query" in br.output


@needs_iverilog
@pytest.mark.parametrize(
    ("vector", "damage", "message"),
    [
        ("w", "truncate", "words, expected"),
        ("acc", "truncate", "words, expected"),
        ("y", "missing", "missing (cannot open)"),
        ("x", "missing", "missing (cannot open)"),
        ("m0", "too_long", "words, expected"),
        ("shift", "xword", "still 'x"),
        ("acc", "empty", "words, expected"),
    ],
)
def test_bench_fails_on_bad_vector_files(work: Path, vector: str, damage: str,
                                         message: str) -> None:
    root = _bench_on(work, [])
    f = root / "m0_feature" / f"{vector}.hex"
    lines = f.read_text().splitlines()
    if damage == "truncate":
        f.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    elif damage == "missing":
        f.unlink()
    elif damage == "too_long":
        f.write_text("\n".join(lines + lines[:1]) + "\n")
    elif damage == "xword":
        lines[3] = "x" * len(lines[3])
        f.write_text("\n".join(lines) + "\n")
    else:
        f.write_text("")
    br = run_testbench(root, "m0_feature")
    assert br.returncode != 0, br.output
    assert not br.ok
    assert f"tb_layer: FAIL: m0_feature/{vector}.hex" in br.output
    assert message in br.output
    assert "PASS" not in br.output.replace("FAIL", "")


@needs_iverilog
def test_bench_is_not_vacuous(work: Path) -> None:
    """The wrong overflow policy in the Verilog datapath must show as mismatches."""
    root = _bench_on(work, NARROW_WRAP)
    top = root / "m0_feature" / "tb_top.v"
    top.write_text(top.read_text().replace(".OVERFLOW(0)", ".OVERFLOW(1)"))
    br = run_testbench(root, "m0_feature")
    assert not br.ok and br.failed > 1 and "MISMATCH acc" in br.output


@needs_iverilog
def test_bench_checks_the_number_of_comparisons(work: Path) -> None:
    root = _bench_on(work, [])
    top = root / "m0_feature" / "tb_top.v"
    text = top.read_text()
    n = json.loads((root / "manifest.json").read_text())["layers"][0]["testbench"]["comparisons"]
    top.write_text(text.replace(f".COMPARISONS(64'sd{n})", f".COMPARISONS(64'sd{n + 1})"))
    br = run_testbench(root, "m0_feature")
    assert not br.ok and br.failed == 0 and f"expected {n + 1}" in br.output


@needs_iverilog
def test_cli_check_rtl(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="hwsim")
    add_vectors_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([
        "vectors", "--config", "int8_fixed_point", "--model", str(work / "m.npz"),
        "--input", str(work / "x.npy"), "--out", str(work / "cli"), "--queries", "0:3",
        "--set", "accumulator.bits=16", "--set", "accumulator.overflow='wrap'",
        "--format", "readmemh", "--format", "npy", "--check-rtl",
    ])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "m0_feature: RTL bench PASS" in out and "m0_output: RTL bench PASS" in out
    man = json.loads((work / "cli" / "manifest.json").read_text())
    assert man["formats"] == ["readmemh", "npy"]
    assert man["input"]["queries"] == [0, 3]  # inclusive: 4 queries
    assert man["layers"][0]["shape"]["queries"] == 4


@pytest.mark.parametrize(("opts", "notes"), [
    (["--queries", "0:3"], ["hwsim: note: --queries 0:3 is inclusive (queries 0..3, 4 queries); "
                            "ranges are inclusive everywhere (docs/traces.md#ranges); the old "
                            "exclusive 0:3 is now 0:2"]),
    (["--queries", "2", "--neurons", "4:"], []),
    (["--neurons", ":0"], ["hwsim: note: --neurons :0 is inclusive (neurons 0..0, 1 neuron); "
                           "ranges are inclusive everywhere (docs/traces.md#ranges)"]),
])
def test_cli_notes_each_range_given_with_an_end(
        work: Path, capsys: pytest.CaptureFixture[str], opts: list[str], notes: list[str]) -> None:
    """A:B used to exclude B in hwsim vectors: one stderr line per such option says so."""
    from simulator.cli import main
    assert main(["vectors", "--config", "int8_fixed_point", "--model", str(work / "m.npz"),
                 "--input", str(work / "x.npy"), "--out", str(work / "vec"), "--format", "npy",
                 "--layer", "feature", *opts]) == 0
    assert capsys.readouterr().err.splitlines() == notes


def test_cli_bad_range_is_one_line_before_notes(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from simulator.cli import main
    assert main(["vectors", "--config", "int8_fixed_point", "--model", str(work / "m.npz"),
                 "--input", str(work / "x.npy"), "--out", str(work / "vec"),
                 "--queries", "0:3", "--neurons", "5:2"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["hwsim: error: --neurons '5:2': start 5 is after end 2, e.g. 0:7 (both ends "
                   "included)"]
    assert not (work / "vec").exists()


def test_cli_defaults() -> None:
    parser = argparse.ArgumentParser(prog="hwsim")
    add_vectors_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["vectors", "--config", "c", "--model", "m", "--input", "i",
                              "--out", "o"])
    assert (args.module, args.layer, args.queries, args.formats) == ("0", "all", ":", None)
    assert tuple(FORMATS) == ("readmemh", "coe", "mif", "npy")


ROUNDINGS = ("floor", "ceil", "toward_zero", "half_up", "half_down", "half_even", "half_away")


@pytest.fixture()
def ties_model(tmp_path: Path) -> Path:
    """Requantizer multipliers of exactly 1/4 (M0 = 2^30, shift 32): many exact ties."""
    rng = np.random.default_rng(3)
    mod = {
        "input_scale": 2.0**-8, "input_zero_point": 0,
        "feature": {"weight": rng.integers(-2, 3, (2 * K0, K0)).astype(np.int8),
                    "scale": 64.0, "output_scale": 1.0, "output_zero_point": 0},
        "output": {"weight": rng.integers(-2, 3, (PLACES, 2 * K0)).astype(np.int8),
                   "scale": 1.0, "output_scale": 4.0, "output_zero_point": 0},
    }
    save_npz(make_combined_network([mod]), tmp_path / "t.npz")
    np.save(tmp_path / "x.npy", rng.random((NQ, K0)).astype(np.float32))
    return tmp_path


def _round_ref(v: Fraction, mode: str) -> int:
    """Rounding of an exact rational by definition (independent of simulator.fixedpoint)."""
    half = Fraction(1, 2)
    if mode == "floor":
        return math.floor(v)
    if mode == "ceil":
        return math.ceil(v)
    if mode == "toward_zero":
        return math.trunc(v)
    if mode == "half_up":
        return math.floor(v + half)
    if mode == "half_down":
        return math.ceil(v - half)
    if mode == "half_even":
        return round(v)  # Fraction.__round__ rounds ties to even
    return math.floor(v + half) if v >= 0 else -math.floor(-v + half)


@needs_iverilog
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_bench_rounding_modes_on_exact_ties(ties_model: Path, rounding: str) -> None:
    wide = ["requant.output_bits=16", "requant.output_signed=true",
            "layers.output.spikes.bits=16", "layers.output.spikes.signed=true",
            f"requant.rounding='{rounding}'"]
    job = generate("int8_fixed_point", ties_model / "t.npz", ties_model / "x.npy",
                   ties_model / "vec", overrides=wide, formats=["readmemh", "npy"])
    root = ties_model / "vec"
    assert set(np.load(root / "m0_feature" / "m0.npy").tolist()) == {1 << 30}
    assert set(np.load(root / "m0_feature" / "shift.npy").tolist()) == {32}
    acc = np.load(root / "m0_feature" / "acc.npy").astype(np.int64)
    tie = acc % 4 == 2
    assert np.count_nonzero(tie & (acc > 0)) > 5 and np.count_nonzero(tie & (acc < 0)) > 5
    want = [_round_ref(Fraction(int(a), 4), rounding) for a in acc.ravel()]
    assert np.load(root / "m0_feature" / "y.npy").ravel().tolist() == want
    for lv in job.layers:
        br = run_testbench(root, lv.dir)
        assert br.ok, br.output
        assert br.passed == lv.comparisons


def _check_word_files(vec: Path, entry: dict) -> None:
    """Per-word counts add up to the layer totals; first markers sit on event words."""
    d = vec / entry["dir"]
    aev = np.load(d / "acc_ev.npy") if (d / "acc_ev.npy").exists() else _hex(d / "acc_ev.hex")
    pev = np.load(d / "pre_ev.npy") if (d / "pre_ev.npy").exists() else _hex(d / "pre_ev.hex")
    flags = np.load(d / "flags.npy") if (d / "flags.npy").exists() else _hex(d / "flags.hex")
    assert int(aev.sum()) == entry["overflow_events"]["accumulator"]
    assert int(pev.sum()) == entry["overflow_events"]["pre_add"]
    fl = flags.ravel().astype(np.int64)
    assert np.array_equal((fl & 1) != 0, aev.ravel() > 0)
    assert np.array_equal((fl & 2) != 0, pev.ravel() > 0)
    first = entry["first_events"]["accumulator"]
    assert int(((fl >> 4) & 1).sum()) == (first is not None)
    if first is not None:
        assert fl[first["word"]] & 0x11 == 0x11


def _hex(path: Path) -> np.ndarray:
    return np.array([int(t, 16) for t in path.read_text().split()], dtype=np.int64)


@needs_iverilog
def test_bench_catches_a_wrong_per_word_flag(work: Path) -> None:
    _gen(work, overrides=NARROW_WRAP, formats=["readmemh"], layer="feature")
    flags = work / "vec" / "m0_feature" / "flags.hex"
    words = flags.read_text().split()
    first = next(i for i, w in enumerate(words) if int(w, 16) & 0x10)
    words[first] = f"{int(words[first], 16) & ~0x10:02x}"  # drop the first-event marker
    flags.write_text("\n".join(words) + "\n")
    br = run_testbench(work / "vec", "m0_feature")
    assert not br.ok and br.failed == 1
    assert f"MISMATCH flags query {first // 48} neuron {first % 48} (word {first})" in br.output


@pytest.mark.parametrize("overrides", [
    ["mac.lanes=5", "requant.throughput=2", "requant.latency=4", "weights.banks=1",
     "weights.word_bits=16"],
    ["mac.lanes=16", "accumulator.adder_tree_width=4", "schedule.mode='event_driven'"],
])
def test_timing_vectors_follow_the_schedule_formula(work: Path, overrides: list[str]) -> None:
    """t_accw / t_issue / t_out against docs/schedule.md "When things happen", recomputed
    here from the manifest's hardware parameters and the run's per-query layer cycles."""
    job = _gen(work, overrides=overrides, formats=["npy"], timing=True)
    man = job.manifest
    feat, out = man["layers"]
    starts: dict[str, list[int]] = {"feature": [], "output": []}
    c0 = 0
    for q in range(NQ):
        starts["feature"].append(c0)
        starts["output"].append(c0 + feat["timing"]["cycles_per_query"][q])
        c0 += feat["timing"]["cycles_per_query"][q] + out["timing"]["cycles_per_query"][q]
    for lay in man["layers"]:
        hw = lay["hardware"]
        lanes, g = hw["mac_array"]["lanes"], hw["accumulator"]["adder_tree_width"]
        bw = hw["weight_memory"]["weights_per_cycle"]
        thr, lat = hw["requant_pipeline"]["throughput"], hw["requant_pipeline"]["latency"]
        d = work / "vec" / lay["dir"]
        t_accw, t_issue, t_out = (np.load(d / f"{v}.npy") for v in ("t_accw", "t_issue", "t_out"))
        n = lay["shape"]["neurons"]
        for q in range(NQ):
            steps = lay["timing"]["steps_per_query"][q]
            base = starts[lay["layer"]][q]
            for t, n0 in enumerate(range(0, n, lanes)):
                nt = min(lanes, n - n0)
                c = -(-(nt * g) // bw)
                for s in range(steps):
                    assert t_accw[q, t, s] == base + (s + 1) * c - 1
                assert np.all(t_accw[q, t, steps:] == -1)
                for j in range(n0, n0 + nt):
                    issue = base + steps * c + (j - n0) // thr
                    assert t_issue[q, j] == issue and t_out[q, j] == issue + lat
                base += steps * c + -(-nt // thr)
            assert base + lat == starts[lay["layer"]][q] + lay["timing"]["cycles_per_query"][q]


def test_cycles_dump_lists_every_lane_write_of_the_window(work: Path) -> None:
    job = _gen(work, overrides=NARROW_WRAP + ["mac.lanes=8"], formats=["npy"], timing=True,
               cycles="0:40", layer="feature")
    lay = job.manifest["layers"][0]
    d = work / "vec" / lay["dir"]
    assert f"{lay['dir']}/lanes_0_40.csv" in lay["files"]
    assert job.manifest["ranges"]["cycles"] == {"given": "0:40", "written": [0, 40]}
    rows = (d / "lanes_0_40.csv").read_text().splitlines()
    assert rows[0] == ("cycle,query,tile,step,lane,neuron,tree,acc_before,acc_exact,acc_after,"
                       "event")
    t_accw = np.load(d / "t_accw.npy")
    want = []
    for (q, t, s), c in np.ndenumerate(t_accw):
        if 0 <= c <= 40:  # --cycles 0:40 includes cycle 40
            want += [(int(c), q, t, s, j) for j in range(8 * t, min(8 * t + 8, 48))]
    got = [tuple(int(v) for v in (r.split(",")[0], *r.split(",")[1:4], r.split(",")[5]))
           for r in rows[1:]]
    assert sorted(got) == sorted(want) and len(got) > 0
    for r in rows[1:]:
        f = r.split(",")
        before, exact, after = int(f[7]), int(f[8]), int(f[9])
        assert exact == before + int(f[6])
        assert (f[10] == "") == (exact == after)  # an event exactly when the value wrapped


def test_cycles_option_is_checked_before_simulating(work: Path) -> None:
    with pytest.raises(VectorsError, match="--cycles '9:3'"):
        _gen(work, cycles="9:3")
    assert not (work / "vec").exists()


def test_regenerating_refuses_foreign_files_unless_forced(work: Path) -> None:
    _gen(work, formats=["npy"])
    note = work / "vec" / "m0_feature" / "notes.txt"
    note.write_text("my notes")
    (work / "vec" / "waves.gtkw").write_text("x")
    with pytest.raises(VectorsError, match=r"holds m0_feature/notes.txt, waves.gtkw, not "
                                           r"written by hwsim vectors; .* --force"):
        _gen(work, formats=["npy"])
    assert note.read_text() == "my notes"
    _gen(work, formats=["npy"], force=True)
    assert not note.exists()  # the layer folder was replaced whole
    assert (work / "vec" / "waves.gtkw").exists()  # a top-level stranger is left alone
    _gen(work, formats=["readmemh"], force=True)


def test_run_save_codes_feeds_vectors(work: Path) -> None:
    from simulator.cli import main

    assert main(["run", "--config", "int8_fixed_point", "--model", str(work / "m.npz"),
                 "--input", str(work / "x.npy"), "--out", str(work / "r"), "--quiet",
                 "--save-codes"]) == 0
    codes = np.load(work / "r" / "input_codes.npy")
    assert codes.dtype == np.uint8 and codes.shape == (NQ, K0)
    report = json.loads((work / "r" / "report.json").read_text())
    assert "input_codes.npy" in json.dumps(report.get("files", []))
    a = generate("int8_fixed_point", work / "m.npz", work / "x.npy", work / "va",
                 formats=["npy"])
    b = generate("int8_fixed_point", work / "m.npz", work / "r" / "input_codes.npy",
                 work / "vb", formats=["npy"])
    for lay_a, lay_b in zip(a.layers, b.layers, strict=True):
        for name in ("x", "acc", "y", "flags"):
            assert np.array_equal(np.load(work / "va" / lay_a.dir / f"{name}.npy"),
                                  np.load(work / "vb" / lay_b.dir / f"{name}.npy"))


@needs_iverilog
def test_vectors_export_the_models_own_multipliers(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With requant.multipliers = "model", the vectors carry the stored (M0, shift), not ones
    recomputed from the scales, and the RTL bench reproduces the simulated codes with them."""
    import dataclasses

    from simulator.loaders import load_model, save_npz
    from simulator.units.requantizer import fixed_point_multipliers

    net = load_model(work / "m.npz")
    mods = []
    for mod in net.modules:
        sx, layers = mod.input_scale, []
        for lay in mod.layers:
            m0, shift = fixed_point_multipliers(sx, lay.paths[0].scale, lay.output_scale, 31,
                                                "auto")
            m0 = np.where(np.arange(m0.size) % 2 == 1, m0 - (m0 >> 4), m0)  # not the scales'
            layers.append(dataclasses.replace(lay, requant_m0=m0.astype(np.int64),
                                              requant_shift=shift.astype(np.int64)))
            sx = lay.output_scale
        mods.append(dataclasses.replace(mod, layers=tuple(layers)))
    save_npz(dataclasses.replace(net, modules=tuple(mods)), work / "stored.npz")
    from simulator.cli import main
    assert main(["vectors", "--config", "int8_fixed_point", "--model", str(work / "stored.npz"),
                 "--input", str(work / "x.npy"), "--out", str(work / "vec"), "--format",
                 "readmemh", "npy", "--set", "requant.multipliers='model'", "--check-rtl"]) == 0
    out = capsys.readouterr().out
    assert "m0_feature: RTL bench PASS" in out and "m0_output: RTL bench PASS" in out
    stored = load_model(work / "stored.npz").modules[0].layers[0]
    assert np.array_equal(np.load(work / "vec" / "m0_feature" / "m0.npy").ravel(),
                          stored.requant_m0)
