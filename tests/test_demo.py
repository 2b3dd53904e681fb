"""``hwsim demo`` (the README's main command) and ``hwsim run --data-dir`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main
from simulator.loaders import load_npz
from simulator.vpr.synthroute import cached_route

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "simulator" / "data" / "default_model.npz"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(root))
    yield root
    mp.undo()


def test_demo_reports_recall_cycles_overflow_and_trace(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "Recall@1" in text and "cycles: total" in text and "acc events" in text
    report = json.loads((out / "report.json").read_text())
    meta = load_npz(DEFAULT_MODEL).metadata
    recorded = meta["recall"]["summer"]["int8"]["1"]
    got = report["readout"]["recall"]["R@1"]
    # the bundled model reaches the recall its metadata records on the regenerated route
    assert abs(got - recorded) <= 0.02
    assert report["readout"]["query_traversal"] == "summer"
    assert report["queries"] == 100 and report["cycles"]["total"] > 0
    assert set(report["overflow"]) == {"0/feature", "0/output"}
    assert report["comparison"]["reference"] == "pytorch_fbgemm"
    pred = np.load(out / "predictions.npy")
    assert pred.shape == (100,) and pred.dtype == np.int64
    assert (out / "trace_neuron.parquet").is_file()
    # quantized recall within 0.03 of the float model (issue 4), as recorded at training
    rec = meta["recall"]["summer"]
    assert rec["int8"]["1"] >= rec["float"]["1"] - 0.03


def test_demo_with_overrides_then_report(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--set items reach the hidden reference run's bookkeeping, and ``hwsim report`` prints
    the comparison's override lists and the re-quantized block (both used to fail)."""
    out = tmp_path / "demo_sets"
    sets = ["clock.mhz=100", "accumulator.bits=30", "layers.feature.spikes.bits=7"]
    argv = ["demo", "--out", str(out), "--quiet", "--trace", "off"]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    comp = report["comparison"]
    # pytorch_fbgemm pins the accumulator and spike widths (arithmetic); the clock it takes
    assert comp["overrides_not_applied"] == ["accumulator.bits=30", "layers.feature.spikes.bits=7"]
    assert comp["overrides_applied"] == ["clock.mhz=100"]
    assert report["requantized"]["spikes"]["quantizers"][0]["bits"] == 7
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "comparison with pytorch_fbgemm" in text
    assert "accumulator.bits=30, layers.feature.spikes.bits=7" in text and "clock.mhz=100" in text
    row = next(line for line in text.splitlines() if line.startswith("spikes"))
    assert "8 -> 7" in row and "network input" in row


def test_run_from_images_prints_recall(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = load_npz(DEFAULT_MODEL).metadata
    route = cached_route(
        places=meta["route"]["places"], seed=meta["route"]["seed"],
        spacing=meta["route"]["spacing"], jitter=meta["route"]["jitter"],
        traversals=tuple(meta["route"]["traversals"]),
    )
    out = tmp_path / "run"
    rc = main(["run", "--config", "pytorch_fbgemm", "--model", str(DEFAULT_MODEL),
               "--data-dir", str(route), "--query", "winter", "--out", str(out), "--quiet"])
    assert rc == 0
    assert "Recall@1" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert abs(report["readout"]["recall"]["R@1"] - meta["recall"]["winter"]["int8"]["1"]) <= 0.02


def test_run_needs_exactly_one_input_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["run", "--config", "pytorch_fbgemm", "--model", str(DEFAULT_MODEL),
               "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "--input" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_run_on_an_empty_image_folder_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "images"
    empty.mkdir()
    rc = main(["run", "--config", "pytorch_fbgemm", "--model", str(DEFAULT_MODEL),
               "--data-dir", str(empty), "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("hwsim: error:") and str(empty) in err
    assert not (tmp_path / "o").exists()


def test_vectors_from_images_equal_run_saved_codes(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hwsim vectors --data-dir`` feeds the layer the same input codes as ``hwsim run
    --data-dir --save-codes`` writes, and its expected output codes are the run's."""
    meta = load_npz(DEFAULT_MODEL).metadata
    route = cached_route(
        places=meta["route"]["places"], seed=meta["route"]["seed"],
        spacing=meta["route"]["spacing"], jitter=meta["route"]["jitter"],
        traversals=tuple(meta["route"]["traversals"]),
    )
    run_dir, vec_dir = tmp_path / "run", tmp_path / "vec"
    assert main(["run", "--config", "int8_fixed_point", "--model", str(DEFAULT_MODEL),
                 "--data-dir", str(route), "--query", "winter", "--save-codes",
                 "--out", str(run_dir), "--quiet"]) == 0
    assert main(["vectors", "--config", "int8_fixed_point", "--model", str(DEFAULT_MODEL),
                 "--data-dir", str(route), "--query", "winter", "--queries", "0:4",
                 "--format", "npy", "--out", str(vec_dir)]) == 0
    assert "--queries 0:4 is inclusive (queries 0..4, 5 queries)" in capsys.readouterr().err
    codes = np.load(run_dir / "input_codes.npy")
    assert codes.dtype == np.uint8 and codes.shape[1] == 784
    x = np.load(vec_dir / "m0_feature" / "x.npy")
    assert np.array_equal(x.reshape(5, -1).astype(np.int64), codes[:5].astype(np.int64))
    y = np.load(vec_dir / "m0_output" / "y.npy").reshape(5, -1)
    outputs = np.load(run_dir / "outputs.npy")
    assert np.array_equal(y.astype(np.int64), outputs[:5])


@pytest.mark.parametrize("command", ["run", "vectors"])
def test_images_input_reads_the_model_within_the_config_limit(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With --data-dir the model is read under the config's weight memory, before any image."""
    import simulator.vpr.model_inputs as mi

    def no_images(*_a: object, **_k: object) -> None:
        raise AssertionError("images read before the model was checked")

    monkeypatch.setattr(mi, "load_traversal", no_images)
    images = tmp_path / "images"
    images.mkdir()
    argv = [command, "--config", "int8_fixed_point", "--model", str(DEFAULT_MODEL),
            "--data-dir", str(images), "--query", "q", "--out", str(tmp_path / "o"),
            "--set", "weights.capacity_kib=64"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'weights.capacity_kib' = 64" in err[0], err
    assert "refusing to read its weights" in err[0]
    assert not (tmp_path / "o").exists()
