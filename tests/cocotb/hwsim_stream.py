"""cocotb 2.x test: drive hwsim_datapath (or any DUT with its port list) from a vectors folder.

Run by tests/test_rtl_cocotb.py through cocotb's runner; the environment names the vectors
folder (HWSIM_VECTORS) and the layer folder (HWSIM_LAYER). The .npy vectors and the manifest
are read here; every output word is compared (accumulator, code, event count, flags) exactly
as tb_stream.v does. When the layer has --timing vectors (t_accw, t_issue, t_out) and the
manifest's datapath.cycle_checks.checked, the beats are offered in the cycles t_accw gives and
the cycle of every accumulator write (acc_we), requantizer issue (rq_issue) and output word
(out_word_valid) is compared too (docs/vectors.md, "Cycle checks"; cycle 0 = the first clock
period with rst_n high; idle cycles while the DUT holds no work are skipped). The test fails
on any mismatch or a wrong comparison count.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge


def _pack(values: list[int], bits: int) -> int:
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return word


def _lane(bus: int, i: int, bits: int, signed: bool) -> int:
    v = (bus >> (i * bits)) & ((1 << bits) - 1)
    return v - (1 << bits) if signed and v >> (bits - 1) else v


@dataclass
class Beat:
    """One input beat: tile (query, tile), step, the cycle it is due (-1: as soon as ready)."""

    q: int
    tile: int
    step: int
    target: int
    first: bool
    last: bool
    x: int
    w: int
    wzp: int
    m0: int
    shift: int
    lanes: int
    accw_index: tuple[int, int, int] | None
    skip: bool = False  # a tile without any step (in_skip): its lanes issue in its cycle


@cocotb.test()
async def stream_vectors(dut: object) -> None:
    root = Path(os.environ["HWSIM_VECTORS"])
    name = os.environ["HWSIM_LAYER"]
    man = json.loads((root / "manifest.json").read_text())
    entry = next(e for e in man["layers"] if e["dir"] == name)
    p = entry["testbench"]["parameters"]
    d = root / name
    x, w, wzp, m0, shift, acc, y, aev, flags = (
        np.load(d / f"{v}.npy").astype(np.int64)
        for v in ("x", "w", "wzp", "m0", "shift", "acc", "y", "acc_ev", "flags"))
    q_n, n_n, lanes, tree = int(p["Q"]), int(p["N"]), int(p["LANES"]), int(p["TREE"])
    n0, n_out = int(p["N0"]), int(p["N_OUT"])
    xb, wb, ab, yb = int(p["X_BITS"]), int(p["W_BITS"]), int(p["ACC_BITS"]), int(p["Y_BITS"])
    mb, sb, eb, zx = int(p["M0_BITS"]), int(p["SHIFT_BITS"]), int(p["EV_BITS"]), int(p["ZX"])
    timing = bool(entry["datapath"].get("cycle_checks", {}).get("checked"))
    if timing:
        t_accw, t_issue, t_out = (np.load(d / f"{v}.npy").astype(np.int64)
                                  for v in ("t_accw", "t_issue", "t_out"))
    tile0 = n0 // lanes
    n_tiles = (n0 + n_n - 1) // lanes - tile0 + 1

    # every beat, in order, on the schedule's tiling
    beats: list[Beat] = []
    thr = int(p["THROUGHPUT"])
    for q in range(q_n):
        idx = [k for k in range(x.shape[1]) if not (p["EVENT_DRIVEN"] and x[q, k] == zx)]
        skip = not idx  # no active input: one in_skip beat per tile
        steps = max(1, -(-len(idx) // tree))
        for ti in range(n_tiles):
            t = tile0 + ti
            sel = [t * lanes + lane - n0 for lane in range(lanes)]
            ok = [0 <= j < n_n for j in sel]
            busy = min(lanes, n_out - t * lanes)
            for s in range(steps):
                ks = idx[s * tree:(s + 1) * tree]
                xs = [x[q, k] for k in ks] + [zx] * (tree - len(ks))
                ws: list[int] = []
                for lane in range(lanes):
                    row = [w[sel[lane], k] if ok[lane] else 0 for k in ks]
                    ws += row + [0] * (tree - len(ks))
                where = (q, ti, s) if timing and s < t_accw.shape[2] and not skip else None
                target = int(t_accw[where]) if where else -1
                if skip and timing:  # the drain starts in the beat's cycle
                    lane, j = next((ln, j) for ln, j in enumerate(sel) if 0 <= j < n_n)
                    target = int(t_issue[q, j]) - lane // thr
                beats.append(Beat(
                    q, t, s, target, s == 0, s == steps - 1,
                    _pack(xs, xb), _pack(ws, wb),
                    _pack([wzp[j] if o else 0 for j, o in zip(sel, ok, strict=True)], wb),
                    _pack([m0[j] if o else 0 for j, o in zip(sel, ok, strict=True)], mb),
                    _pack([shift[j] if o else 0 for j, o in zip(sel, ok, strict=True)], sb),
                    busy, where, skip))

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())  # type: ignore[attr-defined]
    dut.rst_n.value = 0  # type: ignore[attr-defined]
    dut.in_valid.value = 0  # type: ignore[attr-defined]
    dut.in_lanes.value = 0  # type: ignore[attr-defined]
    dut.in_skip.value = 0  # type: ignore[attr-defined]
    dut.out_ready.value = 0  # type: ignore[attr-defined]
    for _ in range(2):
        await RisingEdge(dut.clk)  # type: ignore[attr-defined]
    await FallingEdge(dut.clk)  # type: ignore[attr-defined]
    dut.rst_n.value = 1  # type: ignore[attr-defined]
    dut.out_ready.value = 1  # type: ignore[attr-defined]

    passed = failed = cyc_passed = cyc_failed = 0

    def check(what: str, q: int, j: int, want: int, got: int) -> None:
        nonlocal passed, failed
        if int(want) == int(got):
            passed += 1
        else:
            failed += 1
            dut._log.error(  # type: ignore[attr-defined]
                f"MISMATCH {what} query {q} neuron {n0 + j}: expected {want}, got {got}")

    obs_accw: list[int] = []
    obs_issue: dict[tuple[int, int], int] = {}
    obs_out: dict[tuple[int, int], int] = {}
    in_flight: list[list[tuple[int, int] | None]] = [[] for _ in range(lanes)]
    extra = 0
    drain: tuple[int, int] | None = None  # (query, tile) whose lanes drain
    b = otile = tiles_sent = 0
    cyc = 0  # this falling edge is in cycle 0
    flush = 0
    while True:
        # drive this cycle's beat (due, or as soon as the DUT takes it)
        beat = beats[b] if b < len(beats) else None
        idle_gap = beat is not None and timing and cyc < beat.target
        if beat is not None and not idle_gap:
            dut.in_x.value = beat.x  # type: ignore[attr-defined]
            dut.in_w.value = beat.w  # type: ignore[attr-defined]
            dut.in_wzp.value = beat.wzp  # type: ignore[attr-defined]
            dut.in_m0.value = beat.m0  # type: ignore[attr-defined]
            dut.in_shift.value = beat.shift  # type: ignore[attr-defined]
            dut.in_lanes.value = beat.lanes  # type: ignore[attr-defined]
            dut.in_first.value = int(beat.first)  # type: ignore[attr-defined]
            dut.in_last.value = int(beat.last)  # type: ignore[attr-defined]
            dut.in_skip.value = int(beat.skip)  # type: ignore[attr-defined]
            dut.in_valid.value = 1  # type: ignore[attr-defined]
        else:
            dut.in_valid.value = 0  # type: ignore[attr-defined]
        await ReadOnly()
        ready = int(dut.in_ready.value)  # type: ignore[attr-defined]
        taken = beat is not None and not idle_gap and bool(ready)
        if taken and beat.skip:  # type: ignore[union-attr]
            drain = (beat.q, beat.tile)  # type: ignore[union-attr]
        if timing:
            if int(dut.acc_we.value):  # type: ignore[attr-defined]
                obs_accw.append(cyc)
            issue = int(dut.rq_issue.value)  # type: ignore[attr-defined]
            words = int(dut.out_word_valid.value)  # type: ignore[attr-defined]
            for lane in range(lanes):
                if issue >> lane & 1:
                    j = -1 if drain is None else drain[1] * lanes + lane - n0
                    word = (drain[0], j) if drain is not None and 0 <= j < n_n else None
                    in_flight[lane].append(word)
                    if word is not None:
                        extra += word in obs_issue
                        obs_issue.setdefault(word, cyc)
                if words >> lane & 1:
                    if not in_flight[lane]:
                        extra += 1
                        continue
                    word = in_flight[lane].pop(0)
                    if word is not None:
                        extra += word in obs_out
                        obs_out.setdefault(word, cyc)
        if int(dut.out_valid.value) and otile < q_n * n_tiles:  # type: ignore[attr-defined]
            q, t = otile // n_tiles, tile0 + otile % n_tiles
            o_acc = int(dut.out_acc.value)  # type: ignore[attr-defined]
            o_y = int(dut.out_y.value)  # type: ignore[attr-defined]
            o_ev = int(dut.out_ev.value)  # type: ignore[attr-defined]
            o_fl = int(dut.out_flags.value)  # type: ignore[attr-defined]
            for lane in range(lanes):
                j = t * lanes + lane - n0
                if not 0 <= j < n_n:
                    continue
                want_flags = (flags[q, j] & 1) | (((flags[q, j] >> 2) & 3) << 1)
                check("acc", q, j, acc[q, j], _lane(o_acc, lane, ab, True))
                check("code", q, j, y[q, j], _lane(o_y, lane, yb, bool(p["Y_SIGNED"])))
                check("acc_ev", q, j, aev[q, j], _lane(o_ev, lane, eb, False))
                check("flags", q, j, want_flags, _lane(o_fl, lane, 4, False))
            otile += 1
        if taken:
            b += 1  # taken at the closing edge
            if beat.last:  # type: ignore[union-attr]
                drain = (beat.q, beat.tile)  # type: ignore[union-attr]
                tiles_sent += 1
        if b == len(beats) and otile == q_n * n_tiles:
            flush += 1
            if flush > int(p.get("LATENCY", 1)) + 2:
                break
        await RisingEdge(dut.clk)  # type: ignore[attr-defined]
        cyc += 1
        await FallingEdge(dut.clk)  # type: ignore[attr-defined]
        if cyc > 10_000_000:
            raise AssertionError("the DUT stopped taking beats or raising out_valid")
        # no work in the DUT: skip the idle cycles up to the next beat
        nxt = beats[b] if b < len(beats) else None
        if (timing and nxt is not None and cyc < nxt.target and int(dut.in_ready.value)  # type: ignore[attr-defined]
                and otile == tiles_sent and not any(in_flight)):
            cyc = nxt.target

    if timing:
        def cyc_check(what: str, key: object, want: int, got: int) -> None:
            nonlocal cyc_passed, cyc_failed
            if want == got:
                cyc_passed += 1
            else:
                cyc_failed += 1
                dut._log.error(  # type: ignore[attr-defined]
                    f"MISMATCH cycle {what} {key}: expected cycle {want}, got {got}")

        sent = [bt for bt in beats if bt.accw_index is not None]
        for i, bt in enumerate(sent):
            cyc_check("t_accw", bt.accw_index, int(t_accw[bt.accw_index]),
                      obs_accw[i] if i < len(obs_accw) else -1)
        for q in range(q_n):
            for j in range(n_n):
                cyc_check("t_issue", (q, n0 + j), int(t_issue[q, j]), obs_issue.get((q, j), -1))
                cyc_check("t_out", (q, n0 + j), int(t_out[q, j]), obs_out.get((q, j), -1))
        cyc_failed += extra + abs(len(obs_accw) - len(sent))
        cyc_failed += int((t_accw != -1).sum()) - len(sent)  # steps never streamed
    dut._log.info(  # type: ignore[attr-defined]
        f"hwsim_stream: words {passed} passed, {failed} failed; cycles {cyc_passed} passed, "
        f"{cyc_failed} failed")
    assert failed == 0, f"{failed} mismatches"
    assert cyc_failed == 0, f"{cyc_failed} cycle mismatches"
    assert passed == 4 * q_n * n_n
    want_cycles = entry["datapath"]["cycle_checks"]["comparisons"] if timing else 0
    assert cyc_passed == want_cycles, f"{cyc_passed} cycle comparisons, expected {want_cycles}"
