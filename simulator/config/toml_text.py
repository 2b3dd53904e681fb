"""Reading a config file's bytes and parsing its TOML text within fixed limits (size,
nesting depth); every problem is one ConfigError line naming the file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20
"""Largest config file read (a hardware config is a few kB)."""

MAX_TOML_DEPTH = 32
"""Deepest nesting of tables and arrays in a config (the schema needs 4)."""


def read_config_bytes(path: Path) -> bytes:
    """A config file's bytes, at most MAX_CONFIG_BYTES; OS errors become one ConfigError line."""
    try:
        with open(path, "rb") as fh:
            blob = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(blob) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_CONFIG_BYTES:,} bytes; a hardware config is a few kB "
            "of TOML (is this the right file?)"
        )
    return blob


def parse_toml(blob: bytes, src: str) -> dict[str, Any]:
    """Parse a config's TOML text; every problem is one ConfigError line naming ``src``."""
    if blob.startswith(b"\xef\xbb\xbf"):
        raise ConfigError(
            f"{src}: starts with a UTF-8 byte order mark (BOM), which TOML does not allow; "
            "save the file as UTF-8 without BOM"
        )
    if blob.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{src}: is UTF-16 text; save it as UTF-8 (without BOM)")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{src}: not UTF-8 text (byte {exc.start} is 0x{blob[exc.start]:02x}); "
            "save it as UTF-8"
        ) from None
    depth = _bracket_depth(text)
    if depth > MAX_TOML_DEPTH:
        raise ConfigError(
            f"{src}: arrays or inline tables nested {depth} levels deep; a hardware config "
            f"needs at most 4 (limit {MAX_TOML_DEPTH})"
        )
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{src}: TOML syntax error: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"{src}: nested too deeply to parse; a hardware config needs at most 4 levels"
        ) from None
    if _dict_depth(raw) > MAX_TOML_DEPTH:
        raise ConfigError(
            f"{src}: tables nested more than {MAX_TOML_DEPTH} levels deep; a hardware config "
            "needs at most 4"
        )
    return raw


def _bracket_depth(text: str) -> int:
    """Upper bound of the nesting of [ ] and { } outside comments and strings (cheap, linear).

    Brackets inside strings are counted too; only a text with more than MAX_TOML_DEPTH of them
    open at once is refused, which no config of this schema has.
    """
    depth = best = 0
    for line in text.splitlines():
        code = line.split("#", 1)[0] if '"' not in line and "'" not in line else line
        for ch in code:
            if ch in "[{":
                depth += 1
                best = max(best, depth)
            elif ch in "]}":
                depth = max(depth - 1, 0)
    return best


def _dict_depth(node: Any, level: int = 0) -> int:
    """Nesting depth of parsed TOML (dicts and lists), iteratively."""
    best = level
    stack = [(node, level)]
    while stack:
        cur, lev = stack.pop()
        best = max(best, lev)
        if best > MAX_TOML_DEPTH:
            return best
        if isinstance(cur, dict):
            stack.extend((v, lev + 1) for v in cur.values())
        elif isinstance(cur, list):
            stack.extend((v, lev + 1) for v in cur)
    return best
