"""Float spikes of an image traversal, preprocessed the way a model expects.

One place for what ``hwsim run --data-dir`` and ``hwsim vectors --data-dir`` both do: take the
image size (H, W) and the patch-normalisation window from the model's metadata (or from the
caller), check that they fit the model's inputs, and turn each image of the traversal into
H*W uint8 codes, returned as float32 spikes code / 255 in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine.fast import InputError
from ..network import QuantizedNetwork
from .datasets import load_codes, load_traversal

DEFAULT_PATCH = 15  # VPRTempo's patch-normalisation window when the model does not say


def check_patch_fits(patch: int, dims: tuple[int, int], option: str = "--patch") -> None:
    """A window wider than 2*max(H,W)-1 already covers the whole image from every pixel."""
    biggest = 2 * max(dims) - 1
    if patch > biggest:
        raise InputError(f"{option} {patch}: larger than {biggest}, the widest window a "
                         f"{dims[0]}x{dims[1]} image can use; choose an odd size <= {biggest}")


def model_image_dims(net: QuantizedNetwork, model: str | Path,
                     dims: tuple[int, int] | None = None) -> tuple[int, int]:
    """(H, W): ``dims``, else the model's metadata, else a square of its input count."""
    hw: tuple[int, ...] = dims or tuple(int(d) for d in net.metadata.get("dims", ()))
    if len(hw) != 2:
        side = int(round(net.in_features**0.5))
        if side * side != net.in_features:
            raise InputError(f"{model}: no image dims in its metadata and {net.in_features} "
                             "inputs are not a square image; pass --dims H,W")
        hw = (side, side)
    if hw[0] * hw[1] != net.in_features:
        raise InputError(f"--dims {hw[0]},{hw[1]} gives {hw[0] * hw[1]} inputs but the model "
                         f"({model}) takes {net.in_features}")
    return hw[0], hw[1]


def traversal_spikes(
    net: QuantizedNetwork,
    model: str | Path,
    data_dir: str | Path,
    query: str,
    dims: tuple[int, int] | None = None,
    patch: int | None = None,
    max_samples: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, str]:
    """(float32 spikes (Q, H*W) in [0, 1], source label) of traversal ``query`` in ``data_dir``.

    ``net`` is the loaded model (load it with the run's config limits); ``model`` names it in
    errors. ``dims`` / ``patch`` override the model's metadata.
    """
    hw = model_image_dims(net, model, dims)
    window = patch or int(net.metadata.get("patch", DEFAULT_PATCH))
    check_patch_fits(window, hw)
    trav = load_traversal(data_dir, query, max_samples=max_samples)
    codes = load_codes(trav, dims=hw, patch=window, progress=progress)
    return codes.astype(np.float32) / np.float32(255.0), f"{data_dir} traversal {query}"
