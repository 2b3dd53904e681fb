"""The one range convention (simulator/ranges.py): inclusive at both ends, for every option."""

from __future__ import annotations

import pytest

from simulator.ranges import OPEN_END, RangeError, inclusive_notice, parse_inclusive
from simulator.trace import TraceError, parse_filter
from simulator.vectors import VectorsError, parse_range


@pytest.mark.parametrize(("text", "want"), [
    ("7", (7, 7)), ("0:63", (0, 63)), ("5:5", (5, 5)), ("3:", (3, OPEN_END)), (":4", (0, 4)),
    (":", (0, OPEN_END)), (" 2 : 9 ", (2, 9)),
])
def test_parse_inclusive(text: str, want: tuple[int, int]) -> None:
    assert parse_inclusive(text) == want


@pytest.mark.parametrize("text", ["", " ", "-1", "-1:3", "1.5", "a:b", "1:2:3", "3:1", "+2"])
def test_parse_inclusive_rejects(text: str) -> None:
    with pytest.raises(RangeError):
        parse_inclusive(text)


@pytest.mark.parametrize("text", ["0:63", "4", "10:", ":9", "5:5"])
def test_trace_filter_and_vectors_read_a_range_alike(text: str) -> None:
    """Same text, same indices: the trace filter's (first, last) is the vectors slice."""
    first, last = parse_filter(f"neuron={text}").neurons  # type: ignore[misc]
    start, stop = parse_range(text, 100, "--neurons")
    assert (start, stop) == (first, min(last, 99) + 1)


@pytest.mark.parametrize("text", ["9:3", "-2", "1.5"])
def test_bad_ranges_fail_alike(text: str) -> None:
    with pytest.raises(TraceError, match="neuron="):
        parse_filter(f"neuron={text}")
    with pytest.raises(VectorsError, match="--neurons"):
        parse_range(text, 100, "--neurons")


def test_notice_only_for_an_explicit_end() -> None:
    assert inclusive_notice("--queries", "0:8", "queries") == (
        "hwsim: note: --queries 0:8 is inclusive (queries 0..8, 9 queries); ranges are "
        "inclusive everywhere (docs/traces.md#ranges); the old exclusive 0:8 is now 0:7")
    assert "(cycles 0..40, 41 cycles)" in inclusive_notice("--cycles", ":40", "cycles")  # type: ignore[operator]
    for text in ("3", "3:", ":", " 4 "):
        assert inclusive_notice("--queries", text, "queries") is None
