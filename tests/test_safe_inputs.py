"""Input safety (issue 7): no input file can run code, sizes are checked before allocation,
bad scales are refused naming the key, and a legal but suspicious run warns.

Every loader gets a planted pickle whose execution would create a marker file; the marker must
never appear and the error must be one ``hwsim: error:`` line with exit status 2. The size
tests measure the reader's peak traced memory (numpy and zlib buffers are traced) to show that
nothing of the declared size was allocated or decompressed.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tracemalloc
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from simulator.cli import main
from simulator.loaders import ModelLimits, load_model, save_npz
from simulator.loaders.safe_npy import (
    MAX_INPUT_ELEMENTS,
    NumbersOnlyUnpickler,
    load_npy_numbers,
)
from simulator.network import ModelError, make_combined_network
from simulator.runner import load_input

K0 = 32
PLACES = 5


class PlantedCode:
    """Unpickling this runs ``touch marker`` (what a hostile file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _evil_objects(marker: Path, n: int = 4) -> np.ndarray:
    arr = np.empty(n, dtype=object)
    for i in range(n):
        arr[i] = PlantedCode(marker)
    return arr


def _layer(rng: np.random.Generator, n_out: int, n_in: int) -> dict:
    return {
        "weight": rng.integers(-128, 128, (n_out, n_in)).astype(np.int8),
        "scale": rng.uniform(0.002, 0.01, n_out),
        "output_scale": 0.05,
        "output_zero_point": 3,
    }


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    """A good model m.npz, float spikes x.npy and a seed mats folder."""
    rng = np.random.default_rng(0)
    mod = {"input_scale": 1 / 255, "input_zero_point": 0,
           "feature": _layer(rng, 2 * K0, K0), "output": _layer(rng, PLACES, 2 * K0)}
    save_npz(make_combined_network([mod]), tmp_path / "m.npz", compress=False)
    np.save(tmp_path / "x.npy", rng.random((4, K0)).astype(np.float32))
    mats = tmp_path / "mats"
    mats.mkdir()
    for pre, shape in (("if", (2 * K0, K0)), ("fo", (PLACES, 2 * K0))):
        np.save(mats / f"{pre}_exc.npy", rng.integers(0, 128, shape).astype(np.int8))
        np.save(mats / f"{pre}_inh.npy", -rng.integers(0, 129, shape).astype(np.int8))
    np.save(mats / "if_scales.npy", np.array([50.0, 50.0, 20.0, 20.0], dtype=object),
            allow_pickle=True)
    np.save(mats / "fo_scales.npy", np.array([300.0, 300.0, 40.0, 40.0]))
    return tmp_path


def _model_arrays(work: Path) -> dict[str, np.ndarray]:
    with np.load(work / "m.npz") as d:
        return {k: d[k] for k in d.files}


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)  # np.savez pickles object arrays, as a hostile file would


def _one_error(capfd: pytest.CaptureFixture[str], *fragments: str) -> str:
    """Exactly one stderr line (at the file-descriptor level: C libraries included)."""
    captured = capfd.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("hwsim: error: "), lines[0]
    assert "Traceback" not in captured.err
    for frag in fragments:
        assert frag in lines[0], f"{frag!r} not in: {lines[0]}"
    return lines[0]


def _run(work: Path, *extra: str, model: str = "m.npz", inp: str = "x.npy",
         config: str = "pytorch_fbgemm") -> int:
    return main(["run", "--config", config, "--model", str(work / model), "--input",
                 str(work / inp), "--out", str(work / "out"), "--quiet", *extra])


def _no_pickle_invitation(line: str) -> None:
    assert "allow_pickle=True" not in line and "weights_only=False" not in line, line


# --- 1. no pickle from any file is ever run ----------------------------------------------------


def test_planted_pickle_in_npz_model(work: Path, capfd: pytest.CaptureFixture[str]) -> None:
    marker = work / "marker"
    for key in ("format", "m0.feature.combined.weight", "m0.input.scale"):
        arrays = _model_arrays(work)
        arrays[key] = _evil_objects(marker)
        _write_npz(work / "evil.npz", arrays)
        assert _run(work, model="evil.npz") == 2
        line = _one_error(capfd, "evil.npz", key, "Object arrays are never read")
        _no_pickle_invitation(line)
        assert not marker.exists()
    assert not (work / "out").exists()


def test_planted_pickle_in_npy_input(work: Path, capfd: pytest.CaptureFixture[str]) -> None:
    marker = work / "marker"
    np.save(work / "evil.npy", _evil_objects(marker, 2 * K0).reshape(2, K0), allow_pickle=True)
    assert _run(work, inp="evil.npy") == 2
    _no_pickle_invitation(_one_error(capfd, "evil.npy", "Object arrays are never read"))
    with pytest.raises(Exception, match="Object arrays"):
        load_input(work / "evil.npy")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["if_scales.npy", "fo_scales.npy", "if_exc.npy", "fo_inh.npy"])
def test_planted_pickle_in_seed_mats(
    work: Path, capfd: pytest.CaptureFixture[str], name: str
) -> None:
    marker = work / "marker"
    np.save(work / "mats" / name, _evil_objects(marker), allow_pickle=True)
    assert _run(work, model="mats", config="seed_tutorial") == 2
    line = _one_error(capfd, name)
    _no_pickle_invitation(line)
    assert main(["config", "check", "seed_tutorial", "--model", str(work / "mats")]) == 2
    _one_error(capfd, name)
    assert not marker.exists()


def test_seed_object_scale_factors_still_read(work: Path) -> None:
    """The seed's own files: object arrays of Python floats, np.float32, np.float64, ints."""
    mats = work / "mats"
    for values, dtype in (
        ([50.0, 50.0, 20.0, 20.0], np.float64),
        ([np.float32(50.5), np.float32(50), np.float32(20), np.float32(20.25)], np.float32),
        ([np.float64(50.5), 50, np.float64(20), 20.0], np.float64),
        ([50, 60, 20, 30], np.float64),
    ):
        arr = np.empty(4, dtype=object)
        arr[:] = values
        np.save(mats / "if_scales.npy", arr, allow_pickle=True)
        net = load_model(mats)
        f = net.modules[0].layer("feature").factors
        assert f.dtype == dtype
        assert f.tolist() == [float(v) for v in values]


def _npy_with_pickle(path: Path, payload: bytes, shape: tuple[int, ...] = (4,)) -> Path:
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "|O", "fortran_order": False, "shape": shape}
        )
        fh.write(payload)
    return path


@pytest.mark.parametrize("payload", [
    # numpy.ndarray called directly with a 1 TiB shape (would allocate)
    b"cnumpy\nndarray\n((I1099511627776\nttR.",
    # a global outside the allow-list
    b"cbuiltins\neval\n(Vprint(1)\ntR.",
    b"cos\nsystem\n(Vtouch MARKER\ntR.",
    # _reconstruct with another class than ndarray
    b"cnumpy._core.multiarray\n_reconstruct\n(cnumpy\ndtype\n(I0\ntC\x01btR.",
    # a persistent id
    b"P1\n.",
])
def test_numbers_only_unpickler_refuses(tmp_path: Path, payload: bytes) -> None:
    marker = tmp_path / "marker"
    payload = payload.replace(b"MARKER", str(marker).encode())
    path = _npy_with_pickle(tmp_path / "s.npy", payload)
    tracemalloc.start()
    try:
        with pytest.raises(ModelError) as info:
            load_npy_numbers(path, 4, ModelError)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(info.value)
    _no_pickle_invitation(str(info.value))
    assert peak < 1 << 20
    assert not marker.exists()


def _seed_pickle() -> bytes:
    arr = np.empty(4, dtype=object)
    arr[:] = [np.float32(1.5), 2.0, 3, np.float64(4)]
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    raw = buf.getvalue()
    return raw[raw.index(b"\n") + 1 :]  # the pickle after the .npy header


@pytest.mark.parametrize("patch", [
    (b"K\x01K\x04\x85", b"K\x01K\xce\x85"),  # array state: shape (206,), 4 items (crashed numpy)
    (b"\x8c\x02f4", b"\x8c\x02O8"),  # a scalar of object dtype
    (b"\x8c\x02O8", b"\x8c\x02V8"),  # a void array
])
def test_crafted_array_states_never_reach_numpy(tmp_path: Path, patch: tuple[bytes, bytes]) -> None:
    good = _seed_pickle()
    assert good.count(patch[0]) >= 1
    path = _npy_with_pickle(tmp_path / "s.npy", good.replace(patch[0], patch[1], 1))
    with pytest.raises(ModelError, match="not 4 numbers"):
        load_npy_numbers(path, 4, ModelError)


def test_numbers_only_unpickler_admits_exactly_numpy_reconstruction() -> None:
    up = NumbersOnlyUnpickler(io.BytesIO(b""))
    for module, name in (("os", "system"), ("builtins", "eval"), ("numpy", "load"),
                         ("numpy.core.multiarray", "array"), ("pickle", "loads")):
        with pytest.raises(pickle.UnpicklingError):
            up.find_class(module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        up.find_class(module, "_reconstruct")
        up.find_class(module, "scalar")


def test_pth_with_python_objects(work: Path, capfd: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    marker = work / "marker"
    torch.save({"model_0": PlantedCode(marker)}, work / "evil.pth")
    torch.save({"model_0": {"quant.scale": torch.tensor([0.1]), "x": _Custom()}},
               work / "custom.pth")
    for name, refused in (("evil.pth", "posix.system"), ("custom.pth", "_Custom")):
        assert _run(work, model=name) == 2
        line = _one_error(capfd, name, "refusing to unpickle", refused)
        assert "truncated" not in line
        _no_pickle_invitation(line)
    assert not marker.exists()


class _Custom:
    pass


def test_dataset_and_report_files_are_never_unpickled(
    work: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    marker = work / "marker"
    blob = pickle.dumps(PlantedCode(marker))
    data = work / "data" / "summer"
    data.mkdir(parents=True)
    (data / "images-00001.png").write_bytes(blob)
    assert main(["run", "--config", "pytorch_fbgemm", "--model", str(work / "m.npz"),
                 "--data-dir", str(data), "--dims", "4,8", "--out", str(work / "out"),
                 "--quiet"]) == 2
    _one_error(capfd, "images-00001.png", "not a readable image")
    rep = work / "rep"
    rep.mkdir()
    (rep / "report.json").write_bytes(blob)
    assert main(["report", str(rep)]) == 2
    _one_error(capfd, "report.json")
    assert not marker.exists()


def test_vectors_input_never_unpickled(work: Path, capfd: pytest.CaptureFixture[str]) -> None:
    marker = work / "marker"
    np.save(work / "evil.npy", _evil_objects(marker, 2 * K0).reshape(2, K0), allow_pickle=True)
    assert main(["vectors", "--config", "pytorch_fbgemm", "--model", str(work / "m.npz"),
                 "--input", str(work / "evil.npy"), "--out", str(work / "vec")]) == 2
    _one_error(capfd, "evil.npy", "Object arrays are never read")
    assert not marker.exists()


# --- 2. limits before allocation ---------------------------------------------------------------


def _npy_bytes(shape: tuple[int, ...], dtype: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue() + data


def _zip_member(arrays: dict[str, bytes], path: Path, deflate: bool = True) -> None:
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as zf:
        for key, raw in arrays.items():
            zf.writestr(key + ".npy", raw)


def _model_members(work: Path) -> dict[str, bytes]:
    out = {}
    for key, arr in _model_arrays(work).items():
        buf = io.BytesIO()
        np.save(buf, arr)
        out[key] = buf.getvalue()
    return out


def test_huge_declared_matrix_in_small_npz(work: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A ~110 kB .npz whose header declares a 1.8 TiB weight matrix: refused, nothing allocated."""
    members = _model_members(work)
    members["m0.feature.combined.weight"] = _npy_bytes((1_000_000, 1_980_000), "i1",
                                                       os.urandom(110_000))
    _zip_member(members, work / "huge.npz", deflate=False)
    assert 100_000 < (work / "huge.npz").stat().st_size < 120_000
    tracemalloc.start()
    try:
        assert _run(work, model="huge.npz") == 2
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _one_error(capfd, "huge.npz", "m0.feature.combined.weight")
    assert peak < 16 << 20


def _bomb_member(size: int) -> bytes:
    """A deflated int8 weight member of ``size`` zero bytes (compresses ~1000:1)."""
    return _npy_bytes((size // 1024, 1024), "i1", bytes(size))


def test_zip_bomb_refused_before_decompression(
    work: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    members = _model_members(work)
    members["m0.feature.combined.weight"] = _bomb_member(96 << 20)
    _zip_member(members, work / "bomb.npz")
    assert (work / "bomb.npz").stat().st_size < 200_000
    tracemalloc.start()
    try:
        # with the config known: its weight memory (1 MiB here) is the limit
        assert _run(work, "--set", "weights.capacity_kib=1024", model="bomb.npz") == 2
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    line = _one_error(capfd, "bomb.npz", "module 0", "weights.capacity_kib")
    assert "refusing to read it" in line
    assert peak < 16 << 20
    # without a config: the documented default limit, again from the header alone
    with pytest.raises(ModelError, match="MAX_MODEL_WEIGHTS"):
        load_model(work / "bomb.npz", ModelLimits(max_module_bytes=1 << 20))


def test_lying_central_directory_is_capped(work: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The central directory declares a small member whose deflate stream expands to 64 MiB:
    decompression stops at the declared size and the CRC check fails; memory stays small."""
    members = _model_members(work)
    small = members["m0.input.scale"]
    members["m0.input.scale"] = small + bytes(64 << 20)  # trailing zeros in the stream
    path = work / "lying.npz"
    _zip_member(members, path)
    raw = bytearray(path.read_bytes())
    name = b"m0.input.scale.npy"
    true_size = len(small) + (64 << 20)
    patched = 0
    for sig, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = 0
        while (pos := raw.find(sig, pos)) >= 0:
            hdr_len = 30 if sig == b"PK\x03\x04" else 46
            name_at = pos + hdr_len
            if raw[name_at : name_at + len(name)] == name:
                assert struct.unpack("<I", raw[pos + size_at : pos + size_at + 4])[0] \
                    == true_size
                raw[pos + size_at : pos + size_at + 4] = struct.pack("<I", len(small))
                patched += 1
            pos += 4
    assert patched == 2
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        assert _run(work, model="lying.npz") == 2
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _one_error(capfd, "lying.npz", "m0.input.scale")
    assert peak < 16 << 20


def test_input_limit_from_header(work: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (work / "big.npy").write_bytes(_npy_bytes((1 << 20, 1 << 20), "f4", bytes(4096)))
    tracemalloc.start()
    try:
        assert _run(work, inp="big.npy") == 2
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _one_error(capfd, "big.npy", "MAX_INPUT_ELEMENTS", f"{MAX_INPUT_ELEMENTS:,}")
    assert peak < 16 << 20


BAD_ARRAY_FILES = {
    "scalar_input": (lambda w: np.save(w / "bad.npy", np.float32(0.5)), "inp", "single number"),
    "3d_input": (lambda w: np.save(w / "bad.npy", np.zeros((2, 4, 8), np.float32)), "inp",
                 "3-D"),
    "complex_input": (lambda w: np.save(w / "bad.npy", np.zeros((2, K0), np.complex64)), "inp",
                      "complex64"),
    "bool_input": (lambda w: np.save(w / "bad.npy", np.zeros((2, K0), bool)), "inp", "bool"),
    "string_input": (lambda w: np.save(w / "bad.npy", np.array([["a"] * K0])), "inp", "<U1"),
    "npz_named_npy": (lambda w: np.savez(open(w / "bad.npy", "wb"), x=np.ones((2, K0))), "inp",
                      ".npz archive"),
    "truncated_data": (lambda w: (w / "bad.npy").write_bytes((w / "x.npy").read_bytes()[:-7]),
                       "inp", "truncated"),
    "npy_named_npz": (lambda w: np.save(open(w / "bad.npz", "wb"), np.ones((2, K0))), "model",
                      "single .npy array, not an .npz archive"),
    "empty_npz": (lambda w: (w / "bad.npz").write_bytes(b""), "model", "empty"),
    "text_npz": (lambda w: (w / "bad.npz").write_text("hello"), "model", "not an .npz"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARRAY_FILES))
def test_bad_array_files_one_line(work: Path, capfd: pytest.CaptureFixture[str],
                                  case: str) -> None:
    make, role, fragment = BAD_ARRAY_FILES[case]
    make(work)
    rc = _run(work, inp="bad.npy") if role == "inp" else _run(work, model="bad.npz")
    assert rc == 2
    _one_error(capfd, "bad.np", fragment)


def test_npz_weight_dtype_and_shape_from_header(
    work: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    arrays = _model_arrays(work)
    arrays["m0.feature.combined.weight"] = arrays["m0.feature.combined.weight"].astype(np.float64)
    _write_npz(work / "f.npz", arrays)
    assert _run(work, model="f.npz") == 2
    _one_error(capfd, "m0.feature.combined.weight", "float64", "int8")
    arrays = _model_arrays(work)
    arrays["m0.output.combined.weight"] = np.zeros((PLACES, 0), np.int8)
    arrays["m0.output.combined.scale"] = np.full(PLACES, 0.01)
    _write_npz(work / "e.npz", arrays)
    assert _run(work, model="e.npz") == 2
    line = _one_error(capfd, "(5, 0)", "empty dimension", "(out_features, in_features)")
    assert "does not fit" not in line


# --- 3. scales -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1e300, 1e-300, 1e-40, 0.0, -0.01, np.nan, np.inf])
@pytest.mark.parametrize("key,index", [
    ("m0.feature.combined.scale", 17), ("m0.input.scale", None), ("m0.output.output.scale", None),
])
def test_bad_scales_named_at_load(work: Path, capfd: pytest.CaptureFixture[str], key: str,
                                  index: int | None, value: float) -> None:
    arrays = _model_arrays(work)
    if index is None:
        arrays[key] = np.array(value, dtype=np.float64)
    else:
        arrays[key] = arrays[key].copy()
        arrays[key][index] = value
    _write_npz(work / "s.npz", arrays)
    assert _run(work, model="s.npz") == 2
    name = key if index is None else f"{key}[{index}]"
    _one_error(capfd, "s.npz", f"{name} = ", "finite and > 0")
    assert not (work / "out").exists()


@pytest.mark.parametrize("sw", [1e20, 1e-37])
def test_unrepresentable_multiplier(work: Path, capfd: pytest.CaptureFixture[str],
                                    sw: float) -> None:
    """Every scale is a normal float32, but 1/255 * sw / 0.05 is not representable."""
    arrays = _model_arrays(work)
    arrays["m0.feature.combined.scale"] = arrays["m0.feature.combined.scale"].copy()
    arrays["m0.feature.combined.scale"][3] = sw
    _write_npz(work / "mul.npz", arrays)
    assert _run(work, model="mul.npz") == 2
    _one_error(capfd, "m0.feature.combined.scale[3]", "multiplier", "2^-126, 2^31")


def test_seed_factor_product_not_float32(work: Path, capfd: pytest.CaptureFixture[str]) -> None:
    np.save(work / "mats" / "fo_scales.npy", np.array([3e20, 3e20, 40.0, 40.0], np.float32))
    assert _run(work, model="mats", config="seed_tutorial") == 2
    _one_error(capfd, "m0.output.factors[0] x m0.output.factors[0]")
    np.save(work / "mats" / "fo_scales.npy", np.array([1e300, 300.0, 40.0, 40.0], dtype=object),
            allow_pickle=True)
    assert _run(work, model="mats", config="seed_tutorial") == 2
    _one_error(capfd, "m0.output.factors[0] = 1e+300")


# --- 4. clamped inputs warn ----------------------------------------------------------------------


def test_pixels_0_255_warn_and_are_recorded(work: Path, capfd: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (6, K0)).astype(np.float32)  # forgot to divide by 255
    np.save(work / "pix.npy", pixels)
    expected = int(np.count_nonzero(pixels >= 2))  # 0 and 1 are in range, 2.. clamp high
    assert _run(work, inp="pix.npy") == 0
    err = capfd.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("hwsim: warning: ")
    assert f"{expected:,} of {pixels.size:,} input values outside [0, 1] were clamped" in err[0]
    assert "scale images to [0, 1]" in err[0]
    rep = json.loads((work / "out" / "report.json").read_text())
    assert rep["input"]["clamped_high"] == expected
    assert rep["input"]["clamped_low"] == 0
    assert rep["input"]["values"] == pixels.size
    # in-range spikes: no warning
    assert _run(work) == 0
    assert capfd.readouterr().err == ""


# --- 5. configs and images -----------------------------------------------------------------------


def test_toml_with_bom_and_deep_nesting(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    preset = Path(__file__).resolve().parent.parent / "hwconfig" / "pytorch_fbgemm.toml"
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + preset.read_bytes())
    assert main(["config", "check", str(bom)]) == 2
    _one_error(capfd, "bom.toml", "byte order mark")
    for name, text in (("arrays", "x = " + "[" * 3000 + "]" * 3000),
                       ("tables", "x = " + "{a = " * 3000 + "1" + "}" * 3000),
                       ("headers", "[" + ".".join(["a"] * 3000) + "]\nb = 1")):
        p = tmp_path / f"{name}.toml"
        p.write_text(text + "\n")
        assert main(["config", "check", str(p)]) == 2
        _one_error(capfd, f"{name}.toml", "deep")


def _png(shape: tuple[int, ...] = (16, 24, 3)) -> bytes:
    img = (np.random.default_rng(1).random(shape) * 255).astype(np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


@pytest.mark.parametrize("damage", ["truncated_half", "no_iend", "bad_crc", "jpeg_cut"])
def test_damaged_image_only_our_line(work: Path, capfd: pytest.CaptureFixture[str],
                                     damage: str) -> None:
    data = work / "imgs"
    data.mkdir()
    png = _png()
    good = data / "a-00000.png"
    good.write_bytes(png)
    if damage == "truncated_half":
        (data / "b-00001.png").write_bytes(png[: len(png) // 2])
    elif damage == "no_iend":
        (data / "b-00001.png").write_bytes(png[:-12])
    elif damage == "bad_crc":
        raw = bytearray(png)
        raw[len(raw) // 2] ^= 0xFF
        (data / "b-00001.png").write_bytes(bytes(raw))
    else:
        jpg = cv2.imencode(".jpg", np.zeros((16, 24, 3), np.uint8))[1].tobytes()
        (data / "b-00001.jpg").write_bytes(jpg[: len(jpg) * 2 // 3])
    assert main(["run", "--config", "pytorch_fbgemm", "--model", str(work / "m.npz"),
                 "--data-dir", str(data), "--dims", "4,8", "--out", str(work / "out"),
                 "--quiet"]) == 2
    _one_error(capfd, "b-00001", "not a readable image")


def test_image_pixel_bomb_refused(tmp_path: Path) -> None:
    from simulator.vpr.datasets import DatasetError, load_image

    png = bytearray(_png((4, 4)))
    # declare 100000 x 100000 pixels in IHDR and fix its CRC
    png[16:24] = struct.pack(">II", 100_000, 100_000)
    import zlib

    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])) & 0xFFFFFFFF)
    (tmp_path / "big.png").write_bytes(bytes(png))
    with pytest.raises(DatasetError, match="MAX_IMAGE_PIXELS"):
        load_image(tmp_path / "big.png")
    bmp = bytearray(cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    bmp[18:26] = struct.pack("<ii", 100_000, -100_000)
    (tmp_path / "big.bmp").write_bytes(bytes(bmp))
    (tmp_path / "big.ppm").write_bytes(b"P6\n# planted\n100000 100000\n255\n" + bytes(64))
    for name in ("big.bmp", "big.ppm"):
        with pytest.raises(DatasetError, match="MAX_IMAGE_PIXELS"):
            load_image(tmp_path / name)


# --- the reader reads what numpy writes --------------------------------------------------------


@pytest.mark.parametrize("arr", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
    np.arange(12, dtype=">f4").reshape(3, 4),
    np.arange(12, dtype=np.uint8).reshape(2, 6),
    np.arange(12, dtype=np.int16).reshape(6, 2),
    np.zeros((0, 4), np.float32),
])
def test_load_input_round_trip(tmp_path: Path, arr: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", arr)
    got = load_input(tmp_path / "a.npy")
    assert got.dtype == arr.dtype and got.shape == arr.shape
    assert np.array_equal(got, arr)


@pytest.mark.parametrize("compress", [False, True])
def test_npz_round_trip(work: Path, compress: bool) -> None:
    net = load_model(work / "m.npz")
    save_npz(net, work / "again.npz", compress=compress)
    back = load_model(work / "again.npz")
    for a, b in zip(net.modules[0].layers, back.modules[0].layers, strict=True):
        assert np.array_equal(a.paths[0].weight, b.paths[0].weight)
        assert np.array_equal(a.paths[0].scale, b.paths[0].scale)
        assert a.output_scale == b.output_scale


def test_python2_style_seed_factors(tmp_path: Path) -> None:
    """A protocol-0/2 pickle as Python 2 numpy wrote it (GLOBAL numpy.core.multiarray, str)."""
    payload = (b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I0\ntS'b'\ntR"
               b"(I1\n(I4\ntcnumpy\ndtype\n(S'O8'\nI0\nI1\ntR(I3\nS'|'\nNNNI-1\nI-1\nI63\ntb"
               b"I00\n(lp0\nF50.0\naF50.0\naF20.0\naF20.5\natb.")
    path = _npy_with_pickle(tmp_path / "s.npy", payload)
    got = load_npy_numbers(path, 4, ModelError)
    assert got.dtype == np.float64 and got.tolist() == [50.0, 50.0, 20.0, 20.5]


def test_damaged_files_fail_with_one_line_error(work: Path) -> None:
    """Random byte damage and truncation of good files: always the loader's own one-line error
    (found by fuzzing: zlib errors, tokenizer errors in numpy's header parser, zip versions,
    and a numpy crash on a crafted array state)."""
    import random

    from simulator.engine import InputError

    r = random.Random(7)

    def damaged(good: bytes, start: int = 0) -> bytes:
        b = bytearray(good)
        if r.random() < 0.3:
            return bytes(b[: r.randrange(start, len(b))])
        for _ in range(r.randrange(1, 4)):
            b[r.randrange(start, len(b))] = r.randrange(256)
        return bytes(b)

    net = load_model(work / "m.npz")
    save_npz(net, work / "c.npz", compress=True)
    cases: list[tuple[Path, bytes, object, type[Exception]]] = []
    for name in ("m.npz", "c.npz"):
        cases += [(work / "f.npz", (work / name).read_bytes(), load_model, ModelError)] * 120
    cases += [(work / "f.npy", (work / "x.npy").read_bytes(), load_input, InputError)] * 120
    seed = _npy_with_pickle(work / "s.npy", _seed_pickle())
    cases += [(work / "f2.npy", seed.read_bytes(),
               lambda p: load_npy_numbers(p, 4, ModelError), ModelError)] * 300
    for path, good, load, err in cases:
        path.write_bytes(damaged(good, 128 if path.name == "f2.npy" else 0))
        try:
            load(path)  # type: ignore[operator]
        except err as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), str(exc)
