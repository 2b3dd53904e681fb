"""The config error type, and the 'did you mean' hint its messages carry (rounding names
used by C, numpy, fxpmath, IEEE 754 and SystemC point to the mode names used here)."""

from __future__ import annotations

import difflib
from typing import Any


class ConfigError(ValueError):
    """A hardware config that cannot be used as written."""


# Rounding names used elsewhere (C, numpy, fxpmath, IEEE 754, SystemC) -> the name used here.
# Only a hint in error messages: a config must spell the mode exactly.
ROUNDING_ALIASES = {
    "trunc": "toward_zero",  # C trunc() and fxpmath 'trunc' round toward zero, not floor
    "truncate": "toward_zero",
    "fix": "toward_zero",
    "to_zero": "toward_zero",
    "round_toward_zero": "toward_zero",
    "down": "floor",
    "round_down": "floor",
    "up": "ceil",
    "ceiling": "ceil",
    "round": "half_away",  # C round()
    "nearest": "half_even",
    "rint": "half_even",
    "around": "half_even",
    "nearest_even": "half_even",
    "round_half_even": "half_even",
    "banker": "half_even",
    "convergent": "half_even",
    "nearest_posinf": "half_up",
    "round_half_up": "half_up",
    "nearest_neginf": "half_down",
    "round_half_down": "half_down",
    "nearest_away": "half_away",
    "round_half_away": "half_away",
}


def _did_you_mean(word: Any, options: Any, prefix: str = "") -> str:
    """' (did you mean 'x'?)' for a close match of ``word`` among ``options``, else ''."""
    if not isinstance(word, str):
        return ""
    opts = [str(o) for o in options]
    lower = {o.lower(): o for o in opts}
    if word.lower() in lower:
        best = lower[word.lower()]
    elif word.lower() in ROUNDING_ALIASES and ROUNDING_ALIASES[word.lower()] in opts:
        best = ROUNDING_ALIASES[word.lower()]
    else:
        close = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)
        if not close:
            return ""
        best = lower[close[0]]
    return f" (did you mean '{prefix}{best}'?)"
