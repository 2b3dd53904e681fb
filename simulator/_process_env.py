"""Process settings that must precede numpy's import (imported first by the ``hwsim`` CLI).

OpenBLAS's worker threads busy-wait for new work for 2**28 cycles (~0.1 s) after each BLAS
call. The simulator follows its BLAS products with compiled loops and ONNX Runtime products
on the same cores, which that spinning slowed by up to ~50 % (docs/performance.md, "OpenBLAS
spinning"). ``OPENBLAS_THREAD_TIMEOUT=4`` (2**4 cycles, OpenBLAS's minimum) makes the workers
sleep at once; OpenBLAS reads it when numpy loads, so a library user who imported numpy first
keeps their setting. A value already in the environment is kept.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
