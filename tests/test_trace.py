"""Traces: schema, levels, filters, the row limit, CSV and Parquet, and agreement with the
fast path (op/cycle rows come from the stepwise engine, layer/neuron rows from SimResult)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from test_stepwise import random_case

import simulator.trace as tr
from simulator.config import load_config
from simulator.engine import simulate
from simulator.loaders.npz import save_npz
from simulator.network import make_combined_network
from simulator.trace import (
    COLUMN_NAMES,
    TRACE_SCHEMA_VERSION,
    TraceError,
    TraceLimitError,
    add_trace_arguments,
    check_trace_arguments,
    handle_trace,
    parse_filter,
    read_trace,
    write_trace,
)

DTYPES = {
    "cycle": "Int64", "query": "Int32", "module": "Int16", "layer": "string", "path": "string",
    "unit": "string", "operation": "string", "tile": "Int32", "step": "Int32", "lane": "Int32",
    "neuron": "Int32", "input_index": "Int32", "input_count": "Int32", "operand_a": "Int64",
    "operand_b": "Int64", "exact": "Int64", "result": "Int64", "width": "Int16",
    "signed": "boolean", "overflow": "string", "count": "Int64",
}
LEVELS = ("layer", "neuron", "op", "cycle")


def _eventful_case() -> tuple:
    """A combined-layout case with accumulator and pre-add events in several neurons."""
    rng = np.random.default_rng(5)
    k, n1, n2 = 24, 10, 6
    mods = []
    for _ in range(2):
        mods.append({
            "input_scale": 0.01, "input_zero_point": 3,
            "feature": {"weight": rng.integers(-128, 128, (n1, k)).astype(np.int8),
                        "scale": 0.01, "output_scale": 2.0, "output_zero_point": 100},
            "output": {"weight": rng.integers(-128, 128, (n2, n1)).astype(np.int8),
                       "scale": 0.01, "output_scale": 1.0, "output_zero_point": 120},
        })
    net = make_combined_network(mods)
    cfg = load_config("pytorch_fbgemm", [
        "accumulator.bits=17", "accumulator.overflow=saturate", "mac.lanes=4",
        "accumulator.adder_tree_width=4", "mac.pre_add_width=2", "mac.pre_add_bits=15",
        "mac.operand=raw", "weights.banks=1", "weights.word_bits=24", "requant.throughput=3",
        "requant.latency=2",
    ])
    x = rng.integers(0, 256, (3, k)).astype(np.uint8)
    res = simulate(net, cfg, x)
    return net, cfg, x, res


@pytest.fixture(scope="module")
def eventful() -> tuple:
    return _eventful_case()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("level", LEVELS)
def test_schema_columns_dtypes_and_manifest(eventful: tuple, level: str, fmt: str,
                                            tmp_path: Path) -> None:
    net, cfg, x, res = eventful
    s = write_trace(res, net, cfg, None, tmp_path, level, "query=0", fmt)
    assert s.path == tmp_path / f"trace_{level}.{fmt}" and s.path.is_file()
    df = read_trace(s.path)
    assert tuple(df.columns) == COLUMN_NAMES
    assert {c: str(t) for c, t in df.dtypes.items()} == DTYPES
    assert len(df) == s.rows == s.estimated_rows > 0
    assert df["cycle"].is_monotonic_increasing
    man = json.loads(s.manifest.read_text())
    assert man["schema"] == {"name": "tempo-hwsim-trace", "version": TRACE_SCHEMA_VERSION}
    assert man["rows"] == s.rows and man["level"] == level and man["file"] == s.path.name
    assert [c["name"] for c in man["columns"]] == list(COLUMN_NAMES)
    if fmt == "parquet":
        meta = pq.read_schema(s.path).metadata
        assert meta[b"schema"] == b"tempo-hwsim-trace"
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("seed", [1, 3, 7, 11, 20, 33])
def test_estimate_before_run_matches_the_schedule(seed: int) -> None:
    """Dense: the pre-run count equals the post-run count; event-driven without a cycle
    window: an upper bound; with one: unknown before the run (None)."""
    net, cfg, x, sets = random_case(seed)
    for mode in ("dense", "event_driven"):
        keep = [v for v in sets if not v.startswith(("schedule.mode", "mac.operand"))]
        c = load_config(cfg.source, [*keep, f"schedule.mode={mode}"])
        res = simulate(net, c, x)
        total = int(res.cycles_per_query.sum())
        for flt_text in ("", "query=0:1,neuron=1:4", f"cycle={total // 4}:{total // 2}",
                         "module=0,layer=output"):
            flt = parse_filter(flt_text)
            for level in LEVELS:
                if level == "layer" and "neuron" in flt_text:
                    continue
                after = tr.estimate_rows(res, c, level, flt)
                before = tr.estimate_rows_before_run(net, c, x.shape[0], level, flt)
                if mode == "dense":
                    assert before == (after, True), (level, flt_text)
                elif flt.cycles is not None:
                    assert before is None
                else:
                    assert before is not None and before[0] >= after and not before[1]


def test_row_limit_refused_before_simulating(eventful: tuple, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import simulator.runner as runner

    net, cfg, x, res = eventful
    save_npz(net, tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", x)

    def no_sim(*a: object, **k: object) -> None:
        raise AssertionError("simulated before the row limit was checked")

    monkeypatch.setattr(runner, "simulate", no_sim)
    req = tr.TraceRequest("cycle", "", "parquet", 10)
    with pytest.raises(TraceLimitError, match="more than --max-trace-rows 10"):
        runner.run_job(cfg.source, tmp_path / "m.npz", tmp_path / "x.npy", tmp_path / "out",
                       cfg_sets(), trace=req)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seed", [1, 3, 7, 11, 20, 33])
def test_estimate_equals_rows_written(seed: int, tmp_path: Path) -> None:
    net, cfg, x, _ = random_case(seed)
    res = simulate(net, cfg, x)
    total = int(res.cycles_per_query.sum())
    filters = ["", "query=0:1,neuron=1:4", f"cycle={total // 4}:{total // 2}",
               "module=0,layer=output,cycle=:300", "path=excitatory|combined,neuron=2"]
    for level in LEVELS:
        for flt in filters:
            if (level == "layer" and "neuron" in flt) or (level == "neuron" and "path" in flt):
                continue
            s = write_trace(res, net, cfg, None, tmp_path, level, flt, "parquet")
            assert s.rows == s.estimated_rows == len(read_trace(s.path)), (level, flt)


def test_op_trace_agrees_with_fast_path(eventful: tuple, tmp_path: Path) -> None:
    """Last accumulator write = fast acc; requantize rows = codes; overflow rows = pair
    event counts (accumulator and pre-add), for every neuron of every layer."""
    net, cfg, x, res = eventful
    df = read_trace(write_trace(res, net, cfg, None, tmp_path, "op", "", "csv").path)
    adds = df[df.unit == "accumulator"]
    last = adds.sort_values("cycle").groupby(["query", "module", "layer", "neuron"]).tail(1)
    rq = df[df.unit == "requantizer"]
    pre = df[df.unit == "pre_add"]
    n_events = 0
    for lr in res.layers:
        sel = last[(last.module == lr.module) & (last.layer == lr.layer)]
        got = np.zeros_like(lr.acc["combined"])
        got[sel["query"].to_numpy(int), sel["neuron"].to_numpy(int)] = sel["result"].to_numpy(int)
        assert np.array_equal(got, lr.acc["combined"]), lr.key
        r = rq[(rq.module == lr.module) & (rq.layer == lr.layer)]
        codes = np.zeros_like(lr.codes)
        codes[r["query"].to_numpy(int), r["neuron"].to_numpy(int)] = r["result"].to_numpy(int)
        assert np.array_equal(codes, lr.codes)
        pe = lr.mac["combined"].pair_events
        for col, frame, kind in ((3, adds, "saturate"), (4, pre, "saturate")):
            ev = frame[(frame.module == lr.module) & (frame.layer == lr.layer)
                       & (frame.overflow == kind)]
            cnt = ev.groupby(["query", "neuron"]).size()
            want = {(int(q), int(j)): int(c) for q, j, c in pe[:, [0, 1, col]] if c}
            assert {(int(q), int(j)): int(c) for (q, j), c in cnt.items()} == want
            n_events += len(ev)
        # every row's exact value is the unbounded sum; the result is its saturation
        a = adds[(adds.module == lr.module) & (adds.layer == lr.layer)]
        assert (a["exact"] == a["operand_a"] + a["operand_b"]).all()
    assert n_events > 10


def test_cycle_trace_covers_every_cycle(eventful: tuple, tmp_path: Path) -> None:
    net, cfg, x, res = eventful
    df = read_trace(write_trace(res, net, cfg, None, tmp_path, "cycle", "", "parquet").path)
    total = int(res.cycles_per_query.sum())
    assert sorted(set(df["cycle"].to_numpy(int))) == list(range(total))
    timeline = df[df.unit.isin(["weight_memory", "requantizer"])
                  & df.operation.isin(["stall", "fetch", "flush"])]
    drains = df[df.operation == "requantize"].drop_duplicates("cycle")
    assert len(timeline) + len(drains) == total  # each cycle is one of them exactly once
    stalls = int(sum(lr.stalls.sum() for lr in res.layers))
    assert (df.operation == "stall").sum() == stalls > 0
    mul = df[df.operation == "multiply"]
    assert (mul["result"] == mul["operand_a"] * mul["operand_b"]).all()


def test_neuron_rows_share_cycles_with_op_rows(eventful: tuple, tmp_path: Path) -> None:
    """One row per neuron at its requantizer cycle: same cycle, code and unclamped value as
    the op-level requantize row; events = the op level's overflow rows plus the clamp."""
    net, cfg, x, res = eventful
    nd = read_trace(write_trace(res, net, cfg, None, tmp_path, "neuron", "", "parquet").path)
    od = read_trace(write_trace(res, net, cfg, None, tmp_path, "op", "", "parquet").path)
    assert len(nd) == x.shape[0] * sum(lr.codes.shape[1] for lr in res.layers)
    assert set(nd["unit"]) == {"neuron"}
    key = ["query", "module", "layer", "neuron"]
    a = nd[key + ["cycle", "result", "exact"]].reset_index(drop=True)
    b = od[od.operation == "requantize"][key + ["cycle", "result", "exact"]]
    assert a.equals(b.reset_index(drop=True))
    ov = od[(od.overflow != "") & od.unit.isin(["accumulator", "pre_add", "requantizer"])]
    ev = ov.groupby(key).size().reindex(pd.MultiIndex.from_frame(nd[key]), fill_value=0)
    assert (nd["count"].to_numpy(int) == ev.to_numpy(int)).all()
    assert ev.sum() > 0
    acc_rows = od[od.unit == "accumulator"].groupby(key).tail(1).set_index(key)["result"]
    assert (nd.set_index(key)["operand_a"] == acc_rows.reindex(nd.set_index(key).index)).all()
    kinds = set("|".join(nd["overflow"]).split("|")) - {""}
    assert kinds <= {"acc_saturate", "pre_add_saturate", "clamp_low", "clamp_high"}
    assert {"acc_saturate", "pre_add_saturate"} <= kinds


def test_layer_rows(eventful: tuple, tmp_path: Path) -> None:
    net, cfg, x, res = eventful
    df = read_trace(write_trace(res, net, cfg, None, tmp_path, "layer", "", "csv").path)
    assert len(df) == x.shape[0] * len(res.layers) * 3  # mac_array, pre_add, requantizer
    mac = df[df.unit == "mac_array"]
    for lr in res.layers:
        rows = mac[(mac.module == lr.module) & (mac.layer == lr.layer)].sort_values("query")
        assert (rows["result"].to_numpy(int) == lr.cycles).all()
        st = lr.mac["combined"]
        assert int(rows["count"].sum()) == int(st.acc_wrap.sum() + st.acc_saturate.sum())
        pre = df[(df.unit == "pre_add") & (df.module == lr.module) & (df.layer == lr.layer)]
        assert int(pre["count"].sum()) == int(st.pre_add_events.sum())


def test_filters_restrict_rows(eventful: tuple, tmp_path: Path) -> None:
    net, cfg, x, res = eventful
    expr = "module=1, layer=feature, neuron=2:5, query=1:2, cycle=100:900"
    df = read_trace(write_trace(res, net, cfg, None, tmp_path, "cycle", expr, "parquet").path)
    assert len(df) > 0
    assert set(df["module"]) == {1} and set(df["layer"]) == {"feature"}
    assert set(df["query"]) <= {1, 2}
    assert df["cycle"].between(100, 900).all()
    per_neuron = df[df.neuron >= 0]
    assert per_neuron["neuron"].between(2, 5).all()
    f = parse_filter("module=0|1,layer=feature|output,query=3:,cycle=:10")
    assert f.modules == (0, 1) and f.layers == ("feature", "output")
    assert f.queries == (3, (1 << 62) - 1) and f.cycles == (0, 10)


@pytest.mark.parametrize("expr, words", [
    ("neuron=5:2", "start 5 is after end 2"),
    ("neurons=0:3", "unknown key 'neurons'"),
    ("layer=hidden", "feature | output"),
    ("query=-1", "not N, A:B"),
    ("cycle=a:b", "not N, A:B"),
    ("module", "not key=value"),
    ("query=0,query=1", "given twice"),
    ("query=0,,cycle=1", "empty item"),
    ("path=both", "combined | excitatory | inhibitory"),
    ("cycle=:", "not N, A:B"),
])
def test_bad_filters_are_clear_errors(expr: str, words: str) -> None:
    with pytest.raises(TraceError, match=words.replace("|", r"\|")):
        parse_filter(expr)


def test_filters_that_select_nothing(eventful: tuple, tmp_path: Path) -> None:
    net, cfg, x, res = eventful
    for level, expr, words in [
        ("neuron", "module=5", "modules 0..1"),
        ("neuron", "query=3", "queries 0..2"),
        ("layer", "neuron=0:3", "neuron filter needs"),
        ("op", "neuron=10", "neurons 0..9"),
        ("op", "path=excitatory", "weight paths are combined"),
        ("neuron", "path=combined", "covers all weight paths"),
    ]:
        with pytest.raises(TraceError, match=words):
            write_trace(res, net, cfg, None, tmp_path, level, expr)
    with pytest.raises(TraceError, match="choose one of"):
        write_trace(res, net, cfg, None, tmp_path, "cycles")
    with pytest.raises(TraceError, match="choose one of"):
        write_trace(res, net, cfg, None, tmp_path, "op", "", "feather")
    assert not list(tmp_path.iterdir())


def test_row_limit_stops_before_writing(eventful: tuple, tmp_path: Path) -> None:
    net, cfg, x, res = eventful
    full = write_trace(res, net, cfg, None, tmp_path / "ok", "cycle", "", "csv")
    with pytest.raises(TraceLimitError, match="narrow it with --trace-filter") as ei:
        write_trace(res, net, cfg, None, tmp_path / "no", "cycle", "", "csv",
                    max_rows=full.rows - 1)
    assert f"{full.rows:,} rows" in str(ei.value)
    assert not (tmp_path / "no").exists() or not list((tmp_path / "no").iterdir())
    exact = write_trace(res, net, cfg, None, tmp_path / "ok2", "cycle", "", "csv",
                        max_rows=full.rows)
    assert exact.rows == full.rows


def test_streamed_in_chunks_and_formats_agree(eventful: tuple, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    net, cfg, x, res = eventful
    whole = read_trace(write_trace(res, net, cfg, None, tmp_path / "a", "cycle").path)
    monkeypatch.setattr(tr.step_levels, "CHUNK_ROWS", 500)  # read by the op/cycle generators
    s = write_trace(res, net, cfg, None, tmp_path / "b", "cycle", "", "parquet")
    assert pq.ParquetFile(s.path).num_row_groups > 3
    chunked = read_trace(s.path)
    csv = read_trace(write_trace(res, net, cfg, None, tmp_path / "c", "cycle", "", "csv").path)
    pd.testing.assert_frame_equal(whole, chunked)
    pd.testing.assert_frame_equal(whole, csv)


def test_empty_selection_writes_schema_only(eventful: tuple, tmp_path: Path) -> None:
    net, cfg, x, res = eventful
    total = int(res.cycles_per_query.sum())
    s = write_trace(res, net, cfg, None, tmp_path, "op", f"cycle={total + 5}:", "parquet")
    df = read_trace(s.path)
    assert len(df) == 0 and tuple(df.columns) == COLUMN_NAMES


def test_cli_helpers(eventful: tuple, tmp_path: Path) -> None:
    """add_trace_arguments / check_trace_arguments / handle_trace as `hwsim run` uses them."""
    from simulator.runner import run_job

    net, cfg, x, res = eventful
    save_npz(net, tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", x)
    p = argparse.ArgumentParser()
    p.add_argument("--config")
    p.add_argument("--model")
    p.add_argument("--input")
    p.add_argument("--out")
    p.add_argument("--set", action="append", default=[])
    add_trace_arguments(p)
    base = ["--config", "pytorch_fbgemm", "--model", str(tmp_path / "m.npz"), "--input",
            str(tmp_path / "x.npy"), "--out", str(tmp_path / "run")]
    for s in cfg_sets():
        base += ["--set", s]
    args = p.parse_args(base + ["--trace", "op", "--trace-filter", "query=0,neuron=0:3",
                                "--trace-format", "csv", "--trace-dir", str(tmp_path / "tr")])
    check_trace_arguments(args)
    out = run_job(args.config, args.model, args.input, args.out, args.set)
    summary = handle_trace(args, out)
    assert summary is not None and summary.path == tmp_path / "tr" / "trace_op.csv"
    assert summary.rows == len(read_trace(summary.path)) > 0
    assert "rows (op level, csv)" in summary.line()
    off = p.parse_args(base)
    assert handle_trace(off, out) is None
    check_trace_arguments(off)
    with pytest.raises(TraceError, match="needs --trace"):
        check_trace_arguments(p.parse_args(base + ["--trace-filter", "query=0"]))
    with pytest.raises(TraceError, match="unknown key"):
        check_trace_arguments(p.parse_args(base + ["--trace", "op", "--trace-filter", "q=0"]))
    default = p.parse_args(base + ["--trace", "layer"])
    assert tr.trace_dir(default) == Path(default.out)  # the run folder by default


def cfg_sets() -> list[str]:
    return ["accumulator.bits=17", "accumulator.overflow=saturate", "mac.lanes=4",
            "accumulator.adder_tree_width=4", "mac.pre_add_width=2", "mac.pre_add_bits=15",
            "mac.operand=raw", "weights.banks=1", "weights.word_bits=24",
            "requant.throughput=3", "requant.latency=2"]
