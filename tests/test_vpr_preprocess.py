"""VPRTempo image preprocessing: every step against direct numpy (and torch when installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.vpr import preprocess as pp


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------- grayscale, gamma


def test_grayscale_weights_rgb_order() -> None:
    img = np.zeros((2, 3, 3), dtype=np.uint8)
    img[..., 0] = 200  # R
    img[..., 1] = 100  # G
    img[..., 2] = 10  # B
    g = pp.to_grayscale(img)
    assert g.dtype == np.float32 and g.shape == (2, 3)
    assert np.allclose(g, 0.299 * 200 + 0.587 * 100 + 0.114 * 10, atol=1e-4)
    # a pure blue pixel must not be weighted like red (catches a BGR/RGB mix-up)
    blue = np.zeros((1, 1, 3), dtype=np.uint8)
    blue[..., 2] = 255
    assert pp.to_grayscale(blue)[0, 0] == pytest.approx(0.114 * 255, abs=1e-3)


def test_grayscale_passthrough_and_alpha() -> None:
    grey = _rng().integers(0, 256, (4, 5)).astype(np.uint8)
    assert np.array_equal(pp.to_grayscale(grey), grey.astype(np.float32))
    rgba = _rng().integers(0, 256, (4, 5, 4)).astype(np.uint8)
    assert np.array_equal(pp.to_grayscale(rgba), pp.to_grayscale(rgba[..., :3]))
    with pytest.raises(ValueError):
        pp.to_grayscale(np.zeros((4, 5, 2), dtype=np.uint8))


def test_gamma_maps_mean_to_mid_grey() -> None:
    g = _rng(1).uniform(10, 90, (6, 7)).astype(np.float32)
    mean = float(np.float32(g.astype(np.float64).mean()))
    gamma = math.log(127.5) / math.log(mean)
    assert pp.gamma_exponent(g) == pytest.approx(gamma, rel=1e-12)
    expected = np.clip(g.astype(np.float64) ** gamma, 0, 255)
    assert np.allclose(pp.gamma_correct(g), expected, rtol=1e-5)
    # a pixel equal to the mean maps to 127.5
    probe = np.full((2, 2), mean, dtype=np.float32)
    probe_out = np.power(probe, np.float32(gamma))
    assert probe_out[0, 0] == pytest.approx(127.5, rel=1e-5)


def test_gamma_clips_to_255_and_degenerate_means() -> None:
    g = np.array([[1.0, 2.0], [3.0, 250.0]], dtype=np.float32)  # mean 64 -> gamma > 1
    out = pp.gamma_correct(g)
    assert out.max() == 255.0 and out.dtype == np.float32
    assert pp.gamma_exponent(np.zeros((3, 3))) == 1.0
    assert pp.gamma_exponent(np.ones((3, 3))) == 1.0  # log(1) = 0 would divide by zero


# ---------------------------------------------------------------------------- resize


def _bilinear_loops(img: np.ndarray, dims: tuple[int, int]) -> np.ndarray:
    """Direct float64 bilinear, half-pixel centres, edge clamp (torch align_corners=False)."""
    h_in, w_in = img.shape
    h, w = dims
    out = np.empty(dims)
    for y in range(h):
        sy = max((y + 0.5) * h_in / h - 0.5, 0.0)
        y0 = min(int(math.floor(sy)), h_in - 1)
        y1 = min(y0 + 1, h_in - 1)
        ly = sy - y0
        for x in range(w):
            sx = max((x + 0.5) * w_in / w - 0.5, 0.0)
            x0 = min(int(math.floor(sx)), w_in - 1)
            x1 = min(x0 + 1, w_in - 1)
            lx = sx - x0
            top = img[y0, x0] * (1 - lx) + img[y0, x1] * lx
            bot = img[y1, x0] * (1 - lx) + img[y1, x1] * lx
            out[y, x] = top * (1 - ly) + bot * ly
    return out


@pytest.mark.parametrize(
    ("shape", "dims"), [((9, 13), (4, 5)), ((5, 4), (11, 7)), ((30, 40), (7, 7)), ((6, 6), (6, 6))]
)
def test_resize_matches_direct_bilinear(shape: tuple[int, int], dims: tuple[int, int]) -> None:
    img = _rng(2).uniform(0, 255, shape).astype(np.float32)
    ref = _bilinear_loops(img.astype(np.float64), dims)
    got = pp.resize_bilinear(img, dims)
    assert got.dtype == np.float32 and got.shape == dims
    assert np.abs(got - ref).max() < 1e-3
    cv = pp.resize_bilinear(img, dims, method="cv2")
    assert np.abs(cv - ref).max() < 0.05


def test_resize_matches_torch_interpolate() -> None:
    torch = pytest.importorskip("torch")
    fn = torch.nn.functional
    img = _rng(3).uniform(0, 255, (360, 640)).astype(np.float32)
    for dims in ((28, 28), (56, 56), (17, 33)):
        t = fn.interpolate(
            torch.from_numpy(img)[None, None], size=dims, mode="bilinear", align_corners=False
        )[0, 0].numpy()
        assert np.abs(pp.resize_bilinear(img, dims) - t).max() < 1e-3


# ---------------------------------------------------------------------------- patch norm


def _patch_norm_loops(img: np.ndarray, p: int) -> np.ndarray:
    """Per pixel: valid (non-padding) window values, mean, unbiased std, clip, NaN -> 0."""
    h, w = img.shape
    half = (p - 1) // 2
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            win = img[max(0, y - half) : y + half + 1, max(0, x - half) : x + half + 1]
            vals = win.astype(np.float64).ravel()
            if vals.size < 2 or np.all(vals == vals[0]):
                out[y, x] = 0.0
                continue
            v = (img[y, x] - vals.mean()) / vals.std(ddof=1)
            out[y, x] = 0.0 if np.isnan(v) else float(np.clip(v, -1, 1))
    return out


@pytest.mark.parametrize(("shape", "p"), [((7, 9), 3), ((6, 5), 5), ((8, 8), 15), ((4, 11), 1)])
def test_patch_normalise_matches_loops(shape: tuple[int, int], p: int) -> None:
    img = _rng(4).uniform(0, 255, shape).astype(np.float32)
    got = pp.patch_normalise(img, p)
    assert got.dtype == np.float64 and got.shape == shape
    assert np.allclose(got, _patch_norm_loops(img, p), atol=1e-12)
    assert got.min() >= -1.0 and got.max() <= 1.0


def test_patch_normalise_border_windows_ignore_padding() -> None:
    # 3x3 windows: the corner pixel sees only a 2x2 block; unbiased std over those 4 values.
    img = np.array([[0.0, 2.0, 9.0], [4.0, 6.0, 9.0], [9.0, 9.0, 9.0]])
    vals = np.array([0.0, 2.0, 4.0, 6.0])
    expected = (0.0 - vals.mean()) / vals.std(ddof=1)  # -1.16 -> clipped to -1
    assert expected < -1
    out = pp.patch_normalise(img, 3)
    assert out[0, 0] == -1.0
    # centre pixel 6 over all 9 values: inside (-1, 1), exact value
    allv = img.ravel()
    assert out[1, 1] == pytest.approx((6.0 - allv.mean()) / allv.std(ddof=1), abs=1e-12)
    # top-middle pixel 2: 6 valid values (rows 0-1)
    tm = img[:2].ravel()
    assert out[0, 1] == pytest.approx(
        np.clip((2.0 - tm.mean()) / tm.std(ddof=1), -1, 1), abs=1e-12
    )


def test_patch_normalise_constant_patches_give_zero() -> None:
    img = np.full((9, 9), 0.1, dtype=np.float32)  # 0.1 is not exact: naive mean != value
    assert np.array_equal(pp.patch_normalise(img, 5), np.zeros((9, 9)))
    mixed = np.full((9, 9), 37.3, dtype=np.float32)
    mixed[0, 0] = 200.0  # only windows touching the corner see a non-constant patch
    out = pp.patch_normalise(mixed, 3)
    assert out[5, 5] == 0.0 and out[8, 8] == 0.0
    assert out[0, 0] == 1.0 and out[1, 1] < 0.0


def test_patch_size_must_be_odd() -> None:
    with pytest.raises(ValueError):
        pp.patch_normalise(np.zeros((4, 4)), 4)
    with pytest.raises(ValueError):
        pp.PreprocessConfig((28, 28), 0).validate()


# ---------------------------------------------------------------------------- codes, pipeline


def test_codes_truncate_like_torch_uint8() -> None:
    x = np.array([-1.0, -0.99, 0.0, 0.5, 0.999, 1.0])
    codes = pp.to_codes(x)
    assert codes.dtype == np.uint8
    assert codes.tolist() == [0, 1, 127, 191, 254, 255]
    spikes = pp.codes_to_spikes(codes)
    assert spikes.dtype == np.float32
    assert np.allclose(spikes, codes / 255.0)


def _torch_process(rgb: np.ndarray, dims: tuple[int, int], p: int) -> np.ndarray:
    """VPRTempo's ProcessImage re-expressed with torch ops (float32 throughout)."""
    torch = pytest.importorskip("torch")
    fn = torch.nn.functional
    img = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    img = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).unsqueeze(0)
    gamma = math.log(0.5 * 255) / math.log(torch.mean(img))
    img = torch.pow(img, gamma).clip(0, 255).unsqueeze(0)
    img = fn.interpolate(img, size=dims, mode="bilinear", align_corners=False)[0, 0]
    half = (p - 1) // 2
    pad = fn.pad(img, (half, half, half, half), mode="constant", value=float("nan"))
    patches = pad.unfold(0, p, 1).unfold(1, p, 1).permute(2, 3, 0, 1).reshape(p * p, -1)
    count = torch.sum(~torch.isnan(patches), dim=0, dtype=torch.float)
    mean = torch.nansum(patches, dim=0) / count
    diff = patches - mean.unsqueeze(0)
    std = torch.sqrt(torch.nansum(diff * diff, dim=0) / count * (count / (count - 1)))
    norm = (img - mean.reshape(dims)) / std.reshape(dims)
    norm[torch.isnan(norm)] = 0.0
    norm = norm.clamp(-1.0, 1.0)
    return (255.0 * (1 + norm) / 2.0).to(torch.uint8).numpy()


def test_pipeline_matches_vprtempo_torch() -> None:
    pytest.importorskip("torch")
    import cv2

    rng = _rng(5)
    total = mismatched = 0
    for _ in range(4):
        base = cv2.resize(rng.uniform(0, 255, (9, 16, 3)).astype(np.float32), (640, 360))
        rgb = np.clip(base + rng.normal(0, 20, (360, 640, 3)), 0, 255).astype(np.uint8)
        for dims, p in (((28, 28), 15), ((56, 56), 15), ((28, 28), 7)):
            ours = pp.process_image(rgb, dims, p)
            ref = _torch_process(rgb, dims, p)
            assert ours.shape == dims and ours.dtype == np.uint8
            assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
            total += ref.size
            mismatched += int((ours != ref).sum())
    assert mismatched <= total * 1e-3  # only float32-vs-float64 rounding at truncation edges


def test_process_images_batch_shape() -> None:
    imgs = [_rng(i).integers(0, 256, (40, 60, 3)).astype(np.uint8) for i in range(3)]
    codes = pp.process_images(imgs, (8, 10), 5)
    assert codes.shape == (3, 80) and codes.dtype == np.uint8
    assert np.array_equal(codes[1], pp.process_image(imgs[1], (8, 10), 5).reshape(-1))
    assert pp.process_images([], (8, 10), 5).shape == (0, 80)
