"""Training rules, quantization (vs torch's observers), and the end-to-end train() call."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from simulator.loaders.npz import load_npz, save_npz
from simulator.vpr import quantize as qz
from simulator.vpr import training as tr
from simulator.vpr.datasets import DatasetError
from simulator.vpr.synthroute import generate_route

SMALL = {"dims": (16, 16), "patch": 7, "places": 12, "seed": 5, "max_module": 500}


# ---------------------------------------------------------------------------- quantization


def test_weight_quantization_formula() -> None:
    w = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [2.0, 1.0, 0.0]], dtype=np.float32)
    q, s = qz.quantize_weights(w)
    assert q.dtype == np.int8 and s.dtype == np.float64
    assert s[0] == pytest.approx(float(np.float32(1.0) / np.float32(127.5)))
    assert s[1] == pytest.approx(float(np.finfo(np.float32).eps))  # all-zero row
    # torch multiplies by the float32 reciprocal: -1.0 * f32(1 / s) = -127.49999 -> -127
    inv = np.float32(1.0) / np.float32(s[0])
    assert inv < 127.5
    assert q[0].tolist() == [64, -127, 32]
    assert q[2].tolist() == [127, 64, 0]
    assert q[1].tolist() == [0, 0, 0]


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch deprecates quantize_per_channel
def test_weights_and_observers_match_torch() -> None:
    torch = pytest.importorskip("torch")
    aq = torch.ao.quantization
    rng = np.random.default_rng(0)
    w = (rng.normal(0, 1, (64, 300)) * rng.uniform(1e-3, 3, (64, 1))).astype(np.float32)
    obs = aq.PerChannelMinMaxObserver(
        ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric
    )
    tw = torch.from_numpy(w)
    obs(tw)
    scale, zp = obs.calculate_qparams()
    ref = torch.quantize_per_channel(tw, scale, zp, 0, torch.qint8).int_repr().numpy()
    q, s = qz.quantize_weights(w)
    assert np.array_equal(s, scale.numpy().astype(np.float64))
    assert np.array_equal(q, ref)
    for lo, hi in ((0.0, 1.0), (-3.2, 7.7), (0.5, 2.0), (-5.0, -1.0), (-1e-3, 250.3)):
        for rr in (False, True):
            o = aq.MinMaxObserver(dtype=torch.quint8, quant_min=0, quant_max=127 if rr else 255)
            o(torch.tensor([lo, hi], dtype=torch.float32))
            ts, tz = o.calculate_qparams()
            mine = qz.minmax_qparams(lo, hi, reduce_range=rr)
            assert mine == qz.QParams(float(ts), int(tz)), (lo, hi, rr)


def test_input_codes_round_trip() -> None:
    qp = qz.minmax_qparams(0.0, 1.0)
    assert qp.zero_point == 0 and qp.scale == float(np.float32(1.0) / np.float32(255.0))
    codes = np.arange(256)
    spikes = (codes.astype(np.float32) / np.float32(255)).astype(np.float32)
    assert np.array_equal(qz.quantize_activations(spikes, qp), codes)
    assert qz.quantize_activations(np.array([-1.0, 2.0], dtype=np.float32), qp).tolist() == [0, 255]


def test_reference_forward_matches_engine() -> None:
    from simulator.config import load_config
    from simulator.engine import simulate
    rng = np.random.default_rng(1)
    w1 = rng.normal(0, 0.05, (64, 32))
    w2 = rng.normal(0, 0.05, (6, 64))
    cal = rng.integers(0, 256, (20, 32)).astype(np.float32) / np.float32(255)
    net = qz.quantize_network([(w1, w2)], cal)
    x = rng.integers(0, 256, (9, 32)).astype(np.float32) / np.float32(255)
    got = np.asarray(simulate(net, load_config("pytorch_fbgemm"), x).outputs)
    assert np.array_equal(got, qz.reference_forward(net, x))
    out, engine = qz.run_quantized(net, x, engine="reference")
    assert "reference" in engine and np.array_equal(out, got)


def test_quantize_network_calibration() -> None:
    rng = np.random.default_rng(2)
    w1 = rng.normal(0, 0.1, (40, 20))
    w2 = rng.normal(0, 0.1, (5, 40))
    cal = rng.random((30, 20)).astype(np.float32)
    net = qz.quantize_network([(w1, w2), (w1, w2[:3])], cal, metadata={"k": 1})
    assert net.layout == "combined" and net.places == 8 and net.metadata == {"k": 1}
    mod = net.modules[0]
    feat = mod.layer("feature")
    y = cal.astype(np.float64) @ w1.T
    # the feature observer saw (almost) this range: its scale covers max - min over 255 codes
    span = max(y.max(), 0) - min(y.min(), 0)
    assert feat.output_scale == pytest.approx(span / 255, rel=0.02)
    # calibration data never saturates: every code stays inside 0..255 and both ends are used
    codes = qz.reference_forward(net, cal)
    assert codes.min() >= 0 and codes.max() <= 255
    assert (codes[:, :5] == 255).any()


# ---------------------------------------------------------------------------- learning rules


def test_initial_weights_follow_connection_probabilities() -> None:
    rng = np.random.default_rng(3)
    w = tr._init_weights(rng, 400, 300, 0.1, 0.5)
    exc, inh = (w > 0).mean(), (w < 0).mean()
    # exc and inh are drawn independently; a position with both takes the sign of the sum
    assert 0.06 < exc < 0.1 and 0.4 < inh < 0.5
    assert w.dtype == np.float32
    # each part is divided by its last row's L1 norm -> typical row sums near +-1
    assert abs(np.clip(w, 0, None).sum(axis=1).mean() - 1.0) < 0.3


def test_anneal_schedule() -> None:
    assert tr._anneal(0, 400, 100) == 1.0
    assert tr._anneal(50, 400, 100) is None
    assert tr._anneal(200, 400, 100) == pytest.approx(0.25)


def _patterns(n: int, k: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).integers(0, 256, (n, k)) / 255.0).astype(np.float32)


def test_train_float_is_deterministic_and_keeps_signs() -> None:
    cfg = tr.TrainConfig(dims=(8, 8), patch=3, places=10, epochs=3, seed=11)
    db = [_patterns(10, 64, 0), _patterns(10, 64, 1)]
    a = tr.train_float(db, cfg)
    b = tr.train_float(db, cfg)
    c = tr.train_float(db, dataclasses.replace(cfg, seed=12))
    assert np.array_equal(a.modules[0].w_feature, b.modules[0].w_feature)
    assert np.array_equal(a.modules[0].w_output, b.modules[0].w_output)
    assert not np.array_equal(a.modules[0].w_feature, c.modules[0].w_feature)
    # every weight kept the sign it was initialised with
    init = tr._init_weights(np.random.default_rng([11, 0]), 128, 64, *cfg.feature_p)
    w = a.modules[0].w_feature
    assert np.array_equal(w > 0, init > 0) and np.array_equal(w < 0, init < 0)
    assert w[w > 0].min() >= 1e-6 and w[w < 0].max() <= -1e-6
    assert (a.modules[0].thr_feature >= 0).all()


def test_itp_rules() -> None:
    x = _patterns(24, 64, 3)
    cfg = tr.TrainConfig(dims=(8, 8), patch=3, places=12, epochs=4)
    _, thr_code, _ = tr._train_feature(
        x, dataclasses.replace(cfg, itp_rule="vprtempo-code"), np.random.default_rng(0), "", False
    )
    _, thr_paper, rate = tr._train_feature(x, cfg, np.random.default_rng(0), "", False)
    # the public code's layer.x is always 0: thresholds only ever decrease, down to 0
    assert (thr_code == 0).all()
    # the paper's rule: neurons that should fire more end up with lower thresholds
    assert (thr_paper > 0).any()
    assert np.corrcoef(thr_paper, rate)[0, 1] < 0


def test_spike_forcing_learns_the_training_places() -> None:
    cfg = tr.TrainConfig(dims=(8, 8), patch=3, places=10, epochs=4, seed=2)
    db = [_patterns(10, 64, 4), _patterns(10, 64, 5)]
    net = tr.train_float(db, cfg)
    hits = [net.forward(arr).argmax(axis=1) == np.arange(10) for arr in db]
    assert np.mean(hits) >= 0.85  # chance: 0.1
    untrained = tr.train_float(db, dataclasses.replace(cfg, stdp_rate=0.0, ip_rate=0.0))
    miss = [untrained.forward(arr).argmax(axis=1) == np.arange(10) for arr in db]
    assert np.mean(miss) < 0.5


def test_modules_split_places() -> None:
    cfg = tr.TrainConfig(dims=(4, 4), patch=3, places=10, max_module=4, epochs=1)
    assert tr.module_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    net = tr.train_float([_patterns(10, 16, 6)], cfg)
    assert [m.places for m in net.modules] == [4, 4, 2]
    assert [m.first_place for m in net.modules] == [0, 4, 8]
    assert net.forward(_patterns(3, 16, 7)).shape == (3, 10)


def test_config_json_round_trip_and_validation() -> None:
    cfg = tr.TrainConfig(dims=(16, 16), database=("a", "b"))
    assert tr.TrainConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        tr.TrainConfig.from_json({"bogus": 1})
    with pytest.raises(ValueError, match="odd"):
        tr.TrainConfig(patch=4).validate()
    with pytest.raises(ValueError, match="places"):
        tr.TrainConfig(places=0).validate()


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def small_route(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vpr_train_route")
    generate_route(root, 14, ("spring", "fall", "summer"), seed=3)
    return root


@pytest.fixture(scope="module")
def trained(small_route: Path) -> tuple:
    return tr.train(small_route, progress=False, **SMALL)


def test_train_end_to_end(trained: tuple, small_route: Path, tmp_path: Path) -> None:
    net, report = trained
    net.validate()
    assert net.layout == "combined" and net.places == 12 and net.in_features == 256
    assert net.modules[0].layer("feature").out_features == 512
    assert report.queries == ("summer",)
    (rec,) = report.recalls
    assert rec.queries == 12 and set(rec.float_recall) == {1, 5, 10}
    assert rec.float_recall[1] > 2 / 12  # far above chance on a held-out traversal
    assert rec.float_recall[10] >= rec.float_recall[1]
    assert (rec.drop > tr.MAX_QUANT_DROP) == bool(report.warnings)
    meta = net.metadata
    assert meta["seed"] == 5 and meta["command"].startswith("hwsim train --data-dir")
    assert "--seed 5" in meta["command"] and meta["route"]["seed"] == 3
    assert meta["train_config"]["dims"] == [16, 16] and meta["dims"] == [16, 16]
    assert meta["recall"]["summer"]["int8"]["1"] == rec.quant_recall[1]
    assert "summer" in report.summary() and "R@1" in report.summary()
    # the saved model runs to the same outputs
    path = tmp_path / "m.npz"
    save_npz(net, path)
    loaded = load_npz(path)
    x = np.random.default_rng(0).random((3, 256)).astype(np.float32)
    assert np.array_equal(qz.reference_forward(loaded, x), qz.reference_forward(net, x))
    assert loaded.metadata["train_config"] == meta["train_config"]


def test_retrain_from_recorded_metadata(trained: tuple, small_route: Path) -> None:
    net, report = trained
    again, report2 = tr.retrain_from_metadata(load_roundtrip(net), small_route)
    r1 = report.recalls[0].quant_recall[1]
    assert abs(report2.recalls[0].quant_recall[1] - r1) <= 0.02
    assert abs(report2.recalls[0].float_recall[1] - report.recalls[0].float_recall[1]) <= 0.02
    assert report2.command == report.command
    # training is deterministic: the very same int8 weights
    for m1, m2 in zip(net.modules, again.modules, strict=True):
        for name in ("feature", "output"):
            assert np.array_equal(m1.layer(name).paths[0].weight, m2.layer(name).paths[0].weight)


def load_roundtrip(net: object) -> dict:
    """Metadata as it comes back from a saved file (JSON)."""
    import json

    return json.loads(json.dumps(net.metadata))  # type: ignore[attr-defined]


def test_query_with_too_few_places(small_route: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name in ("spring", "fall"):
        shutil.copytree(small_route / name, data / name)
        shutil.copy(small_route / f"synthroute-{name}.csv", data)
    short = data / "summer"
    short.mkdir()
    for i in range(5):
        shutil.copy(small_route / "summer" / f"place-{i:05d}.png", short)
    (data / "synthroute-summer.csv").write_text(
        "Image name,index\n" + "".join(f"place-{i:05d}.png,{i}\n" for i in range(5))
    )
    with pytest.raises(DatasetError, match=r"synthroute-summer\.csv.*5 places.*model has 12"):
        tr.train(data, progress=False, **SMALL)
    with pytest.raises(DatasetError, match="no traversal 'winter'"):
        tr.train(data, progress=False, queries=["winter"], **SMALL)


BUNDLED = Path(__file__).resolve().parent.parent / "simulator" / "data" / "default_model.npz"


@pytest.mark.slow
def test_bundled_default_model_retrains(tmp_path: Path) -> None:
    """The bundled model's recorded command/seed reproduce its Recall@1 (within 0.02)."""
    from simulator.vpr.synthroute import cached_route

    meta = load_npz(BUNDLED).metadata
    assert meta["command"].startswith("python tools/train_default.py")
    route = cached_route(meta["route"]["places"], meta["route"]["seed"], cache=tmp_path)
    _, report = tr.retrain_from_metadata(meta, route)
    assert {r.traversal for r in report.recalls} == set(meta["recall"])
    for r in report.recalls:
        recorded = meta["recall"][r.traversal]
        assert abs(r.quant_recall[1] - recorded["int8"]["1"]) <= 0.02
        assert abs(r.float_recall[1] - recorded["float"]["1"]) <= 0.02
        assert r.drop <= tr.MAX_QUANT_DROP
