"""Exit statuses and argparse option types shared by the ``hwsim`` subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

EXIT_USER_ERROR = 2
EXIT_OVERFLOW = 3
EXIT_CROSS_CHECK = 4


def int_at_least(low: int, what: str = "") -> Callable[[str], int]:
    """argparse type: an integer >= low (``what`` explains the bound)."""

    def parse(text: str) -> int:
        try:
            v = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{v} must be >= {low}{what}")
        return v

    parse.__name__ = "integer"
    return parse


def patch_size(text: str) -> int:
    """argparse type: an odd patch-normalisation window >= 3."""
    v = int_at_least(3, " (a 1x1 window has no spread: every pixel would map to 127)")(text)
    if v % 2 == 0:
        raise argparse.ArgumentTypeError(
            f"{v} must be odd (the window is centred on each pixel), e.g. {v - 1} or {v + 1}")
    return v


def dims(text: str) -> tuple[int, int]:
    """argparse type: ``H,W`` positive image size."""
    parts = [p.strip() for p in text.split(",")]
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not H,W (two integers, e.g. 28,28)") from None
    if len(hw) != 2 or min(hw) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not H,W (two integers >= 1, e.g. 28,28)")
    return hw  # type: ignore[return-value]


def check_patch_fits(patch: int, dims: tuple[int, int], option: str = "--patch") -> None:
    """See :func:`simulator.vpr.model_inputs.check_patch_fits` (imported when used: it
    pulls in OpenCV)."""
    from ..vpr.model_inputs import check_patch_fits as check

    check(patch, dims, option)


def progress_bar(total: int, desc: str, quiet: bool) -> Any:
    """A tqdm bar on stderr for long runs (hidden when quiet or not a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="query", disable=quiet or None, leave=False)
