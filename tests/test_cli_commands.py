"""CLI commands end to end: ``hwsim train`` and ``hwsim run --fail-on-overflow``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import EXIT_OVERFLOW, main
from simulator.loaders import load_npz, save_npz
from simulator.network import make_combined_network
from simulator.vpr.synthroute import generate_route


def test_train_writes_a_model_that_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    route = tmp_path / "route"
    generate_route(route, 12, ("spring", "fall", "summer"), seed=5)
    model = tmp_path / "m.npz"
    rc = main(["train", "--data-dir", str(route), "--database", "spring,fall", "--queries",
               "summer", "--places", "12", "--dims", "12,12", "--patch", "5", "--epochs", "2",
               "--out", str(model), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "summer" in text and str(model) in text
    net = load_npz(model)
    assert net.in_features == 144 and net.places == 12
    assert net.metadata["command"].startswith("hwsim train")
    rc = main(["run", "--config", "pytorch_fbgemm", "--model", str(model), "--data-dir",
               str(route), "--query", "summer", "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert 0.0 <= report["readout"]["recall"]["R@1"] <= 1.0


def test_train_rejects_a_missing_traversal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    route = tmp_path / "route"
    generate_route(route, 4, ("spring",), seed=1)
    rc = main(["train", "--data-dir", str(route), "--database", "spring,autumn", "--places",
               "4", "--dims", "8,8", "--patch", "3", "--out", str(tmp_path / "m.npz"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("hwsim: error:") and "autumn" in err
    assert not (tmp_path / "m.npz").exists()


def _model(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    k, n1, n2 = 32, 16, 4
    net = make_combined_network([dict(
        input_scale=1 / 255, input_zero_point=0,
        feature=dict(weight=np.full((n1, k), 127, np.int8), scale=np.full(n1, 1e-3),
                     output_scale=1.0, output_zero_point=0),
        output=dict(weight=rng.integers(-128, 128, (n2, n1)).astype(np.int8),
                    scale=np.full(n2, 1e-2), output_scale=1.0, output_zero_point=128),
    )])
    save_npz(net, tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", np.full((3, k), 255, np.uint8))
    return tmp_path / "m.npz", tmp_path / "x.npy"


def test_fail_on_overflow_exits_3_but_keeps_the_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, x = _model(tmp_path)
    base = ["run", "--config", "int8_fixed_point", "--model", str(model), "--input", str(x),
            "--quiet"]
    # 32 * 255 * 127 = 1,036,320 does not fit a 16-bit saturating accumulator
    narrow = ["--set", "accumulator.bits=16"]
    assert main([*base, "--out", str(tmp_path / "a"), *narrow]) == 0
    rc = main([*base, "--out", str(tmp_path / "b"), *narrow, "--fail-on-overflow"])
    assert rc == EXIT_OVERFLOW
    assert "overflow" in capsys.readouterr().err
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["overflow"]["0/feature"]["acc_saturate"] > 0
    assert report["overflow"]["0/feature"]["headroom_bits"] < 0
    # with a wide accumulator the same flag passes
    assert main([*base, "--out", str(tmp_path / "c"), "--fail-on-overflow"]) == 0


def test_cross_check_steps_queries_and_reports_agreement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, x = _model(tmp_path)
    args = ["run", "--config", "int8_fixed_point", "--model", str(model), "--input", str(x),
            "--quiet", "--set", "accumulator.bits=16", "--set", "accumulator.overflow=wrap",
            "--set", "schedule.mode=event_driven", "--cross-check", "2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "2 queries stepped cycle by cycle" in capsys.readouterr().out
    import simulator.engine.stepwise as sw

    monkeypatch.setattr(sw, "compare_with_fast", lambda fast, step: ["outputs: fast 1 != 2"])
    assert main([*args, "--out", str(tmp_path / "b")]) == 4
    assert "cross-check FAILED" in capsys.readouterr().err
