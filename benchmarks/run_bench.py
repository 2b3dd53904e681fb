"""Run the simulator-vs-fbgemm benchmark (the same code as ``hwsim bench``).

    python benchmarks/run_bench.py [--queries 500] [--repeats 5] [--backend auto ...]

Prints both engines' best wall times and ends with ``ratio_vs_fbgemm <x>``. If the machine
sets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (they slow a current numpy), the benchmark restarts
itself once without them; ``--keep-openblas-env`` keeps them. Results: docs/performance.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
