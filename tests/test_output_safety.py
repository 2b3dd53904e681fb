"""Output safety (issue 7, docs/security.md): writes stay inside the output folder, are never
redirected by a planted symlink, land as one result set or not at all, and two jobs on one
folder never mix their files.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main
from simulator.loaders import save_npz
from simulator.network import make_combined_network
from simulator.outputs import LOCK_NAME, STAGE_PREFIX, OutputError, ResultSet
from simulator.outputs import resultset as rsmod
from simulator.trace import read_trace

K0 = 32
PLACES = 5
ROOT = Path(__file__).resolve().parent.parent
RUN_SET = {"outputs.npy", "predictions.npy", "scores.npy", "report.json"}


def _layer(rng: np.random.Generator, n_out: int, n_in: int) -> dict:
    return {"weight": rng.integers(-128, 128, (n_out, n_in)).astype(np.int8),
            "scale": rng.uniform(0.002, 0.01, n_out), "output_scale": 0.05,
            "output_zero_point": 3}


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    """m.npz (32 -> 64 -> 5), x.npy (4 queries), and an 'outside' file a symlink could hit."""
    rng = np.random.default_rng(0)
    mod = {"input_scale": 1 / 255, "input_zero_point": 0,
           "feature": _layer(rng, 2 * K0, K0), "output": _layer(rng, PLACES, 2 * K0)}
    save_npz(make_combined_network([mod]), tmp_path / "m.npz", compress=False)
    np.save(tmp_path / "x.npy", rng.random((4, K0)).astype(np.float32))
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "victim.txt").write_text("precious")
    return tmp_path


def _run(work: Path, out: Path | str, *extra: str) -> int:
    return main(["run", "--config", "pytorch_fbgemm", "--model", str(work / "m.npz"),
                 "--input", str(work / "x.npy"), "--out", str(out), "--quiet", *extra])


def _tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry below folder: file bytes, or the target of a symlink."""
    out: dict[str, bytes | str] = {}
    if not folder.exists():
        return out
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes()
        else:
            out[rel] = "<dir>"
    return out


def _no_stage_left(folder: Path) -> None:
    left = [p.name for p in folder.iterdir() if p.name.startswith(".hwsim")]
    assert not left, left


def _set_is_consistent(out: Path) -> dict:
    """report.json lists exactly the run files present, and every one is readable."""
    rep = json.loads((out / "report.json").read_text())
    listed = set(rep["files"])
    present = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert listed | {"report.json"} <= present
    for name in listed:
        p = out / name
        assert p.is_file() and not p.is_symlink()
        if name.endswith(".npy"):
            np.load(p, allow_pickle=False)
        elif name.endswith((".parquet", ".csv")):
            read_trace(p)
        else:
            json.loads(p.read_text())
    return rep


def _one_error(capsys: pytest.CaptureFixture[str], *frags: str) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwsim: error: "), err
    assert "Traceback" not in err
    for f in frags:
        assert f in lines[0], lines[0]
    return lines[0]


# --- symlinks planted in the output folder ------------------------------------------------


def _plant(folder: Path, names: list[str], target: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).symlink_to(target)


RUN_NAMES = ["outputs.npy", "predictions.npy", "scores.npy", "report.json", LOCK_NAME,
             "trace_op.parquet", "trace_op.json", ".trace_op.parquet.partial",
             ".trace_op.json.partial", "trace_neuron.parquet", "events_per_neuron.png",
             "acc_range.png"]


def test_run_and_trace_replace_planted_symlinks(work: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    victim = work / "outside" / "victim.txt"
    out = work / "out"
    _plant(out, RUN_NAMES, victim)
    assert _run(work, out, "--trace", "op", "--trace-filter", "query=0,neuron=0:3") == 0
    assert victim.read_text() == "precious"
    rep = _set_is_consistent(out)
    assert set(rep["files"]) == {"outputs.npy", "predictions.npy", "scores.npy",
                                 "trace_op.parquet", "trace_op.json"}
    for n in RUN_NAMES:
        p = out / n
        # final names are regular files now; stale names of the old set (and the old fixed
        # temporary names, not ours) are left or removed, never written through
        assert not (p.is_symlink() and p.name in rep["files"] + ["report.json"])
    assert not (out / LOCK_NAME).exists() or not (out / LOCK_NAME).is_symlink()
    _no_stage_left(out)


def test_report_plot_replaces_planted_symlinks(work: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    victim = work / "outside" / "victim.txt"
    out = work / "out"
    assert _run(work, out) == 0
    _plant(out, ["events_per_neuron.png", "acc_range.png", LOCK_NAME], victim)
    plots = work / "plots"
    _plant(plots, ["events_per_neuron.png", "acc_range.png"], victim)
    capsys.readouterr()
    assert main(["report", str(out), "--plot"]) == 0
    assert main(["report", str(out), "--plot", "--plot-dir", str(plots)]) == 0
    assert victim.read_text() == "precious"
    for d in (out, plots):
        for n in ("events_per_neuron.png", "acc_range.png"):
            assert not (d / n).is_symlink() and (d / n).read_bytes()[:4] == b"\x89PNG"
        _no_stage_left(d)


def test_vectors_replace_planted_symlinks(work: Path) -> None:
    from simulator.vectors import generate

    victim = work / "outside" / "victim.txt"
    vec = work / "vec"
    generate("pytorch_fbgemm", work / "m.npz", work / "x.npy", vec, layer="feature")
    (vec / "tb_layer.v").unlink()
    (vec / "tb_layer.v").symlink_to(victim)
    (vec / LOCK_NAME).symlink_to(victim)
    outside_manifest = work / "outside" / "manifest.json"
    outside_manifest.write_bytes((vec / "manifest.json").read_bytes())
    (vec / "manifest.json").unlink()
    (vec / "manifest.json").symlink_to(outside_manifest)
    manifest_before = outside_manifest.read_bytes()
    layer_dir = vec / "m0_feature"
    for p in layer_dir.iterdir():
        p.unlink()
    layer_dir.rmdir()
    layer_dir.symlink_to(work / "outside", target_is_directory=True)
    generate("pytorch_fbgemm", work / "m.npz", work / "x.npy", vec, layer="feature")
    assert victim.read_text() == "precious"
    assert outside_manifest.read_bytes() == manifest_before
    assert sorted(p.name for p in (work / "outside").iterdir()) == ["manifest.json",
                                                                    "victim.txt"]
    assert not (vec / "tb_layer.v").is_symlink() and not layer_dir.is_symlink()
    assert not (vec / "manifest.json").is_symlink()
    assert (layer_dir / "codes_out.hex").is_file() or any(layer_dir.iterdir())
    _no_stage_left(vec)


def test_train_model_replaces_a_planted_symlink(work: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`hwsim train --out` (write_file_atomic) replaces a symlink at the model's name."""
    from simulator.vpr.synthroute import generate_route

    victim = work / "outside" / "victim.txt"
    generate_route(work / "route", 4, ("spring",), seed=1)
    models = work / "models"
    models.mkdir()
    (models / "t.npz").symlink_to(victim)
    (models / LOCK_NAME).symlink_to(victim)
    assert main(["train", "--data-dir", str(work / "route"), "--database", "spring",
                 "--places", "4", "--dims", "4,8", "--patch", "3", "--epochs", "1", "--quiet",
                 "--out", str(models / "t.npz")]) == 0
    assert victim.read_text() == "precious"
    assert not (models / "t.npz").is_symlink()
    from simulator.loaders import load_npz

    assert load_npz(models / "t.npz").places == 4
    _no_stage_left(models)


def test_staging_names_are_unpredictable_and_inside_out(work: Path) -> None:
    names = set()
    for _ in range(3):
        with ResultSet(work / "out") as rs:
            assert rs.stage_path.parent == work / "out"
            assert rs.stage_path.name.startswith(f"{STAGE_PREFIX}{os.getpid()}-")
            assert oct(rs.stage_path.stat().st_mode & 0o777) == "0o700"
            names.add(rs.stage_path.name)
    assert len(names) == 3
    assert not (work / "out").exists()  # created for the job, removed when nothing came of it


# --- two jobs on one folder --------------------------------------------------------------


def test_busy_folder_fails_at_once_and_leaves_the_set(work: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "out"
    assert _run(work, out, "--trace", "neuron") == 0
    before = _tree(out)
    capsys.readouterr()
    with ResultSet(out):  # another job holds the folder
        assert _run(work, out, "--trace", "op", "--trace-filter", "query=0") == 2
        _one_error(capsys, str(out), "another hwsim job is writing here")
        assert main(["report", str(out), "--plot"]) == 2
        assert "another hwsim job" in capsys.readouterr().err
    assert _tree(out) == before


def test_folder_made_by_a_concurrent_job_meanwhile(work: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Two jobs find --out missing and both mkdir it: the slower one's FileExistsError is not
    an error (the folder lock decides), and it does not count the folder as its own."""
    out = work / "new" / "out"
    real_mkdir = os.mkdir

    def racing_mkdir(path, *a, **kw):  # the other job wins the race for every missing folder
        if "dir_fd" in kw:  # the staging folder inside --out: this job's own
            return real_mkdir(path, *a, **kw)
        real_mkdir(path, *a, **kw)
        raise FileExistsError(errno.EEXIST, "File exists", str(path))

    monkeypatch.setattr(rsmod.os, "mkdir", racing_mkdir)
    rs = ResultSet(out).open()
    assert rs.created == []  # made "by the other job": never removed by this one
    rs.close()
    assert out.is_dir()

    def file_appears(path, *a, **kw):  # something that is not a folder appears there
        Path(path).write_text("a file")
        raise FileExistsError(errno.EEXIST, "File exists", str(path))

    monkeypatch.setattr(rsmod.os, "mkdir", file_appears)
    with pytest.raises(OutputError, match="File exists"):
        ResultSet(work / "other").open()


def test_concurrent_runs_never_mix(work: Path) -> None:
    """Two real processes with --trace op into one --out: one set, readable, listed."""
    out = work / "out"
    cmd = [sys.executable, "-m", "simulator.cli", "run", "--config", "pytorch_fbgemm",
           "--model", str(work / "m.npz"), "--input", str(work / "x.npy"), "--out", str(out),
           "--quiet", "--trace", "op"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert any(rc == 0 for rc, _ in results), results
    for rc, err in results:
        assert rc in (0, 2), err
        if rc == 2:
            assert err.count("\n") == 1 and "another hwsim job is writing here" in err
    rep = _set_is_consistent(out)
    assert "trace_op.parquet" in rep["files"]
    _no_stage_left(out)


# --- all or nothing ----------------------------------------------------------------------


def test_failed_write_keeps_previous_set(work: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = work / "out"
    assert _run(work, out, "--trace", "neuron") == 0
    (out / "notes.txt").write_text("mine")
    before = _tree(out)
    real = ResultSet.save_npy
    calls = {"n": 0}

    def flaky(self: ResultSet, rel: str, arr: np.ndarray) -> Path:
        calls["n"] += 1
        if calls["n"] == 2:
            raise rsmod.os_error(self.final_path(rel), OSError(errno.ENOSPC, "No space"))
        return real(self, rel, arr)

    monkeypatch.setattr(ResultSet, "save_npy", flaky)
    capsys.readouterr()
    assert _run(work, out, "--trace", "op", "--trace-filter", "query=0") == 2
    _one_error(capsys, "predictions.npy", "no space left")
    assert _tree(out) == before
    _no_stage_left(out)


def test_failure_during_swap_is_reported_and_recovered(work: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An error in the middle of the swap: one line; the next job completes the set."""
    out = work / "out"
    assert _run(work, out) == 0
    real = rsmod.os.rename
    calls = {"n": 0}

    def flaky(src: str, dst: str, **kw: int) -> None:
        if kw and not src.startswith(".hwsim"):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(errno.EIO, "I/O error")
        real(src, dst, **kw)

    monkeypatch.setattr(rsmod.os, "rename", flaky)
    capsys.readouterr()
    assert _run(work, out, "--trace", "layer") == 2
    _one_error(capsys, str(out))
    monkeypatch.setattr(rsmod.os, "rename", real)
    assert _run(work, out) == 0
    rep = _set_is_consistent(out)
    assert set(rep["files"]) == {"outputs.npy", "predictions.npy", "scores.npy"}
    assert not list(out.glob("trace_*"))  # the trace of the earlier set was removed
    _no_stage_left(out)


_KILLER = textwrap.dedent("""
    import os, sys
    import numpy as np
    from simulator.outputs import ResultSet
    from simulator.outputs import resultset as rsmod
    out, when = sys.argv[1], sys.argv[2]
    rs = ResultSet(out, index="report.json", owned=lambda n: n.endswith(".npy")).open()
    rs.save_npy("outputs.npy", np.arange(3))
    rs.save_npy("new.npy", np.arange(4))
    if when == "staging":
        os._exit(9)
    real = rsmod.os.rename
    n = {"k": 0}
    def rename(src, dst, **kw):
        real(src, dst, **kw)
        if kw and not src.startswith(".hwsim"):
            n["k"] += 1
            if n["k"] == 2:
                os._exit(9)  # killed in the middle of the swap
    rsmod.os.rename = rename
    rs.commit({"schema": {"name": "test"}})
""")


@pytest.mark.parametrize("when", ["staging", "swap"])
def test_killed_job_leaves_old_set_or_rolls_forward(work: Path, when: str) -> None:
    out = work / "out"
    with ResultSet(out, index="report.json") as rs:
        rs.save_npy("outputs.npy", np.zeros(2))
        rs.save_npy("old.npy", np.zeros(1))
        rs.commit({"schema": {"name": "test"}})
    old = _tree(out)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(out), when], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    strays = [p.name for p in out.iterdir() if p.name.startswith(STAGE_PREFIX)]
    assert len(strays) == 1
    if when == "staging":
        assert {k: v for k, v in _tree(out).items() if not k.startswith(".hwsim")} == old
    with ResultSet(out, index="report.json") as rs:  # the next job cleans up first
        assert rs.recovered == strays
    _no_stage_left(out)
    rep = json.loads((out / "report.json").read_text())
    if when == "staging":
        assert _tree(out) == old
    else:  # rolled forward: the killed job's set, complete, the old file gone
        assert rep["files"] == ["new.npy", "outputs.npy"]
        assert np.load(out / "new.npy").tolist() == [0, 1, 2, 3]
        assert not (out / "old.npy").exists()


def test_strays_not_provably_ours_are_kept(work: Path) -> None:
    out = work / "out"
    out.mkdir()
    alive = out / f"{STAGE_PREFIX}1-{'0' * 16}"  # pid 1 is alive
    alive.mkdir()
    (alive / rsmod.MARKER_NAME).write_text(json.dumps(
        {"pid": 1, "host": rsmod.host(), "stage": alive.name}))
    unmarked = out / f"{STAGE_PREFIX}999999999-{'1' * 16}"
    unmarked.mkdir()
    with ResultSet(out) as rs:
        assert rs.recovered == []
    assert alive.is_dir() and unmarked.is_dir()


# --- the output folder itself ---------------------------------------------------------------


def test_out_forms(work: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(work)
    assert _run(work, ".") == 0
    assert (work / "report.json").is_file()
    assert _run(work, "rel/deeper") == 0
    assert (work / "rel" / "deeper" / "report.json").is_file()
    capsys.readouterr()
    assert _run(work, "") == 2
    _one_error(capsys, "--out ''")
    (work / "afile").write_text("x")
    assert _run(work, "afile") == 2
    _one_error(capsys, "afile", "not a folder")
    assert _run(work, "afile/sub") == 2
    _one_error(capsys, "afile", "is a file")
    assert (work / "afile").read_text() == "x"


@pytest.fixture()
def mount(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs mounted at a fresh folder (skipped where mounting is not allowed)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_out_on_a_mount_point(work: Path, mount: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(work, mount, "--trace", "neuron") == 0
    _set_is_consistent(mount)
    _no_stage_left(mount)


def test_disk_full_and_read_only(work: Path, mount: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(work, mount / "run") == 0
    before = _tree(mount / "run")
    with open(mount / "filler", "wb") as fh:  # fill the file system
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    capsys.readouterr()
    assert _run(work, mount / "run", "--trace", "neuron") == 2
    _one_error(capsys, "no space left")
    assert _tree(mount / "run") == before
    (mount / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    assert _run(work, mount / "run") == 2
    _one_error(capsys, "read-only file system")
    assert _run(work, mount / "new") == 2
    _one_error(capsys, "read-only file system")
    assert _tree(mount / "run") == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_permission_denied(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = work / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert _run(work, ro / "out") == 2
        _one_error(capsys, "permission denied")
    finally:
        ro.chmod(0o700)


def test_output_error_is_a_value_error() -> None:
    assert issubclass(OutputError, ValueError)
    with pytest.raises(OutputError, match="empty path"):
        ResultSet("").open()


_CLI_KILLED = textwrap.dedent("""
    import os, signal, sys
    from simulator.cli import main
    from simulator.outputs import ResultSet
    real = ResultSet.save_npy
    calls = {"n": 0}
    def dying(self, rel, arr):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        return real(self, rel, arr)
    ResultSet.save_npy = dying
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_signal_during_a_run_keeps_previous_set(work: Path, sig: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A real `hwsim run` process killed while staging: the old set stays; SIGTERM cleans up
    at once, SIGKILL leaves a stray that the next run proves dead and removes."""
    out = work / "out"
    assert _run(work, out, "--trace", "neuron") == 0
    before = _tree(out)
    args = ["run", "--config", "pytorch_fbgemm", "--model", str(work / "m.npz"), "--input",
            str(work / "x.npy"), "--out", str(out), "--quiet", "--trace", "layer"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _CLI_KILLED, sig, *args], env=env,
                          capture_output=True, text=True, timeout=120)
    if sig == "SIGKILL":
        assert proc.returncode == -9
        assert [p.name for p in out.iterdir() if p.name.startswith(STAGE_PREFIX)]
    else:
        assert proc.returncode == 143, proc.stderr
        assert proc.stderr.strip() == "hwsim: terminated (nothing was published)"
        assert _tree(out) == before
    assert {k: v for k, v in _tree(out).items() if not k.startswith(".hwsim")} == before
    assert _run(work, out) == 0  # the next run removes the stray and publishes its own set
    _no_stage_left(out)
    assert set(_set_is_consistent(out)["files"]) == RUN_SET - {"report.json"}


def test_crafted_journal_cannot_reach_outside(work: Path) -> None:
    """A planted 'stray' whose journal names ../ paths is removed, never applied."""
    out = work / "out"
    out.mkdir()
    stray = out / f"{STAGE_PREFIX}999999999-{'2' * 16}"
    stray.mkdir()
    (stray / rsmod.MARKER_NAME).write_text(json.dumps(
        {"pid": 999999999, "host": rsmod.host(), "stage": stray.name}))
    (stray / rsmod.JOURNAL_NAME).write_text(json.dumps(
        {"names": ["../outside/victim.txt"], "index": None,
         "stale": ["../outside/victim.txt", "../outside"]}))
    with ResultSet(out) as rs:
        assert rs.recovered == [stray.name]
    assert (work / "outside" / "victim.txt").read_text() == "precious"
    _no_stage_left(out)


@pytest.mark.parametrize("same", [True, False])
def test_trace_dir_same_or_separate(work: Path, same: bool) -> None:
    out = work / "out"
    tdir = Path(str(out) + "/") if same else work / "traces"
    assert _run(work, out, "--trace", "layer", "--trace-dir", str(tdir)) == 0
    rep = _set_is_consistent(out)
    if same:
        assert {"trace_layer.parquet", "trace_layer.json"} <= set(rep["files"])
    else:
        assert not (set(rep["files"]) & {"trace_layer.parquet", "trace_layer.json"})
        assert read_trace(tdir / "trace_layer.parquet") is not None
        _no_stage_left(tdir)
    _no_stage_left(out)


def test_report_names_an_interrupted_publish(work: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "out"
    (out / f"{STAGE_PREFIX}999999999-{'3' * 16}").mkdir(parents=True)
    assert main(["report", str(out)]) == 2
    _one_error(capsys, "no report.json here", "publishing", "next run")
