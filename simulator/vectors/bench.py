"""Compiling and running the reference bench with Icarus Verilog."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .encoding import VectorsError
from .writer import TB_FILE, TB_TOP

EXIT_RTL_FAILED = 1
_TB_SUMMARY = re.compile(r"tb_layer: (\d+) passed, (\d+) failed")
# --- running the bench --------------------------------------------------------------------


@dataclass
class BenchRun:
    """Result of compiling and running tb_layer for one layer."""

    layer_dir: str
    returncode: int
    passed: int
    failed: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and "tb_layer: PASS" in self.output


def run_testbench(
    out_dir: str | Path, layer_dir: str, iverilog: str = "iverilog", vvp: str = "vvp",
    timeout: float = 3600.0, testbench: str | Path | None = None,
) -> BenchRun:
    """Compile ``tb_layer.v`` + ``<layer_dir>/tb_top.v`` with Icarus and run it in out_dir.

    ``testbench``: another file to compile instead of the folder's ``tb_layer.v`` (the same
    module ``tb_layer`` and parameters, e.g. a modified datapath).
    """
    root = Path(out_dir)
    for tool in (iverilog, vvp):
        if shutil.which(tool) is None:
            raise VectorsError(f"{tool}: not found on PATH; install Icarus Verilog "
                               "(apt-get install iverilog) or drop --check-rtl")
    top = root / layer_dir / TB_TOP
    if not top.is_file():
        raise VectorsError(f"{top}: no test bench top for this layer (see manifest.json "
                           "layers[].testbench.reason)")
    with tempfile.TemporaryDirectory(prefix="hwsim-tb-") as td:
        exe = str(Path(td) / "tb.vvp")
        comp = subprocess.run(
            [iverilog, "-g2005", "-o", exe,
             str(Path(testbench).resolve()) if testbench else TB_FILE, f"{layer_dir}/{TB_TOP}"],
            cwd=root, capture_output=True, text=True, timeout=timeout,
        )
        if comp.returncode != 0:
            return BenchRun(layer_dir, comp.returncode, 0, 0, comp.stdout + comp.stderr)
        run = subprocess.run([vvp, "-n", exe], cwd=root, capture_output=True, text=True,
                             timeout=timeout)
    text = run.stdout + run.stderr
    m = _TB_SUMMARY.search(text)
    passed, failed = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    return BenchRun(layer_dir, run.returncode, passed, failed, text)

