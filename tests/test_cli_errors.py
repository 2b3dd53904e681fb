"""Bad input, bad models and bad configs through the command line (``simulator.cli.main``).

Each must end with exit status 2 and exactly one stderr line ``hwsim: error: ...`` that names
the file and the problem, and must leave the ``--out`` folder as it was: not created when it
did not exist, byte-for-byte unchanged when it did (nothing half-written).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main
from simulator.config import schema_rows
from simulator.loaders import save_npz
from simulator.network import make_combined_network

K0 = 32  # 32 -> 64 -> 5: 32*64 + 64*5 = 2368 bytes of int8 weights
PLACES = 5


def _layer(rng: np.random.Generator, n_out: int, n_in: int) -> dict:
    return {
        "weight": rng.integers(-128, 128, (n_out, n_in)).astype(np.int8),
        "scale": rng.uniform(0.002, 0.01, n_out),
        "output_scale": 0.05,
        "output_zero_point": 3,
    }


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    """A folder with a good model m.npz (uncompressed), float spikes x.npy and codes c.npy."""
    rng = np.random.default_rng(0)
    mod = {"input_scale": 1 / 255, "input_zero_point": 0,
           "feature": _layer(rng, 2 * K0, K0), "output": _layer(rng, PLACES, 2 * K0)}
    save_npz(make_combined_network([mod]), tmp_path / "m.npz", compress=False)
    np.save(tmp_path / "x.npy", rng.random((4, K0)).astype(np.float32))
    np.save(tmp_path / "c.npy", rng.integers(0, 256, (4, K0)).astype(np.uint8))
    mats = tmp_path / "mats"
    mats.mkdir()
    for pre, shape in (("if", (2 * K0, K0)), ("fo", (PLACES, 2 * K0))):
        np.save(mats / f"{pre}_exc.npy", rng.integers(0, 128, shape).astype(np.int8))
        np.save(mats / f"{pre}_inh.npy", -rng.integers(0, 129, shape).astype(np.int8))
    np.save(mats / "if_scales.npy", np.array([50.0, 50.0, 20.0, 20.0]))
    np.save(mats / "fo_scales.npy", np.array([300.0, 300.0, 40.0, 40.0]))
    return tmp_path


def _run(work: Path, config: str = "pytorch_fbgemm", model: str = "m.npz",
         inp: str = "x.npy", out: str = "out", extra: tuple[str, ...] = ()) -> int:
    return main(["run", "--config", config, "--model", str(work / model), "--input",
                 str(work / inp), "--out", str(work / out), "--quiet", *extra])


def _one_error_line(capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    line = lines[0]
    assert line.startswith("hwsim: error: "), line
    for frag in fragments:
        assert frag in line, f"{frag!r} not in: {line}"
    assert captured.out == "", captured.out
    return line


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


def _no_temp_left(parent: Path) -> None:
    left = [p.name for p in parent.iterdir() if p.name.startswith(".") or ".tmp" in p.name]
    assert not left, left


# --- the good path, for reference ----------------------------------------------------------


def test_good_run(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(work) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    outputs = np.load(work / "out" / "outputs.npy")
    assert outputs.shape == (4, PLACES)
    assert np.load(work / "out" / "predictions.npy").shape == (4,)
    assert (work / "out" / "report.json").is_file()
    assert _run(work, config="seed_tutorial", model="mats", inp="c.npy", out="out2") == 0
    assert np.load(work / "out2" / "outputs.npy").shape == (4, PLACES)
    _no_temp_left(work)


# --- bad input ------------------------------------------------------------------------------------


def _truncated(work: Path, cut: int) -> str:
    data = (work / "x.npy").read_bytes()
    (work / "bad.npy").write_bytes(data[: len(data) - cut] if cut > 0 else data[:-cut])
    return "bad.npy"


def _saved(arr: np.ndarray) -> Callable[[Path], str]:
    def make(work: Path) -> str:
        np.save(work / "bad.npy", arr, allow_pickle=True)
        return "bad.npy"

    return make


def _text(work: Path) -> str:
    (work / "bad.npy").write_text("0.5, 0.25\n")
    return "bad.npy"


def _npz_input(work: Path) -> str:
    with open(work / "bad.npy", "wb") as fh:
        np.savez(fh, x=np.ones((2, K0)))
    return "bad.npy"


NAN = np.full((3, K0), 0.5, np.float32)
NAN[1, 4] = np.nan
INF = np.full((3, K0), 0.5, np.float32)
INF[2, 7] = -np.inf

BAD_INPUTS = {
    "truncated_data": (lambda w: _truncated(w, 7), ("bad.npy", "truncated")),
    "truncated_header": (lambda w: _truncated(w, -40), ("bad.npy", "truncated")),
    "not_npy": (_text, ("bad.npy", "not a readable .npy")),
    "npz_archive": (_npz_input, ("bad.npy", ".npz archive")),
    "dtype_bool": (_saved(np.ones((2, K0), bool)), ("bad.npy", "dtype bool", "uint8 codes")),
    "dtype_complex": (_saved(np.ones((2, K0), np.complex64)), ("bad.npy", "complex64")),
    "dtype_str": (_saved(np.full((2, K0), "a")), ("bad.npy", "<U1", "not supported")),
    "dtype_object": (_saved(np.ones((2, K0), object)), ("bad.npy", "Object arrays")),
    "negative_codes": (_saved(-np.ones((2, K0), np.int16)), ("bad.npy", "-1..-1",
                                                              "u8 [0, 255]", "spikes.bits")),
    "codes_above_register": (_saved(np.full((2, K0), 300, np.uint16)),
                             ("bad.npy", "300..300", "u8 [0, 255]")),
    "one_dimensional": (_saved(np.ones(K0, np.float32)), ("bad.npy", "1-D", f"({K0},)")),
    "three_dimensional": (_saved(np.ones((2, K0, 1), np.float32)), ("bad.npy", "2-D")),
    "wrong_number_of_inputs": (_saved(np.ones((2, K0 - 1), np.float32)),
                               ("bad.npy", f"{K0 - 1} inputs per query", f"takes {K0}",
                                "m.npz")),
    "no_queries": (_saved(np.ones((0, K0), np.float32)), ("bad.npy", "no queries")),
    "nan": (_saved(NAN), ("bad.npy", "NaN or infinite spike at query 1, input 4")),
    "inf": (_saved(INF), ("bad.npy", "NaN or infinite spike at query 2, input 7")),
    "missing": (lambda w: "nothere.npy", ("nothere.npy", "no such input file")),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input(work: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    make, frags = BAD_INPUTS[case]
    inp = make(work)
    assert _run(work, inp=inp) == 2
    line = _one_error_line(capsys, *frags)
    assert str(work / inp) in line
    assert not (work / "out").exists()
    _no_temp_left(work)


# --- bad models -----------------------------------------------------------------------------------


def _npz_with(change: Callable[[dict[str, np.ndarray]], None]) -> Callable[[Path], str]:
    """Re-save m.npz with np.savez after ``change`` edits its arrays."""

    def make(work: Path) -> str:
        with np.load(work / "m.npz") as data:
            arrays = {k: data[k] for k in data.files}
        change(arrays)
        np.savez(work / "bad.npz", **arrays)
        return "bad.npz"

    return make


def _set(key: str, value: float, index: int | None = None):
    def change(a: dict[str, np.ndarray]) -> None:
        arr = np.array(a[key], dtype=np.float64)
        if index is None:
            arr = np.array(value)
        else:
            arr[index] = value
        a[key] = arr

    return change


def _replace(key: str, fn: Callable[[np.ndarray], np.ndarray]):
    def change(a: dict[str, np.ndarray]) -> None:
        a[key] = fn(a[key])

    return change


def _drop(key: str):
    def change(a: dict[str, np.ndarray]) -> None:
        del a[key]

    return change


def _truncated_npz(cut: int) -> Callable[[Path], str]:
    def make(work: Path) -> str:
        data = (work / "m.npz").read_bytes()
        (work / "bad.npz").write_bytes(data[: len(data) // 2] if cut == 0 else data[:-cut])
        return "bad.npz"

    return make


def _corrupt_member(work: Path) -> str:
    """Flip bytes inside one stored array: the zip directory is intact, the CRC is not."""
    data = bytearray((work / "m.npz").read_bytes())
    with zipfile.ZipFile(work / "m.npz") as zf:
        info = zf.getinfo("m0.feature.combined.weight.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    for i in range(start, start + 16):
        data[i] ^= 0x5A
    (work / "bad.npz").write_bytes(bytes(data))
    return "bad.npz"


def _mats_with(name: str, arr: np.ndarray | None) -> Callable[[Path], str]:
    def make(work: Path) -> str:
        if arr is None:
            (work / "mats" / name).unlink()
        else:
            np.save(work / "mats" / name, arr, allow_pickle=True)
        return "mats"

    return make


FS = "m0.feature.combined.scale"
OS = "m0.output.combined.scale"
W_EXC = np.zeros((2 * K0, K0), np.int16)
W_EXC[3, 5] = 200
W_INH = np.zeros((2 * K0, K0), np.int8)
W_INH[0, 0] = 4

BAD_MODELS = {
    "weight_scale_nan": (_npz_with(_set(FS, np.nan, 1)),
                         ("module 0 layer 'feature' combined weight scales", "NaN")),
    "weight_scale_zero": (_npz_with(_set(OS, 0.0, 2)),
                          ("module 0 layer 'output' combined weight scales", "> 0")),
    "weight_scale_negative": (_npz_with(_set(FS, -0.01, 0)),
                              ("layer 'feature' combined weight scales", "> 0")),
    "input_scale_nan": (_npz_with(_set("m0.input.scale", np.nan)),
                        ("module 0 input scale", "NaN")),
    "input_scale_zero": (_npz_with(_set("m0.input.scale", 0.0)), ("input scale", "> 0")),
    "input_scale_negative": (_npz_with(_set("m0.input.scale", -1 / 255)),
                             ("input scale", "> 0")),
    "output_scale_negative": (_npz_with(_set("m0.feature.output.scale", -0.5)),
                              ("layer 'feature' output scale", "> 0")),
    "output_scale_inf": (_npz_with(_set("m0.output.output.scale", np.inf)),
                         ("layer 'output' output scale", "NaN or infinite")),
    "weights_not_int8": (_npz_with(_replace("m0.feature.combined.weight",
                                            lambda w: w.astype(np.int16) * 2)),
                         ("m0.feature.combined.weight", "int16", "int8")),
    "layer_shape_mismatch": (_npz_with(_replace("m0.output.combined.weight",
                                                lambda w: np.ascontiguousarray(w[:, :-1]))),
                             ("layer 'output'", f"takes {2 * K0 - 1} inputs",
                              f"previous layer gives {2 * K0}")),
    "scale_shape_mismatch": (_npz_with(_replace(FS, lambda s: s[:-1])),
                             (f"needs {2 * K0} per-channel scales", f"({2 * K0 - 1},)")),
    "missing_key": (_npz_with(_drop("m0.output.output.scale")),
                    ("missing key 'm0.output.output.scale'",)),
    "truncated_half": (_truncated_npz(0), ("not a readable .npz", "truncated")),
    "truncated_tail": (_truncated_npz(30), ("not a readable .npz", "truncated")),
    "corrupt_member": (_corrupt_member, ("m0.feature.combined.weight",)),
    "missing_model": (lambda w: "none.npz", ("none.npz", "no such model")),
    "wrong_model_form": (lambda w: "x.npy", ("x.npy", "unknown model form")),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_npz_model(work: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    make, frags = BAD_MODELS[case]
    model = make(work)
    assert _run(work, model=model) == 2
    _one_error_line(capsys, str(work / model), *frags)
    assert not (work / "out").exists()
    _no_temp_left(work)


BAD_MATS = {
    "exc_outside_int8": (_mats_with("if_exc.npy", W_EXC),
                         ("if_exc.npy", "0..200", "outside int8")),
    "inh_positive": (_mats_with("if_inh.npy", W_INH), ("if_inh.npy", "<= 0")),
    "exc_float": (_mats_with("fo_exc.npy", np.ones((PLACES, 2 * K0))),
                  ("fo_exc.npy", "float64", "integers")),
    "scales_nan": (_mats_with("if_scales.npy", np.array([50.0, np.nan, 20.0, 20.0])),
                   ("layer 'feature' scale factors", "NaN")),
    "scales_zero": (_mats_with("fo_scales.npy", np.array([300.0, 300.0, 0.0, 40.0])),
                    ("layer 'output' scale factors", "> 0")),
    "scales_negative": (_mats_with("fo_scales.npy", np.array([-300.0, 300.0, 40.0, 40.0])),
                        ("scale factors", "> 0")),
    "three_scales": (_mats_with("if_scales.npy", np.array([50.0, 50.0, 20.0])),
                     ("if_scales.npy", "exactly 4")),
    "scales_text": (_mats_with("if_scales.npy", np.array(["a", "b", "c", "d"], dtype=object)),
                    ("if_scales.npy", "4 numbers")),
    "exc_inh_shapes_differ": (_mats_with("fo_inh.npy", np.zeros((PLACES + 1, 2 * K0), np.int8)),
                              ("fo_exc.npy", "fo_inh.npy", "differ")),
    "layer_shape_mismatch": (
        _mats_with("fo_exc.npy", np.zeros((PLACES, 2 * K0 + 1), np.int8)),
        ("fo_exc.npy",)),
    "missing_file": (_mats_with("fo_scales.npy", None), ("fo_scales.npy", "missing")),
}


@pytest.mark.parametrize("case", sorted(BAD_MATS))
def test_bad_seed_mats(work: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    make, frags = BAD_MATS[case]
    if case == "layer_shape_mismatch":  # both output matrices 1 column too wide
        np.save(work / "mats" / "fo_inh.npy", np.zeros((PLACES, 2 * K0 + 1), np.int8))
        frags = ("mats", f"takes {2 * K0 + 1} inputs", f"previous layer gives {2 * K0}")
    model = make(work)
    assert _run(work, config="seed_tutorial", model=model, inp="c.npy") == 2
    _one_error_line(capsys, str(work / "mats"), *frags)
    assert not (work / "out").exists()


# --- configs that do not fit the model, overflow under the error policy ---------------------------


def test_preset_does_not_fit_model(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(work, config="seed_tutorial") == 2
    _one_error_line(capsys, "seed_tutorial.toml", "'requant.scheme' = 'seed_floor_divide'",
                    "'combined' layout", str(work / "m.npz"))
    assert _run(work, config="pytorch_fbgemm", model="mats", inp="c.npy") == 2
    _one_error_line(capsys, "pytorch_fbgemm.toml", "'split' layout", str(work / "mats"))
    assert not (work / "out").exists()


@pytest.mark.parametrize(
    ("extra", "frags"),
    [
        (("--set", "weights.capacity_kib=1"),
         ("pytorch_fbgemm.toml", "2368 bytes", "'weights.capacity_kib' = 1", ">= 3")),
        # weights.bits=4 alone re-quantizes the model (tests/test_energy.py); unsigned cannot
        (("--set", "weights.bits=4", "--set", "weights.signed=false"),
         ("pytorch_fbgemm.toml", "'weights.bits' = 4", "weights.signed = true")),
        (("--set", "accumulator.bits=0"), ("pytorch_fbgemm.toml", "'accumulator.bits' = 0",
                                           "allowed 2..64", "from --set")),
        (("--set", "requant.rounding=trunc"), ("'requant.rounding' = 'trunc'", "toward_zero")),
        (("--set", "layers.output.spikes.bits=4"), ("'layers.output.spikes.bits'",)),
    ],
)
def test_config_does_not_fit(work: Path, extra: tuple[str, ...], frags: tuple[str, ...],
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(work, extra=extra) == 2
    _one_error_line(capsys, *frags)
    assert not (work / "out").exists()


def test_bad_config_file(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = work / "bad.toml"
    cfg.write_text("[accumulator\nbits = 3\n")
    assert _run(work, config=str(cfg)) == 2
    _one_error_line(capsys, str(cfg), "TOML syntax error")
    cfg.write_text("[accumulator]\nbitz = 3\n")
    assert _run(work, config=str(cfg)) == 2
    _one_error_line(capsys, str(cfg), "'accumulator.bitz'", "bits, overflow, adder_tree_width")
    assert _run(work, config="no_such_preset") == 2
    _one_error_line(capsys, "no_such_preset", "pytorch_fbgemm")
    assert not (work / "out").exists()


def test_error_policy_overflow(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = ("--set", "accumulator.bits=8", "--set", "accumulator.overflow=error")
    assert _run(work, extra=extra) == 2
    line = _one_error_line(capsys, "accumulator overflow", "s8 [-128, 127]", "accumulator.bits",
                           "accumulator.overflow")
    assert not (work / "out").exists()
    _no_temp_left(work)
    # the same model with a wide enough accumulator runs
    assert _run(work, extra=("--set", "accumulator.overflow=error")) == 0
    capsys.readouterr()
    named = [n for n in ("pytorch_fbgemm.toml", str(work / "m.npz")) if n in line]
    assert named, f"the overflow error names no file (config or model): {line}"


# --- an existing --out folder is left exactly as it was ------------------------------------------


FAILURES = {
    "input": {"inp": "bad.npy"},
    "model": {"model": "bad.npz"},
    "config": {"config": "seed_tutorial"},
    "overflow": {"extra": ("--set", "accumulator.bits=8", "--set", "accumulator.overflow=error")},
}


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_existing_out_unchanged(work: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(work) == 0  # a previous good run
    out = work / "out"
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    assert {"outputs.npy", "predictions.npy", "report.json", "notes.txt"} <= set(before)
    np.save(work / "bad.npy", np.ones(K0, np.float32))
    _npz_with(_set(FS, np.nan, 0))(work)
    capsys.readouterr()
    assert _run(work, **FAILURES[kind]) == 2
    _one_error_line(capsys)
    assert _snapshot(out) == before
    _no_temp_left(work)


# --- hwsim config check / keys ------------------------------------------------------------


def test_config_check_good(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("pytorch_fbgemm", "seed_tutorial", "int8_fixed_point", "pytorch_qnnpack"):
        assert main(["config", "check", name]) == 0
        out = capsys.readouterr().out
        assert f"{name}.toml: ok ({name}, sha256 " in out
    good = work / "mine.toml"
    good.write_text('name = "mine"\n[accumulator]\nbits = 24\n[layers.output.accumulator]\n'
                    "bits = 20\n")
    assert main(["config", "check", str(good), "--show"]) == 0
    out = capsys.readouterr().out
    assert f"{good}: ok (mine" in out and "bits=24" in out and "bits=20" in out
    assert main(["config", "check", "pytorch_fbgemm", "--model", str(work / "m.npz")]) == 0
    assert "ok for model" in capsys.readouterr().out
    assert main(["config", "check", "seed_tutorial", "--model", str(work / "mats")]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("text", "args", "frags"),
    [
        ("[accumulator]\nbits = 0\n", (), ("'accumulator.bits' = 0", "allowed 2..64")),
        ("[acumulator]\nbits = 8\n", (), ("unknown key 'acumulator'", "did you mean")),
        ("[requant]\nrounding = 'trunc'\n", (), ("'requant.rounding'", "toward_zero")),
        ("[requant]\nclamp_high = 999\n", (), ("'requant.clamp_high'", "u8 [0, 255]")),
        ("[layers.feature.accumulator]\nbitz = 8\n", (),
         ("'layers.feature.accumulator.bitz'",)),
        ("x = [\n", (), ("TOML syntax error",)),
        ("", ("--set", "mac.lanes=0"), ("'mac.lanes' = 0", "from --set mac.lanes=0")),
        ("", ("--set", "accumulator.bits"), ("expected key=value",)),
        ("[requant]\nscheme = 'seed_floor_divide'\n", ("--model", "m.npz"),
         ("'requant.scheme' = 'seed_floor_divide'", "m.npz")),
        ("[weights]\ncapacity_kib = 2\n", ("--model", "m.npz"),
         ("'weights.capacity_kib' = 2", "2368 bytes")),
    ],
)
def test_config_check_bad(work: Path, text: str, args: tuple[str, ...], frags: tuple[str, ...],
                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg = work / "bad.toml"
    cfg.write_text(text)
    args = tuple(str(work / a) if a == "m.npz" else a for a in args)
    assert main(["config", "check", str(cfg), *args]) == 2
    line = _one_error_line(capsys, *frags)
    if not args or args[0] != "--set" or "=" in args[1]:
        assert str(cfg) in line


def test_config_check_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "/no/such/dir/cfg.toml"]) == 2
    _one_error_line(capsys, "/no/such/dir/cfg.toml", "no such config file or preset")


def test_config_keys_lists_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "keys"]) == 0
    out = capsys.readouterr().out
    for key, *_ in schema_rows():
        assert key in out
