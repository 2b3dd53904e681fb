"""``load_config``: a preset or file read, overridden (``--set``) and validated."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import ConfigError
from .overrides import _override_note, apply_override
from .presets import resolve_config_path
from .schema import HwConfig
from .toml_text import parse_toml, read_config_bytes
from .validate import build_config


def load_config(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> HwConfig:
    """Load, override (``key=value`` strings, TOML values) and validate a hardware config."""
    path = resolve_config_path(name_or_path)
    src = str(path)
    blob = read_config_bytes(path)
    raw = parse_toml(blob, src)
    digest = hashlib.sha256(blob)
    for item in overrides:
        apply_override(raw, item, src)
        digest.update(b"\0" + item.encode())
    try:
        return build_config(raw, src, digest.hexdigest(), default_name=path.stem)
    except ConfigError as exc:
        raise ConfigError(str(exc) + _override_note(str(exc), overrides)) from None
