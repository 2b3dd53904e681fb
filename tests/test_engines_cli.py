"""``hwsim export`` and ``hwsim run --compare-with`` through the command line (needs the
wiring of simulator/commands/export.py and run.py into simulator/cli.py and runner.run_job)."""

from __future__ import annotations

import json
from pathlib import Path

import engine_oracle as E
import numpy as np
import pytest

from simulator.cli import main
from simulator.loaders import save_npz

pytest.importorskip("flatbuffers", reason="the TFLite format needs the engines extra")


def test_export_run_compare_with(tmp_path: Path, capsys) -> None:
    net = E.random_network(31, k=16, places=12, modules=2)
    save_npz(net, tmp_path / "m.npz")
    x = E.make_inputs(5, 24, net)
    np.save(tmp_path / "x.npy", x)
    g = tmp_path / "m.tflite"
    assert main(["export", "--format", "tflite", "--model", str(tmp_path / "m.npz"),
                 "--out", str(g), "--batch", "24"]) == 0
    out = tmp_path / "run"
    base = ["run", "--config", "litert_reference", "--model", str(g), "--input",
            str(tmp_path / "x.npy"), "--quiet"]
    assert main(base + ["--out", str(out)]) == 0
    codes = np.load(out / "outputs.npy")
    engine = (codes - 128).astype(np.int8)
    engine[2, 3] ^= 1
    np.save(tmp_path / "c.npy", engine)
    assert main(base + ["--out", str(tmp_path / "run2"), "--compare-with",
                        str(tmp_path / "c.npy")]) == 0
    assert "c.npy: 1 of 576 codes differ" in capsys.readouterr().out
    block = json.loads((tmp_path / "run2" / "report.json").read_text())["compare_with_codes"]
    assert block["codes_differing"] == 1 and block["first_difference"]["query"] == 2
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "run3"), "--compare-with",
                        str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hwsim: error: --compare-with") and "\n" not in err
    assert not (tmp_path / "run3").exists()


def test_hidden_reference_run_error_names_itself(tmp_path: Path, capsys) -> None:
    net = E.random_network(32, k=12, places=8)
    save_npz(net, tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", E.make_inputs(5, 4, net))
    rc = main(["run", "--config", "int8_fixed_point", "--model", str(tmp_path / "m.npz"),
               "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o"), "--quiet",
               "--set", "report.compare_with=x86_avx2_fbgemm",
               "--set", "schedule.mode=event_driven"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "hidden reference run 'x86_avx2_fbgemm'" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_export_replaces_a_planted_link_and_leaves_no_stray(tmp_path) -> None:
    """hwsim export publishes through the shared writer: a symlink planted at --out is
    replaced (its target untouched), and nothing but the graph is left in the folder."""
    pytest.importorskip("onnx")
    net = E.random_network(32, k=8, places=4, modules=1)
    save_npz(net, tmp_path / "m.npz")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    d = tmp_path / "graphs"
    d.mkdir()
    (d / "m.onnx").symlink_to(outside)
    assert main(["export", "--format", "onnx", "--model", str(tmp_path / "m.npz"),
                 "--out", str(d / "m.onnx")]) == 0
    assert outside.read_text() == "keep me"
    assert (d / "m.onnx").is_file() and not (d / "m.onnx").is_symlink()
    assert sorted(p.name for p in d.iterdir()) == ["m.onnx"]
