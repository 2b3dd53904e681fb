"""A catalogue of bad invocations across every command (issue 7, item 5).

Each must exit 2 with exactly one stderr line ``hwsim: error: ...``, no traceback, nothing on
stdout, and leave the whole work folder (an earlier run's result set, a vectors folder, the
model, inputs and dataset) byte-for-byte as it was. Tiny models keep the file fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main
from simulator.loaders import save_npz
from simulator.network import make_combined_network
from simulator.vpr.synthroute import generate_route

K0 = 32
PLACES = 5


def _layer(rng: np.random.Generator, n_out: int, n_in: int) -> dict:
    return {"weight": rng.integers(-128, 128, (n_out, n_in)).astype(np.int8),
            "scale": rng.uniform(0.002, 0.01, n_out), "output_scale": 0.05,
            "output_zero_point": 3}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = tmp_path_factory.mktemp("catalogue")
    rng = np.random.default_rng(0)
    mod = {"input_scale": 1 / 255, "input_zero_point": 0,
           "feature": _layer(rng, 2 * K0, K0), "output": _layer(rng, PLACES, 2 * K0)}
    save_npz(make_combined_network([mod]), w / "m.npz", compress=False)
    np.save(w / "x.npy", rng.random((4, K0)).astype(np.float32))
    (w / "bad.npy").write_text("0.5, 0.25\n")
    (w / "afile").write_text("a file, not a folder")
    (w / "bad.toml").write_text("[accumulator]\nbits = 'many'\n")
    (w / "foreign").mkdir()
    (w / "foreign" / "keep.txt").write_text("mine")
    generate_route(w / "route", 4, ("spring", "summer"), seed=1)
    assert main(["run", "--config", "pytorch_fbgemm", "--model", str(w / "m.npz"), "--input",
                 str(w / "x.npy"), "--out", str(w / "out"), "--quiet", "--trace",
                 "neuron"]) == 0
    assert main(["vectors", "--config", "pytorch_fbgemm", "--model", str(w / "m.npz"),
                 "--input", str(w / "x.npy"), "--out", str(w / "vec"), "--layer",
                 "output"]) == 0
    (w / "noreport").mkdir()
    rep = json.loads((w / "out" / "report.json").read_text())
    (w / "damaged").mkdir()
    (w / "damaged" / "report.json").write_text("{ not json")
    for i, (path, value) in enumerate(BAD_FIELDS):
        d = w / f"typed{i}"
        d.mkdir()
        bad = json.loads(json.dumps(rep))
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        (d / "report.json").write_text(json.dumps(bad))
    old = json.loads(json.dumps(rep))
    for ov in old["overflow"].values():
        del ov["per_neuron"]
    (w / "old").mkdir()
    (w / "old" / "report.json").write_text(json.dumps(old))
    return w


# a report.json field of the wrong type must be one line naming it, never a traceback
BAD_FIELDS: list[tuple[tuple[str, ...], object]] = [
    (("queries",), "6"),
    (("model", "modules"), "1"),
    (("input", "clamp_low"), 1.5),
    (("overflow", "0/feature", "acc_wrap"), "3"),
    (("overflow", "0/feature", "first"), {"cycle": "soon"}),
    (("overflow", "0/feature", "acc_abs_percentiles"), {"50": "x"}),
    (("overflow", "0/feature", "partial_sum_range"), [1]),
    (("overflow", "0/feature", "per_neuron"), {"acc": [[0, "x"]]}),
    (("overflow", "0/feature", "acc_bits"), None),
    (("cycles", "per_query"), [1, "a"]),
    (("cycles", "per_layer", "0/feature", "per_query_mean"), "x"),
    (("cycles", "clock_mhz"), "fast"),
    (("memory", "weight_bytes_read"), []),
    (("energy", "total_uj"), "x"),
    (("layers", "0/feature", "paths"), "combined"),
    (("layers", "0/feature", "output_code_range"), "0..255"),
    (("notes",), [1]),
    (("tool",), "hwsim"),
    (("overflow",), []),
    (("files",), "outputs.npy"),
]

RUN = ["run", "--config", "pytorch_fbgemm", "--model", "{w}/m.npz", "--quiet"]
RUN_X = [*RUN, "--input", "{w}/x.npy", "--out", "{w}/out"]
RUN_NEW = [*RUN, "--input", "{w}/x.npy", "--out", "{w}/new"]
RUN_IMG = [*RUN, "--data-dir", "{w}/route", "--query", "summer", "--out", "{w}/out"]
TRAIN = ["train", "--data-dir", "{w}/route", "--database", "spring", "--places", "4",
         "--dims", "4,8", "--patch", "3", "--epochs", "1", "--quiet"]
VEC = ["vectors", "--config", "pytorch_fbgemm", "--model", "{w}/m.npz", "--input",
       "{w}/x.npy"]

CASES: dict[str, list[str]] = {
    # hwsim itself
    "no-command": [],
    "unknown-command": ["frobnicate"],
    # run: options
    "run-missing-required": ["run", "--config", "pytorch_fbgemm"],
    "run-unknown-option": [*RUN_X, "--frob"],
    "run-both-inputs": [*RUN_X, "--data-dir", "{w}/route"],
    "run-no-input": [*RUN, "--out", "{w}/out"],
    "run-tolerance-negative": [*RUN_IMG, "--tolerance", "-1"],
    "run-tolerance-text": [*RUN_IMG, "--tolerance", "one"],
    "run-patch-even": [*RUN_IMG, "--patch", "4"],
    "run-patch-one": [*RUN_IMG, "--patch", "1"],
    "run-patch-text": [*RUN_IMG, "--patch", "x"],
    "run-patch-too-wide": [*RUN_IMG, "--dims", "4,8", "--patch", "99"],
    "run-dims-text": [*RUN_IMG, "--dims", "a,b"],
    "run-dims-one": [*RUN_IMG, "--dims", "8"],
    "run-dims-zero": [*RUN_IMG, "--dims", "0,8"],
    "run-dims-mismatch": [*RUN_IMG, "--dims", "5,5"],
    "run-cross-check-negative": [*RUN_X, "--cross-check", "-1"],
    "run-cross-check-text": [*RUN_X, "--cross-check", "x"],
    "run-cross-check-zero": [*RUN_X, "--cross-check", "0"],
    "run-max-samples-zero": [*RUN_IMG, "--max-samples", "0"],
    "run-query-without-data-dir": [*RUN_X, "--query", "summer"],
    "run-patch-without-data-dir": [*RUN_X, "--patch", "5"],
    "run-set-bad-value": [*RUN_X, "--set", "accumulator.bits=abc"],
    "run-set-unknown-key": [*RUN_X, "--set", "nosuch.key=1"],
    "run-config-missing": ["run", "--config", "nosuch", *RUN_X[3:]],
    "run-config-invalid": ["run", "--config", "{w}/bad.toml", *RUN_X[3:]],
    "run-model-missing": [*RUN_X[:3], "--model", "{w}/nosuch.npz", *RUN_X[5:]],
    "run-input-missing": [*RUN, "--input", "{w}/nosuch.npy", "--out", "{w}/out"],
    "run-input-text": [*RUN, "--input", "{w}/bad.npy", "--out", "{w}/out"],
    "run-data-dir-missing": [*RUN, "--data-dir", "{w}/nosuch", "--query", "summer", "--dims",
                             "4,8", "--out", "{w}/out"],
    "run-query-missing": [*RUN, "--data-dir", "{w}/route", "--query", "winter", "--dims",
                          "4,8", "--out", "{w}/out"],
    "run-error-overflow": [*RUN_X, "--set", "accumulator.bits=8", "--set",
                           "accumulator.overflow=error"],
    # run: the output folder
    "run-out-empty": [*RUN, "--input", "{w}/x.npy", "--out", ""],
    "run-out-is-file": [*RUN, "--input", "{w}/x.npy", "--out", "{w}/afile"],
    "run-out-below-file": [*RUN, "--input", "{w}/x.npy", "--out", "{w}/afile/sub"],
    # run: traces
    "run-trace-level": [*RUN_X, "--trace", "everything"],
    "run-trace-format": [*RUN_X, "--trace", "op", "--trace-format", "xml"],
    "run-trace-filter-alone": [*RUN_X, "--trace-filter", "query=0"],
    "run-trace-filter-key": [*RUN_X, "--trace", "op", "--trace-filter", "q=0"],
    "run-trace-filter-range": [*RUN_X, "--trace", "op", "--trace-filter", "query=5:2"],
    "run-trace-filter-layer": [*RUN_X, "--trace", "neuron", "--trace-filter", "layer=nope"],
    "run-trace-filter-no-query": [*RUN_X, "--trace", "op", "--trace-filter", "query=9"],
    "run-trace-filter-neuron-at-layer": [*RUN_X, "--trace", "layer", "--trace-filter",
                                         "neuron=0:3"],
    "run-trace-rows-zero": [*RUN_X, "--trace", "op", "--max-trace-rows", "0"],
    "run-trace-rows-limit": [*RUN_X, "--trace", "cycle", "--max-trace-rows", "10"],
    "run-trace-rows-limit-new": [*RUN_NEW, "--trace", "cycle", "--max-trace-rows", "10"],
    "run-trace-dir-empty": [*RUN_X, "--trace", "op", "--trace-dir", ""],
    "run-trace-dir-file": [*RUN_X, "--trace", "op", "--trace-dir", "{w}/afile"],
    # demo (all refused before the route is generated)
    "demo-trace-rows-zero": ["demo", "--quiet", "--out", "{w}/d", "--trace", "op",
                             "--max-trace-rows", "0"],
    "demo-trace-filter": ["demo", "--quiet", "--out", "{w}/d", "--trace-filter", "zzz"],
    "demo-trace-filter-off": ["demo", "--quiet", "--out", "{w}/d", "--trace", "off",
                              "--trace-filter", "query=0"],
    "demo-trace-level": ["demo", "--quiet", "--out", "{w}/d", "--trace", "all"],
    "demo-out-empty": ["demo", "--quiet", "--out", ""],
    "demo-out-file": ["demo", "--quiet", "--out", "{w}/afile"],
    "demo-config": ["demo", "--quiet", "--out", "{w}/d", "--config", "nosuch"],
    "demo-set": ["demo", "--quiet", "--out", "{w}/d", "--set", "foo=1"],
    # train
    "train-places-zero": [*TRAIN, "--out", "{w}/t.npz", "--places", "0"],
    "train-epochs-negative": [*TRAIN, "--out", "{w}/t.npz", "--epochs", "-1"],
    "train-patch-even": [*TRAIN, "--out", "{w}/t.npz", "--patch", "4"],
    "train-patch-too-wide": [*TRAIN, "--out", "{w}/t.npz", "--patch", "21"],
    "train-dims-text": [*TRAIN, "--out", "{w}/t.npz", "--dims", "a,b"],
    "train-seed-negative": [*TRAIN, "--out", "{w}/t.npz", "--seed", "-1"],
    "train-max-module-zero": [*TRAIN, "--out", "{w}/t.npz", "--max-module", "0"],
    "train-places-text": [*TRAIN, "--out", "{w}/t.npz", "--places", "many"],
    "train-out-empty": [*TRAIN, "--out", ""],
    "train-out-folder": [*TRAIN, "--out", "{w}/foreign"],
    "train-out-suffix": [*TRAIN, "--out", "{w}/t.txt"],
    "train-out-below-file": [*TRAIN, "--out", "{w}/afile/t.npz"],
    "train-database-empty": [*TRAIN, "--out", "{w}/t.npz", "--database", ","],
    "train-database-missing": [*TRAIN, "--out", "{w}/t.npz", "--database", "spring,autumn"],
    "train-data-dir-missing": ["train", "--data-dir", "{w}/nosuch", "--out", "{w}/t.npz",
                               "--quiet"],
    "train-too-many-places": [*TRAIN, "--out", "{w}/t.npz", "--places", "40"],
    # config
    "config-no-subcommand": ["config"],
    "config-unknown-subcommand": ["config", "frob"],
    "config-check-missing": ["config", "check", "nosuch"],
    "config-check-invalid": ["config", "check", "{w}/bad.toml"],
    "config-check-set": ["config", "check", "pytorch_fbgemm", "--set", "accumulator.bits=0"],
    "config-check-model": ["config", "check", "pytorch_fbgemm", "--model", "{w}/nosuch.npz"],
    # report
    "report-missing": ["report", "{w}/nosuch"],
    "report-no-report": ["report", "{w}/noreport"],
    "report-not-json": ["report", "{w}/damaged"],
    "report-plot-dir-file": ["report", "{w}/out", "--plot", "--plot-dir", "{w}/afile"],
    "report-plot-dir-empty": ["report", "{w}/out", "--plot", "--plot-dir", ""],
    "report-plot-old-report": ["report", "{w}/old", "--plot"],
    **{f"report-typed-{'.'.join(p)}": ["report", f"{{w}}/typed{i}", "--plot"]
       for i, (p, _) in enumerate(BAD_FIELDS)},
    # vectors
    "vectors-out-file": [*VEC, "--out", "{w}/afile"],
    "vectors-out-foreign": [*VEC, "--out", "{w}/foreign"],
    "vectors-out-empty": [*VEC, "--out", ""],
    "vectors-layer": [*VEC, "--out", "{w}/vec", "--layer", "middle"],
    "vectors-queries": [*VEC, "--out", "{w}/vec", "--queries", "3:99"],
    "vectors-neurons": [*VEC, "--out", "{w}/vec", "--neurons", "5:2"],
    "vectors-module": [*VEC, "--out", "{w}/vec", "--module", "x"],
    "vectors-format": [*VEC, "--out", "{w}/vec", "--format", "vhdl"],
    "vectors-overflow": [*VEC, "--out", "{w}/vec", "--set", "accumulator.bits=8", "--set",
                         "accumulator.overflow=error"],
    # bench (option errors only: nothing is timed)
    "bench-backend": ["bench", "--backend", "gpu"],
    "bench-inputs-zero": ["bench", "--inputs", "0"],
    "bench-queries-text": ["bench", "--queries", "abc"],
    "bench-unknown-option": ["bench", "--frob"],
}


def _tree(folder: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = ("-> " + os.readlink(p)) if p.is_symlink() else (
            p.read_bytes() if p.is_file() else "<dir>")
    return out


def test_catalogue_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 60
    commands = {args[0] for args in CASES.values() if args}
    assert {"run", "demo", "train", "config", "report", "vectors", "bench"} <= commands


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_invocation_is_one_line(work: Path, case: str, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(work)
    argv = [a.replace("{w}", str(work)) for a in CASES[case]]
    before = _tree(work)
    capsys.readouterr()
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 2, (rc, captured.err, captured.out)
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("hwsim: error: "), lines[0]
    assert "Traceback" not in captured.err
    assert captured.out == "", captured.out
    assert _tree(work) == before
