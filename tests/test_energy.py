"""Width-aware energy model and re-quantization to narrower weights and spikes."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from simulator.config import ConfigError, load_config
from simulator.energy import mac_op_pj, requant_op_pj
from simulator.engine import simulate
from simulator.network import make_combined_network
from simulator.runner import execute
from simulator.units.weight_requant import narrow_network, requantize_weight_matrix

K0, PLACES, Q = 40, 9, 10


def _net(wmin: int = -128, wmax: int = 127):
    rng = np.random.default_rng(11)

    def layer(n_out: int, n_in: int, os_: float, oz: int) -> dict:
        w = rng.integers(wmin, wmax + 1, (n_out, n_in)).astype(np.int8)
        return {"weight": w, "scale": rng.uniform(0.002, 0.01, n_out),
                "output_scale": os_, "output_zero_point": oz}

    mod = {"input_scale": 1 / 255, "input_zero_point": 0,
           "feature": layer(2 * K0, K0, 0.05, 100), "output": layer(PLACES, 2 * K0, 0.4, 60)}
    return make_combined_network([mod], source="toy.npz")


def _x(sparse: bool = False) -> np.ndarray:
    x = np.random.default_rng(2).uniform(0, 1, (Q, K0)).astype(np.float32)
    if sparse:
        x[:, ::3] = 0.0
    return x


def _prov() -> dict:
    return {"model_sha256": None, "input_source": "x", "input_sha256": None,
            "input_dtype": "float32"}


# --- energy ------------------------------------------------------------------------------------


def test_energy_formula_by_hand() -> None:
    net, x = _net(), _x()
    cfg = load_config("int8_fixed_point", ["accumulator.bits=24", "spikes.bits=8"])
    _, rep = execute(cfg, net, x, _prov())
    en = rep["energy"]
    macs = Q * (K0 * 2 * K0 + 2 * K0 * PLACES)
    assert en["macs"] == macs
    e = cfg.energy
    mac = e.mult_pj_per_bit2 * 8 * 8 + e.add_pj_per_bit * 24
    assert mac_op_pj(cfg.for_layer("feature"), cfg) == pytest.approx(mac)
    # 8 banks, 64-bit words: 8 weights a word; every fan-in of K weights is ceil(K/8) words
    words = Q * (2 * K0 * -(-K0 // 8) + PLACES * -(-2 * K0 // 8))
    assert en["weight_bits_read"] == words * 64
    rq = e.mult_pj_per_bit2 * 24 * 31 + e.add_pj_per_bit * 8  # fixed_point, 31-bit M0
    assert requant_op_pj(cfg.for_layer("output"), cfg) == pytest.approx(rq)
    total = macs * mac + words * 64 * e.sram_read_pj_per_bit + Q * (2 * K0 + PLACES) * rq
    assert en["total_uj"] == pytest.approx(total * 1e-6, rel=1e-12)
    assert en["per_query_uj"] == pytest.approx(total * 1e-6 / Q, rel=1e-12)
    assert en["mac_uj"] + en["memory_uj"] + en["requant_uj"] == pytest.approx(en["total_uj"])
    fb = load_config("pytorch_fbgemm")  # float requantizer: one float32 multiply
    assert requant_op_pj(fb.for_layer("feature"), fb) == pytest.approx(
        fb.energy.float32_mult_pj + fb.energy.add_pj_per_bit * 8)


def test_energy_scales_with_widths_and_skips() -> None:
    net, x = _net(), _x(sparse=True)

    def per_query(*ov: str) -> float:
        cfg = load_config("int8_fixed_point", list(ov))
        return execute(cfg, net, x, _prov())[1]["energy"]["per_query_uj"]

    e32, e20 = per_query("accumulator.bits=32"), per_query("accumulator.bits=20")
    assert e20 < e32
    assert per_query("weights.bits=4") < per_query()  # narrower multiplier, fewer words
    cfg = load_config("int8_fixed_point", ["schedule.mode=event_driven"])
    rep = execute(cfg, net, x, _prov())[1]
    dense = execute(load_config("int8_fixed_point"), net, x, _prov())[1]
    res = simulate(net, cfg, x)
    k_in = int((res.input_codes[0] != 0).sum())  # inputs at the zero point are skipped
    k_hid = int((res.layer(0, "feature").codes != 100).sum())  # hidden zero point 100
    assert rep["energy"]["macs"] == k_in * 2 * K0 + k_hid * PLACES
    assert rep["energy"]["macs"] < dense["energy"]["macs"]


# --- narrower weights ----------------------------------------------------------------------------


def test_weight_requant_rule_exact() -> None:
    rng = np.random.default_rng(4)
    w = rng.integers(-128, 128, (30, 50)).astype(np.int8)
    w[0] = np.clip(w[0], -7, 7)  # fits 4 bits already: unchanged
    w[1, :4] = [14, -14, 7, 21]  # ties: 14*7/21 = 4.67, 7*7/21 = 2.33 ...
    w[1, 4:] = 0
    w[2, :6] = [1, 3, 5, -1, -3, 14]  # max 14: w * 7 / 14 = w / 2, every one a tie
    w[2, 6:] = 0
    s = rng.uniform(0.001, 0.01, 30)
    w2, s2, changed = requantize_weight_matrix(w, s, 4)
    assert w2.dtype == np.int8 and np.abs(w2.astype(int)).max() <= 7
    assert changed == 29
    assert np.array_equal(w2[0], w[0]) and s2[0] == s[0]
    assert list(w2[2, :6]) == [0, 2, 2, 0, -2, 7]  # half to even
    for j in range(1, 30):
        a = int(np.abs(w[j].astype(int)).max())
        for k in range(50):
            exact = Fraction(int(w[j, k]) * 7, a)
            fl = exact.numerator // exact.denominator
            rem = exact - fl
            want = fl + (1 if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2) else 0)
            assert int(w2[j, k]) == want, (j, k)
        assert s2[j] == pytest.approx(s[j] * a / 7, rel=1e-15)
        assert int(np.abs(w2[j].astype(int)).max()) == 7  # the largest magnitude fills the range


def test_narrow_weights_run_and_report() -> None:
    net, x = _net(), _x()
    cfg = load_config("int8_fixed_point", ["weights.bits=4"])
    with pytest.raises(ConfigError, match="'weights.bits' = 4"):
        simulate(net, cfg, x)  # the engine alone still refuses a model that does not fit
    res, rep = execute(cfg, net, x, _prov())
    rq = rep["requantized"]["weights"]
    assert rq["bits"] == 4 and rq["from_bits"] == 8 and "round_half_even" in rq["rule"]
    assert [p["layer"] for p in rq["paths"]] == ["feature", "output"]
    assert all(p["max_abs_code_after"] == 7 for p in rq["paths"])
    narrowed, _ = narrow_network(net, cfg)
    assert np.array_equal(res.outputs, simulate(narrowed, cfg, x).outputs)
    # a model whose weights fit is not touched
    small = _net(-7, 7)
    assert narrow_network(small, cfg) == (small, None)
    assert "requantized" not in execute(load_config("int8_fixed_point"), net, x, _prov())[1]


def test_narrow_spikes() -> None:
    net, x = _net(), _x()
    cfg = load_config("int8_fixed_point", ["layers.feature.spikes.bits=4"])
    res, rep = execute(cfg, net, x, _prov())
    sp = rep["requantized"]["spikes"]
    assert sp["quantizers"][0]["bits"] == 4
    assert sp["quantizers"][0]["scale"] == [pytest.approx(1 / 255 * 255 / 15)]
    codes = res.input_codes[0]
    assert codes.max() <= 15 and codes.max() >= 14
    assert rep["input"]["clamp_high"] == 0  # rescaled, not clipped
    # hidden activations: the output layer's spike register with the feature requantizer
    cfg = load_config("int8_fixed_point", ["layers.output.spikes.bits=6",
                                           "layers.feature.requant.output_bits=6"])
    res, rep = execute(cfg, net, x, _prov())
    assert res.layer(0, "feature").codes.max() <= 63
    q = rep["requantized"]["spikes"]["quantizers"][0]
    assert q["bits"] == 6 and q["zero_point"] == [round(100 * 63 / 255)]
    for ov in ("layers.output.spikes.bits=6", "spikes.bits=6"):
        with pytest.raises(ConfigError) as info:
            execute(load_config("int8_fixed_point", [ov]), net, x, _prov())
        msg = str(info.value)
        for frag in ("'layers.output.spikes.bits' = 6", "0..63", "codes 0..255",
                     "'layers.feature.requant.output_bits' = 6", "'layers.feature.spikes.bits'"):
            assert frag in msg, msg
    cfg = load_config("int8_fixed_point", ["spikes.bits=6", "requant.output_bits=6"])
    res, rep = execute(cfg, net, x, _prov())  # both activations narrowed
    assert len(rep["requantized"]["spikes"]["quantizers"]) == 2
    assert res.input_codes[0].max() <= 63 and res.outputs.max() <= 63


def test_run_job_narrows_and_records(tmp_path) -> None:
    from simulator.loaders.npz import save_npz
    from simulator.runner import run_job

    net, x = _net(), _x()
    save_npz(net, tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", x)
    out = run_job("int8_fixed_point", tmp_path / "m.npz", tmp_path / "x.npy", tmp_path / "run",
                  ["weights.bits=5"])
    assert out.report["requantized"]["weights"]["bits"] == 5
    assert int(np.abs(out.net.modules[0].layer("feature").paths[0].weight.astype(int)).max()) \
        == 15
    import json

    assert json.loads((tmp_path / "run" / "report.json").read_text())["requantized"][
        "weights"]["from_bits"] == 8
