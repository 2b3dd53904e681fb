"""Sweep points: ``--grid KEY=VALUES`` parsing, the Cartesian product, ``--points FILE.toml``.

VALUES is a comma list (``half_even,floor``; each item a TOML value or a bare string), an
inclusive integer range (``16..32``) or a stepped one (``16..32:2``). A points file holds named
points, each a table of dotted keys (TOML nests them: ``accumulator.bits = 16`` inside
``[points.acc16]``) and optionally ``config = "<preset or file>"`` to start from another config.
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import LAYER_KEYS, LAYER_SECTIONS, ConfigError, schema_rows

_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=,-]{0,119}$")
MAX_POINTS = 100_000


class GridError(ConfigError):
    """A ``--grid``, ``--baseline`` or ``--points`` option that cannot be used as written."""


@dataclass(frozen=True)
class Point:
    """One sweep point: a name, an optional config to start from, and ``key=value`` overrides.

    values: the swept keys' values (dotted key -> Python value), as the table shows them.
    """

    name: str
    overrides: tuple[str, ...]
    values: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    config: str | None = None


def known_keys() -> set[str]:
    """Every dotted key a grid may sweep, per-layer forms included."""
    keys = {row[0] for row in schema_rows()}
    per_layer = {
        f"layers.{lay}.{k}" for k in keys for lay in LAYER_KEYS if k.split(".")[0] in LAYER_SECTIONS
    }
    return keys | per_layer


def check_key(key: str, where: str) -> None:
    if key not in known_keys():
        import difflib

        close = difflib.get_close_matches(key, sorted(known_keys()), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise GridError(
            f"{where}: unknown config key {key!r}{hint}; see `hwsim config keys` for the keys"
        )


def toml_literal(value: Any) -> str:
    """A Python value as the TOML text ``--set`` takes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    raise GridError(f"cannot express {value!r} as a config value")


def parse_value(text: str) -> Any:
    """One grid item: a TOML value if it parses as one, else the bare string."""
    text = text.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def split_items(text: str) -> list[str]:
    """Split a comma list at top-level commas (not inside [...] or quotes), so TOML arrays
    such as ``[[0, 2], [2]]`` stay one item."""
    items, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    items.append("".join(cur))
    return items


def parse_grid(item: str) -> tuple[str, list[Any]]:
    """``KEY=VALUES`` -> (key, values); raise GridError naming the option and the fix."""
    where = f"--grid {item}"
    if "=" not in item:
        raise GridError(f"{where}: expected KEY=VALUES, e.g. accumulator.bits=16..32")
    key, _, text = item.partition("=")
    key = key.strip()
    check_key(key, where)
    text = text.strip()
    if not text:
        raise GridError(f"{where}: no values; give a list a,b,c or a range 16..32 or 16..32:2")
    m = _RANGE.match(text)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        step = int(m.group(3)) if m.group(3) is not None else 1
        if step <= 0:
            raise GridError(f"{where}: the step of {text!r} must be a positive integer")
        if hi < lo:
            raise GridError(f"{where}: range {text!r} is empty; write low..high (inclusive)")
        values: list[Any] = list(range(lo, hi + 1, step))
    elif ".." in text:
        raise GridError(
            f"{where}: {text!r} is not a range; write integers low..high or low..high:step"
        )
    else:
        items = split_items(text)
        if any(not t.strip() for t in items):
            raise GridError(f"{where}: empty item in {text!r}; write a,b,c without empty items")
        values = [parse_value(t) for t in items]
    if len({toml_literal(v) for v in values}) != len(values):
        raise GridError(f"{where}: a value appears twice in {text!r}")
    return key, values


def parse_assignments(text: str, option: str) -> list[str]:
    """``KEY=VALUE,KEY=VALUE`` (``--baseline``) -> override strings, keys checked."""
    out = []
    for part in [p for p in re.split(r",(?=\s*[A-Za-z_][\w.]*\s*=)", text) if p.strip()]:
        if "=" not in part:
            raise GridError(f"{option} {text}: expected KEY=VALUE[,KEY=VALUE...]")
        key, _, val = part.partition("=")
        check_key(key.strip(), f"{option} {text}")
        out.append(f"{key.strip()}={val.strip()}")
    if not out:
        raise GridError(f"{option} {text}: expected KEY=VALUE[,KEY=VALUE...]")
    return out


def _format_value(v: Any) -> str:
    return v if isinstance(v, str) else toml_literal(v)


def grid_points(grid: list[tuple[str, list[Any]]]) -> list[Point]:
    """The Cartesian product of the grids, first grid outermost; names key=value,..."""
    keys = [k for k, _ in grid]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise GridError(f"--grid {dup}: the key is given twice; merge its values into one --grid")
    total = 1
    for _, vals in grid:
        total *= len(vals)
    if total > MAX_POINTS:
        raise GridError(f"--grid: {total} points is more than {MAX_POINTS}; sweep fewer values")
    points = []
    for combo in itertools.product(*(vals for _, vals in grid)):
        values = dict(zip(keys, combo, strict=True))
        name = ",".join(f"{k}={_format_value(v)}" for k, v in values.items())
        overrides = tuple(f"{k}={toml_literal(v)}" for k, v in values.items())
        points.append(Point(name, overrides, values))
    return points


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_points(path: str | Path) -> list[Point]:
    """Named points from a TOML file (see the module docstring); GridError names the file."""
    p = Path(path)
    if not p.is_file():
        raise GridError(f"--points {p}: no such file")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise GridError(f"--points {p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"--points {p}: TOML syntax error: {exc}") from None
    extra = set(raw) - {"points"}
    if extra or not isinstance(raw.get("points"), dict) or not raw["points"]:
        raise GridError(
            f"--points {p}: expected only tables [points.<name>], e.g. [points.acc16] with "
            "accumulator.bits = 16"
        )
    points = []
    for name, table in raw["points"].items():
        if not _NAME.match(name):
            raise GridError(
                f"--points {p}: point name {name!r} must be letters, digits, . _ - + = , "
                "(at most 120 characters)"
            )
        if not isinstance(table, dict):
            raise GridError(f"--points {p}: 'points.{name}' must be a table of config keys")
        table = dict(table)
        config = table.pop("config", None)
        if config is not None and not isinstance(config, str):
            raise GridError(f"--points {p}: 'points.{name}.config' must be a preset or path")
        if config is not None and not Path(config).is_absolute() and (p.parent / config).is_file():
            config = str(p.parent / config)
        flat = _flatten(table)
        for key in flat:
            check_key(key, f"--points {p}: point {name!r}")
        overrides = tuple(f"{k}={toml_literal(v)}" for k, v in flat.items())
        points.append(Point(name, overrides, flat, config))
    return points


def all_points(grid_items: list[str], points_file: str | Path | None) -> list[Point]:
    """Grid points, then the named points; names must be unique."""
    pts = grid_points([parse_grid(g) for g in grid_items]) if grid_items else []
    if points_file is not None:
        pts += load_points(points_file)
    if not pts:
        raise GridError("--grid/--points: nothing to sweep; give --grid KEY=VALUES or --points")
    seen: set[str] = set()
    for pt in pts:
        if pt.name in seen:
            raise GridError(f"--points: point name {pt.name!r} is used twice")
        seen.add(pt.name)
    return pts


def point_folder(name: str) -> str:
    """A file-system-safe folder name for a point: the name itself when it is safe, else the
    name with unsafe characters replaced and a short hash of the name appended."""
    safe = re.sub(r"[^A-Za-z0-9._=,+-]", "_", name)
    if safe == name and len(name) <= 120 and not name.startswith("."):
        return name
    import hashlib

    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{safe.lstrip('.')[:100]}-{digest}"
