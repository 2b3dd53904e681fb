"""Synthetic route: determinism, layout, appearance changes, recognisability, cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from simulator.vpr import synthroute as sr
from simulator.vpr.datasets import list_traversals, load_codes, load_image, load_traversal
from simulator.vpr.preprocess import codes_to_spikes
from simulator.vpr.readout import ground_truth, recall_at_n

PLACES = 16


@pytest.fixture(scope="module")
def route(tmp_path_factory: pytest.TempPathFactory) -> sr.RouteInfo:
    out = tmp_path_factory.mktemp("route")
    return sr.generate_route(out, PLACES, ("spring", "summer", "winter"), seed=7)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_layout_is_vprtempo(route: sr.RouteInfo) -> None:
    root = route.root
    assert sorted(list_traversals(root)) == ["spring", "summer", "winter"]
    lines = (root / "synthroute-summer.csv").read_text().splitlines()
    assert lines[0] == "Image name,index"
    assert lines[1] == "place-00000.png,0" and len(lines) == PLACES + 1
    trav = load_traversal(root, "summer")
    assert len(trav) == PLACES
    img = load_image(trav.files[3])
    assert img.shape == (360, 640, 3) and img.dtype == np.uint8


def test_deterministic_and_thread_independent(route: sr.RouteInfo, tmp_path: Path) -> None:
    again = sr.generate_route(tmp_path / "a", PLACES, ("summer",), seed=7, workers=1)
    for name in ("place-00000.png", "place-00011.png"):
        assert (again.root / "summer" / name).read_bytes() == (
            route.root / "summer" / name
        ).read_bytes()
    other = sr.render_frame(PLACES, 8, "summer", 3)
    same_seed = sr.render_frame(PLACES, 7, "summer", 3)
    assert np.array_equal(same_seed, load_image(route.root / "summer" / "place-00003.png"))
    assert np.abs(other.astype(int) - same_seed.astype(int)).mean() > 5


def test_traversals_change_appearance_not_geometry(route: sr.RouteInfo) -> None:
    summer = load_image(route.root / "summer" / "place-00005.png").astype(np.float64)
    winter = load_image(route.root / "winter" / "place-00005.png").astype(np.float64)
    # winter: snow and low contrast -> brighter and flatter than summer
    assert winter.mean() > summer.mean() + 20
    assert winter.std() < summer.std()
    # dusk is dark, fall is warmer (more red than green on the ground)
    dusk = sr.render_frame(PLACES, 7, "dusk", 5).astype(np.float64)
    fall = sr.render_frame(PLACES, 7, "fall", 5).astype(np.float64)
    assert dusk.mean() < 0.6 * summer.mean()
    ground = slice(250, 320)
    assert fall[ground, :, 0].mean() > fall[ground, :, 1].mean()
    assert summer[ground, :, 1].mean() > summer[ground, :, 0].mean()


def test_recognisable_but_not_trivial(route: sr.RouteInfo) -> None:
    """Nearest neighbour on the preprocessed codes finds places across conditions, not always."""
    codes = {
        t: codes_to_spikes(load_codes(load_traversal(route.root, t), (28, 28), 15))
        for t in ("spring", "summer", "winter")
    }
    gt = ground_truth(PLACES, PLACES)
    r1 = {}
    for q in ("summer", "winter"):
        sad = -np.abs(codes[q][:, None, :] - codes["spring"][None, :, :]).sum(axis=2)
        r1[q] = recall_at_n(sad, gt, 1)
    assert r1["summer"] >= 0.5  # possible: far above chance (1/16)
    assert r1["winter"] >= 0.25
    assert min(r1.values()) < 1.0  # not trivial
    # the same place in another condition is not pixel-identical after preprocessing
    assert np.abs(codes["summer"] - codes["spring"]).mean() > 0.05


def test_viewpoint_jitter(route: sr.RouteInfo) -> None:
    a = sr.render_frame(PLACES, 7, "summer", 4, jitter=0.0)
    b = sr.render_frame(PLACES, 7, "summer", 4, jitter=0.0)
    c = load_image(route.root / "summer" / "place-00004.png")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown traversal"):
        sr.generate_route(tmp_path, 2, ("monsoon",))
    with pytest.raises(ValueError, match="places"):
        sr.generate_route(tmp_path, 0)
    with pytest.raises(ValueError, match="out of range"):
        sr.render_frame(3, 0, "summer", 3)


def test_cached_route_reuses_and_repairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sr.cache_dir() == tmp_path / "xdg" / "tempo-hwsim"
    trav = ("spring", "summer")
    root = sr.cached_route(places=4, seed=3, traversals=trav)
    assert root.parent == sr.cache_dir()
    assert len(list((root / "summer").glob("*.png"))) == 4
    digest = _digest(root)
    stamp = (root / "route.json").stat().st_mtime_ns
    assert sr.cached_route(places=4, seed=3, traversals=trav) == root
    assert (root / "route.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    (root / "summer" / "place-00002.png").unlink()  # incomplete -> regenerated
    assert sr.cached_route(places=4, seed=3, traversals=trav) == root
    assert _digest(root) == digest
    leftovers = [p.name for p in sr.cache_dir().iterdir() if p.name != root.name]
    assert leftovers == []
    assert os.stat(root).st_mode & 0o777 == 0o755


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sr.cache_dir() == tmp_path / ".cache" / "tempo-hwsim"
