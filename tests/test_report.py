"""report.json fields against an independent recomputation, ``hwsim report`` tables and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulator.bench import bench_inputs, bench_network
from simulator.commands.report import format_table, load_report, main, report_text
from simulator.loaders.npz import save_npz
from simulator.report import nonzero_pairs
from simulator.runner import run_job

NARROW = ["accumulator.bits=13", 'accumulator.overflow="saturate"']
WIDE = ["accumulator.bits=32", 'accumulator.overflow="saturate"']


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("report")
    net = bench_network(40, 72, 9, seed=7, calib_queries=16)
    save_npz(net, d / "model.npz")
    np.save(d / "x.npy", bench_inputs(6, 40, seed=3))
    return {"dir": d, "model": d / "model.npz", "x": d / "x.npy"}


@pytest.fixture(scope="module")
def runs(files: dict[str, Path]) -> dict[str, Any]:
    out = {}
    for name, ov in (("narrow", NARROW), ("wide", WIDE)):
        out[name] = run_job("pytorch_fbgemm", files["model"], files["x"], files["dir"] / name, ov)
    return out


def _exact_prefixes(codes: np.ndarray, zx: int, w: np.ndarray, tree: int) -> np.ndarray:
    """Every accumulator addition's exact result (Q, N, steps), inputs in ascending order."""
    prod = (codes.astype(np.int64) - zx)[:, None, :] * w.astype(np.int64)[None, :, :]
    k = prod.shape[2]
    pad = -(-k // tree) * tree - k
    prod = np.concatenate([prod, np.zeros(prod.shape[:2] + (pad,), np.int64)], axis=2)
    steps = prod.reshape(prod.shape[0], prod.shape[1], -1, tree).sum(axis=3)
    return np.cumsum(steps, axis=2)


def _saturating_events(prefix_steps: np.ndarray, bits: int) -> np.ndarray:
    """Saturate events per neuron, the register updated step by step."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    steps = np.diff(prefix_steps, axis=2, prepend=0)
    r = np.zeros(steps.shape[:2], dtype=np.int64)
    ev = np.zeros(steps.shape[:2], dtype=np.int64)
    for t in range(steps.shape[2]):
        s = r + steps[:, :, t]
        ev += (s < lo) | (s > hi)
        r = np.clip(s, lo, hi)
    return ev.sum(axis=0)


def _bits(lo: int, hi: int) -> int:
    b = 2
    while lo < -(1 << (b - 1)) or hi > (1 << (b - 1)) - 1:
        b += 1
    return b


@pytest.mark.parametrize("name", ["narrow", "wide"])
def test_fields_match_an_independent_recount(runs: dict[str, Any], name: str) -> None:
    run = runs[name]
    rep, res = run.report, run.result
    bits = 13 if name == "narrow" else 32
    net_mod = bench_network(40, 72, 9, seed=7, calib_queries=16).modules[0]
    x, zx = res.input_codes[0], net_mod.input_zero_point
    for lay in net_mod.layers:
        key = f"0/{lay.name}"
        ov = rep["overflow"][key]
        pre = _exact_prefixes(x, zx, lay.paths[0].weight, 4)  # the preset's adder tree
        lo, hi = min(int(pre.min()), 0), max(int(pre.max()), 0)
        assert ov["max_abs_acc"] == int(np.abs(pre[:, :, -1]).max())
        assert ov["min_safe_acc_bits"] == _bits(lo, hi)
        assert ov["headroom_bits"] == bits - ov["min_safe_acc_bits"]
        assert ov["acc_register_range"] == [-(1 << (bits - 1)), (1 << (bits - 1)) - 1]
        want = _saturating_events(pre, bits)
        assert ov["acc_saturate"] == int(want.sum())
        assert ov["acc_wrap"] == 0
        assert ov["per_neuron"]["acc"] == nonzero_pairs(want)
        assert ov["neurons_with_acc_events"] == len(ov["per_neuron"]["acc"])
        lr = res.layer(0, lay.name)
        assert ov["per_neuron"]["clamp_low"] == nonzero_pairs(lr.clamp.low)
        assert sum(c for _, c in ov["per_neuron"]["clamp_high"]) == ov["requant_clamp_high"]
        pct = ov["acc_abs_percentiles"]
        assert list(pct) == ["50", "90", "99", "99.9", "100"]
        assert list(pct.values()) == sorted(pct.values())
        assert pct["100"] == int(np.abs(lr.acc["combined"]).max())
        assert (ov["acc_saturate"] > 0) == (ov["headroom_bits"] < 0)
        if ov["acc_saturate"]:
            f = ov["first"]
            assert f is not None and f["kind"] == "acc_saturate"
            assert f["neuron"] in {j for j, _ in ov["per_neuron"]["acc"]}
        else:
            assert ov["first"] is None or ov["first"]["kind"].startswith("requant_clamp")
        if name == "narrow" and lay.name == "feature":
            assert ov["acc_saturate"] > 0
        x, zx = lr.codes, lay.output_zero_point
    # the file on disk is the report returned
    disk, _ = load_report(runs[name].out_dir)
    assert disk["overflow"] == json.loads(json.dumps(rep["overflow"]))


def test_report_tables(runs: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    d = runs["narrow"].out_dir
    assert main([str(d)]) == 0
    text = capsys.readouterr().out
    ov = runs["narrow"].report["overflow"]["0/feature"]
    for want in ("overflow and saturation", "0/feature", "0/output", "min safe bits",
                 "headroom", "first event", "acc_saturate", "cycles", "memory", "energy",
                 f"{ov['acc_saturate']:,}", f"{ov['max_abs_acc']:,}"):
        assert want in text, want
    row = next(line for line in text.splitlines() if line.startswith("0/feature") and
               f"{ov['acc_saturate']:,}" in line)
    assert str(ov["headroom_bits"]) in row.split()
    assert report_text(runs["wide"].report).count("0/output") >= 3


def test_report_json_and_comparison(runs: dict[str, Any], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    rep = dict(runs["wide"].report)
    rep["comparison"] = {"reference": "int8_fixed_point", "codes_total": 54,
                         "codes_differing": 3, "max_abs_code_difference": 1,
                         "argmax_differing": 0, "queries": 6}
    (tmp_path / "report.json").write_text(json.dumps(rep))
    assert main([str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "comparison with int8_fixed_point" in text and "codes_differing" in text
    assert main([str(tmp_path / "report.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["comparison"]["codes_differing"] == 3


def test_report_prints_override_lists_and_external_codes(
        runs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rep = dict(runs["wide"].report)
    rep["comparison"] = {"reference": "pytorch_fbgemm", "codes_total": 54, "codes_differing": 0,
                         "max_abs_code_difference": 0, "argmax_differing": 0, "queries": 6,
                         "overrides_applied": ["clock.mhz=50"], "overrides_not_applied": []}
    rep["compare_with_codes"] = {"source": "rtl_codes.npy", "sha256": "ab" * 32,
                                 "code_offset": 128, "codes_total": 54, "codes_differing": 1,
                                 "max_abs_code_difference": 2, "argmax_differing": 0,
                                 "queries": 6, "first_difference": {"query": 4, "place": 7,
                                                                    "hwsim": 200,
                                                                    "external": 198}}
    (tmp_path / "report.json").write_text(json.dumps(rep))
    assert main([str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "comparison with codes from rtl_codes.npy" in text
    assert "query=4 place=7 hwsim=200 external=198" in text
    assert "clock.mhz=50" in text
    rep["comparison"]["overrides_applied"] = 5
    (tmp_path / "report.json").write_text(json.dumps(rep))
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "comparison.overrides_applied" in err and "a list" in err


def test_report_plots(runs: dict[str, Any], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    d = runs["narrow"].out_dir
    assert main([str(d), "--plot", "--plot-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("events_per_neuron.png", "acc_range.png"):
        p = tmp_path / name
        assert f"wrote {p}" in out
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_without_matplotlib(runs: dict[str, Any], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    assert main([str(runs["wide"].out_dir), "--plot", "--plot-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "pip install 'tempo-hwsim[plot]'" in err
    assert not list(tmp_path.iterdir())


def test_bad_report_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    assert f"{tmp_path}: no report.json here" in capsys.readouterr().err
    (tmp_path / "report.json").write_text("{not json")
    assert main([str(tmp_path)]) == 2
    assert "not a JSON report" in capsys.readouterr().err
    (tmp_path / "report.json").write_text('{"a": 1}')
    assert main([str(tmp_path)]) == 2
    assert "not a tempo-hwsim report" in capsys.readouterr().err


def test_older_report_without_new_fields(runs: dict[str, Any], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    rep = json.loads(json.dumps(runs["narrow"].report))
    for ov in rep["overflow"].values():
        for k in ("per_neuron", "acc_abs_percentiles", "acc_register_range"):
            del ov[k]
    (tmp_path / "report.json").write_text(json.dumps(rep))
    assert main([str(tmp_path)]) == 0
    assert "0/feature" in capsys.readouterr().out
    pytest.importorskip("matplotlib")
    assert main([str(tmp_path), "--plot"]) == 2
    assert "no per-neuron counts" in capsys.readouterr().err


def test_format_table() -> None:
    t = format_table(["name", "n", "range"], [["a", 1234, [-5, 7]], ["bb", None, [1, 2, 3]]])
    lines = t.splitlines()
    assert lines[0].split() == ["name", "n", "range"]
    assert lines[2].split()[:2] == ["a", "1,234"] and "-5 .. 7" in lines[2]
    assert lines[3].split()[1] == "-" and "[1; 2; 3]" in lines[3]
    assert lines[2].index("1,234") + 5 == lines[3].index("-") + 1  # numbers right-aligned


def test_pre_add_events_are_reported(files: dict[str, Path]) -> None:
    """AVX2-style int16 pair saturation: counted per neuron and named as the first event."""
    run = run_job("pytorch_fbgemm", files["model"], files["x"], None,
                  ['mac.operand="raw"', "mac.pre_add_width=2"])
    seen = 0
    for ov in run.report["overflow"].values():
        assert sum(c for _, c in ov["per_neuron"]["pre_add"]) == ov["pre_add_overflow"]
        assert ov["acc_wrap"] + ov["acc_saturate"] == 0
        if ov["pre_add_overflow"]:
            seen += 1
            f = ov["first"]
            assert f["kind"] == "pre_add_overflow" and f["step"] is not None
            assert f["neuron"] in {j for j, _ in ov["per_neuron"]["pre_add"]}
    assert seen
