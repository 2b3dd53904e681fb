"""Process settings for the ``hwsim`` command (imported first by simulator/cli.py).

Both are process-wide, so the library never applies them on import; a notebook user may call
:func:`tune_process` (before numpy loads, for the first one). docs/performance.md ("Process
settings") has the measurements.

* ``OPENBLAS_THREAD_TIMEOUT=4``: OpenBLAS's worker threads busy-wait for new work for 2**28
  cycles (~0.1 s) after each BLAS call; the simulator follows its BLAS products with compiled
  loops and ONNX Runtime products on the same cores, which that spinning slowed by up to
  ~50 %. 4 (2**4 cycles, OpenBLAS's minimum) makes them sleep at once. OpenBLAS reads it when
  numpy loads; a value already in the environment is kept.
* glibc ``mallopt``: arrays above the mmap threshold (128 KB, growing to at most 32 MB) are
  mapped fresh on every allocation and unmapped when freed, so each run pays one page fault
  per 4 KB of every (queries x neurons) array again (~30 ms per 25 MB array on this VM).
  Raising the mmap and trim thresholds keeps freed memory in the heap for the next array:
  the 20-bit saturate bench ran ~28 % faster, peak RSS +4 %. Memory freed during a run is
  then kept by the process until it exits. ``HWSIM_MALLOC=default`` leaves glibc as it is
  (``tuned`` or unset: applied; any other value: left as it is, with a warning).
"""

from __future__ import annotations

import os

MMAP_THRESHOLD = 1 << 30  # bytes: allocations below come from the heap, reused when freed
TRIM_THRESHOLD = 1 << 30  # bytes of free heap top kept instead of returned to the system


def tune_process() -> dict[str, bool]:
    """Apply both settings to this process; returns which ones took effect."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    return {"openblas_thread_timeout": True, "malloc_thresholds": _malloc_thresholds()}


def _malloc_thresholds() -> bool:
    """glibc only (Linux); False elsewhere, when opted out or when glibc refuses."""
    import sys

    choice = os.environ.get("HWSIM_MALLOC", "").strip().lower()
    if choice == "default":
        return False
    if choice not in ("", "tuned"):  # a typo must not silently keep the tuning on
        print(f"hwsim: warning: HWSIM_MALLOC={choice!r} is not 'default' or 'tuned'; "
              "glibc's malloc left as it is", file=sys.stderr)
        return False
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and \
        bool(mallopt(m_trim_threshold, TRIM_THRESHOLD))


APPLIED = tune_process()
