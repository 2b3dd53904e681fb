"""hwsim sweep / simulator.sweep: grids, rows equal to single runs, errors, resume, reuse, CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simulator
from simulator.cli import main
from simulator.exploration import execute as ex
from simulator.exploration.grid import GridError, grid_points, load_points, parse_grid
from simulator.exploration.table import pareto_front
from simulator.loaders.npz import save_npz
from simulator.network import make_combined_network
from simulator.runner import run_job

K0, PLACES, Q = 48, 12, 12


def toy_net():
    rng = np.random.default_rng(7)

    def layer(n_out: int, n_in: int, os_: float, oz: int) -> dict:
        w = rng.integers(-128, 128, (n_out, n_in)).astype(np.int8)
        return {"weight": w, "scale": rng.uniform(0.002, 0.01, n_out),
                "output_scale": os_, "output_zero_point": oz}

    mod = {"input_scale": 1 / 255, "input_zero_point": 0,
           "feature": layer(2 * K0, K0, 0.05, 100), "output": layer(PLACES, 2 * K0, 0.4, 60)}
    return make_combined_network([mod], source="toy.npz")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("sweepdata")
    model = d / "toy.npz"
    save_npz(toy_net(), model)
    x = np.random.default_rng(3).uniform(0, 1, (Q, K0)).astype(np.float32)
    np.save(d / "x.npy", x)
    return model, d / "x.npy"


# --- grid parsing ----------------------------------------------------------------------------


def test_parse_grid_forms() -> None:
    assert parse_grid("accumulator.bits=16..20") == ("accumulator.bits", [16, 17, 18, 19, 20])
    assert parse_grid("accumulator.bits=16..32:8") == ("accumulator.bits", [16, 24, 32])
    assert parse_grid("requant.rounding=half_even,floor") == (
        "requant.rounding", ["half_even", "floor"])
    assert parse_grid("clock.mhz=100.0, 250") == ("clock.mhz", [100.0, 250])
    assert parse_grid("requant.exc_divisors=[[0, 2], [2]],[[2]]") == (
        "requant.exc_divisors", [[[0, 2], [2]], [[2]]])
    assert parse_grid('report.compare_with="a,b",""') == ("report.compare_with", ["a,b", ""])
    assert parse_grid("layers.output.accumulator.bits=20") == (
        "layers.output.accumulator.bits", [20])
    pts = grid_points([parse_grid("accumulator.bits=16,17"),
                       parse_grid("accumulator.overflow=wrap,saturate")])
    assert [p.name for p in pts] == [
        "accumulator.bits=16,accumulator.overflow=wrap",
        "accumulator.bits=16,accumulator.overflow=saturate",
        "accumulator.bits=17,accumulator.overflow=wrap",
        "accumulator.bits=17,accumulator.overflow=saturate"]
    assert pts[0].overrides == ("accumulator.bits=16", 'accumulator.overflow="wrap"')


@pytest.mark.parametrize(("item", "frag"), [
    ("accumulator.bits", "expected KEY=VALUES"),
    ("accumulator.bitz=16..20", "did you mean 'accumulator.bits'"),
    ("accumulator.bits=20..16", "is empty"),
    ("accumulator.bits=16..20:0", "positive"),
    ("accumulator.bits=16..x", "not a range"),
    ("accumulator.bits=16,,17", "empty item"),
    ("accumulator.bits=16,16", "twice"),
    ("accumulator.bits=", "no values"),
])
def test_parse_grid_errors(item: str, frag: str) -> None:
    with pytest.raises(GridError, match=frag):
        parse_grid(item)


def test_cli_grid_error_is_one_line_exit_2(files, tmp_path: Path, capsys) -> None:
    model, x = files
    out = tmp_path / "out"
    rc = main(["sweep", "--model", str(model), "--input", str(x), "--out", str(out),
               "--grid", "accumulator.bits=16..x"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("hwsim: error: --grid accumulator.bits=16..x")
    assert not out.exists()
    rc = main(["sweep", "--model", str(model), "--input", str(x), "--out", str(out),
               "--grid", "accumulator.bits=16", "--baseline", "accumulator.bitz=3"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--baseline" in err and not out.exists()


def test_points_file(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('[points.acc16]\naccumulator.bits = 16\nrequant.rounding = "floor"\n'
                 '[points.fbgemm]\nconfig = "pytorch_fbgemm"\n')
    pts = load_points(f)
    assert [p.name for p in pts] == ["acc16", "fbgemm"]
    assert pts[0].overrides == ("accumulator.bits=16", 'requant.rounding="floor"')
    assert pts[1].config == "pytorch_fbgemm" and pts[1].overrides == ()
    f.write_text("[points.x]\naccumulator.bitz = 3\n")
    with pytest.raises(GridError, match="unknown config key 'accumulator.bitz'"):
        load_points(f)
    f.write_text("[points.x\n")
    with pytest.raises(GridError, match="TOML syntax error"):
        load_points(f)


# --- rows are the single runs' reports ---------------------------------------------------------


def check_rows_against_single_runs(df, out: Path, model: Path, x: Path, grid: list[str]) -> list:
    """Every row and kept report.json of a ``tolerance=1`` sweep of ``grid`` (no baseline
    option) equals ``run_job`` with the point's overrides; returns the single runs."""
    base = run_job("int8_fixed_point", model, x, None, [], recall_tolerance=1)
    pts = grid_points([parse_grid(g) for g in grid])
    singles = []
    for pt, (_, row) in zip(pts, df.iterrows(), strict=True):
        assert row["point"] == pt.name and row["status"] == "ok"
        single = run_job("int8_fixed_point", model, x, None, list(pt.overrides),
                         recall_tolerance=1)
        singles.append(single)
        rep = json.loads((out / "points" / pt.name / "report.json").read_text())
        sweep_block = rep.pop("sweep")
        assert rep == json.loads(json.dumps(single.report))  # the whole report, bit for bit
        ov = single.report["overflow"].values()
        assert row["acc_wrap"] == sum(o["acc_wrap"] for o in ov)
        assert row["acc_saturate"] == sum(o["acc_saturate"] for o in ov)
        assert row["acc_events"] == row["acc_wrap"] + row["acc_saturate"]
        assert row["min_safe_acc_bits"] == max(o["min_safe_acc_bits"] for o in ov)
        assert row["recall@1"] == single.report["readout"]["recall"]["R@1"]
        assert row["energy_uj_per_query"] == single.report["energy"]["per_query_uj"]
        assert row["codes_differ"] == int((single.result.outputs != base.result.outputs).sum())
        assert row["argmax_differ"] == int(
            (single.result.predictions != base.result.predictions).sum())
        assert sweep_block["codes_differ"] == row["codes_differ"]
        assert row["weight_memory_bits"] == (2 * K0 * K0 + PLACES * 2 * K0) * 8
    return singles


def test_rows_equal_single_runs(files, tmp_path: Path) -> None:
    model, x = files
    out = tmp_path / "sw"
    grid = ["accumulator.bits=12..14:2", "accumulator.overflow=wrap,saturate",
            "requant.rounding=half_even,floor"]
    df = simulator.sweep("int8_fixed_point", model, x, grid=grid, out=out, tolerance=1)
    assert list(df.columns) == [
        "accumulator.bits", "accumulator.overflow", "requant.rounding", "point", "status",
        "error", "recall@1", "recall@5", "recall@10", "acc_events", "acc_wrap", "acc_saturate",
        "pre_add_overflow", "requant_clamps", "min_safe_acc_bits", "codes_differ",
        "argmax_differ", "cycles_per_query", "weight_memory_bits", "energy_uj_per_query",
        "seconds"]
    assert len(df) == 8 and (df["status"] == "ok").all()
    check_rows_against_single_runs(df, out, model, x, grid)
    assert df["acc_events"].max() > 0  # the grid really overflowed somewhere
    assert (df["codes_differ"] > 0).any()
    disk = pd.read_parquet(out / "sweep.parquet")
    pd.testing.assert_frame_equal(disk, df)
    csv = pd.read_csv(out / "sweep.csv")
    assert list(csv.columns) == list(df.columns) and len(csv) == 8


def test_error_rows_and_sweep_goes_on(files) -> None:
    model, x = files
    df = simulator.sweep("int8_fixed_point", model, x,
                         grid={"accumulator.bits": [1, 12, 32],
                               "accumulator.overflow": ["error", "saturate"]})
    assert "recall@1" not in df.columns  # --input without --tolerance: no ground truth
    by = {(r["accumulator.bits"], r["accumulator.overflow"]): r for _, r in df.iterrows()}
    for ovf in ("error", "saturate"):
        r = by[(1, ovf)]
        assert r["status"] == "error" and "'accumulator.bits' = 1 is out of range" in r["error"]
        assert "\n" not in r["error"] and pd.isna(r["acc_events"])
    assert by[(12, "error")]["status"] == "error"
    assert "overflow" in by[(12, "error")]["error"]
    assert by[(12, "saturate")]["status"] == "ok" and by[(12, "saturate")]["acc_events"] > 0
    assert by[(32, "error")]["status"] == "ok" and by[(32, "error")]["codes_differ"] == 0


def test_resume_skips_finished_points(files, tmp_path: Path, monkeypatch) -> None:
    model, x = files
    calls: list[str] = []
    real = ex.run_point

    def counting(data, base, point, baseline):
        calls.append(point.name)
        return real(data, base, point, baseline)

    monkeypatch.setattr(ex, "run_point", counting)
    out = tmp_path / "r"
    grid = ["accumulator.bits=12..15"]
    df1 = simulator.sweep("int8_fixed_point", model, x, grid=grid, out=out)
    assert len(calls) == 4
    calls.clear()
    simulator.sweep("int8_fixed_point", model, x, grid=grid, out=out)
    assert calls == []  # everything was done
    (out / "points" / "accumulator.bits=14" / "row.json").unlink()  # "interrupted" there
    df2 = simulator.sweep("int8_fixed_point", model, x, grid=grid, out=out)
    assert calls == ["accumulator.bits=14"]
    cols = [c for c in df1.columns if c != "seconds"]
    pd.testing.assert_frame_equal(df1[cols], df2[cols])
    calls.clear()  # another input: nothing is reused
    x2 = x.parent / "x2.npy"
    np.save(x2, np.load(x)[::-1].copy())
    simulator.sweep("int8_fixed_point", model, x2, grid=grid, out=out)
    assert len(calls) == 4


def test_downstream_points_reuse_layers(files) -> None:
    model, x = files
    data = simulator.exploration.load_sweep_data(model, x)
    base = ex.run_baseline(data, "int8_fixed_point", [])
    misses = data.cache.misses
    pts = grid_points([parse_grid("energy.add_pj_per_bit=0.001,0.002,0.004")])
    rows = [ex.run_point(data, "int8_fixed_point", p, base)["row"] for p in pts]
    assert data.cache.misses == misses  # every layer came from the baseline's run
    e = [r["energy_uj_per_query"] for r in rows]
    assert e[0] < e[1] < e[2]
    pts = grid_points([parse_grid("layers.output.requant.rounding=floor,ceil")])
    hits = data.cache.hits
    for p in pts:
        ex.run_point(data, "int8_fixed_point", p, base)
    assert data.cache.hits - hits == 2  # the feature layer, once per point
    assert data.cache.misses - misses == 2  # each output layer computed once


@pytest.mark.parametrize("grid", [
    ["requant.rounding=half_even,floor,half_up"],
    ["requant.multiplier_bits=12,31", "requant.rounding=half_even,floor"],
    ["requant.clamp_high=200,register", "layers.output.requant.rounding=half_even,floor,half_up"],
    ["layers.output.requant.output_signed=false,true", "requant.rounding=half_even,floor"],
])
def test_requant_sweeps_reuse_accumulators(files, tmp_path: Path, monkeypatch, grid) -> None:
    """Points differing only in the requantizer compute each layer's accumulators once per
    distinct input codes, and their rows and reports are the single runs'."""
    from simulator.config import load_config
    from simulator.engine import fast

    model, x = files
    base = load_config("int8_fixed_point")
    points_hw = {fast.accumulate_hw(base.for_layer(n), base.report.headroom == "exact")
                 for n in ("feature", "output")}  # requant keys do not enter it
    calls: list[str] = []
    real = fast.accumulate_layer

    def counting(lay, x, zx, ahw, *args, **kwargs):
        if ahw in points_hw:  # not the report.compare_with reference's own hardware
            calls.append(lay.name)
        return real(lay, x, zx, ahw, *args, **kwargs)

    monkeypatch.setattr(fast, "accumulate_layer", counting)
    out = tmp_path / "rq"
    df = simulator.sweep("int8_fixed_point", model, x, grid=grid, out=out, tolerance=1)
    monkeypatch.setattr(fast, "accumulate_layer", real)
    n_points = len(grid_points([parse_grid(g) for g in grid]))
    assert len(df) == n_points and (df["status"] == "ok").all()
    singles = check_rows_against_single_runs(df, out, model, x, grid)
    # the baseline (the config as given) is one of the points; Q < one batch: one call a layer
    assert calls.count("feature") == 1  # the feature layer's input codes never change
    feature_codes = {s.result.layer(0, "feature").codes.tobytes() for s in singles}
    assert calls.count("output") == len(feature_codes)
    if grid[0].startswith("requant.clamp_high"):
        assert len(feature_codes) == 2  # the clamp really changed the feature codes
    assert df["codes_differ"].nunique() > 1  # the requantizer keys really changed outputs


def test_pareto_front() -> None:
    df = pd.DataFrame({"status": ["ok"] * 5 + ["error"],
                       "e": [1.0, 2.0, 2.0, 3.0, 4.0, 0.1],
                       "r": [0.5, 0.4, 0.7, 0.7, 0.9, 1.0]})
    front = pareto_front(df, "e", "r")
    assert front.index.tolist() == [0, 2, 4]


def test_cli_sweep_prints_pareto_and_plots(files, tmp_path: Path, capsys) -> None:
    pytest.importorskip("matplotlib")
    model, x = files
    out = tmp_path / "c"
    rc = main(["sweep", "--model", str(model), "--input", str(x), "--out", str(out),
               "--tolerance", "1", "--grid", "accumulator.bits=12..16:2",
               "--grid", "accumulator.overflow=wrap,saturate", "--plot", "--quiet",
               "--jobs", "1"])
    text = capsys.readouterr().out
    assert rc == 0
    df = pd.read_parquet(out / "sweep.parquet")
    front = pareto_front(df, "energy_uj_per_query", "recall@1")
    head = (f"Pareto points: recall@1 (higher is better) against energy_uj_per_query "
            f"({len(front)} of 6 ok points)")
    assert head in text
    section = text.split(head)[1].split("\n\n")[0].splitlines()[3:]  # title rest, header, rule
    assert len(section) == len(front)
    for line, (_, row) in zip(section, front.iterrows(), strict=True):
        assert line.split()[:2] == [str(row["accumulator.bits"]), row["accumulator.overflow"]]
    assert "Pareto points: recall@1 (higher is better) against weight_memory_bits" in text
    for png in ("sweep_accumulator.bits.png", "pareto_energy.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list(out.glob(".*.tmp"))


def test_planted_link_is_refused_before_running(files, tmp_path: Path, capsys) -> None:
    model, x = files
    out = tmp_path / "o"
    (out / "points").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "points" / "accumulator.bits=13").symlink_to(elsewhere)
    rc = main(["sweep", "--model", str(model), "--input", str(x), "--out", str(out),
               "--grid", "accumulator.bits=12..13", "--jobs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "accumulator.bits=13: exists and is not a folder" in err
    assert err.count("\n") == 1
    assert not list(elsewhere.iterdir())
    assert not (out / "points" / "accumulator.bits=12").exists()  # nothing ran
    assert not (out / "sweep.csv").exists()


def test_output_files_are_readable(files, tmp_path: Path) -> None:
    model, x = files
    out = tmp_path / "m"
    simulator.sweep("int8_fixed_point", model, x, grid=["accumulator.bits=20"], out=out)
    umask = os.umask(0)
    os.umask(umask)
    for f in (out / "sweep.csv", out / "points" / "accumulator.bits=20" / "report.json"):
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask


def test_images_are_preprocessed_once_and_match_arrays(files, tmp_path: Path) -> None:
    import cv2

    from simulator.vpr.datasets import load_codes, load_traversal

    model, _ = files
    rng = np.random.default_rng(9)
    (tmp_path / "d" / "night").mkdir(parents=True)
    for i in range(PLACES):
        img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / "d" / "night" / f"img{i:03d}.png"), img)
    grid = ["accumulator.bits=13,20"]
    df = simulator.sweep("int8_fixed_point", model, data_dir=tmp_path / "d", query="night",
                         dims=(6, 8), patch=3, grid=grid)
    codes = load_codes(load_traversal(tmp_path / "d", "night"), dims=(6, 8), patch=3)
    x = (codes.astype(np.float32) / np.float32(255.0)).astype(np.float32)
    ref = simulator.sweep("int8_fixed_point", model, x, grid=grid, tolerance=0)
    cols = [c for c in df.columns if c != "seconds"]
    assert "recall@1" in cols
    pd.testing.assert_frame_equal(df[cols], ref[cols])


def test_baseline_that_cannot_run_is_one_line(files, tmp_path: Path, capsys) -> None:
    model, x = files
    out = tmp_path / "b"
    rc = main(["sweep", "--model", str(model), "--input", str(x), "--out", str(out),
               "--grid", "accumulator.bits=20", "--baseline",
               "accumulator.bits=12,accumulator.overflow=error", "--jobs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("hwsim: error: --baseline accumulator.bits=12,accumulator.overflow=")
    assert "baseline point cannot run" in err and "overflow" in err


def test_reuse_equals_simulate_across_query_batches() -> None:
    """More queries than one engine batch (512): merged layers, event offsets, reports."""
    from simulator.config import load_config
    from simulator.exploration.reuse import LayerCache, simulate_reusing
    from simulator.report import build_report
    from simulator.runner import execute

    net = toy_net()
    x = np.random.default_rng(8).uniform(0, 1, (700, K0)).astype(np.float32)
    cache = LayerCache()
    prov = {"model_sha256": None, "input_source": "x", "input_sha256": None,
            "input_dtype": "float32"}
    for ov in (["accumulator.bits=12"], ["accumulator.bits=12", 'accumulator.overflow="wrap"'],
               ["accumulator.bits=24", "report.compare_with=''"]):
        cfg = load_config("int8_fixed_point", ov + ["report.compare_with=''"])
        _, want = execute(cfg, net, x, prov)
        got_res = simulate_reusing(net, cfg, x, cache)
        got = build_report(got_res, net, cfg, prov)
        assert got == want
        assert got["overflow"]["0/feature"]["first"] is not None or ov[0].endswith("24")
    assert cache.hits == 0
    simulate_reusing(net, cfg, x, cache)
    assert cache.hits == 2


def test_reuse_raises_the_same_error_policy_stop() -> None:
    from simulator.config import load_config
    from simulator.engine import simulate
    from simulator.exploration.reuse import LayerCache, simulate_reusing
    from simulator.fixedpoint import RegisterOverflowError

    net = toy_net()
    x = np.random.default_rng(8).uniform(0, 1, (700, K0)).astype(np.float32)
    x[:600] = 0.0  # the first batch stays quiet: the stop happens in the second
    cfg = load_config("int8_fixed_point", ["accumulator.bits=13", 'accumulator.overflow="error"'])
    with pytest.raises(RegisterOverflowError) as want:
        simulate(net, cfg, x)
    cache = LayerCache()
    with pytest.raises(RegisterOverflowError) as got:
        simulate_reusing(net, cfg, x, cache)
    assert str(got.value) == str(want.value)
    assert "query 600," in str(want.value)
    # another rounding reuses the accumulators, deferred stop included: the same stop
    cfg = load_config("int8_fixed_point", ["accumulator.bits=13", 'accumulator.overflow="error"',
                                           'requant.rounding="floor"'])
    with pytest.raises(RegisterOverflowError) as want:
        simulate(net, cfg, x)
    acc_hits = cache.acc_hits
    with pytest.raises(RegisterOverflowError) as got:
        simulate_reusing(net, cfg, x, cache)
    assert str(got.value) == str(want.value)
    assert cache.acc_hits > acc_hits


@pytest.mark.parametrize("config", ["loihi2_prodneuron", "loihi2_lif"])
def test_reuse_runs_neuromorphic_datapaths_on_their_engine(config: str) -> None:
    """A neuromorphic point is not run on the MAC array: the same result as engine.simulate."""
    from simulator.config import load_config
    from simulator.engine import simulate
    from simulator.exploration.reuse import LayerCache, simulate_reusing

    net = toy_net()
    x = np.random.default_rng(8).uniform(0, 1, (20, K0)).astype(np.float32)
    cfg = load_config(config)
    want = simulate(net, cfg, x)
    got = simulate_reusing(net, cfg, x, LayerCache())
    np.testing.assert_array_equal(got.outputs, want.outputs)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.cycles_per_query, want.cycles_per_query)
    assert got.notes == want.notes


def test_grid_and_named_points_mixed_columns(files, tmp_path: Path, capsys) -> None:
    model, x = files
    pts = tmp_path / "p.toml"
    pts.write_text('[points.acc12_floor]\naccumulator.bits = 12\nrequant.rounding = "floor"\n'
                   '[points.fbgemm]\nconfig = "pytorch_fbgemm"\n'
                   "[points.w4]\nweights.bits = 4\n")
    out = tmp_path / "mix"
    rc = main(["sweep", "--model", str(model), "--input", str(x), "--out", str(out),
               "--grid", "accumulator.bits=12,14", "--points", str(pts), "--jobs", "1",
               "--quiet", "--plot"])
    text = capsys.readouterr().out
    assert rc == 0 and "argmax_differ (lower is better)" in text
    df = pd.read_parquet(out / "sweep.parquet")
    assert df["point"].tolist() == ["accumulator.bits=12", "accumulator.bits=14", "acc12_floor",
                                    "fbgemm", "w4"]
    assert str(df["accumulator.bits"].dtype) == "Int64"
    assert df["accumulator.bits"].isna().tolist() == [False, False, False, True, True]
    assert df["requant.rounding"].isna().tolist() == [True, True, False, True, True]
    assert df["weights.bits"].tolist()[-1] == 4 and df["weight_memory_bits"].iloc[-1] * 2 == \
        df["weight_memory_bits"].iloc[0]
    fb = json.loads((out / "points" / "fbgemm" / "report.json").read_text())
    assert fb["config"]["name"] == "pytorch_fbgemm" and fb["sweep"]["config"] == "pytorch_fbgemm"
    csv = (out / "sweep.csv").read_text().splitlines()
    assert csv[4].startswith(",,,fbgemm,ok,")
    for png in ("pareto_energy.png", "sweep_accumulator.bits.png", "sweep_weights.bits.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert not (out / "sweep_requant.rounding.png").exists()  # not a numeric key


def test_interrupted_sweep_resumes(files, tmp_path: Path, monkeypatch) -> None:
    model, x = files
    real = ex.run_point
    calls: list[str] = []

    def interrupted(data, base, point, baseline):
        if point.name == "accumulator.bits=14":
            raise KeyboardInterrupt
        calls.append(point.name)
        return real(data, base, point, baseline)

    monkeypatch.setattr(ex, "run_point", interrupted)
    out = tmp_path / "i"
    grid = ["accumulator.bits=12..15"]
    with pytest.raises(KeyboardInterrupt):
        simulator.sweep("int8_fixed_point", model, x, grid=grid, out=out)
    assert calls == ["accumulator.bits=12", "accumulator.bits=13"]
    assert not (out / "sweep.csv").exists()  # the table lands only when every point is done
    monkeypatch.setattr(ex, "run_point", lambda *a: (calls.append(a[2].name), real(*a))[1])
    calls.clear()
    df = simulator.sweep("int8_fixed_point", model, x, grid=grid, out=out)
    assert calls == ["accumulator.bits=14", "accumulator.bits=15"]
    assert (df["status"] == "ok").all() and len(df) == 4


def test_seed_layout_sweep(tmp_path: Path) -> None:
    """The split (seed) layout: energy of its float divisions; narrowing is an error row."""
    from test_seed_oracle import MODELS, make_mats, make_queries

    rng = np.random.default_rng(5)
    places, ifs, fos = MODELS["int_scales"]
    folder = make_mats(tmp_path / "mats", rng, places, ifs, fos)
    np.save(tmp_path / "q.npy", make_queries(rng, 6))
    df = simulator.sweep("seed_tutorial", folder, tmp_path / "q.npy",
                         grid={"weights.bits": [4, 8], "clock.mhz": [100.0, 200.0]})
    assert df["status"].tolist() == ["error", "error", "ok", "ok"]
    assert "combined layout only" in df["error"].iloc[0]
    ok = df[df["status"] == "ok"]
    assert ok["codes_differ"].tolist() == [0, 0] and (ok["energy_uj_per_query"] > 0).all()
    assert ok["energy_uj_per_query"].nunique() == 1  # the clock does not change the energy


def test_second_sweep_into_a_busy_folder_fails_at_once(files, tmp_path) -> None:
    """A sweep holds its folder's lock: another job writing there makes it stop at once."""
    from simulator.outputs import HeldFolder, OutputBusyError

    model, x = files
    out = tmp_path / "busy"
    with HeldFolder(out), pytest.raises(OutputBusyError, match="another hwsim job"):
        simulator.sweep("int8_fixed_point", model, x, grid=["accumulator.bits=20,24"], out=out)
    assert not (out / "points").exists() and not (out / "sweep.csv").exists()
    simulator.sweep("int8_fixed_point", model, x, grid=["accumulator.bits=20,24"], out=out)
    assert (out / "sweep.csv").is_file()  # the lock is released with the other job
