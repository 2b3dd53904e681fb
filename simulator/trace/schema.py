"""The one table schema of every trace level, its limits and the trace errors.

``COLUMNS``: (name, arrow type, nullable, meaning); cycle/count/operands/results are int64,
query/tile/step/lane/neuron/input_* int32, module/width int16, ``signed`` bool, the rest
strings. ``CHUNK_ROWS`` is how many rows a level generator buffers before it yields a table
(the generators in fast_levels.py and step_levels.py import it). Documented in docs/traces.md.
"""

from __future__ import annotations

import pyarrow as pa

TRACE_SCHEMA_NAME = "tempo-hwsim-trace"
TRACE_SCHEMA_VERSION = 1
LEVELS: tuple[str, ...] = ("off", "layer", "neuron", "op", "cycle")
FORMATS: tuple[str, ...] = ("parquet", "csv", "vcd")
#: formats that hold rows of the schema (vcd is a waveform of the op/cycle levels)
TABLE_FORMATS: tuple[str, ...] = ("parquet", "csv")
DEFAULT_MAX_ROWS = 5_000_000
CHUNK_ROWS = 200_000

# (column, arrow type, nullable, meaning) -- the one schema of every level.
COLUMNS: tuple[tuple[str, pa.DataType, bool, str], ...] = (
    ("cycle", pa.int64(), False, "clock cycle from the start of the run (0-based)"),
    ("query", pa.int32(), False, "query (input row) index"),
    ("module", pa.int16(), False, "module index"),
    ("layer", pa.string(), False, "feature | output"),
    ("path", pa.string(), False, "weight path: combined | excitatory | inhibitory | ''"),
    ("unit", pa.string(), False, "hardware unit (see docs/traces.md)"),
    ("operation", pa.string(), False, "what the unit did (see docs/traces.md)"),
    ("tile", pa.int32(), False, "lane tile (neuron // mac.lanes), -1 if none"),
    ("step", pa.int32(), False, "step within the tile's accumulation, -1 if none"),
    ("lane", pa.int32(), False, "MAC lane (neuron % mac.lanes), -1 if none"),
    ("neuron", pa.int32(), False, "output neuron of the layer, -1 if none"),
    ("input_index", pa.int32(), False, "first input index the operation consumes, -1 if none"),
    ("input_count", pa.int32(), False, "number of inputs (products) the operation covers"),
    ("operand_a", pa.int64(), True, "first operand (see docs/traces.md)"),
    ("operand_b", pa.int64(), True, "second operand (see docs/traces.md)"),
    ("exact", pa.int64(), True, "exact result before the register narrows it"),
    ("result", pa.int64(), False, "value written / produced"),
    ("width", pa.int16(), True, "width (bits) of the register written, null if none"),
    ("signed", pa.bool_(), True, "that register is signed, null if none"),
    ("overflow", pa.string(), False,
     "'' | wrap | saturate | error | clamp_low | clamp_high | clamp (both, summaries)"),
    ("count", pa.int64(), False, "events (summaries) or weights delivered (fetch rows), else 0"),
)
SCHEMA = pa.schema(
    [pa.field(n, t, nullable=nb) for n, t, nb, _ in COLUMNS],
    metadata={"schema": TRACE_SCHEMA_NAME, "version": str(TRACE_SCHEMA_VERSION)},
)
COLUMN_NAMES: tuple[str, ...] = tuple(c[0] for c in COLUMNS)


class TraceError(ValueError):
    """A trace request that cannot be honoured (bad level, filter, format or size)."""


class TraceLimitError(TraceError):
    """The trace would exceed the row limit."""
