"""What trace a run asks for (:class:`TraceRequest`, checked before and after the run)
and what was written (:class:`TraceSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import HwConfig
from ..engine.fast import SimResult
from ..network import QuantizedNetwork
from .estimate import estimate_rows, estimate_rows_before_run
from .filters import TraceFilter, check_filter, parse_filter
from .schema import DEFAULT_MAX_ROWS, FORMATS, LEVELS, TraceError, TraceLimitError


@dataclass
class TraceSummary:
    """What write_trace produced (path is None for level off)."""

    level: str
    format: str
    rows: int
    estimated_rows: int
    path: Path | None
    manifest: Path | None
    filter: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.path is None:
            return "trace: off"
        what = "ops in a waveform" if self.format == "vcd" else "rows"
        return (f"trace: {self.rows:,} {what} ({self.level} level, {self.format}) -> "
                f"{self.path} in {self.seconds:.1f} s")


@dataclass(frozen=True)
class TraceRequest:
    """What trace a run should write: level, filter, format, row limit, and where.

    ``dir`` None = into the run's own result set (the --out folder).
    """

    level: str = "off"
    filter: str = ""
    format: str = "parquet"
    max_rows: int = DEFAULT_MAX_ROWS
    dir: Path | None = None

    def check(self) -> TraceFilter:
        """Validate level, format, filter syntax and limit (no model needed); raise TraceError."""
        if self.level not in LEVELS:
            raise TraceError(f"--trace {self.level!r}: choose one of {', '.join(LEVELS)}")
        if self.format not in FORMATS:
            raise TraceError(
                f"--trace-format {self.format!r}: choose one of {', '.join(FORMATS)}")
        flt = parse_filter(self.filter)
        if flt.first is not None and self.level not in ("op", "cycle"):
            raise TraceError(f"--trace-filter {self.filter!r}: 'first' picks a cycle window; "
                             "it needs --trace op or cycle")
        if self.format == "vcd" and self.level not in ("op", "cycle", "off"):
            raise TraceError(f"--trace-format vcd: a waveform needs --trace op or cycle, not "
                             f"{self.level!r}")
        if self.level == "off":
            if flt.text:
                raise TraceError("--trace-filter needs --trace layer|neuron|op|cycle")
            return flt
        if self.max_rows < 1:
            raise TraceError(f"--max-trace-rows {self.max_rows}: must be >= 1")
        return flt

    def check_before_run(self, net: QuantizedNetwork, cfg: HwConfig, queries: int) -> None:
        """Check the filter against the model and, where the schedule alone decides it (see
        :func:`estimate_rows_before_run`), the row limit - before anything is simulated."""
        flt = self.check()
        if self.level == "off":
            return
        check_filter(flt, net, queries, self.level)
        if self.level in ("op", "cycle"):
            from ..engine.stepwise import check_steppable

            check_steppable(cfg)  # op/cycle rows come from the stepwise engine
        est = estimate_rows_before_run(net, cfg, queries, self.level, flt)
        if est is not None and est[1] and est[0] > self.max_rows:
            raise self._limit_error(est[0])

    def _limit_error(self, est: int) -> TraceLimitError:
        return TraceLimitError(
            f"--trace {self.level}: the trace would have {est:,} rows, more than "
            f"--max-trace-rows {self.max_rows:,}; narrow it with --trace-filter (e.g. "
            "'query=0:0,layer=feature,neuron=0:63,cycle=0:5000') or raise "
            "--max-trace-rows; nothing was written"
        )

    def check_size(self, result: SimResult, net: QuantizedNetwork, cfg: HwConfig) -> int:
        """Raise TraceLimitError if the trace would pass ``max_rows`` (nothing written)."""
        flt = self.check()
        if self.level == "off":
            return 0
        check_filter(flt, net, int(result.outputs.shape[0]), self.level)
        est = estimate_rows(result, cfg, self.level, flt, net)
        if est > self.max_rows:
            raise self._limit_error(est)
        return est
