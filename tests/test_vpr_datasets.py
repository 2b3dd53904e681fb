"""VPRTempo-layout datasets, plain folders, bad input, ground truth and Recall@N readout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from simulator.vpr import datasets as ds
from simulator.vpr import readout as ro
from simulator.vpr.preprocess import process_image


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _image(seed: int, shape: tuple[int, int] = (24, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3)).astype(np.uint8)


def _layout(root: Path, name: str = "summer", n: int = 6, prefix: str = "nordland") -> list[str]:
    """VPRTempo layout: <prefix>-<name>.csv (header + names, not in sorted order) + <name>/."""
    names = [f"images-{i:05d}.png" for i in range(n)]
    order = names[::-1]  # CSV order differs from the sorted order on purpose
    for i, fname in enumerate(order):
        _write(root / name / fname, _image(100 * len(name) + i))
    csv = root / f"{prefix}-{name}.csv"
    csv.write_text("Image name,index\n" + "".join(f"{f},{i}\n" for i, f in enumerate(order)))
    return order


def test_load_image_converts_bgr_to_rgb(tmp_path: Path) -> None:
    red = np.zeros((4, 4, 3), dtype=np.uint8)
    red[..., 0] = 255
    _write(tmp_path / "red.png", red)
    assert np.array_equal(ds.load_image(tmp_path / "red.png"), red)
    grey = np.full((3, 5), 77, dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    assert ds.load_image(tmp_path / "g.png").shape == (3, 5)


def test_vprtempo_layout_csv_order_and_selection(tmp_path: Path) -> None:
    order = _layout(tmp_path, "summer", 10)
    trav = ds.load_traversal(tmp_path, "summer")
    assert [p.name for p in trav.files] == order
    assert trav.csv == tmp_path / "nordland-summer.csv"
    assert trav.indices.tolist() == list(range(10))
    # VPRTempo order: drop `skip` rows, then every `filter`-th, then at most max_samples
    sel = ds.load_traversal(tmp_path, "summer", skip=1, filter=3, max_samples=2)
    assert sel.indices.tolist() == [1, 4]
    assert [p.name for p in sel.files] == [order[1], order[4]]
    assert ds.list_traversals(tmp_path) == ["summer"]


def test_csv_in_dataset_subfolder_and_explicit_prefix(tmp_path: Path) -> None:
    _layout(tmp_path, "winter", 3)
    (tmp_path / "dataset").mkdir()
    (tmp_path / "nordland-winter.csv").rename(tmp_path / "dataset" / "nordland-winter.csv")
    trav = ds.load_traversal(tmp_path, "winter", dataset="nordland")
    assert len(trav) == 3 and trav.csv is not None and trav.csv.parent.name == "dataset"


def test_plain_folder_sorted_by_name(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "c.png"):
        _write(tmp_path / "imgs" / name, _image(len(name)))
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    by_name = ds.load_traversal(tmp_path, "imgs")
    direct = ds.load_traversal(tmp_path / "imgs")
    assert [p.name for p in by_name.files] == ["a.jpg", "b.png", "c.png"]
    assert direct.files == by_name.files and direct.csv is None


def test_load_codes_matches_process_image(tmp_path: Path) -> None:
    order = _layout(tmp_path, "summer", 4)
    trav = ds.load_traversal(tmp_path, "summer")
    codes = ds.load_codes(trav, (6, 8), 3, workers=2)
    assert codes.shape == (4, 48) and codes.dtype == np.uint8
    for i, fname in enumerate(order):
        img = ds.load_image(tmp_path / "summer" / fname)
        assert np.array_equal(codes[i], process_image(img, (6, 8), 3).reshape(-1))
    assert np.array_equal(codes, ds.load_codes(trav, (6, 8), 3, workers=1))


# ---------------------------------------------------------------------------- bad input


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    order = _layout(tmp_path, "summer", 3)
    bad = tmp_path / "summer" / order[1]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    trav = ds.load_traversal(tmp_path, "summer")
    with pytest.raises(ds.DatasetError, match=order[1]):
        ds.load_codes(trav, (6, 8), 3)
    empty = tmp_path / "summer" / order[2]
    empty.write_bytes(b"")
    with pytest.raises(ds.DatasetError, match="not a readable image"):
        ds.load_image(empty)


def test_csv_naming_missing_files(tmp_path: Path) -> None:
    order = _layout(tmp_path, "summer", 3)
    (tmp_path / "summer" / order[0]).unlink()
    with pytest.raises(ds.DatasetError) as err:
        ds.load_traversal(tmp_path, "summer")
    msg = str(err.value)
    assert "nordland-summer.csv" in msg and order[0] in msg


def test_mixed_sizes_are_named(tmp_path: Path) -> None:
    order = _layout(tmp_path, "summer", 3)
    _write(tmp_path / "summer" / order[2], _image(9, (30, 32)))
    with pytest.raises(ds.DatasetError, match=f"{order[2]}.*32x30"):
        ds.load_codes(ds.load_traversal(tmp_path, "summer"), (6, 8), 3)


def test_empty_folder_and_unknown_traversal(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ds.DatasetError, match="empty.*no images"):
        ds.load_traversal(tmp_path, "empty")
    _layout(tmp_path, "summer", 2)
    with pytest.raises(ds.DatasetError, match="traversals found: summer"):
        ds.load_traversal(tmp_path, "autumn")
    with pytest.raises(ds.DatasetError, match="no such data folder"):
        ds.load_traversal(tmp_path / "nowhere", "summer")


def test_empty_csv_and_ambiguous_csvs(tmp_path: Path) -> None:
    _layout(tmp_path, "summer", 2)
    (tmp_path / "nordland-summer.csv").write_text("Image name,index\n")
    with pytest.raises(ds.DatasetError, match="names no images"):
        ds.load_traversal(tmp_path, "summer")
    _layout(tmp_path, "summer", 2)
    (tmp_path / "other-summer.csv").write_text("images-00000.png,0\n")
    with pytest.raises(ds.DatasetError, match="several CSV"):
        ds.load_traversal(tmp_path, "summer")
    assert len(ds.load_traversal(tmp_path, "summer", dataset="other")) == 1


def test_query_with_fewer_places_than_model(tmp_path: Path) -> None:
    _layout(tmp_path, "summer", 4)
    trav = ds.load_traversal(tmp_path, "summer")
    assert len(ds.require_places(trav, 3)) == 3
    with pytest.raises(ds.DatasetError, match=r"nordland-summer\.csv.*4 places.*model has 5"):
        ds.require_places(trav, 5)


# ---------------------------------------------------------------------------- readout


def test_ground_truth_tolerance_and_offset() -> None:
    gt = ro.ground_truth(4, 6, tolerance=1)
    assert gt.dtype == bool and gt.shape == (4, 6)
    assert np.flatnonzero(gt[0]).tolist() == [0, 1]
    assert np.flatnonzero(gt[2]).tolist() == [1, 2, 3]
    shifted = ro.ground_truth(3, 4, tolerance=0, offset=2)
    assert [np.flatnonzero(r).tolist() for r in shifted] == [[2], [3], []]


def test_recall_at_n_and_ties_prefer_lower_index() -> None:
    gt = ro.ground_truth(3, 4)
    scores = np.array(
        [
            [9, 1, 1, 1],  # query 0: correct at rank 1
            [5, 5, 0, 0],  # query 1: tie between 0 and 1 -> place 0 wins -> wrong at N=1
            [1, 2, 0, 3],  # query 2: true place 2 ranks last
        ],
        dtype=np.int64,
    )
    assert ro.best_match(scores).tolist() == [0, 0, 3]
    assert ro.recall_at_n(scores, gt, 1) == pytest.approx(1 / 3)
    assert ro.recall_at_n(scores, gt, 2) == pytest.approx(2 / 3)
    assert ro.recalls(scores, gt, (1, 4, 10)) == {1: 1 / 3, 4: 1.0, 10: 1.0}
    assert ro.rank_places(scores)[1].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        ro.recall_at_n(scores, gt[:2], 1)


def test_queries_without_match_are_ignored() -> None:
    gt = ro.ground_truth(3, 4, offset=2)  # the last query's place is outside the database
    scores = np.array([[0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]])
    assert ro.recall_at_n(scores, gt, 1) == 1.0  # query 2 would be wrong but has no match
    assert np.isnan(ro.recall_at_n(scores, np.zeros((3, 4), dtype=bool), 1))


def test_pr_curve_single_match() -> None:
    gt = ro.ground_truth(4, 4)
    scores = np.array(
        [[0.9, 0, 0, 0], [0, 0.8, 0, 0], [0, 0, 0.1, 0.7], [0, 0, 0, 0.2]], dtype=np.float64
    )
    pr = ro.pr_curve(scores, gt, n_thresh=5)
    assert pr.precision[0] == 1.0 and pr.recall[0] == 0.0
    assert pr.recall[-1] == pytest.approx(0.75)  # 3 of 4 best matches are right
    assert pr.precision[-1] == pytest.approx(0.75)
    assert pr.recall_at_precision(1.0) == pytest.approx(0.5)  # 0.9 and 0.8 before the 0.7 miss
