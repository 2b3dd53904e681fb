"""``--set KEY=VALUE`` overrides: applying one dotted key (value parsed as TOML) to a
parsed config, and naming the override an error comes from."""

from __future__ import annotations

import tomllib
from typing import Any

from .errors import ConfigError
from .toml_text import MAX_TOML_DEPTH, _bracket_depth


def _override_note(msg: str, overrides: list[str] | tuple[str, ...]) -> str:
    """' (from --set k=v)' when the error is about a key set on the command line."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        parts = key.split(".")
        prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
        if any(f"'{p}'" in msg for p in prefixes):
            return f" (from --set {item})"
    return ""


def apply_override(raw: dict[str, Any], item: str, src: str = "--set") -> None:
    """Apply one ``dotted.key=value`` override (value parsed as TOML, else a bare string)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. accumulator.bits=24")
    key, _, text = item.partition("=")
    key = key.strip()
    text = text.strip()
    if _bracket_depth(text) > MAX_TOML_DEPTH:
        raise ConfigError(f"--set {key}=...: value nested too deeply (limit {MAX_TOML_DEPTH})")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"--set {item!r}: malformed key {key!r}")
    node = raw
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
        node = nxt
    node[parts[-1]] = value
