#!/usr/bin/env python3
"""Regenerate the generated parts of docs/hwconfig.md from the config schema.

The document is hand-written except for the blocks between

    <!-- BEGIN GENERATED <block> ... -->  and  <!-- END GENERATED <block> -->

which this tool rewrites: ``presets`` (the presets in hwconfig/) and ``reference`` (every key
from ``simulator.config.schema_rows()`` with its unit from ``schema_units()``).

    python tools/gen_hwconfig_doc.py          # rewrite docs/hwconfig.md in place
    python tools/gen_hwconfig_doc.py --check  # exit 1 if the doc is out of date
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "hwconfig.md"
sys.path.insert(0, str(ROOT))

from simulator.config import (  # noqa: E402
    LAYER_SECTIONS,
    SECTIONS,
    load_config,
    preset_names,
    schema_rows,
    schema_units,
)

BLOCKS = ("presets", "reference")
_BLOCK_RE = r"(<!-- BEGIN GENERATED {name}[^>]*-->\n)(.*?)(<!-- END GENERATED {name} -->)"


def toml_value(value: object) -> str:
    """A Python default as it is written in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def _pretty_number(text: str) -> str:
    """Large powers of two as 2^k (e.g. 1099511627776 -> 2^40)."""
    neg = text.startswith("-")
    digits = text[1:] if neg else text
    if digits.isdigit():
        n = int(digits)
        if n >= 1 << 16 and n & (n - 1) == 0:
            return ("-" if neg else "") + f"2^{n.bit_length() - 1}"
    return text


def allowed_text(allowed: str) -> str:
    m = re.fullmatch(r"(-?[0-9.e+-]+)\.\.(-?[0-9.e+-]+)", allowed)
    if m:
        return f"{_pretty_number(m.group(1))} .. {_pretty_number(m.group(2))}"
    if " | " in allowed and "'" not in allowed and " " not in allowed.replace(" | ", ""):
        return ", ".join(f"`{a}`" for a in allowed.split(" | "))
    return allowed.replace("|", "\\|")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference() -> str:
    units = schema_units()
    rows_by_section: dict[str, list[tuple[str, str, str, str]]] = {}
    for row in schema_rows():
        rows_by_section.setdefault(row[0].split(".")[0], []).append(row)
    out = []
    for sname, rows in rows_by_section.items():
        cls = SECTIONS[sname]
        title = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        if title.startswith(cls.__name__ + "("):  # dataclass default docstring
            title = ""
        per_layer = sname in LAYER_SECTIONS
        out.append(f"### `[{sname}]`\n")
        if title:
            out.append(f"{title}\n")
        out.append("Per-layer override: " + (
            f"yes, as `[layers.feature.{sname}]` / `[layers.output.{sname}]`."
            if per_layer else "no (one value for the whole network)."
        ) + "\n")
        out.append("| Key | Unit | Default | Allowed | Meaning |")
        out.append("|---|---|---|---|---|")
        for key, default, allowed, meaning in rows:
            dflt = toml_value(ast.literal_eval(default))
            out.append(
                f"| `{key}` | {_cell(units.get(key, '?'))} | `{_cell(dflt)}` | "
                f"{allowed_text(allowed)} | {_cell(meaning)} |"
            )
        out.append("")
    return "\n".join(out)


def presets() -> str:
    out = [
        "| Preset | Description | `requant.scheme` | Accumulator | `requant.rounding` "
        "| Per-layer overrides |",
        "|---|---|---|---|---|---|",
    ]
    for name in preset_names():
        cfg = load_config(name)
        acc = f"{cfg.accumulator.bits} bits, {cfg.accumulator.overflow}"
        ov = ", ".join(
            f"`layers.{lname}.{sec}`"
            for lname, secs in sorted(cfg.layer_overrides.items())
            for sec in secs
        ) or "-"
        out.append(
            f"| `{name}` | {_cell(cfg.description)} | `{cfg.requant.scheme}` | {acc} | "
            f"`{cfg.requant.rounding}` | {ov} |"
        )
    out.append("")
    return "\n".join(out)


GENERATORS = {"presets": presets, "reference": reference}


def render(text: str) -> str:
    """``text`` with every generated block replaced by its current content."""
    for name in BLOCKS:
        pattern = re.compile(_BLOCK_RE.format(name=name), re.S)
        if not pattern.search(text):
            raise SystemExit(f"{DOC}: missing the GENERATED {name} block markers")
        body = GENERATORS[name]()
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(3), text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the doc is out of date")
    ap.add_argument("--doc", type=Path, default=DOC, help="the document (docs/hwconfig.md)")
    args = ap.parse_args(argv)
    text = args.doc.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print(f"{args.doc} is out of date: run python tools/gen_hwconfig_doc.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.doc.write_text(new)
        print(f"updated {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
