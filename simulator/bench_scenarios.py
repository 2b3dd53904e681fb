"""The issue-8 scenarios of ``hwsim bench --scenarios`` (docs/performance.md's table)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .bench import BenchResult, run_bench


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
    out: Callable[[str], None] = print, only: Sequence[str] = (),
) -> list[tuple[Scenario, BenchResult]]:
    """Run every scenario (or those whose name contains one of ``only``) and print a table."""
    rows = []
    for sc in SCENARIOS:
        if only and not any(o in sc.name for o in only):
            continue
        out(f"--- scenario: {sc.name}")
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
