"""Output safety: result sets written all-or-nothing inside their output folder.

Modules: ``checks`` (output paths checked before computing; OS errors as one line), ``lock``
(the folder lock, descriptor-relative helpers), ``resultset`` (staging, journal, swap).
See docs/security.md. Writers (run, trace, plots,
vectors, train, demo, and sweeps) go through :class:`ResultSet` or :func:`write_file_atomic`.
"""

from .checks import (
    OutputBusyError,
    OutputError,
    check_out_dir,
    check_out_file,
    os_error,
    writing,
)
from .lock import LOCK_NAME, FolderLock, HeldFolder
from .resultset import STAGE_PREFIX, ResultSet, owned_by_patterns, write_file_atomic

__all__ = [
    "LOCK_NAME", "STAGE_PREFIX", "FolderLock", "HeldFolder", "OutputBusyError", "OutputError",
    "ResultSet",
    "check_out_dir", "check_out_file", "os_error", "owned_by_patterns", "write_file_atomic",
    "writing",
]
