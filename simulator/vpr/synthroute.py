"""Deterministic synthetic route: a procedural landscape seen from a moving camera.

One route geometry (mountains, a forested ridge, and a near strip of trees, houses, poles,
rock cuts and lakes along a railway) is generated from ``seed``; every traversal renders the
same places under its own condition (palette, contrast, light, noise) and with its own small
viewpoint jitter. Frames are 360 x 640 RGB, written as PNG in VPRTempo's layout::

    out_dir/
      synthroute-summer.csv   ("Image name,index" rows)
      summer/place-00000.png ...
      synthroute-winter.csv
      winter/...
      route.json              (generator version, places, seed, traversals)

Everything is numpy + OpenCV; the same (places, seed, traversals, spacing) always gives the same
bytes on the same library versions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import cv2
import numpy as np

GENERATOR_VERSION = 2
FRAME_H = 360
FRAME_W = 640
HORIZON = 196
DATASET_NAME = "synthroute"
TRAVERSALS: tuple[str, ...] = ("spring", "summer", "fall", "winter", "dusk")
DEFAULT_TRAVERSALS: tuple[str, ...] = ("spring", "fall", "summer", "winter")

# Material ids of the label maps.
SKY, ROCK, SNOWCAP, RIDGE, GRASS, RAIL, CONIFER, LEAVES, TRUNK = range(9)
WALL_RED, WALL_YELLOW, WALL_WHITE, ROOF, WINDOW, POLE, BOULDER, WATER, CUT = range(9, 18)
N_MATERIALS = 18

_BASE = {
    SKY: (135, 180, 230), ROCK: (112, 106, 100), SNOWCAP: (236, 238, 242),
    RIDGE: (44, 84, 40), GRASS: (92, 150, 62), RAIL: (118, 108, 98),
    CONIFER: (30, 72, 38), LEAVES: (64, 132, 52), TRUNK: (84, 62, 42),
    WALL_RED: (168, 42, 36), WALL_YELLOW: (222, 196, 110), WALL_WHITE: (228, 228, 222),
    ROOF: (58, 58, 66), WINDOW: (40, 52, 72), POLE: (92, 82, 70), BOULDER: (132, 130, 124),
    WATER: (58, 98, 150), CUT: (96, 92, 88),
}


@dataclass(frozen=True)
class Condition:
    """How one traversal looks: palette overrides (RGB), global tone and noise.

    contrast: factor towards the frame mean (1 = unchanged); brightness: multiplier;
    tint: RGB multipliers; noise: Gaussian sigma in 8-bit units; blur: Gaussian sigma (px);
    clouds: cloud cover 0..1; lit_windows: windows glow (dusk).
    """

    name: str
    palette: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    sky_top: tuple[int, int, int] = (90, 140, 215)
    contrast: float = 1.0
    brightness: float = 1.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    noise: float = 0.0
    blur: float = 0.0
    clouds: float = 0.3
    lit_windows: bool = False


CONDITIONS: Mapping[str, Condition] = MappingProxyType({
    "summer": Condition("summer"),
    "spring": Condition(
        "spring",
        palette={GRASS: (128, 184, 84), LEAVES: (128, 192, 96), RIDGE: (60, 104, 52),
                 SKY: (150, 196, 236), ROCK: (118, 112, 106)},
        sky_top=(110, 160, 228), brightness=1.05, clouds=0.45,
    ),
    "fall": Condition(
        "fall",
        palette={GRASS: (150, 128, 60), LEAVES: (206, 104, 30), RIDGE: (112, 80, 34),
                 SKY: (160, 172, 196), CONIFER: (40, 66, 36), WATER: (70, 90, 120)},
        sky_top=(120, 138, 176), contrast=0.9, tint=(1.04, 0.98, 0.9), clouds=0.6,
    ),
    "winter": Condition(
        "winter",
        palette={GRASS: (232, 236, 240), RIDGE: (176, 182, 188), ROCK: (160, 160, 166),
                 LEAVES: (120, 110, 100), RAIL: (196, 196, 200), ROOF: (226, 228, 234),
                 WATER: (212, 218, 226), SKY: (204, 208, 214), CONIFER: (68, 86, 78),
                 BOULDER: (222, 224, 230), CUT: (150, 148, 150)},
        sky_top=(186, 192, 200), contrast=0.55, brightness=1.0, noise=2.0, blur=1.0, clouds=0.0,
    ),
    "dusk": Condition(
        "dusk",
        palette={SKY: (226, 140, 84)},
        sky_top=(40, 50, 96), brightness=0.45, tint=(1.0, 0.9, 1.15), contrast=0.85,
        noise=4.0, blur=0.8, clouds=0.2, lit_windows=True,
    ),
})


@dataclass(frozen=True)
class RouteInfo:
    """What :func:`generate_route` wrote: folder, places, traversals, seed, timings (s)."""

    root: Path
    places: int
    traversals: tuple[str, ...]
    seed: int
    spacing: int
    dataset: str
    seconds: float

    def csv_path(self, traversal: str) -> Path:
        return self.root / f"{self.dataset}-{traversal}.csv"


def _stable_id(text: str) -> int:
    return zlib.crc32(text.encode("utf-8")) & 0x7FFFFFFF


def _fractal_profile(rng: np.random.Generator, n: int, octaves: Sequence[tuple[int, float]]) -> (
    np.ndarray
):
    """1-D fractal noise of length n: sum of linearly interpolated random knots."""
    out = np.zeros(n, dtype=np.float64)
    x = np.arange(n, dtype=np.float64)
    for period, amp in octaves:
        knots = rng.uniform(-1.0, 1.0, size=n // period + 3)
        out += amp * np.interp(x / period, np.arange(knots.size), knots)
    return out


def _noise_tile(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth value noise in [-1, 1], float32 (h, w)."""
    small = rng.uniform(-1.0, 1.0, size=(h // cell + 2, w // cell + 2)).astype(np.float32)
    big = cv2.resize(small, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[cell : cell + h, cell : cell + w], -1.0, 1.0)


@dataclass
class _World:
    """Route geometry shared by all traversals."""

    spacing: int
    near: np.ndarray  # uint8 (H, Wn) material labels of the near strip (0 = transparent)
    ridge: np.ndarray  # int (Wr,) top row of the forested ridge per column
    mountain: np.ndarray  # int (Wm,) top row of the mountains per column
    snowline: np.ndarray  # int (Wm,) rows above this are snow caps
    texture: np.ndarray  # float32 (H, T) shading texture in [-1, 1]
    grain: np.ndarray  # float32 (H, T) fine grain in [-1, 1]


PARALLAX_RIDGE = 0.4
PARALLAX_MOUNTAIN = 0.12
JITTER_MARGIN = 96


def _build_world(places: int, seed: int, spacing: int) -> _World:
    rng = np.random.default_rng([seed, 0x5EED])
    width = places * spacing + FRAME_W + 2 * JITTER_MARGIN
    near = np.zeros((FRAME_H, width), dtype=np.uint8)
    near[HORIZON:, :] = GRASS
    near[FRAME_H - 34 :, :] = RAIL
    # Route segments: each stretch has a character that sets object density and kind.
    x = 0
    objects: list[tuple[int, int, str, float]] = []  # (base_y, x, kind, size)
    while x < width:
        seg = int(rng.integers(300, 1100))
        kind = rng.choice(["forest", "field", "village", "lake", "cut", "field"])
        end = min(width, x + seg)
        if kind == "lake":
            top = HORIZON + int(rng.integers(4, 30))
            near[top : FRAME_H - 40, x:end] = WATER
            # a far shore treeline across the lake
            for tx in range(x, end, int(rng.integers(14, 30))):
                objects.append((top + 2, tx, "conifer", float(rng.uniform(0.25, 0.45))))
        elif kind == "cut":
            prof = _fractal_profile(rng, end - x, [(60, 22.0), (15, 6.0)])
            top = (HORIZON - 30 + prof).astype(int)
            bottom = FRAME_H - 36
            for i, t in enumerate(top):
                near[max(t, 0) : bottom, x + i] = CUT
            for _ in range(int((end - x) / 90)):
                bx = int(rng.integers(x, end))
                objects.append((bottom - 4, bx, "boulder", float(rng.uniform(0.4, 0.9))))
        else:
            density = {"forest": 1 / 22, "field": 1 / 120, "village": 1 / 70}[str(kind)]
            n_obj = rng.poisson(density * (end - x))
            for _ in range(int(n_obj)):
                ox = int(rng.integers(x, end))
                base = int(rng.integers(HORIZON + 8, FRAME_H - 40))
                depth = (base - HORIZON) / (FRAME_H - 40 - HORIZON)  # 0 far .. 1 near
                size = 0.35 + 0.9 * depth
                if kind == "forest":
                    okind = "conifer" if rng.random() < 0.6 else "deciduous"
                elif kind == "village":
                    okind = str(rng.choice(["house", "house", "deciduous", "pole"]))
                else:
                    okind = str(rng.choice(["deciduous", "conifer", "house", "pole", "boulder"]))
                objects.append((base, ox, okind, size * float(rng.uniform(0.8, 1.25))))
            if kind != "forest":
                # power line poles at regular spacing
                for px in range(x + int(rng.integers(0, 200)), end, 260):
                    objects.append((FRAME_H - 44, px, "pole", 1.0))
        x = end
    objects.sort(key=lambda o: o[0])
    for base, ox, okind, size in objects:
        _draw_object(near, rng, base, ox, okind, size)
    ridge_w = int(width * PARALLAX_RIDGE) + FRAME_W + 2 * JITTER_MARGIN
    ridge = HORIZON - 22 + _fractal_profile(rng, ridge_w, [(180, 16.0), (40, 7.0), (9, 3.0)])
    mount_w = int(width * PARALLAX_MOUNTAIN) + FRAME_W + 2 * JITTER_MARGIN
    mountain = HORIZON - 95 + _fractal_profile(rng, mount_w, [(260, 55.0), (70, 18.0), (15, 5.0)])
    snowline = np.full(mount_w, HORIZON - 112) + _fractal_profile(rng, mount_w, [(50, 8.0)])
    texture = _noise_tile(rng, FRAME_H, 2048, 24)
    grain = _noise_tile(rng, FRAME_H, 2048, 3)
    return _World(
        spacing, near, ridge.astype(np.int64), mountain.astype(np.int64),
        snowline.astype(np.int64), texture, grain,
    )


def _draw_object(
    near: np.ndarray, rng: np.random.Generator, base: int, x: int, kind: str, size: float
) -> None:
    """Draw one object standing on row ``base`` at column ``x`` into the label map."""
    s = size
    if kind == "conifer":
        h = int(150 * s)
        w = int(44 * s)
        cv2.rectangle(near, (x - max(1, w // 10), base - h // 6), (x + max(1, w // 10), base),
                      TRUNK, -1)
        tiers = 3
        for t in range(tiers):
            top = base - h + t * h // 4
            bot = base - h // 6 - (tiers - 1 - t) * h // 8
            half = int(w * (0.5 + 0.25 * t) / 1.0)
            pts = np.array([[x, top], [x - half, bot], [x + half, bot]], dtype=np.int32)
            cv2.fillPoly(near, [pts], CONIFER)
    elif kind == "deciduous":
        h = int(130 * s)
        r = int(38 * s)
        cv2.rectangle(near, (x - max(1, r // 6), base - h // 2), (x + max(1, r // 6), base),
                      TRUNK, -1)
        cv2.ellipse(near, (x, base - h + r), (r, int(r * 1.2)), 0, 0, 360, LEAVES, -1)
        cv2.ellipse(near, (x - r // 2, base - h + int(1.6 * r)), (int(r * 0.8), r), 0, 0, 360,
                    LEAVES, -1)
    elif kind == "house":
        w = int(rng.integers(70, 150) * s)
        h = int(rng.integers(45, 80) * s)
        wall = int(rng.choice([WALL_RED, WALL_YELLOW, WALL_WHITE, WALL_RED]))
        cv2.rectangle(near, (x - w // 2, base - h), (x + w // 2, base), wall, -1)
        roof_h = int(h * rng.uniform(0.4, 0.8))
        pts = np.array([[x - w // 2 - 4, base - h], [x + w // 2 + 4, base - h],
                        [x, base - h - roof_h]], dtype=np.int32)
        cv2.fillPoly(near, [pts], ROOF)
        n_win = max(1, w // max(1, int(34 * s)))
        for i in range(n_win):
            wx = x - w // 2 + int((i + 0.5) * w / n_win)
            ww = max(2, int(8 * s))
            cv2.rectangle(near, (wx - ww, base - int(h * 0.7)), (wx + ww, base - int(h * 0.35)),
                          WINDOW, -1)
    elif kind == "pole":
        h = int(150 * s)
        cv2.rectangle(near, (x - 2, base - h), (x + 2, base), POLE, -1)
        cv2.rectangle(near, (x - 14, base - h + 6), (x + 14, base - h + 10), POLE, -1)
    elif kind == "boulder":
        r = int(30 * s)
        cv2.ellipse(near, (x, base - r // 2), (r, r // 2 + 2), 0, 180, 360, BOULDER, -1)


def _palette(cond: Condition) -> np.ndarray:
    pal = np.zeros((N_MATERIALS, 3), dtype=np.float32)
    for mat, rgb in _BASE.items():
        pal[mat] = cond.palette.get(mat, rgb)
    if cond.lit_windows:
        pal[WINDOW] = (255 / cond.brightness, 200 / cond.brightness, 110 / cond.brightness)
    return pal


def _render(world: _World, cond: Condition, pos: float, rng: np.random.Generator) -> np.ndarray:
    """Render one frame at half resolution: float32 RGB (180, 320, 3), near-strip column pos."""
    h, w = FRAME_H // 2, FRAME_W // 2
    x0 = int(round(pos)) + JITTER_MARGIN
    rows = np.arange(0, FRAME_H, 2)[:, None]
    labels = np.full((h, w), SKY, dtype=np.uint8)
    xm = int(round(pos * PARALLAX_MOUNTAIN)) + JITTER_MARGIN
    mtop = world.mountain[xm : xm + FRAME_W : 2][None, :]
    snow = world.snowline[xm : xm + FRAME_W : 2][None, :]
    labels[rows >= mtop] = ROCK
    labels[(rows >= mtop) & (rows < snow)] = SNOWCAP
    xr = int(round(pos * PARALLAX_RIDGE)) + JITTER_MARGIN
    labels[rows >= world.ridge[xr : xr + FRAME_W : 2][None, :]] = RIDGE
    near = world.near[::2, x0 : x0 + FRAME_W : 2]
    np.copyto(labels, near, where=near != 0)
    pal = _palette(cond)
    # Sky colours: per-row gradient from sky_top to the palette's horizon colour.
    t = np.clip(rows[:, 0] / HORIZON, 0.0, 1.0).astype(np.float32)[:, None]
    top = np.asarray(cond.sky_top, dtype=np.float32)
    sky_rows = top[None, :] * (1 - t) + pal[SKY][None, :] * t  # (h, 3)
    img = pal[labels]  # float32 (h, w, 3)
    sky = labels == SKY
    img[sky] = np.broadcast_to(sky_rows[:, None, :], (h, w, 3))[sky]
    # Shading texture (moves with the near strip); the sky gets soft clouds instead.
    tw = world.texture.shape[1]
    cols = (np.arange(0, FRAME_W, 2) + x0) % tw
    shade = 1.0 + 0.16 * world.texture[::2, cols] + 0.06 * world.grain[::2, cols]
    if cond.clouds > 0:
        cl = _noise_tile(rng, h // 4, w // 4, 6)
        cl = cv2.resize(cl, (w, h), interpolation=cv2.INTER_LINEAR)
        cover = np.clip((cl - (1 - 2 * cond.clouds)) * 1.2, 0, 1) * 0.35
        shade = np.where(sky, 1.0 + cover, shade)
    else:
        shade[sky] = 1.0
    img *= shade[..., None]
    img *= np.asarray(cond.tint, dtype=np.float32) * np.float32(cond.brightness)
    if cond.contrast != 1.0:
        mean = img.mean(axis=(0, 1), keepdims=True)
        img = mean + np.float32(cond.contrast) * (img - mean)
    return img.astype(np.float32)


def _noise_bank(seed: int, traversal: str) -> np.ndarray:
    """float32 (H + 32, W + 32, 3) standard normal noise, cropped at random offsets per frame."""
    rng = np.random.default_rng([seed, _stable_id(traversal), 0xB0B])
    return rng.standard_normal((FRAME_H + 32, FRAME_W + 32, 3), dtype=np.float32)


def _finish(img: np.ndarray, cond: Condition, rng: np.random.Generator, jitter: float,
            bank: np.ndarray) -> np.ndarray:
    """Upscale x2 with viewpoint jitter (roll, zoom, vertical shift), blur, noise -> uint8."""
    h, w = FRAME_H, FRAME_W
    angle = float(rng.uniform(-1.0, 1.0)) * jitter
    zoom = 1.0 + float(rng.uniform(-0.03, 0.03)) * jitter
    dy = float(rng.uniform(-6.0, 6.0)) * jitter
    rot = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom), [0.0, 0.0, 1.0]])
    rot[1, 2] += dy
    up = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])
    m = (rot @ up)[:2]
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if cond.blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), cond.blur)
    if cond.noise > 0:
        oy, ox = (int(v) for v in rng.integers(0, 32, size=2))
        n = bank[oy : oy + h, ox : ox + w]
        out = cv2.scaleAdd(n, float(cond.noise), out)
    return np.clip(out, 0, 255).astype(np.uint8)


def render_frame(
    places: int, seed: int, traversal: str, place: int, spacing: int = 320, jitter: float = 1.0,
    world: _World | None = None, bank: np.ndarray | None = None,
) -> np.ndarray:
    """Render one frame (RGB uint8 (360, 640, 3)) of ``traversal`` at ``place`` (no files).

    ``world`` and ``bank`` are internal caches :func:`generate_route` passes to avoid rebuilding
    the route geometry and noise for every frame; leave them None.
    """
    if traversal not in CONDITIONS:
        raise ValueError(f"unknown traversal {traversal!r}; choose from {sorted(CONDITIONS)}")
    if not 0 <= place < places:
        raise ValueError(f"place {place} out of range 0..{places - 1}")
    wld = world if world is not None else _build_world(places, seed, spacing)
    cond = CONDITIONS[traversal]
    rng = np.random.default_rng([seed, _stable_id(traversal), place])
    pos = place * spacing + float(rng.uniform(-0.12, 0.12)) * spacing * jitter
    img = _render(wld, cond, pos, rng)
    if bank is None:
        bank = _noise_bank(seed, traversal)
    return _finish(img, cond, rng, jitter, bank)


def generate_route(
    out_dir: str | os.PathLike[str],
    places: int = 100,
    traversals: Sequence[str] = DEFAULT_TRAVERSALS,
    seed: int = 0,
    spacing: int = 320,
    jitter: float = 1.0,
    dataset: str = DATASET_NAME,
    workers: int | None = None,
) -> RouteInfo:
    """Write ``places`` frames per traversal in VPRTempo layout under ``out_dir``.

    Returns a :class:`RouteInfo`. ``spacing`` is the camera advance between places in
    near-strip pixels (frames are 640 wide, so 320 = half-frame overlap); ``jitter`` scales the
    viewpoint jitter (0 = none). Frames are rendered on ``workers`` threads (default: up to
    4); each frame's randomness depends only on (seed, traversal, place), so the output does
    not depend on the thread count.
    """
    t0 = time.perf_counter()
    if places < 1:
        raise ValueError(f"places must be >= 1, got {places}")
    trav = tuple(traversals)
    if not trav:
        raise ValueError("at least one traversal is needed")
    for name in trav:
        if name not in CONDITIONS:
            raise ValueError(f"unknown traversal {name!r}; choose from {sorted(CONDITIONS)}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    world = _build_world(places, seed, spacing)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1,
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
    n_workers = max(1, min(4, os.cpu_count() or 1)) if workers is None else max(1, int(workers))
    for name in trav:
        folder = root / name
        folder.mkdir(exist_ok=True)
        bank = _noise_bank(seed, name)
        names = [f"place-{p:05d}.png" for p in range(places)]

        def job(p: int, folder: Path = folder, name: str = name, bank: np.ndarray = bank) -> None:
            rgb = render_frame(places, seed, name, p, spacing, jitter, world, bank)
            path = folder / f"place-{p:05d}.png"
            if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
                raise OSError(f"could not write {path}")

        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(job, range(places)))
        csv = root / f"{dataset}-{name}.csv"
        csv.write_text("Image name,index\n" + "".join(f"{n},{i}\n" for i, n in enumerate(names)))
    info = {
        "generator": "tempo-hwsim synthroute",
        "version": GENERATOR_VERSION,
        "places": places,
        "seed": seed,
        "spacing": spacing,
        "jitter": jitter,
        "traversals": list(trav),
        "dataset": dataset,
    }
    (root / "route.json").write_text(json.dumps(info, indent=2) + "\n")
    return RouteInfo(root, places, trav, seed, spacing, dataset, time.perf_counter() - t0)


def cache_dir() -> Path:
    """The user cache folder: ``$XDG_CACHE_HOME/tempo-hwsim`` or ``~/.cache/tempo-hwsim``."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "tempo-hwsim"


def _complete(root: Path, places: int, seed: int, trav: Sequence[str], spacing: int,
              jitter: float) -> bool:
    try:
        info = json.loads((root / "route.json").read_text())
    except (OSError, ValueError):
        return False
    if (
        info.get("version") != GENERATOR_VERSION
        or info.get("places") != places
        or info.get("seed") != seed
        or info.get("spacing") != spacing
        or info.get("jitter") != jitter
        or not set(trav) <= set(info.get("traversals", []))
    ):
        return False
    dataset = info.get("dataset", DATASET_NAME)
    for name in trav:
        folder = root / name
        if not (root / f"{dataset}-{name}.csv").is_file() or not folder.is_dir():
            return False
        if len([p for p in folder.iterdir() if p.suffix == ".png"]) != places:
            return False
    return True


def cached_route(
    places: int = 100,
    seed: int = 0,
    traversals: Sequence[str] = DEFAULT_TRAVERSALS,
    spacing: int = 320,
    jitter: float = 1.0,
    cache: str | os.PathLike[str] | None = None,
    announce: Callable[[str], None] | None = None,
) -> Path:
    """Return the folder of a generated route, generating it once into the user cache.

    ``announce(message)`` is called before a (re)generation, e.g. to tell the user why the
    first run takes a few seconds.

    The route is rendered into a temporary folder next to its final place and renamed, so
    an interrupted run never leaves a half-written route behind; a missing or incomplete
    route (wrong version, missing images) is regenerated.
    """
    base = Path(cache) if cache is not None else cache_dir()
    jtag = "" if jitter == 1.0 else f"-j{jitter:g}"
    root = base / f"route-v{GENERATOR_VERSION}-p{places}-s{seed}-d{spacing}{jtag}"
    trav = tuple(traversals)
    if _complete(root, places, seed, trav, spacing, jitter):
        return root
    base.mkdir(parents=True, exist_ok=True)
    all_trav = tuple(dict.fromkeys((*DEFAULT_TRAVERSALS, *trav)))
    if announce is not None:
        announce(f"generating the synthetic route ({places} places x {len(all_trav)} "
                 f"traversals) into {root} (once; reused afterwards)")
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", suffix=".tmp", dir=base))
    try:
        generate_route(tmp, places, all_trav, seed, spacing, jitter)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if root.exists():
            old = base / (root.name + f".old-{os.getpid()}")
            os.replace(root, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, root)
        except OSError:
            # another process finished first; use its route if it is complete
            if not _complete(root, places, seed, trav, spacing, jitter):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
