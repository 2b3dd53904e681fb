"""The ``seed_tutorial`` preset reproduces the seed's integer walk-through bit for bit.

Oracle: the seed notebook's formulas (../shared/seeds/, "VPRTempoQuant - Basic Demo")
transcribed literally in :func:`seed_walkthrough` -- the same numpy operations in the same
order, including ``//`` floor division on floats, ``/`` true division, ``.astype(np.int32)``,
``np.round``, ``np.clip(..., 0, max_int)`` and the seed's quirks: the feature combiner divides
the inhibitory term by the *excitatory* per-channel scale, and the output layer subtracts the
inhibitory zero point 127 twice. Models are seed-shaped random mats (784 -> 1568 -> places;
excitatory int8 >= 0, inhibitory int8 <= 0) with integer and with float scale factors, saved
as a mats folder and read back by the seed code exactly as the seed reads its files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main
from simulator.config import load_config
from simulator.engine import simulate
from simulator.loaders import load_model
from simulator.units.requantizer import seed_floor_divide

K0 = 784
K1 = 2 * K0


def seed_walkthrough(patch_img: np.ndarray, mats: Path) -> dict[str, np.ndarray]:
    """The seed's cells, verbatim apart from plotting/printing and the folder name."""
    patch_img = patch_img.astype(np.int32)
    max_int = np.max(patch_img)
    scale_factors = np.load(mats / "if_scales.npy", allow_pickle=True)
    patch_1d = np.reshape(patch_img, (784,))
    if_exc = np.load(mats / "if_exc.npy")
    if_inh = np.load(mats / "if_inh.npy")
    zeropoint_inh = 127

    exc_feature_spikes = (np.matmul(if_exc, patch_1d))
    perslice_scale_exc = scale_factors[0]
    perchannel_scale_exc = scale_factors[2]
    scaled_exc_feature_spikes = (exc_feature_spikes // (perslice_scale_exc * perchannel_scale_exc)
                                 ) // perchannel_scale_exc
    scaled_exc_feature_spikes = scaled_exc_feature_spikes.astype(np.int32)

    inh_feature_spikes = (np.matmul(if_inh, patch_1d))
    perslice_scale_inh = scale_factors[1]
    perchannel_scale_inh = scale_factors[3]
    scaled_inh_feature_spikes = ((inh_feature_spikes - zeropoint_inh) // (
        perslice_scale_inh * perchannel_scale_inh)) // perchannel_scale_inh + zeropoint_inh
    scaled_inh_feature_spikes = scaled_inh_feature_spikes.astype(np.int32)

    combined_scale = 58
    combined_zeropoint = 61
    scaled_inh_feature_spikes_zero = scaled_inh_feature_spikes - zeropoint_inh
    exc_rescaled = (scaled_exc_feature_spikes / perchannel_scale_exc) * combined_scale
    inh_rescaled = (scaled_inh_feature_spikes_zero / perchannel_scale_exc) * combined_scale
    combined = (exc_rescaled.astype(np.int32) + inh_rescaled.astype(np.int32)) + combined_zeropoint
    combined_unclipped = combined
    combined = np.clip(combined, 0, max_int)

    fo_exc = np.load(mats / "fo_exc.npy")
    fo_inh = np.load(mats / "fo_inh.npy")
    fo_scales = np.load(mats / "fo_scales.npy", allow_pickle=True)
    exc_output_spikes = np.round(np.matmul(fo_exc, combined))
    scaled_exc_output_spikes = exc_output_spikes // (fo_scales[0])
    inh_output_spikes = (np.matmul(fo_inh, combined.astype(np.int32)))
    scaled_inh_output_spikes = (inh_output_spikes - zeropoint_inh) // fo_scales[1]
    exc_rescaled = (scaled_exc_output_spikes / fo_scales[2]) * combined_scale
    inh_rescaled = ((scaled_inh_output_spikes - zeropoint_inh) / fo_scales[3]) * combined_scale
    output_spikes = (exc_rescaled.astype(np.int32) + inh_rescaled.astype(np.int32)
                     ) + combined_zeropoint
    output_unclipped = output_spikes
    output_spikes = np.clip(output_spikes, 0, max_int)
    prediction = np.argmax(output_spikes)
    return {
        "feature.acc.excitatory": exc_feature_spikes,
        "feature.acc.inhibitory": inh_feature_spikes,
        "feature.scaled.excitatory": scaled_exc_feature_spikes,
        "feature.scaled.inhibitory": scaled_inh_feature_spikes,
        "feature.unclamped": combined_unclipped,
        "feature.codes": combined,
        "output.acc.excitatory": exc_output_spikes,
        "output.acc.inhibitory": inh_output_spikes,
        "output.scaled.excitatory": scaled_exc_output_spikes,
        "output.scaled.inhibitory": scaled_inh_output_spikes,
        "output.unclamped": output_unclipped,
        "output.codes": output_spikes,
        "prediction": np.asarray(prediction),
    }


def _sim_value(result, key: str, q: int) -> np.ndarray:
    parts = key.split(".")
    lr = result.layer(0, parts[0])
    if parts[1] in ("acc", "scaled"):
        return getattr(lr, parts[1])[parts[2]][q]
    return getattr(lr, parts[1])[q]


def make_mats(folder: Path, rng: np.random.Generator, places: int, if_scales: np.ndarray,
              fo_scales: np.ndarray) -> Path:
    """Seed-shaped random mats: sparse int8 weights, each neuron its own density."""
    folder.mkdir(parents=True)
    for prefix, shape in (("if", (K1, K0)), ("fo", (places, K1))):
        for name, sign in (("exc", 1), ("inh", -1)):
            density = rng.uniform(0.02, 0.2, (shape[0], 1))
            mag = rng.integers(0, 128 if sign > 0 else 129, shape)
            w = (sign * mag * (rng.random(shape) < density)).astype(np.int8)
            np.save(folder / f"{prefix}_{name}.npy", w)
    np.save(folder / "if_scales.npy", if_scales, allow_pickle=True)
    np.save(folder / "fo_scales.npy", fo_scales, allow_pickle=True)
    return folder


def make_queries(rng: np.random.Generator, q: int) -> np.ndarray:
    """Patch-normalised-like images 0..255 (uint8 codes), with varied maxima and edge cases."""
    imgs = rng.integers(0, 256, (q, K0))
    imgs[1] = imgs[1] * 180 // 255  # max_int < 255 clips the combiner lower
    imgs[2] = np.clip(rng.normal(128, 30, K0), 0, 255)
    imgs[3] = 0  # an all-black image: max_int = 0
    imgs[4] = 255
    return imgs.astype(np.uint8)


MODELS = {
    # name: (places, if_scales, fo_scales)
    "int_scales": (25, np.array([50, 50, 20, 20]), np.array([3000, 3000, 400, 400])),
    "int_scales_tight": (7, np.array([40, 45, 20, 22]), np.array([6000, 6600, 380, 420])),
    "float_scales": (17, np.array([47.3, 52.9, 19.37, 21.13]),
                     np.array([2870.5, 3120.25, 388.7, 412.3])),
    "float_scales_random": (9, None, None),
    "object_array_floats": (4, np.array([48.5, 51.25, 19.9, 20.7], dtype=object),
                            np.array([2500.0, 2600.5, 350.25, 420.0], dtype=object)),
    "object_array_ints": (1, np.array([50, 48, 20, 21], dtype=object),
                          np.array([2800, 3100, 390, 405], dtype=object)),
}
QUERIES = 12


@pytest.fixture(scope="module", params=sorted(MODELS))
def seed_case(request, tmp_path_factory) -> tuple[Path, np.ndarray, str]:
    name = request.param
    rng = np.random.default_rng(sorted(MODELS).index(name) + 100)
    places, ifs, fos = MODELS[name]
    if ifs is None:  # arbitrary float scale factors near the useful range
        ifs = np.array([rng.uniform(40, 60), rng.uniform(40, 60), rng.uniform(15, 25),
                        rng.uniform(15, 25)])
        fos = np.array([rng.uniform(2000, 3500), rng.uniform(2000, 3500), rng.uniform(300, 450),
                        rng.uniform(300, 450)])
    folder = make_mats(tmp_path_factory.mktemp(name) / "mats", rng, places, ifs, fos)
    return folder, make_queries(rng, QUERIES), name


def test_seed_intermediates_match(seed_case: tuple[Path, np.ndarray, str]) -> None:
    folder, codes, name = seed_case
    net = load_model(folder)
    cfg = load_config("seed_tutorial")
    result = simulate(net, cfg, codes)
    mismatches: dict[str, int] = {}
    compared = 0
    seeds = [seed_walkthrough(codes[q].reshape(28, 28), folder) for q in range(QUERIES)]
    for key in seeds[0]:
        bad = 0
        for q in range(QUERIES):
            want = seeds[q][key]
            got = result.predictions[q] if key == "prediction" else _sim_value(result, key, q)
            assert np.shape(got) == np.shape(want), key
            bad += int(np.count_nonzero(np.asarray(got) != np.asarray(want)))
            compared += np.size(want)
        mismatches[key] = bad
    assert sum(mismatches.values()) == 0, (name, mismatches)
    assert compared == QUERIES * (4 * K1 + 2 * K1 + 6 * net.places + 1)
    np.testing.assert_array_equal(result.outputs, np.stack([s["output.codes"] for s in seeds]))

    # the test is meaningful: values are varied, not all clipped
    feat = np.stack([s["feature.codes"] for s in seeds])
    out = np.stack([s["output.codes"] for s in seeds])
    maxes = codes.max(axis=1).astype(np.int64)
    live = [q for q in range(QUERIES) if maxes[q] > 0]
    inside = (feat[live] > 0) & (feat[live] < maxes[live, None])
    assert inside.mean() > 0.4, inside.mean()
    assert len(np.unique(feat)) > 50  # codes step by about 58 / s2
    if net.places > 1:
        inside_out = (out[live] > 0) & (out[live] < maxes[live, None])
        assert inside_out.mean() > 0.5, inside_out.mean()
        assert len(np.unique(out)) > min(net.places, 10)
    assert np.all(feat[3] == 0) and np.all(out[3] == 0)  # black image: max_int = 0
    # the floor divisions really meet negative quotients (floor != truncation)
    inh = np.stack([s["feature.acc.inhibitory"] for s in seeds]) - 127
    assert np.any(inh < 0)


def test_seed_float_spikes_equal_codes(seed_case: tuple[Path, np.ndarray, str]) -> None:
    """Float spikes k/255 quantize (scale 1/255, zero point 0) to the same codes k."""
    folder, codes, _ = seed_case
    net, cfg = load_model(folder), load_config("seed_tutorial")
    a = simulate(net, cfg, codes)
    b = simulate(net, cfg, (codes / 255.0).astype(np.float32))
    np.testing.assert_array_equal(b.input_codes[0], codes.astype(np.int64))
    np.testing.assert_array_equal(a.outputs, b.outputs)


def test_seed_cli_run(seed_case: tuple[Path, np.ndarray, str], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    folder, codes, _ = seed_case
    inp = tmp_path / "codes.npy"
    np.save(inp, codes)
    out = tmp_path / "run"
    rc = main(["run", "--config", "seed_tutorial", "--model", str(folder), "--input", str(inp),
               "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    names = {p.name for p in out.iterdir()}
    assert {"outputs.npy", "predictions.npy", "report.json"} <= names
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".run")]  # no temp dirs
    outputs = np.load(out / "outputs.npy")
    preds = np.load(out / "predictions.npy")
    seeds = [seed_walkthrough(codes[q].reshape(28, 28), folder) for q in range(QUERIES)]
    np.testing.assert_array_equal(outputs, np.stack([s["output.codes"] for s in seeds]))
    np.testing.assert_array_equal(preds, [int(s["prediction"]) for s in seeds])
    assert np.issubdtype(outputs.dtype, np.integer) and outputs.shape == (QUERIES, len(
        seeds[0]["output.codes"]))
    report = json.loads((out / "report.json").read_text())
    assert "schema" in report


# --- float32 scale factors ---------------------------------------------------------------------


def test_seed_floor_divide_float32_products() -> None:
    """With float32 factors the seed forms s0*s2 in float32 (numpy scalar arithmetic).

    s0 = f32(1000/19), s2 = 19: f32(s0*s2) = 1000 exactly while the float64 product is
    1000.0000267, so 19000 // (s0*s2) // s2 is 1 in the seed and 0 with a float64 product.
    """
    f32 = np.array([1000 / 19, 1.0, 19.0, 1.0], dtype=np.float32)
    acc = np.array([[19000, 18999, -19000, 0]], dtype=np.int64)
    s0, s2 = f32[0], f32[2]
    want = (acc.astype(np.int32) // (s0 * s2)) // s2  # the seed's expression
    got = seed_floor_divide(acc, f32, ((0, 2), (2,)), 0, 0)
    assert got.tolist() == want.astype(np.int64).tolist() == [[1, 0, -1, 0]]
    f64 = f32.astype(np.float64)
    want64 = (acc // (f64[0] * f64[2])) // f64[2]
    assert seed_floor_divide(acc, f64, ((0, 2), (2,)), 0, 0).tolist() == want64.tolist()
    assert want64.tolist() != want.tolist()  # the two dtypes really differ here


def test_seed_float32_scale_file(tmp_path: Path) -> None:
    """A mats folder whose scale factors are float32 (as torch produces them)."""
    folder = tmp_path / "mats32"
    folder.mkdir()
    places = 3
    ie = np.zeros((K1, K0), np.int8)
    ie[0, 0], ie[1, 0] = 76, 50  # acc = 76 * 250 = 19000: the float32 product decides
    ii = np.zeros((K1, K0), np.int8)
    ii[:, 1] = -1
    fe = np.zeros((places, K1), np.int8)
    fe[:, 0] = [1, 2, 3]
    for name, arr in {"if_exc": ie, "if_inh": ii, "fo_exc": fe,
                      "fo_inh": np.zeros((places, K1), np.int8)}.items():
        np.save(folder / f"{name}.npy", arr)
    np.save(folder / "if_scales.npy", np.array([1000 / 19, 1.0, 19.0, 1.0], np.float32))
    np.save(folder / "fo_scales.npy", np.array([1.0, 1.0, 1.0, 1.0], np.float32))
    x = np.zeros((1, K0), np.uint8)
    x[0, 0], x[0, 1] = 250, 255
    net = load_model(folder)
    want = seed_walkthrough(x[0].reshape(28, 28), folder)
    assert net.modules[0].layers[0].factors.dtype == np.float32, "float32 factors widened"
    result = simulate(net, load_config("seed_tutorial"), x)
    for key in want:
        got = result.predictions[0] if key == "prediction" else _sim_value(result, key, 0)
        np.testing.assert_array_equal(got, want[key], err_msg=key)
