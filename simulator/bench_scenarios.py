"""The issue-8 scenarios of ``hwsim bench --scenarios`` (docs/performance.md's table).

Each scenario runs in a fresh Python process (``python -m simulator.bench_scenarios --one
NAME``) so that its peak RSS and its timings are its own: weight caches, numba's compiled
kernels and the allocator's free lists of one scenario do not carry into the next. The child
prints its lines and, last, one ``BENCH_RESULT {json}`` line with the BenchResult fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .bench import BenchResult, run_bench

RESULT_PREFIX = "BENCH_RESULT "


@dataclass(frozen=True)
class Scenario:
    """One row of the issue-8 table: a preset, overrides and the target ratio."""

    name: str
    preset: str
    overrides: tuple[str, ...]
    target: float


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("pytorch_fbgemm, report.headroom=exact", "pytorch_fbgemm", (), 2.0),
    Scenario("int8_fixed_point (default preset)", "int8_fixed_point", (), 2.0),
    Scenario("schedule.mode=event_driven", "pytorch_fbgemm", ("schedule.mode=event_driven",),
             2.0),
    Scenario("22-bit wrap", "pytorch_fbgemm",
             ("accumulator.bits=22", 'accumulator.overflow="wrap"'), 5.0),
    Scenario("20-bit saturate", "pytorch_fbgemm",
             ("accumulator.bits=20", 'accumulator.overflow="saturate"'), 5.0),
    Scenario("x86_avx2_fbgemm", "x86_avx2_fbgemm", (), 3.0),
)


def run_scenarios(
    k: int = 3136, n1: int = 6272, places: int = 500, queries: int = 500, repeats: int = 3,
    batch: int | None = None, backends: Sequence[str] | None = None, check_queries: int = 8,
    out: Callable[[str], None] = print, only: Sequence[str] = (), isolate: bool = True,
) -> list[tuple[Scenario, BenchResult]]:
    """Run every scenario (or those whose name contains one of ``only``) and print a table.

    ``isolate``: each scenario in its own Python process (see the module docstring)."""
    rows = []
    for sc in SCENARIOS:
        if only and not any(o in sc.name for o in only):
            continue
        out(f"--- scenario: {sc.name}")
        if isolate:
            res = _run_in_child(sc, (k, n1, places), queries, repeats, batch, backends,
                                check_queries, out)
        else:
            res = run_bench(k, n1, places, queries, repeats, batch, backends, sc.overrides,
                            out=lambda line: out("  " + line), preset=sc.preset,
                            check_queries=check_queries)
        rows.append((sc, res))
    out("")
    out("| scenario | torch ms | simulator ms | ratio | numpy-only ratio | target | peak RSS MiB "
        "| check |")
    out("|---|---:|---:|---:|---:|---:|---:|---|")
    for sc, res in rows:
        npr = f"{res.ratio('numpy'):.2f}" if "numpy" in res.sim_s else "-"
        check = (f"torch: {res.codes_differing} differ" if res.torch_arithmetic else
                 f"reference ({res.reference_queries} q): {len(res.reference_differences)} differ")
        out(f"| {sc.name} | {res.torch_s * 1e3:.1f} | {res.sim_s[res.primary] * 1e3:.1f} | "
            f"{res.ratio():.2f} | {npr} | <= {sc.target:g} | {res.peak_rss_mib:.0f} | {check} |")
    return rows


def _run_in_child(
    sc: Scenario, shape: tuple[int, int, int], queries: int, repeats: int, batch: int | None,
    backends: Sequence[str] | None, check_queries: int, out: Callable[[str], None],
) -> BenchResult:
    """Run one scenario in a fresh interpreter; its lines are relayed as they come."""
    cmd = [sys.executable, "-m", "simulator.bench_scenarios", "--one", sc.name,
           "--shape", ",".join(map(str, shape)), "--queries", str(queries),
           "--repeats", str(repeats), "--check-queries", str(check_queries)]
    if batch is not None:
        cmd += ["--batch", str(batch)]
    for b in backends or ():
        cmd += ["--backend", b]
    result = None
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ)) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(RESULT_PREFIX):
                result = line[len(RESULT_PREFIX):]
            else:
                out("  " + line)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"bench scenario {sc.name!r}: the child process failed "
                           f"(exit {proc.returncode}); its output is above")
    fields = json.loads(result)
    fields["shape"] = tuple(fields["shape"])
    return BenchResult(**fields)


def _child_main(argv: Sequence[str] | None = None) -> int:
    """``python -m simulator.bench_scenarios --one NAME ...``: one scenario, then its result
    as the last line (``BENCH_RESULT {json}``)."""
    from . import _process_env  # noqa: F401  (the process settings of ``hwsim``, applied once)

    p = argparse.ArgumentParser(prog="python -m simulator.bench_scenarios")
    p.add_argument("--one", required=True, choices=[sc.name for sc in SCENARIOS])
    p.add_argument("--shape", required=True)
    p.add_argument("--queries", type=int, required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--check-queries", type=int, required=True)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--backend", action="append", default=None)
    a = p.parse_args(argv)
    sc = next(s for s in SCENARIOS if s.name == a.one)
    k, n1, places = (int(v) for v in a.shape.split(","))
    res = run_bench(k, n1, places, a.queries, a.repeats, a.batch, a.backend, sc.overrides,
                    preset=sc.preset, check_queries=a.check_queries)
    print(RESULT_PREFIX + json.dumps(dataclasses.asdict(res)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
