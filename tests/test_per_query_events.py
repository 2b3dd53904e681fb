"""Per-query event sums of reports (report.per_query_events) come from the strategies' pair
event builders without building the pair table; they must equal the sums over the table and
over the stepwise engine's per-pair events."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.bench import bench_inputs, bench_network
from simulator.config import load_config
from simulator.engine import simulate
from simulator.engine.stepwise import simulate_stepwise
from simulator.report import per_query_events

CASES = [
    ("pytorch_fbgemm", ["accumulator.bits=14", "accumulator.overflow=wrap"], "index"),
    ("pytorch_fbgemm", ["accumulator.bits=13", "accumulator.overflow=saturate"], "index"),
    ("x86_avx2_fbgemm", [], "index"),
    ("pytorch_fbgemm", ["accumulator.bits=14", "accumulator.overflow=wrap"], "time"),
    ("x86_avx2_fbgemm", ["accumulator.bits=18", "accumulator.overflow=saturate"], "time"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_per_query_sums_without_the_table(case: int) -> None:
    preset, sets, order = CASES[case]
    net = bench_network(160, 320, 12, seed=case)
    x = bench_inputs(9, 160, seed=case)
    cfg = load_config(preset, [*sets, f'schedule.order="{order}"'])
    res = simulate(net, cfg, x)
    lazy = [st for lr in res.layers for st in lr.mac.values() if callable(st.pair_event_rows)]
    quick = [per_query_events(lr) for lr in res.layers]
    assert all(callable(st.pair_event_rows) for st in lazy)  # sums without the table
    if order == "index" and preset == "pytorch_fbgemm":
        assert lazy  # the chunked path's builder
    built = []
    for lr in res.layers:
        for st in lr.mac.values():
            _ = st.pair_events  # the table, then the same sums from it
        built.append(per_query_events(lr))
    assert quick == built
    step = simulate_stepwise(net, cfg, x)
    events = 0
    for li, (lr, slr) in enumerate(zip(res.layers, step.layers, strict=True)):
        acc = np.zeros(9, dtype=np.int64)
        pre = np.zeros(9, dtype=np.int64)
        for name in lr.mac:
            rows = slr.stats[name].pair_events()
            np.add.at(acc, rows[:, 0], rows[:, 2] + rows[:, 3])
            np.add.at(pre, rows[:, 0], rows[:, 4])
        assert quick[li]["acc"] == [[q, int(v)] for q, v in enumerate(acc) if v], li
        assert quick[li]["pre_add"] == [[q, int(v)] for q, v in enumerate(pre) if v], li
        events += int(acc.sum() + pre.sum())
    assert events > 0
