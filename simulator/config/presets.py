"""The presets shipped in simulator/hwconfig/ (``./hwconfig`` links there) and the lookup
of a config given as a preset name or a file path."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

# simulator/hwconfig/, in the wheel; ./hwconfig links here
PRESET_DIR = Path(__file__).resolve().parent.parent / "hwconfig"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to an existing file, or the name of a preset in hwconfig/ (with or without .toml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".toml") else p.name
    cand = PRESET_DIR / f"{stem}.toml"
    if p.parent == Path(".") and cand.is_file():
        return cand
    raise ConfigError(
        f"{name_or_path}: no such config file or preset; presets: {', '.join(preset_names())}"
    )
