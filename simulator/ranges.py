"""Index ranges as every hwsim option writes them: inclusive at both ends (docs/traces.md#ranges).

``N`` is one index, ``A:B`` is A..B (B included, like report.json's cycle numbers), ``A:`` runs
to the end and ``:B`` starts at 0. Indices are non-negative integers; B < A is an error.
"""

from __future__ import annotations

import re

OPEN_END = (1 << 62) - 1  # the last index of an open range (``A:``) before it is clipped
RANGE_HELP = "N, A:B, A: or :B (non-negative integers, inclusive ranges)"

_RANGE = re.compile(r"^\s*(?:(\d+)|(\d+)?\s*:\s*(\d+)?)\s*$")


class RangeError(ValueError):
    """A range that does not parse; the message says why (without the option name)."""


def parse_inclusive(text: str, last: int = OPEN_END) -> tuple[int, int]:
    """``N``, ``A:B``, ``A:``, ``:B`` or ``:`` -> (first, last), both included.

    ``last`` closes an open end (``A:`` or ``:``). Raises RangeError for anything else,
    including B < A.
    """
    m = _RANGE.match(text)
    if not m or not text.strip():
        raise RangeError(f"is not {RANGE_HELP}")
    single, lo, hi = m.groups()
    if single is not None:
        return int(single), int(single)
    a = int(lo) if lo is not None else 0
    b = int(hi) if hi is not None else last
    if a > b:
        raise RangeError(f"start {a} is after end {b}")
    return a, b


def has_stop(text: str) -> bool:
    """True for ``A:B`` and ``:B``: the forms whose end used to be exclusive in hwsim vectors."""
    head, colon, tail = text.partition(":")
    return bool(colon) and bool(tail.strip())


def inclusive_notice(option: str, text: str, noun: str) -> str | None:
    """The one-line stderr notice for a vectors range with an explicit end, else None.

    Before ranges were made inclusive everywhere, ``hwsim vectors`` read ``A:B`` as A..B-1.
    """
    if not has_stop(text):
        return None
    a, b = parse_inclusive(text)
    n = b - a + 1
    one = noun[:-3] + "y" if noun.endswith("ies") else noun[:-1]
    old = f"; the old exclusive {text.strip()} is now {a}:{b - 1}" if b > a else ""
    return (f"hwsim: note: {option} {text.strip()} is inclusive ({noun} {a}..{b}, "
            f"{n} {noun if n != 1 else one}); ranges are inclusive everywhere "
            f"(docs/traces.md#ranges){old}")
