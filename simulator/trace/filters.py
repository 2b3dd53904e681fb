"""``--trace-filter``: the parsed filter (inclusive ranges), its syntax and its checks
against a model (module, layer, path, neuron, query, cycle and ``first`` keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine.stepwise import Window
from ..network import LAYER_NAMES, QuantizedNetwork
from ..ranges import RANGE_HELP, RangeError, parse_inclusive
from .schema import TraceError

FILTER_KEYS: tuple[str, ...] = (
    "module", "layer", "path", "neuron", "query", "cycle", "first",
)
#: cycles either side of a layer's first event for a bare ``first`` filter item
DEFAULT_AROUND_FIRST = 8
PATH_NAMES: tuple[str, ...] = ("combined", "excitatory", "inhibitory")


@dataclass(frozen=True)
class TraceFilter:
    """A parsed ``--trace-filter``: ranges are inclusive; None = no restriction."""

    modules: tuple[int, ...] | None = None
    layers: tuple[str, ...] | None = None
    paths: tuple[str, ...] | None = None
    neurons: tuple[int, int] | None = None
    queries: tuple[int, int] | None = None
    cycles: tuple[int, int] | None = None
    text: str = ""
    first: int | None = None  # trace +-first cycles around each layer's first event

    def window(self) -> Window:
        return Window(self.queries, self.modules, self.layers, self.neurons, self.cycles)

    def _checked_first(self, expr: str) -> TraceFilter:
        if self.first is not None and self.cycles is not None:
            raise TraceError(f"--trace-filter {expr!r}: 'first' chooses the cycle window "
                             "itself; drop cycle=")
        return self


def _parse_range(key: str, value: str, expr: str) -> tuple[int, int]:
    if value.strip() == ":":
        raise TraceError(f"--trace-filter {expr!r}: {key}={value!r} is not {RANGE_HELP}")
    try:
        return parse_inclusive(value)
    except RangeError as e:
        sep = " " if str(e).startswith("is not") else ": "
        raise TraceError(f"--trace-filter {expr!r}: {key}={value!r}{sep}{e}") from None


def parse_filter(expr: str) -> TraceFilter:
    """Parse ``key=value[,key=value...]`` (see docs/traces.md); raises TraceError.

    Keys: module (N, A:B or N|M|...), layer (feature|output), path
    (combined|excitatory|inhibitory), neuron, query, cycle (N, A:B, A:, :B; inclusive).
    """
    text = (expr or "").strip()
    seen: dict[str, Any] = {}
    if not text:
        return TraceFilter()
    for item in text.split(","):
        if not item.strip():
            raise TraceError(f"--trace-filter {expr!r}: empty item (stray comma?)")
        if item.strip().lower() == "first":
            item = f"first={DEFAULT_AROUND_FIRST}"
        if "=" not in item:
            raise TraceError(
                f"--trace-filter {expr!r}: {item.strip()!r} is not key=value; keys: "
                f"{', '.join(FILTER_KEYS)}"
            )
        key, _, value = item.partition("=")
        key = key.strip().lower()
        value = value.strip()
        if key not in FILTER_KEYS:
            raise TraceError(
                f"--trace-filter {expr!r}: unknown key {key!r}; keys: {', '.join(FILTER_KEYS)}"
            )
        if key in seen:
            raise TraceError(f"--trace-filter {expr!r}: {key!r} given twice")
        if key in ("layer", "path"):
            names = tuple(v.strip() for v in value.split("|"))
            allowed = LAYER_NAMES if key == "layer" else PATH_NAMES
            bad = [v for v in names if v not in allowed]
            if bad or not names:
                raise TraceError(
                    f"--trace-filter {expr!r}: {key}={value!r}: choose from "
                    f"{' | '.join(allowed)} (several joined by '|')"
                )
            seen[key] = names
        elif key == "first":
            if not value.isdigit():
                raise TraceError(f"--trace-filter {expr!r}: first={value!r}: give the cycles "
                                 "to trace either side of each layer's first event, e.g. "
                                 "first=16 (or just 'first')")
            seen[key] = int(value)
        elif key == "module":
            mods: set[int] = set()
            for v in value.split("|"):
                lo, hi = _parse_range(key, v, expr)
                mods.update(range(lo, min(hi, lo + (1 << 16)) + 1))
            seen[key] = tuple(sorted(mods))
        else:
            seen[key] = _parse_range(key, value, expr)
    return TraceFilter(
        modules=seen.get("module"),
        layers=seen.get("layer"),
        paths=seen.get("path"),
        neurons=seen.get("neuron"),
        queries=seen.get("query"),
        cycles=seen.get("cycle"),
        text=text,
        first=seen.get("first"),
    )._checked_first(expr)


def check_filter(flt: TraceFilter, net: QuantizedNetwork, queries: int, level: str) -> None:
    """Raise TraceError if the filter selects nothing that exists for this run and level."""
    src = f"--trace-filter {flt.text!r}"
    if flt.modules is not None and min(flt.modules) >= len(net.modules):
        raise TraceError(f"{src}: the model has modules 0..{len(net.modules) - 1}")
    if flt.queries is not None and flt.queries[0] >= queries:
        raise TraceError(f"{src}: the run has queries 0..{queries - 1}")
    if flt.paths is not None:
        if level == "neuron":
            raise TraceError(
                f"{src}: a neuron-level row covers all weight paths of its neuron; a path "
                "filter needs --trace layer, op or cycle"
            )
        have = {p.name for m in net.modules for lay in m.layers for p in lay.paths}
        if not have & set(flt.paths):
            raise TraceError(f"{src}: the model's weight paths are {', '.join(sorted(have))}")
    if flt.neurons is not None:
        if level == "layer":
            raise TraceError(
                f"{src}: layer-level rows are whole layers; a neuron filter needs --trace "
                "neuron, op or cycle"
            )
        biggest = max(lay.out_features for m in net.modules for lay in m.layers)
        if flt.neurons[0] >= biggest:
            raise TraceError(f"{src}: the largest layer has neurons 0..{biggest - 1}")
