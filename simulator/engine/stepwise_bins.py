"""Time-bin accumulation (``schedule.order = "time_bin"``) inside the stepwise engine.

Inputs stream in time order (larger code first, ties by index), G = adder_tree_width per
step; the bin number never decreases along that order. Each lane keeps an exact (unbounded)
bin register: the step's products are added to it bin by bin, and when a bin's last input is
in the step the register is added to the accumulator -- one write, the overflow policy applied
to that addition -- and cleared. Several bins may close in one step (writes chained in bin
order in the step's cycle); a bin may span several steps. See docs/schedule.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..fixedpoint import Register
from ..units.mac_array import fit_policy, overflow_error

if TYPE_CHECKING:
    from .stepwise_result import PathStats

NO_EVENT = ""


@dataclass
class BinAdd:
    """``schedule.order = "time_bin"``: one accumulator write of one time bin, all lanes.

    The bin's products are summed exactly over the steps that carry its inputs (an unbounded
    per-lane bin register) and added to the accumulator once, in the cycle of the step that
    holds the bin's last input (time order). ``bin`` is the bin number (0 = earliest),
    ``first_input`` its first input index in time order, ``input_count`` its inputs; arrays are
    int64 (n,): bin_sum (the addend), acc_before, acc_exact, acc_after; acc_kind "" or policy.
    """

    bin: int
    first_input: int
    input_count: int
    bin_sum: np.ndarray
    acc_before: np.ndarray
    acc_exact: np.ndarray
    acc_after: np.ndarray
    acc_kind: np.ndarray


def step_bins(
    q: int,
    nb: np.ndarray,
    step: int,
    g_width: int,
    idx: np.ndarray,
    bin_pos: np.ndarray,
    prods: np.ndarray,
    acc: np.ndarray,
    open_sum: np.ndarray,
    unb: np.ndarray,
    reg: Register,
    policy: str,
    st: PathStats,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[BinAdd]]:
    """time_bin: add this step's products (time order, ``idx[step*G:...]``) to the open
    bin register; every bin whose last input is in this step is added to the accumulator
    (one write each, bin order). ``unb``: the unbounded sum of the bins added so far.
    Returns (acc, open bin sum, unb, writes)."""
    lo = step * g_width
    hi = min(lo + g_width, idx.size)
    adds: list[BinAdd] = []
    over_step = np.zeros(acc.size, dtype=bool)
    first_value = np.zeros(acc.size, dtype=np.int64)
    run = unb.copy()
    p = lo
    while p < hi:
        b = int(bin_pos[p])
        end = p + int(np.searchsorted(bin_pos[p:hi], b, side="right"))
        open_sum = open_sum + prods[:, p - lo : end - lo].sum(axis=1)
        if end < idx.size and int(bin_pos[end]) == b:  # the bin goes on next step
            break
        start = int(np.searchsorted(bin_pos, b, side="left"))
        exact = acc + open_sum
        over = (exact < reg.min) | (exact > reg.max)
        after = fit_policy(exact, reg, policy)
        if over.any():
            col = 0 if policy == "wrap" else 1  # the fast path's columns (error: 1)
            (st.acc_wrap if col == 0 else st.acc_saturate)[nb[over]] += 1
            for j in nb[over]:
                st.pairs.setdefault((q, int(j)), [0, 0, 0])[col] += 1
            new = over & ~over_step
            first_value[new] = exact[new]
            over_step |= over
        run = run + open_sum
        st.partial_min = min(st.partial_min, int(run.min()))
        st.partial_max = max(st.partial_max, int(run.max()))
        adds.append(BinAdd(b, int(idx[start]), end - start, open_sum, acc, exact, after,
                           np.where(over, policy, NO_EVENT)))
        acc = after
        open_sum = np.zeros(acc.size, np.int64)
        p = end
    if over_step.any():  # the step's earliest event: lowest lane (schedule order)
        i = int(np.flatnonzero(over_step)[0])
        if st.first is None:
            st.first = (q, int(nb[i]), step)
        if policy == "error":
            raise overflow_error("accumulator", q, int(nb[i]), step, int(first_value[i]),
                                 reg)
    return acc, open_sum, run, adds
