"""``requant.multipliers = "model"``: an engine's own multipliers stored in the model.

Proof against code nobody here wrote: the tflite-micro interpreter does not expose its
per-channel (M0, shift), but its extension module exports the engine's own
``tflite::micro::QuantizeMultiplier(double, int32_t*, int*)``; called through ctypes, its pairs
(which must equal TFLite's documented frexp rule, written here independently of
simulator.fixedpoint) are stored in the model, and the tflm_reference preset with
``requant.multipliers = "model"`` must give the interpreter's codes on the exported graph.
A deliberately different stored M0 (or float multiplier) must change codes, with the fast and
stepwise engines agreeing bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import engine_oracle as E
import numpy as np
import pytest

from simulator.config import ConfigError, load_config
from simulator.engine import simulate
from simulator.engine.stepwise import compare_with_fast, simulate_stepwise
from simulator.loaders.npz import load_npz, save_npz
from simulator.network import ModelError, QuantizedNetwork
from simulator.units.requantizer import float_multiplier


def tflite_quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: (M0 31-bit, exponent) with real = M0 * 2^(exponent - 31)."""
    q, exponent = math.frexp(real)
    m0 = int(math.copysign(math.floor(abs(q) * 2**31 + 0.5), q))  # std::round: half away
    if m0 == 2**31:
        m0 //= 2
        exponent += 1
    assert exponent >= -31, "a multiplier TFLite turns into 0 cannot be stored"
    return m0, exponent


def with_multipliers(net: QuantizedNetwork, make) -> QuantizedNetwork:
    """``net`` with each layer's stored multipliers set by make(sx, sw, sy, layer) -> kwargs."""
    mods = []
    for mod in net.modules:
        sx = mod.input_scale
        layers = []
        for lay in mod.layers:
            kw = make(sx, lay.paths[0].scale, lay.output_scale, lay)
            layers.append(dataclasses.replace(lay, **kw))
            sx = lay.output_scale
        mods.append(dataclasses.replace(mod, layers=tuple(layers)))
    return dataclasses.replace(net, modules=tuple(mods))


def tflite_m0_shift(sx: float, sw: np.ndarray, sy: float, lay) -> dict:
    """The engine's (M0, exponent) per channel as hwsim's (M0, right shift = 31 - exponent)."""
    pairs = [tflite_quantize_multiplier(float(np.float64(sx) * np.float64(s) / np.float64(sy)))
             for s in sw]
    m0 = np.array([m for m, _ in pairs], dtype=np.int64)
    shift = np.array([31 - e for _, e in pairs], dtype=np.int64)
    return {"requant_m0": m0, "requant_shift": shift}


def tflm_quantize_multiplier():
    """tflite-micro's own QuantizeMultiplier (C++, from its Python extension) via ctypes."""
    import ctypes

    from tflite_micro.python.tflite_micro import runtime

    lib = ctypes.CDLL(str(Path(runtime.__file__).with_name("_runtime.so")))
    fn = lib._ZN6tflite5micro18QuantizeMultiplierEdPiS1_  # tflite::micro::QuantizeMultiplier
    fn.restype = None
    fn.argtypes = [ctypes.c_double, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int)]

    def quantize(real: float) -> tuple[int, int]:
        m0, exponent = ctypes.c_int32(), ctypes.c_int()
        fn(real, ctypes.byref(m0), ctypes.byref(exponent))
        return m0.value, exponent.value

    return quantize


@pytest.mark.slow
def test_tflm_engine_multipliers_stored_give_interpreter_codes(tmp_path: Path) -> None:
    pytest.importorskip("tflite_micro", reason="tflite-micro not installed (engines extra)")
    from simulator.formats import export_model, import_model

    net = E.random_network(13, k=32, places=25, modules=3)
    x = E.make_inputs(113, 336, net)
    path = export_model(net, tmp_path / "net.tflite", "tflite", batch=len(x))
    ref = E.run_tflm(path, x, len(net.modules))
    engine_qm = tflm_quantize_multiplier()

    def engine_m0_shift(sx, sw, sy, lay) -> dict:
        pairs = [engine_qm(float(np.float64(sx) * np.float64(s) / np.float64(sy))) for s in sw]
        assert pairs == [tflite_quantize_multiplier(
            float(np.float64(sx) * np.float64(s) / np.float64(sy))) for s in sw]
        return {"requant_m0": np.array([m for m, _ in pairs], dtype=np.int64),
                "requant_shift": np.array([31 - e for _, e in pairs], dtype=np.int64)}

    stored = with_multipliers(import_model(path), engine_m0_shift)
    model = simulate(stored, load_config("tflm_reference", ["requant.multipliers=model"]), x)
    scales = simulate(stored, load_config("tflm_reference"), x)
    assert not E.mismatch_line("stored multipliers", model.outputs, ref)
    assert np.array_equal(model.outputs, scales.outputs)
    assert (ref == 0).any() and (ref == 255).any()
    # the stored path is really taken: one M0 off by a few units changes some codes
    bumped = with_multipliers(stored, lambda sx, sw, sy, lay: {
        "requant_m0": lay.requant_m0 - (lay.requant_m0 >> 6)})
    other = simulate(bumped, load_config("tflm_reference", ["requant.multipliers=model"]), x)
    assert (other.outputs != ref).any()


@pytest.mark.parametrize("preset", ["tflm_reference", "int8_fixed_point"])
def test_different_stored_m0_changes_codes_and_engines_agree(preset: str) -> None:
    net = E.random_network(11, k=24, places=20, modules=2)
    x = E.make_inputs(111, 12, net)
    exact = with_multipliers(net, tflite_m0_shift)
    cfg = load_config(preset, ["requant.multipliers=model"])
    base = simulate(exact, load_config(preset), x)
    if load_config(preset).requant.scheme == "two_stage":
        assert np.array_equal(simulate(exact, cfg, x).outputs, base.outputs)

    def lower(sx, sw, sy, lay):  # M0 of odd channels lowered by 1/16
        odd = np.arange(lay.requant_m0.size) % 2 == 1
        return {"requant_m0": np.where(odd, lay.requant_m0 - (lay.requant_m0 >> 4), lay.requant_m0),
                "requant_shift": lay.requant_shift}

    changed = with_multipliers(exact, lower)
    fast = simulate(changed, cfg, x)
    assert (fast.outputs != base.outputs).any()
    step = simulate_stepwise(changed, cfg, x)
    assert not compare_with_fast(fast, step)


def test_float_multiplier_stored() -> None:
    net = E.random_network(12, k=24, places=20, modules=1)
    x = E.make_inputs(112, 12, net)
    same = with_multipliers(net, lambda sx, sw, sy, lay: {
        "requant_multiplier": float_multiplier("fbgemm", sx, sw, sy).astype(np.float64)})
    cfg = load_config("pytorch_fbgemm", ["requant.multipliers=model"])
    base = simulate(net, load_config("pytorch_fbgemm"), x)
    assert np.array_equal(simulate(same, cfg, x).outputs, base.outputs)
    scaled = with_multipliers(same, lambda sx, sw, sy, lay: {
        "requant_multiplier": (lay.requant_multiplier * 1.25).astype(np.float32)})
    fast = simulate(scaled, cfg, x)
    assert (fast.outputs != base.outputs).any()
    assert not compare_with_fast(fast, simulate_stepwise(scaled, cfg, x))


def test_npz_round_trip_and_bad_arrays(tmp_path: Path) -> None:
    net = with_multipliers(E.random_network(11, k=8, places=5), tflite_m0_shift)
    save_npz(net, tmp_path / "m.npz")
    back = load_npz(tmp_path / "m.npz")
    for a, b in zip(net.modules[0].layers, back.modules[0].layers, strict=True):
        assert np.array_equal(a.requant_m0, b.requant_m0)
        assert np.array_equal(a.requant_shift, b.requant_shift)

    def bad(arrays: dict, match: str) -> None:
        data = dict(np.load(tmp_path / "m.npz"))
        data.update(arrays)
        for k in [k for k, v in arrays.items() if v is None]:
            del data[k]
        np.savez(tmp_path / "bad.npz", **data)
        with pytest.raises(ModelError, match=match):
            load_npz(tmp_path / "bad.npz")

    key = "m0.feature.requant"
    n = net.modules[0].layers[0].out_features
    bad({f"{key}.m0": np.ones(n + 1, np.int64)}, rf"{key}.m0 has shape \({n + 1},\)")
    bad({f"{key}.m0": np.zeros(n, np.int64)}, rf"{key}.m0\[0\] = 0 lies outside")
    bad({f"{key}.shift": np.full(n, 63, np.int64)}, rf"{key}.shift\[0\] = 63")
    bad({f"{key}.shift": None}, rf"missing key '{key}.shift'")
    bad({f"{key}.multiplier": np.ones(n)}, "not both")
    bad({f"{key}.m0": None, f"{key}.shift": None,
         f"{key}.multiplier": np.full(n, np.nan)}, rf"{key}.multiplier\[0\] = nan")


def test_config_errors_name_the_key_and_fix() -> None:
    net = E.random_network(11, k=8, places=5)
    x = E.make_inputs(111, 2, net)
    with pytest.raises(ConfigError, match=r"'requant.multipliers' = 'model'.*m0.feature"
                                          r".requant.m0.*requant.multipliers = 'scales'"):
        simulate(net, load_config("tflm_reference", ["requant.multipliers=model"]), x)
    stored = with_multipliers(net, tflite_m0_shift)
    with pytest.raises(ConfigError, match="needs a float m0.feature.requant.multiplier"):
        simulate(stored, load_config("pytorch_fbgemm", ["requant.multipliers=model"]), x)
    with pytest.raises(ConfigError, match="'requant.multiplier_bits' = 16: m0.feature"):
        simulate(stored, load_config("int8_fixed_point", ["requant.multipliers=model",
                                                          "requant.multiplier_bits=16"]), x)
    with pytest.raises(ConfigError, match="no single per-channel multiplier"):
        simulate(stored, load_config("pytorch_fbgemm", ["requant.multipliers=model",
                                                        "requant.scheme=dequant_quant"]), x)
    inexact = with_multipliers(net, lambda sx, sw, sy, lay: {
        "requant_multiplier": np.float64(sx) * sw / np.float64(sy) + 1e-12})
    with pytest.raises(ConfigError, match="not a float32 value"):
        simulate(inexact, load_config("pytorch_fbgemm", ["requant.multipliers=model"]), x)
