"""Old import path of ``hwsim report``: the command now lives in simulator/commands/report.py.

Every public name is re-exported here, and ``python -m simulator.report_cli DIR`` still works.
"""

from __future__ import annotations

import sys

from .commands.report import (
    MAX_REPORT_BYTES,
    REPORT_NAME,
    REPORT_SPEC,
    ReportError,
    add_parser,
    add_report_parser,
    check_schema,
    cmd_report,
    comparison_table,
    cycles_table,
    format_table,
    layers_table,
    load_report,
    main,
    memory_energy_tables,
    overflow_table,
    report_text,
    requantized_table,
)

__all__ = ["MAX_REPORT_BYTES", "REPORT_NAME", "REPORT_SPEC", "ReportError", "add_parser",
           "add_report_parser", "check_schema", "cmd_report", "comparison_table",
           "cycles_table", "format_table", "layers_table", "load_report", "main",
           "memory_energy_tables", "overflow_table", "report_text", "requantized_table"]

if __name__ == "__main__":
    sys.exit(main())
