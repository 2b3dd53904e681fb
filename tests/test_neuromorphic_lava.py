"""The neuromorphic datapath against Lava 0.10's bit-accurate CPU models (tests/golden/lava/).

The golden files were written by tools/lava_golden.py running Lava itself (Python 3.10 venv);
.ci/run regenerates them when such an interpreter is present and fails if they differ. Every
value Lava recorded is compared: Dense outputs, ProdNeuron outputs, LIF spikes, u and v per
time step, and (net_* files) whole runs of the loihi2_* presets through engine.simulate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.config import ConfigError, load_config
from simulator.engine import simulate
from simulator.network import make_combined_network
from simulator.report import build_report
from simulator.units.lif import LifParams, lif_step
from simulator.units.loihi_dense import dense_forward, load_weights
from simulator.units.prod_neuron import prod_neuron

GOLDEN = Path(__file__).resolve().parent / "golden" / "lava"
PROD = ["prod_typical", "prod_rules", "prod_signs", "prod_wrap"]
LIF = ["lif_typical", "lif_leaky", "lif_overflow"]


def _load(name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("name", PROD)
def test_prodneuron_pipeline_equals_lava_every_step(name: str) -> None:
    g = _load(name)
    x = g["x"] - g["zx"]
    q = x.shape[0]
    dbl = bool(g["dense_weights_doubled"])
    ws = [load_weights(2 * g[w] if dbl else g[w], int(b)).weights
          for w, b in (("w1", g["weight_bits"][0]), ("w2", g["weight_bits"][1]))]
    s = x
    for li in range(2):
        d = dense_forward(s, ws[li], int(g["weight_exp"][li]))
        p = prod_neuron(d.out, g[f"m0_{li + 1}"][None, :], int(g["shift"][li]),
                        int(g["vth"][li]))
        # Dense delay: query i's layer-l Dense output is sent at step i + l + 1
        lava_d = g[f"lava_dense{li + 1}"]
        lava_p = g[f"lava_prod{li + 1}"]
        assert np.array_equal(lava_d[li + 1 : li + 1 + q], d.out)
        assert np.array_equal(lava_p[li + 1 : li + 1 + q], p.out)
        assert not lava_p[: li + 1].any()
        s = p.out


def test_golden_cases_reach_lavas_silent_corners() -> None:
    """The files exercise the branches the events report (else the equality proves little)."""
    g = _load("prod_wrap")
    x = g["x"] - g["zx"]
    w1 = load_weights(g["w1"]).weights
    d = dense_forward(x, w1, int(g["weight_exp"][0]))
    assert d.dot_wrap.any() and d.shift_wrap.any()
    assert prod_neuron(d.out, g["m0_1"][None, :], int(g["shift"][0]), 0).product_overflow.any()
    rules = _load("prod_rules")
    lw = load_weights(rules["w1"], 8)
    assert lw.truncated.sum() > 0 and lw.clipped.sum() > 0  # floor-to-even and clip happened
    signs = _load("prod_signs")
    assert load_weights(signs["w1"]).sign_mode == "excitatory"
    inh = load_weights(signs["w2"], 5)
    assert inh.sign_mode == "inhibitory" and inh.clipped.sum() > 0 and inh.truncated.sum() > 0
    seen = _run_lif_units(_load("lif_overflow"))[1]
    for kind in ("act_shift_wrap", "u_add_wrap", "u_correction", "u_outside_24bit",
                 "v_clamp_low", "v_clamp_high", "dense_dot_wrap", "dense_shift_wrap"):
        assert seen[kind] > 0, kind


def _run_lif_units(g: dict[str, np.ndarray]) -> tuple[dict[str, list], dict[str, int]]:
    """Dense -> LIF -> Dense(binary) -> LIF stepped with the units; per-step records."""
    t_steps = g["x"].shape[0]
    ws = [load_weights(g["w1"]).weights, load_weights(g["w2"]).weights]
    ps = [LifParams(int(g["du"]), int(g["dv"]), int(g["vth"][i]), g[f"bias_mant_{i + 1}"],
                    int(g["bias_exp"][i])) for i in range(2)]
    u = [np.zeros((1, w.shape[0]), np.int64) for w in ws]
    v = [a.copy() for a in u]
    a_prev = [a.copy() for a in u]
    rec: dict[str, list] = {k: [] for k in ("dense1", "dense2", "spikes1", "spikes2", "u1",
                                             "u2", "v1", "v2")}
    seen: dict[str, int] = {}
    for t in range(t_steps):
        s_in = g["x"][t][None, :]
        for li in range(2):
            d = dense_forward(s_in, ws[li], int(g["weight_exp"][li]), graded=li == 0)
            st = lif_step(u[li], v[li], a_prev[li], ps[li])
            rec[f"dense{li + 1}"].append(a_prev[li][0])
            u[li], v[li], a_prev[li] = st.u, st.v, d.out
            rec[f"spikes{li + 1}"].append(st.spikes[0].astype(np.int64))
            rec[f"u{li + 1}"].append(st.u[0])
            rec[f"v{li + 1}"].append(st.v[0])
            for kind, m in [*st.events.items(), ("dense_dot_wrap", d.dot_wrap),
                            ("dense_shift_wrap", d.shift_wrap)]:
                seen[kind] = seen.get(kind, 0) + int(m.sum())
            s_in = st.spikes.astype(np.int64)
    return rec, seen


@pytest.mark.parametrize("name", LIF)
def test_lif_spikes_u_v_equal_lava_every_step(name: str) -> None:
    g = _load(name)
    rec, _ = _run_lif_units(g)
    for key, steps in rec.items():
        mine = np.stack(steps)
        lava = g[f"lava_{key}"]
        bad = np.argwhere(mine != lava)
        assert bad.size == 0, f"{key}: first difference at (step, neuron) {bad[0].tolist()}"


def _golden_net(g: dict[str, np.ndarray]):
    def layer(w: str, sw: str, sy: str, zy: str) -> dict:
        return dict(weight=g[w].astype(np.int8), scale=g[sw], output_scale=float(g[sy]),
                    output_zero_point=int(g[zy]))

    return make_combined_network([dict(
        input_scale=float(g["sx"]), input_zero_point=int(g["zx"]),
        feature=layer("w1", "sw1", "sy1", "zy1"), output=layer("w2", "sw2", "sy2", "zy2"))])


def test_loihi2_prodneuron_preset_equals_lava_on_a_network() -> None:
    g = _load("net_prod")
    net = _golden_net(g)
    s1, s2 = (int(s) for s in g["shift"])
    cfg = load_config("loihi2_prodneuron", [f"layers.feature.prodneuron.shift={s1}",
                                            f"layers.output.prodneuron.shift={s2}"])
    res = simulate(net, cfg, g["x"].astype(np.uint8))
    q = g["x"].shape[0]
    for li, lr in enumerate(res.layers):
        assert np.array_equal(lr.plan.m0, g[f"m0_{li + 1}"])
        assert np.array_equal(lr.acc["combined"], g[f"lava_dense{li + 1}"][li + 1 : li + 1 + q])
        zy = int(g[f"zy{li + 1}"])
        assert np.array_equal(lr.unclamped - zy, g[f"lava_prod{li + 1}"][li + 1 : li + 1 + q])
        lo, hi = 0, 255
        assert np.array_equal(lr.codes, np.clip(g[f"lava_prod{li + 1}"][li + 1 : li + 1 + q]
                                                + zy, lo, hi))


def test_loihi2_lif_preset_equals_lava_on_a_network() -> None:
    g = _load("net_lif")
    net = _golden_net(g)
    e1, e2 = (int(e) for e in g["weight_exp"])
    v1, v2 = (int(v) for v in g["vth"])
    cfg = load_config("loihi2_lif", [
        f"neuromorphic.timesteps={int(g['t'])}", f"neuron.du={int(g['du'])}",
        f"neuron.dv={int(g['dv'])}", f"layers.feature.dense.weight_exp={e1}",
        f"layers.output.dense.weight_exp={e2}", f"layers.feature.neuron.vth={v1}",
        f"layers.output.neuron.vth={v2}", "dense.fold_scales=false", "neuron.bias=\"fixed\""])
    res = simulate(net, cfg, g["x"].astype(np.uint8))
    for li, lr in enumerate(res.layers):
        n = li + 1
        assert np.array_equal(lr.codes, g[f"lava_spikes{n}"].sum(axis=1)), f"layer {n} counts"
        assert np.array_equal(lr.state["u"], g[f"lava_u{n}"][:, -1]), f"layer {n} u"
        assert np.array_equal(lr.state["v"], g[f"lava_v{n}"][:, -1]), f"layer {n} v"
        assert np.array_equal(lr.acc["combined"], _last_dense_out(g, li))
    assert g["lava_spikes2"].sum() > 0  # the output layer spikes: the counts are not all zero


def _last_dense_out(g: dict[str, np.ndarray], li: int) -> np.ndarray:
    """The Dense value computed at the last step (Lava sends it one step later)."""
    ws = load_weights(2 * g[f"w{li + 1}"]).weights
    if li == 0:
        return dense_forward(g["x"] - g["zx"], ws, int(g["weight_exp"][0])).out
    spikes = g["lava_spikes1"][:, -1]
    return dense_forward(spikes, ws, int(g["weight_exp"][1]), graded=False).out


def _random_net(seed: int, k: int = 48, n1: int = 64, n2: int = 12):
    rng = np.random.default_rng(seed)

    def layer(n: int, kk: int, sy: float) -> dict:
        return dict(weight=rng.integers(-128, 128, (n, kk)).astype(np.int8),
                    scale=rng.uniform(2e-3, 1e-2, n), output_scale=sy,
                    output_zero_point=int(rng.integers(60, 140)))

    net = make_combined_network([dict(input_scale=1 / 255, input_zero_point=0,
                                      feature=layer(n1, k, 0.03), output=layer(n2, n1, 0.1))])
    return net, rng.integers(0, 256, (40, k)).astype(np.uint8)


def test_prodneuron_equals_fixed_point_floor_requantizer_until_the_product_wraps() -> None:
    """The mapping: Dense(2W, -1) -> ProdNeuron == fixed_point, floor, one shift per layer."""
    net, x = _random_net(5)
    cfg = load_config("loihi2_prodneuron", ["neuromorphic.emit=\"code\""])
    res = simulate(net, cfg, x)
    shifts = [lr.plan.shift for lr in res.layers]
    ref_cfg = load_config("int8_fixed_point", [
        "requant.rounding=\"floor\"", "requant.multiplier_bits=8",
        f"layers.feature.requant.shift={shifts[0]}", f"layers.output.requant.shift={shifts[1]}"])
    ref = simulate(net, ref_cfg, x)
    assert np.array_equal(res.outputs, ref.outputs)
    for a, b in zip(res.layers, ref.layers, strict=True):
        assert np.array_equal(a.codes, b.codes)
        assert np.array_equal(a.acc["combined"], b.acc["combined"])
        assert a.events.total("product_overflow") == 0
    # 20-bit multipliers: the int32 product wraps, results change and every wrap is counted
    wide = simulate(net, load_config("loihi2_prodneuron", ["prodneuron.multiplier_bits=20"]), x)
    wraps = sum(lr.events.total("product_overflow") for lr in wide.layers)
    assert wraps > 0
    rep = build_report(wide, net, load_config("loihi2_prodneuron",
                                              ["prodneuron.multiplier_bits=20"]), {})
    block = rep["overflow"]["0/feature"]["neuromorphic"]
    ev = block["events"]["product_overflow"]
    assert ev["count"] == wide.layers[0].events.total("product_overflow")
    assert sum(c for _, c in ev["per_neuron"]) == ev["count"]
    first = ev["first"]
    assert first["step"] == first["query"] + 1  # query q's feature ProdNeuron runs at step q+1
    lr0 = wide.layers[0]
    a = lr0.acc["combined"][first["query"], first["neuron"]]
    assert not -(1 << 31) <= int(a) * int(lr0.plan.m0[first["neuron"]]) < 1 << 31
    assert rep["overflow"]["0/feature"]["first"]["kind"] in ("product_overflow",
                                                             "dense_dot_wrap")


def test_product_register_saturate_and_error_policies() -> None:
    net, x = _random_net(6)
    sat = simulate(net, load_config("loihi2_prodneuron", [
        "prodneuron.multiplier_bits=20", "prodneuron.product_overflow=\"saturate\""]), x)
    assert sum(lr.events.total("product_overflow") for lr in sat.layers) > 0
    from simulator.fixedpoint import RegisterOverflowError

    with pytest.raises(RegisterOverflowError, match=r"ProdNeuron product overflow at query \d+, "
                       r"neuron \d+, time step \d+.*prodneuron.product_bits"):
        simulate(net, load_config("loihi2_prodneuron", [
            "prodneuron.multiplier_bits=20", "prodneuron.product_overflow=\"error\""]), x)


def test_lif_events_reach_report_json_per_neuron_with_first_event() -> None:
    net, x = _random_net(7)
    cfg = load_config("loihi2_lif", ["layers.feature.dense.weight_exp=2", "neuron.vth=10",
                                     "neuron.bias=\"fixed\""])
    res = simulate(net, cfg, x[:6])
    rep = build_report(res, net, cfg, {})
    block = rep["overflow"]["0/feature"]["neuromorphic"]
    assert block["time_steps_per_query"] == 32
    ev = block["events"]["u_correction"]
    assert ev["count"] > 0 and ev["count"] == sum(c for _, c in ev["per_neuron"])
    # steps of query q are q * timesteps + t; the first event is the earliest of all kinds
    first = rep["overflow"]["0/feature"]["first"]
    starts = [v["first"]["step"] for k, v in block["events"].items()
              if v["first"] is not None and k != "below_vth"]
    assert first["step"] == min(starts)
    assert first["query"] == first["step"] // 32


def test_batches_merge_to_the_same_result() -> None:
    net, x = _random_net(8)
    cfg = load_config("loihi2_lif", ["layers.feature.dense.weight_exp=1", "neuron.vth=10",
                                     "neuromorphic.timesteps=8", "neuron.bias=\"fixed\""])
    one = simulate(net, cfg, x)
    many = simulate(net, cfg, x, batch=7)
    assert np.array_equal(one.outputs, many.outputs)
    for a, b in zip(one.layers, many.layers, strict=True):
        assert a.events.first == b.events.first
        for kind, c in a.events.counts.items():
            assert np.array_equal(c, b.events.counts[kind]), kind
        assert np.array_equal(a.state["u"], b.state["u"])


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="dense.weight_exp"):
        load_config("loihi2_lif", ["dense.weight_exp=99"])
    with pytest.raises(ConfigError, match="neuromorphic.datapath"):
        load_config("loihi2_lif", ["neuromorphic.datapath=\"loihi\""])
    with pytest.raises(ConfigError, match="neuron.du"):
        load_config("loihi2_lif", ["neuron.du=4096"])


def test_lif_auto_mapping_spikes_on_a_network() -> None:
    """Folded scales, automatic thresholds and zero-point biases give a working rate code."""
    net, x = _random_net(9)
    for bias in ("fixed", "zero_point"):
        res = simulate(net, load_config("loihi2_lif", [f"neuron.bias=\"{bias}\""]), x)
        feat, out = res.layers
        assert 0 < feat.codes.mean() < 32 and out.codes.max() > 0
        info = feat.plan.info["neuron"]
        assert info["vth"] >= 1 and info["bias"] == bias
        assert (info["bias_mant_range"][1] > 0) == (bias == "zero_point")
    with pytest.raises(ConfigError, match="dense.fold_scales"):
        simulate(net, load_config("loihi2_lif", ["dense.fold_scales=false"]), x)


def test_vectors_refuse_the_neuromorphic_datapath(tmp_path: Path) -> None:
    from simulator.demo import DEFAULT_MODEL
    from simulator.vectors import VectorsError, generate

    np.save(tmp_path / "x.npy", np.zeros((1, 784), np.uint8))
    for cfg, ov in (("loihi2_prodneuron", ()), ("int8_fixed_point", ('schedule.order="time"',))):
        with pytest.raises(VectorsError, match="MAC-array datapath"):
            generate(cfg, DEFAULT_MODEL, tmp_path / "x.npy",
                     tmp_path / "out", overrides=ov)
    assert not (tmp_path / "out").exists()


def test_stepwise_engine_and_op_traces_refuse_the_neuromorphic_datapath() -> None:
    from simulator.engine.stepwise import StepwiseRun, simulate_stepwise

    net, x = _random_net(11)
    cfg = load_config("loihi2_lif")
    with pytest.raises(ConfigError, match="stepwise"):
        simulate_stepwise(net, cfg, x)
    with pytest.raises(ConfigError, match="stepwise"):  # what op/cycle traces are built on
        StepwiseRun(net, cfg, [x.astype(np.int64)])


def test_overflow_event_total_counts_neuromorphic_events_once() -> None:
    from simulator.report import overflow_event_total

    net, x = _random_net(12)
    cfg = load_config("loihi2_prodneuron", ["prodneuron.multiplier_bits=20",
                                            "layers.output.dense.weight_exp=20"])
    res = simulate(net, cfg, x)
    rep = build_report(res, net, cfg, {})
    prod = sum(lr.events.total("product_overflow") for lr in res.layers)
    dense = sum(int(lr.mac["combined"].acc_wrap.sum()) for lr in res.layers)
    assert prod > 0 and dense > 0
    assert overflow_event_total(rep) == prod + dense


def _preset_case(preset: str):
    from simulator.engine.neuromorphic import lava_constants

    inp = _load(f"preset_{preset}_in")
    net = _golden_net(inp)
    # the mapping still hands Lava exactly the constants the goldens were made with
    for key, val in lava_constants(net, load_config(preset)).items():
        assert np.array_equal(val, inp[key]), f"{preset}: mapping changed {key}"
    return net, inp, _load(f"preset_{preset}")


def test_loihi2_prodneuron_preset_as_mapped_equals_lava() -> None:
    net, inp, lava = _preset_case("loihi2_prodneuron")
    res = simulate(net, load_config("loihi2_prodneuron"), inp["x"])
    q = inp["x"].shape[0]
    for li, lr in enumerate(res.layers):
        zy = int(inp[f"zy{li + 1}"])
        assert np.array_equal(lr.acc["combined"], lava[f"lava_dense{li + 1}"][li + 1 : li + 1 + q])
        assert np.array_equal(lr.unclamped - zy, lava[f"lava_prod{li + 1}"][li + 1 : li + 1 + q])


def test_loihi2_lif_preset_as_mapped_equals_lava() -> None:
    net, inp, lava = _preset_case("loihi2_lif")
    res = simulate(net, load_config("loihi2_lif"), inp["x"])
    for li, lr in enumerate(res.layers):
        n = li + 1
        assert np.array_equal(lr.codes, lava[f"lava_spikes{n}"].sum(axis=1))
        assert np.array_equal(lr.state["u"], lava[f"lava_u{n}"][:, -1])
        assert np.array_equal(lr.state["v"], lava[f"lava_v{n}"][:, -1])
    assert lava["lava_spikes1"].sum() > 0 and lava["lava_spikes2"].sum() > 0


def test_op_trace_of_a_neuromorphic_run_is_refused_before_simulating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--trace op`` needs the stepwise engine: refused in one line before anything runs."""
    import simulator.runner as runner
    from simulator.cli import main
    from simulator.loaders import save_npz

    net, x = _random_net(13)
    save_npz(net, tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", x)

    def no_simulation(*a: object, **k: object) -> None:
        raise AssertionError("simulated before the trace request was checked")

    monkeypatch.setattr(runner, "execute", no_simulation)
    rc = main(["run", "--config", "loihi2_prodneuron", "--model", str(tmp_path / "m.npz"),
               "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "out"), "--quiet",
               "--trace", "op", "--trace-filter", "query=0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("hwsim: error:"), err
    assert "stepwise" in err[0] and not (tmp_path / "out").exists()
