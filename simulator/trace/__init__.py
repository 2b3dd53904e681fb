"""Trace recorder: per-layer, per-neuron, per-operation and per-cycle tables of a run.

Levels (``--trace LEVEL``): ``off``; ``layer`` and ``neuron`` come from the fast path's
SimResult; ``op`` (every register write) and ``cycle`` (every cycle's activity: fetches and
stalls, each product, adder-tree sums, register writes, requantizer drains and pipeline
flushes) come from the stepwise engine run over the filtered window only.

Rows are streamed to Parquet (pyarrow ParquetWriter) or CSV (pyarrow CSVWriter) in chunks,
written under a temporary name and renamed when complete, with a JSON manifest beside them.
Before anything is written the number of rows is computed exactly from the schedule; a trace
above ``max_rows`` stops with a message asking for a filter, and no partial file is left.

The schema (name ``tempo-hwsim-trace``, version :data:`TRACE_SCHEMA_VERSION`) and the filter
syntax are documented in docs/traces.md.

Modules: schema (columns, limits, errors), filters (``--trace-filter``), rows (row buffers),
geometry (where each tile falls in cycles), estimate (exact row counts), fast_levels
(layer, neuron rows), step_levels (op, cycle rows), request (TraceRequest, TraceSummary),
writers (Parquet/CSV/VCD files and manifest, read_trace), options (command-line options).
This package re-exports every name the former single module ``simulator.trace`` had.
"""

from __future__ import annotations

from .estimate import estimate_rows, estimate_rows_before_run
from .filters import (
    DEFAULT_AROUND_FIRST,
    FILTER_KEYS,
    PATH_NAMES,
    TraceFilter,
    check_filter,
    parse_filter,
)
from .geometry import _bin_steps as _bin_steps
from .geometry import resolve_first
from .options import (
    add_trace_arguments,
    check_trace_arguments,
    handle_trace,
    trace_dir,
    trace_request,
)
from .request import TraceRequest, TraceSummary
from .schema import (
    CHUNK_ROWS,
    COLUMN_NAMES,
    COLUMNS,
    DEFAULT_MAX_ROWS,
    FORMATS,
    LEVELS,
    SCHEMA,
    TABLE_FORMATS,
    TRACE_SCHEMA_NAME,
    TRACE_SCHEMA_VERSION,
    TraceError,
    TraceLimitError,
)
from .writers import TRACE_OWNED, read_trace, trace_names, write_trace

__all__ = [
    "COLUMNS", "LEVELS", "SCHEMA", "TRACE_SCHEMA_VERSION", "TraceError",
    "TraceFilter", "TraceLimitError", "TraceSummary", "add_trace_arguments",
    "TraceRequest", "check_trace_arguments", "estimate_rows", "estimate_rows_before_run",
    "handle_trace", "parse_filter",
    "read_trace", "trace_request", "write_trace",
    # the other public names of the former single module, importable from here as before
    "CHUNK_ROWS", "COLUMN_NAMES", "DEFAULT_AROUND_FIRST", "DEFAULT_MAX_ROWS", "FILTER_KEYS",
    "FORMATS", "PATH_NAMES", "TABLE_FORMATS", "TRACE_OWNED", "TRACE_SCHEMA_NAME",
    "check_filter", "resolve_first", "trace_dir", "trace_names",
]
