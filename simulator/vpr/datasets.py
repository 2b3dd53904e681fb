"""Place datasets in VPRTempo's layout, or plain folders of images.

VPRTempo layout (what ``--data-dir`` points at)::

    DATA_DIR/
      nordland-spring.csv     # "Image name,index" header, one image file name per row
      nordland-summer.csv
      spring/  images-00001.png ...
      summer/  ...

A traversal ``summer`` is found through ``<dataset>-summer.csv`` (any dataset prefix, or the
one given) or ``summer.csv``, in DATA_DIR or DATA_DIR/dataset/; its images are in
DATA_DIR/summer/. Without a CSV, the folder's images are taken sorted by file name; a path to a
folder of images works the same way.

Selection follows VPRTempo's ``CustomImageDataset``: drop the first ``skip`` rows, keep every
``filter``-th row, then keep at most ``max_samples`` rows. Place ``i`` of a query traversal
matches place ``i`` of the database (plus ``tolerance``, see
:func:`simulator.vpr.readout.ground_truth`).

Every problem raises :class:`DatasetError` (a ``ValueError``) naming the file or folder.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .image_header import MAX_IMAGE_BYTES, image_problem
from .preprocess import PreprocessConfig, ResizeMethod, process_image
from .readout import ground_truth

__all__ = [
    "DatasetError",
    "IMAGE_SUFFIXES",
    "Traversal",
    "find_traversal",
    "ground_truth",
    "list_traversals",
    "load_codes",
    "load_image",
    "load_traversal",
    "require_places",
]

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp",
)


class DatasetError(ValueError):
    """A dataset the loader cannot use as given; the message names the file or folder."""


@dataclass(frozen=True)
class Traversal:
    """One traversal after selection.

    name:    traversal name (folder name), e.g. ``"summer"``.
    folder:  the image folder.
    files:   image paths, in place order.
    indices: int64 (N,), each image's row number in the CSV (or sorted folder) before selection.
    csv:     the CSV it came from, or None for a plain folder.
    """

    name: str
    folder: Path
    files: tuple[Path, ...]
    indices: np.ndarray
    csv: Path | None = None

    def __len__(self) -> int:
        return len(self.files)

    @property
    def source(self) -> str:
        """The file or folder to name in messages."""
        return str(self.csv if self.csv is not None else self.folder)


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file -> uint8 RGB (H, W, 3) or grey (H, W); alpha is dropped.

    Raises DatasetError naming the file if it is missing, unreadable, damaged (PNG and JPEG
    structure checked first, see :mod:`simulator.vpr.image_header`), too large or not 8-bit.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: image file not found")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise DatasetError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise DatasetError(f"{p}: larger than MAX_IMAGE_BYTES ({MAX_IMAGE_BYTES:,} bytes)")
    problem = image_problem(raw)
    if problem:
        raise DatasetError(f"{p}: not a readable image ({problem})")
    data = np.frombuffer(raw, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DatasetError(f"{p}: not a readable image (corrupt or unsupported format)")
    if img.dtype != np.uint8:
        raise DatasetError(f"{p}: {img.dtype} pixels; only 8-bit images are supported")
    if img.ndim == 3:
        if img.shape[2] == 1:
            return np.ascontiguousarray(img[..., 0])
        if img.shape[2] == 4:
            return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        if img.shape[2] == 3:
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        raise DatasetError(f"{p}: {img.shape[2]} channels; expected 1, 3 or 4")
    return img


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _csv_candidates(data_dir: Path, name: str, dataset: str | None) -> list[Path]:
    found: list[Path] = []
    for where in (data_dir, data_dir / "dataset"):
        if not where.is_dir():
            continue
        if dataset is not None:
            pats = [f"{dataset}-{name}.csv"]
        else:
            pats = [f"*-{name}.csv", f"{name}.csv"]
        for pat in pats:
            found.extend(sorted(q for q in where.glob(pat) if q.is_file()))
    return list(dict.fromkeys(found))


def find_traversal(
    data_dir: str | os.PathLike[str], name: str | None = None, dataset: str | None = None
) -> tuple[Path, Path | None]:
    """Locate a traversal: (image folder, CSV or None).

    ``name=None`` (or a ``data_dir`` that itself holds images) means a plain folder of images.
    """
    root = Path(data_dir)
    if not root.exists():
        raise DatasetError(f"{root}: no such data folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    if name is None:
        return root, None
    cands = _csv_candidates(root, name, dataset)
    if len(cands) > 1:
        listed = ", ".join(c.name for c in cands)
        raise DatasetError(
            f"{root}: several CSV files name traversal {name!r} ({listed}); give the dataset "
            "prefix to pick one"
        )
    folder = root / name
    if cands:
        return folder, cands[0]
    if folder.is_dir():
        return folder, None
    known = list_traversals(root)
    hint = f"; traversals found: {', '.join(known)}" if known else ""
    raise DatasetError(
        f"{root}: no traversal {name!r} (no {name}/ folder and no *-{name}.csv){hint}"
    )


def list_traversals(data_dir: str | os.PathLike[str]) -> list[str]:
    """Names of the traversals in ``data_dir``: CSVs ``<dataset>-<name>.csv`` or image folders."""
    root = Path(data_dir)
    names: list[str] = []
    for where in (root, root / "dataset"):
        if where.is_dir():
            for q in sorted(where.glob("*.csv")):
                stem = q.stem
                names.append(stem.split("-", 1)[1] if "-" in stem else stem)
    if root.is_dir():
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "dataset"):
            if any(_is_image(f) for f in sub.iterdir()):
                names.append(sub.name)
    return list(dict.fromkeys(n for n in names if (root / n).is_dir()))


def _read_csv(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read the CSV ({exc})") from None
    if not rows:
        raise DatasetError(f"{path}: the CSV is empty")
    first = rows[0][0].strip()
    if Path(first).suffix.lower() not in IMAGE_SUFFIXES:
        rows = rows[1:]  # header ("Image name,index")
    names = [r[0].strip() for r in rows]
    if not names:
        raise DatasetError(f"{path}: the CSV names no images")
    return names


def load_traversal(
    data_dir: str | os.PathLike[str],
    name: str | None = None,
    *,
    dataset: str | None = None,
    filter: int = 1,  # noqa: A002 - VPRTempo's name for the subsampling step
    skip: int = 0,
    max_samples: int | None = None,
) -> Traversal:
    """Find a traversal, apply skip / filter / max_samples, check that every image exists.

    Raises DatasetError naming the CSV or folder (missing images, empty folder, bad CSV).
    """
    if filter < 1:
        raise DatasetError(f"filter must be >= 1, got {filter}")
    if skip < 0:
        raise DatasetError(f"skip must be >= 0, got {skip}")
    if max_samples is not None and max_samples < 1:
        raise DatasetError(f"max_samples must be >= 1, got {max_samples}")
    folder, csv_path = find_traversal(data_dir, name, dataset)
    if csv_path is not None:
        names = _read_csv(csv_path)
        paths = [folder / n for n in names]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            shown = ", ".join(str(p) for p in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise DatasetError(
                f"{csv_path}: names {len(missing)} image(s) that do not exist: {shown}{more}"
            )
    else:
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no such image folder")
        paths = sorted((p for p in folder.iterdir() if _is_image(p)), key=lambda p: p.name)
        if not paths:
            raise DatasetError(
                f"{folder}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )
    idx = np.arange(len(paths), dtype=np.int64)[skip:][::filter]
    if max_samples is not None:
        idx = idx[:max_samples]
    if idx.size == 0:
        src = csv_path if csv_path is not None else folder
        raise DatasetError(
            f"{src}: no images left after skip={skip}, filter={filter} ({len(paths)} listed)"
        )
    trav_name = name if name is not None else folder.name
    return Traversal(trav_name, folder, tuple(paths[i] for i in idx), idx, csv_path)


def require_places(traversal: Traversal, places: int) -> Traversal:
    """Check a (query) traversal has at least ``places`` places; return its first ``places``."""
    if len(traversal) < places:
        raise DatasetError(
            f"{traversal.source}: traversal {traversal.name!r} has {len(traversal)} places "
            f"after selection, but the model has {places}"
        )
    return Traversal(
        traversal.name, traversal.folder, traversal.files[:places],
        traversal.indices[:places], traversal.csv,
    )


def _check_size(shape: tuple[int, int], first: tuple[Path, tuple[int, int]] | None,
                path: Path) -> tuple[Path, tuple[int, int]]:
    if first is None:
        return path, shape
    if shape != first[1]:
        raise DatasetError(
            f"{path}: image is {shape[1]}x{shape[0]} but {first[0]} is "
            f"{first[1][1]}x{first[1][0]}; a traversal's images must all have one size"
        )
    return first


def iter_images(traversal: Traversal) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield (path, RGB/grey uint8 image), checking every image has the first one's size."""
    first: tuple[Path, tuple[int, int]] | None = None
    for path in traversal.files:
        img = load_image(path)
        first = _check_size((int(img.shape[0]), int(img.shape[1])), first, path)
        yield path, img


def load_codes(
    traversals: Traversal | Sequence[Traversal],
    dims: tuple[int, int] = (28, 28),
    patch: int = 15,
    resize: ResizeMethod = "torch",
    progress: bool = False,
    workers: int | None = None,
) -> np.ndarray:
    """Preprocess traversals' images -> uint8 codes (N, h*w), traversals concatenated in order.

    Within a traversal all images must have one size (DatasetError naming the odd file);
    different traversals may differ (each image is resized to ``dims``). Images are decoded
    and preprocessed on ``workers`` threads (default up to 4); the result does not depend on it.
    """
    cfg = PreprocessConfig(tuple(int(d) for d in dims), int(patch), resize)  # type: ignore[arg-type]
    cfg.validate()
    travs = [traversals] if isinstance(traversals, Traversal) else list(traversals)
    total = sum(len(t) for t in travs)
    out = np.empty((total, cfg.features), dtype=np.uint8)
    n_workers = max(1, min(4, os.cpu_count() or 1)) if workers is None else max(1, int(workers))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="images", unit="img", leave=False)

    def one(path: Path) -> tuple[tuple[int, int], np.ndarray]:
        img = load_image(path)
        codes = process_image(img, cfg.dims, cfg.patch, cfg.resize).reshape(-1)
        return (int(img.shape[0]), int(img.shape[1])), codes

    i = 0
    try:
        with ThreadPoolExecutor(n_workers) as pool:
            for trav in travs:
                first: tuple[Path, tuple[int, int]] | None = None
                for path, (shape, codes) in zip(
                    trav.files, pool.map(one, trav.files), strict=True
                ):
                    first = _check_size(shape, first, path)
                    out[i] = codes
                    i += 1
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out
