"""Output safety: result sets written all-or-nothing inside their output folder.

See :mod:`simulator.outputs.resultset` and docs/security.md. Writers (run, trace, plots,
vectors, train, demo, and sweeps) go through :class:`ResultSet` or :func:`write_file_atomic`.
"""

from .resultset import (
    LOCK_NAME,
    STAGE_PREFIX,
    OutputBusyError,
    OutputError,
    ResultSet,
    check_out_dir,
    check_out_file,
    os_error,
    owned_by_patterns,
    write_file_atomic,
    writing,
)

__all__ = [
    "LOCK_NAME", "STAGE_PREFIX", "OutputBusyError", "OutputError", "ResultSet",
    "check_out_dir", "check_out_file", "os_error", "owned_by_patterns", "write_file_atomic",
    "writing",
]
