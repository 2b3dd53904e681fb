"""Writing a trace: rows streamed in chunks to Parquet or CSV (or a VCD waveform) with a
JSON manifest, published as one set through simulator.outputs; and reading a trace back."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import HwConfig
from ..engine.fast import SimResult
from ..engine.stepwise import FlushOp, MacOp, StepwiseRun
from ..network import QuantizedNetwork
from ..outputs import ResultSet
from .fast_levels import _layer_rows, _neuron_level
from .filters import TraceFilter
from .geometry import _count_in, resolve_first
from .request import TraceRequest, TraceSummary
from .schema import (
    COLUMNS,
    DEFAULT_MAX_ROWS,
    SCHEMA,
    TRACE_SCHEMA_NAME,
    TRACE_SCHEMA_VERSION,
    TraceLimitError,
)
from .step_levels import _op_level


def trace_names(level: str, fmt: str) -> tuple[str, str]:
    """(data file, manifest) names of a trace."""
    return f"trace_{level}.{fmt}", f"trace_{level}.json"


TRACE_OWNED = r"trace_(layer|neuron|op|cycle)\.(parquet|csv|json|vcd)"


def write_trace(
    result: SimResult,
    net: QuantizedNetwork,
    cfg: HwConfig,
    input_codes: list[np.ndarray] | None,
    out_dir: str | os.PathLike[str] | ResultSet,
    level: str,
    filter_expr: str = "",
    fmt: str = "parquet",
    max_rows: int = DEFAULT_MAX_ROWS,
    provenance: dict[str, Any] | None = None,
) -> TraceSummary:
    """Write ``DIR/trace_<level>.<fmt>`` and ``DIR/trace_<level>.json`` for a finished run.

    out_dir: a folder (the two files are published together, see simulator.outputs) or an
    open :class:`ResultSet` (the files are staged into it and published by its commit).
    input_codes: per-module int64 (Q, K) input codes (default ``result.input_codes``).
    Raises TraceError for a bad level, format or filter and TraceLimitError (nothing written)
    if the trace would have more than ``max_rows`` rows.
    """
    t0 = time.perf_counter()
    req = TraceRequest(level, filter_expr, fmt, max_rows)
    flt = req.check()
    if level == "off":
        return TraceSummary(level, fmt, 0, 0, None, None, flt.text, 0.0)
    q_total = int(result.outputs.shape[0])
    est = req.check_size(result, net, cfg)
    codes = input_codes if input_codes is not None else result.input_codes
    if fmt == "vcd":
        return _write_waveform(result, net, cfg, codes, out_dir, req, flt, est, provenance, t0)
    if level == "layer":
        chunks = _layer_rows(result, cfg, flt)
    elif level == "neuron":
        chunks = _neuron_level(result, cfg, flt)
    else:
        chunks = itertools.chain.from_iterable(
            _op_level(result, net, cfg, f, level == "cycle", codes)
            for f in resolve_first(flt, result))
    own = not isinstance(out_dir, ResultSet)
    rs = ResultSet(out_dir, option="--trace-dir").open() if own else out_dir
    assert isinstance(rs, ResultSet)
    try:
        data_name, man_name = trace_names(level, fmt)
        final = rs.final_path(data_name)
        written = 0
        with rs.open_file(data_name) as fh:
            writer = _open_writer(fh, fmt)
            try:
                for table in chunks:
                    n = table.num_rows
                    if not n:
                        continue
                    if written + n > max_rows:
                        raise TraceLimitError(
                            f"--trace {level}: more than --max-trace-rows {max_rows:,} rows; "
                            "narrow it with --trace-filter; nothing was written"
                        )
                    writer.write_table(table)
                    written += n
                if written == 0:  # an empty trace still has the schema
                    writer.write_table(SCHEMA.empty_table())
            finally:
                writer.close()
        seconds = time.perf_counter() - t0
        manifest = rs.final_path(man_name)
        summary = TraceSummary(level, fmt, written, est, final, manifest, flt.text, seconds)
        doc = {
            "schema": {"name": TRACE_SCHEMA_NAME, "version": TRACE_SCHEMA_VERSION},
            "level": level,
            "format": fmt,
            "file": final.name,
            "rows": written,
            "filter": flt.text,
            "columns": [{"name": n, "type": str(t), "nullable": nb, "meaning": d}
                        for n, t, nb, d in COLUMNS],
            "config": {"name": cfg.name, "source": cfg.source, "sha256": cfg.sha256},
            "model": {"source": net.source},
            "queries": q_total,
            "provenance": provenance or {},
        }
        rs.write_json(man_name, doc)
        if own:
            rs.commit()
    finally:
        if own:
            rs.close()
    return summary


def _write_waveform(result: SimResult, net: QuantizedNetwork, cfg: HwConfig,
                    codes: list[np.ndarray], out_dir: Any, req: TraceRequest, flt: TraceFilter,
                    est: int, provenance: dict[str, Any] | None, t0: float) -> TraceSummary:
    """``trace_<level>.vcd`` + ``trace_<level>.json`` (simulator/outputs/waveform.py)."""
    from ..outputs.waveform import write_vcd

    level = req.level
    own = not isinstance(out_dir, ResultSet)
    rs = ResultSet(out_dir, option="--trace-dir").open() if own else out_dir
    assert isinstance(rs, ResultSet)
    try:
        data_name, man_name = trace_names(level, "vcd")
        final = rs.final_path(data_name)

        def ops() -> Iterator[Any]:
            for f in resolve_first(flt, result):
                run = StepwiseRun(net, cfg, codes, f.window(), reference=result)
                for op in run.ops():
                    if isinstance(op, MacOp) and f.paths is not None and op.path not in f.paths:
                        continue
                    if isinstance(op, FlushOp) and level == "op":
                        continue
                    if f.cycles is not None and not _count_in(op.cycle, op.cycle, f.cycles):
                        continue
                    yield op

        with rs.open_file(data_name) as fh:
            wave = write_vcd(ops(), cfg, fh, f"level {level}, filter {flt.text or '(none)'}")
        manifest = rs.final_path(man_name)
        seconds = time.perf_counter() - t0
        summary = TraceSummary(level, "vcd", wave.ops, est, final, manifest, flt.text, seconds)
        rs.write_json(man_name, {
            "schema": {"name": TRACE_SCHEMA_NAME, "version": TRACE_SCHEMA_VERSION},
            "level": level, "format": "vcd", "file": final.name, "ops": wave.ops,
            "value_changes": wave.changes, "first_cycle": wave.first_cycle,
            "last_cycle": wave.last_cycle, "timescale": "1 ps", "period_ps": wave.period_ps,
            "clock_mhz": cfg.clock.mhz, "filter": flt.text,
            "signals": "see simulator/outputs/waveform.py and docs/traces.md",
            "config": {"name": cfg.name, "source": cfg.source, "sha256": cfg.sha256},
            "model": {"source": net.source}, "queries": int(result.outputs.shape[0]),
            "provenance": provenance or {},
        })
        if own:
            rs.commit()
    finally:
        if own:
            rs.close()
    return summary


class _CsvWriter:
    def __init__(self, sink: Any) -> None:
        import pyarrow.csv as pacsv

        self._w = pacsv.CSVWriter(sink, SCHEMA)

    def write_table(self, table: pa.Table) -> None:
        self._w.write_table(table)

    def close(self) -> None:
        self._w.close()


def _open_writer(sink: Any, fmt: str) -> Any:
    """A chunked writer on an open binary file (created by the result set)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(sink, SCHEMA, compression="zstd")
    return _CsvWriter(sink)


def read_trace(path: str | os.PathLike[str]) -> Any:
    """Read a trace file back as a pandas DataFrame with the schema's dtypes (nullable ints)."""
    import pandas as pd

    p = Path(path)
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(str(p))
    else:
        import pyarrow.csv as pacsv

        opts = pacsv.ConvertOptions(
            column_types={n: t for n, t, _, _ in COLUMNS}, strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        table = pacsv.read_csv(str(p), convert_options=opts)
    mapping = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype(),
               pa.int16(): pd.Int16Dtype(), pa.bool_(): pd.BooleanDtype(),
               pa.string(): pd.StringDtype()}
    return table.to_pandas(types_mapper=mapping.get)
