"""Place image -> input spike codes, as VPRTempo's ``ProcessImage`` does it.

Steps (each a public function, each tested against direct numpy):

1. :func:`to_grayscale` - ``0.299 R + 0.587 G + 0.114 B`` in float32 (from **RGB**; OpenCV
   loads BGR, :func:`simulator.vpr.datasets.load_image` converts).
2. :func:`gamma_correct` - ``gamma = log(0.5 * 255) / log(mean)``, ``img ** gamma`` clipped to
   [0, 255], so the image mean maps to mid-grey.
3. :func:`resize_bilinear` - bilinear, half-pixel centres (``align_corners=False``), no
   antialiasing, float32.
4. :func:`patch_normalise` - per pixel, mean and unbiased std over a ``P x P`` window centred on
   it; windows reaching past the border are NaN-padded and the NaNs ignored; ``(x - mean) / std``
   with NaN (0/0, constant windows) -> 0, then clipped to [-1, 1].
5. :func:`to_codes` - ``uint8(255 * (1 + x) / 2)`` (truncation, as torch's ``.to(uint8)``).
6. :func:`codes_to_spikes` - ``codes / 255`` as float32; flattened row-major it is the network
   input (K0 = h * w spikes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

GRAY_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)
MID_GREY: float = 0.5 * 255.0
ResizeMethod = Literal["torch", "cv2"]


@dataclass(frozen=True)
class PreprocessConfig:
    """Preprocessing parameters: ``dims`` = (height, width) after resizing, ``patch`` = P (odd)."""

    dims: tuple[int, int] = (28, 28)
    patch: int = 15
    resize: ResizeMethod = "torch"

    def validate(self) -> None:
        """Raise ValueError on non-positive dims or an even / non-positive patch size."""
        h, w = self.dims
        if int(h) < 1 or int(w) < 1:
            raise ValueError(f"dims must be positive (height, width), got {self.dims}")
        if int(self.patch) < 1 or int(self.patch) % 2 == 0:
            raise ValueError(f"patch size must be a positive odd number, got {self.patch}")
        if self.resize not in ("torch", "cv2"):
            raise ValueError(f"resize must be 'torch' or 'cv2', got {self.resize!r}")

    @property
    def features(self) -> int:
        """K0 = height * width, the number of input spikes."""
        return int(self.dims[0]) * int(self.dims[1])


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """RGB uint8/float (H, W, 3) or grey (H, W) -> float32 (H, W), ``0.299R+0.587G+0.114B``.

    Computed in float32 in torch's order ``(0.299 R + 0.587 G) + 0.114 B``. A 4th (alpha)
    channel is ignored. A 2-D image is taken as already grey.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        return img.astype(np.float32)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {img.shape}")
    f = np.float32
    r = img[..., 0].astype(f)
    g = img[..., 1].astype(f)
    b = img[..., 2].astype(f)
    wr, wg, wb = (f(w) for w in GRAY_WEIGHTS)
    return ((wr * r + wg * g) + wb * b).astype(f)


def gamma_exponent(gray: np.ndarray) -> float:
    """``log(127.5) / log(mean)`` for a float (H, W) image; 1.0 when the mean is 0 or 1.

    VPRTempo would divide by zero (mean 1) or produce gamma 0 (mean 0); an all-black or
    near-black image is left unchanged here instead.
    """
    mean = float(np.float32(np.mean(gray, dtype=np.float64)))
    if not math.isfinite(mean) or mean <= 0.0 or mean == 1.0:
        return 1.0
    return math.log(MID_GREY) / math.log(mean)


def gamma_correct(gray: np.ndarray) -> np.ndarray:
    """float32 (H, W) -> float32 (H, W): ``clip(gray ** gamma, 0, 255)``, gamma from the mean."""
    g = np.asarray(gray, dtype=np.float32)
    gamma = np.float32(gamma_exponent(g))
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.power(g, gamma, dtype=np.float32)
    return np.clip(out, np.float32(0), np.float32(255)).astype(np.float32)


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of 1-D linear interpolation, half-pixel centres (torch)."""
    f = np.float32
    scale = f(n_in) / f(n_out)
    src = (np.float64(scale) * (np.arange(n_out, dtype=np.float64) + 0.5) - 0.5).astype(f)
    src = np.maximum(src, f(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = np.clip(src - i0.astype(f), f(0), f(1)).astype(f)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    return i0, i1, (f(1) - lam).astype(f), lam


def resize_bilinear(
    img: np.ndarray, dims: tuple[int, int], method: ResizeMethod = "torch"
) -> np.ndarray:
    """float (H, W) -> float32 dims=(h, w); bilinear, half-pixel centres, no antialiasing.

    ``method="torch"`` reproduces ``F.interpolate(mode="bilinear", align_corners=False)`` to
    within float32 rounding (|diff| <= ~1e-7 relative); ``method="cv2"`` is
    ``cv2.resize(INTER_LINEAR)``, the same scheme with coarser coefficients (~3e-5 relative).
    """
    src = np.asarray(img, dtype=np.float32)
    h, w = int(dims[0]), int(dims[1])
    if src.ndim != 2:
        raise ValueError(f"resize_bilinear expects a 2-D image, got shape {src.shape}")
    if method == "cv2":
        return cv2.resize(src, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    if method != "torch":
        raise ValueError(f"unknown resize method {method!r}")
    h0, h1, wh0, wh1 = _linear_taps(src.shape[0], h)
    w0, w1, ww0, ww1 = _linear_taps(src.shape[1], w)
    rows0 = src[h0]
    rows1 = src[h1]
    top = rows0[:, w0] * ww0 + rows0[:, w1] * ww1
    bot = rows1[:, w0] * ww0 + rows1[:, w1] * ww1
    return (top * wh0[:, None] + bot * wh1[:, None]).astype(np.float32)


def patch_normalise(img: np.ndarray, patch: int) -> np.ndarray:
    """float (h, w) -> float64 (h, w) in [-1, 1]: local (x - mean) / std over P x P windows.

    Windows are centred on each pixel and NaN-padded by ``(P - 1) // 2`` at the borders; the
    padding is ignored in the mean and the unbiased (n - 1) std. NaN results (0/0, a window of
    one valid pixel) become 0 and the result is clipped to [-1, 1]. A window whose valid values
    are all equal has std 0 and gives exactly 0 (no float-rounding noise from its mean).
    """
    p = int(patch)
    if p < 1 or p % 2 == 0:
        raise ValueError(f"patch size must be a positive odd number, got {patch}")
    x = np.asarray(img, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"patch_normalise expects a 2-D image, got shape {x.shape}")
    h, w = x.shape
    half = (p - 1) // 2
    offs = np.arange(-half, half + 1)
    r = np.arange(h)[:, None] + offs[None, :]  # (h, P) window rows
    c = np.arange(w)[:, None] + offs[None, :]  # (w, P) window columns
    rv = (r >= 0) & (r < h)
    cv = (c >= 0) & (c < w)
    win = x[np.clip(r, 0, h - 1)[:, None, :, None], np.clip(c, 0, w - 1)[None, :, None, :]]
    valid = rv[:, None, :, None] & cv[None, :, None, :]  # (h, w, P, P): not NaN padding
    count = (rv.sum(axis=1)[:, None] * cv.sum(axis=1)[None, :]).astype(np.float64)
    mean = (win * valid).sum(axis=(2, 3)) / count
    diff = (win - mean[..., None, None]) * valid
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (diff * diff).sum(axis=(2, 3)) / count * (count / (count - 1.0))
        out = (x - mean) / np.sqrt(var)
    # every valid value equals the centre pixel -> constant window -> std 0 -> 0
    constant = (np.abs(win - x[..., None, None]) * valid).sum(axis=(2, 3)) == 0
    out[constant] = 0.0
    out[np.isnan(out)] = 0.0
    return np.clip(out, -1.0, 1.0)


def to_codes(norm: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> uint8: ``trunc(255 * (1 + x) / 2)`` computed in float32."""
    x = np.asarray(norm, dtype=np.float32)
    v = np.float32(255.0) * (np.float32(1.0) + x) / np.float32(2.0)
    return np.trunc(np.clip(v, 0, 255)).astype(np.uint8)


def codes_to_spikes(codes: np.ndarray) -> np.ndarray:
    """uint8 codes of any shape -> float32 spikes ``codes / 255`` of the same shape.

    Flatten first for the network input: ``codes_to_spikes(codes.reshape(n, -1))`` gives
    (N, K) with K = h * w in row-major (C) order, as VPRTempo's ``view(N, 1, -1)``.
    """
    c = np.asarray(codes)
    return (c.astype(np.float32) / np.float32(255.0)).astype(np.float32)


def process_image(
    image: np.ndarray, dims: tuple[int, int] = (28, 28), patch: int = 15,
    resize: ResizeMethod = "torch",
) -> np.ndarray:
    """One RGB (H, W, 3) or grey (H, W) image -> uint8 codes (h, w) (steps 1-5)."""
    cfg = PreprocessConfig(tuple(int(d) for d in dims), int(patch), resize)  # type: ignore[arg-type]
    cfg.validate()
    gray = to_grayscale(image)
    gamma = gamma_correct(gray)
    small = resize_bilinear(gamma, cfg.dims, cfg.resize)
    return to_codes(patch_normalise(small, cfg.patch))


def process_images(
    images: Iterable[np.ndarray], dims: tuple[int, int] = (28, 28), patch: int = 15,
    resize: ResizeMethod = "torch",
) -> np.ndarray:
    """Many images -> uint8 (N, h*w) codes, one flattened row per image."""
    rows = [process_image(im, dims, patch, resize).reshape(-1) for im in images]
    k = int(dims[0]) * int(dims[1])
    if not rows:
        return np.zeros((0, k), dtype=np.uint8)
    return np.stack(rows).astype(np.uint8)
