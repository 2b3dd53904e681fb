"""cocotb 2.x test: drive hwsim_datapath (or any DUT with its port list) from a vectors folder.

Run by tests/test_rtl_cocotb.py through cocotb's runner; the environment names the vectors
folder (HWSIM_VECTORS) and the layer folder (HWSIM_LAYER). The .npy vectors and the manifest
are read here; every output word is compared (accumulator, code, event count, flags) exactly
as tb_stream.v does, and the test fails on any mismatch or a wrong comparison count.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge


def _pack(values: list[int], bits: int) -> int:
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return word


def _lane(bus: int, i: int, bits: int, signed: bool) -> int:
    v = (bus >> (i * bits)) & ((1 << bits) - 1)
    return v - (1 << bits) if signed and v >> (bits - 1) else v


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
    xb, wb, ab, yb = int(p["X_BITS"]), int(p["W_BITS"]), int(p["ACC_BITS"]), int(p["Y_BITS"])
    mb, sb, eb, zx = int(p["M0_BITS"]), int(p["SHIFT_BITS"]), int(p["EV_BITS"]), int(p["ZX"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())  # type: ignore[attr-defined]
    dut.rst_n.value = 0  # type: ignore[attr-defined]
    dut.in_valid.value = 0  # type: ignore[attr-defined]
    dut.out_ready.value = 0  # type: ignore[attr-defined]
    for _ in range(2):
        await RisingEdge(dut.clk)  # type: ignore[attr-defined]
    await FallingEdge(dut.clk)  # type: ignore[attr-defined]
    dut.rst_n.value = 1  # type: ignore[attr-defined]
    passed = failed = 0
    for q in range(q_n):
        idx = [k for k in range(x.shape[1])
               if not (p["EVENT_DRIVEN"] and x[q, k] == zx)]
        steps = max(1, -(-len(idx) // tree))
        for n0 in range(0, n_n, lanes):
            nt = min(lanes, n_n - n0)
            pad = lanes - nt
            dut.in_wzp.value = _pack([*wzp[n0:n0 + nt], *[0] * pad], wb)  # type: ignore
            dut.in_m0.value = _pack([*m0[n0:n0 + nt], *[0] * pad], mb)  # type: ignore
            dut.in_shift.value = _pack([*shift[n0:n0 + nt], *[0] * pad], sb)  # type: ignore
            for s in range(steps):
                ks = idx[s * tree:(s + 1) * tree]
                xs = [x[q, k] for k in ks] + [zx] * (tree - len(ks))
                ws = []
                for lane in range(lanes):
                    row = [w[n0 + lane, k] if lane < nt else 0 for k in ks]
                    ws += row + [0] * (tree - len(ks))
                dut.in_x.value = _pack(xs, xb)  # type: ignore[attr-defined]
                dut.in_w.value = _pack(ws, wb)  # type: ignore[attr-defined]
                dut.in_first.value = int(s == 0)  # type: ignore[attr-defined]
                dut.in_last.value = int(s == steps - 1)  # type: ignore[attr-defined]
                dut.in_valid.value = 1  # type: ignore[attr-defined]
                while True:  # in_ready is stable mid-cycle; the beat moves at the next edge
                    ready = int(dut.in_ready.value)  # type: ignore[attr-defined]
                    await RisingEdge(dut.clk)  # type: ignore[attr-defined]
                    await FallingEdge(dut.clk)  # type: ignore[attr-defined]
                    if ready:
                        break
                dut.in_valid.value = 0  # type: ignore[attr-defined]
            while not int(dut.out_valid.value):  # type: ignore[attr-defined]
                await FallingEdge(dut.clk)  # type: ignore[attr-defined]
            o_acc = int(dut.out_acc.value)  # type: ignore[attr-defined]
            o_y = int(dut.out_y.value)  # type: ignore[attr-defined]
            o_ev = int(dut.out_ev.value)  # type: ignore[attr-defined]
            o_fl = int(dut.out_flags.value)  # type: ignore[attr-defined]
            for lane in range(nt):
                j = n0 + lane
                want_flags = (flags[q, j] & 1) | (((flags[q, j] >> 2) & 3) << 1)
                for what, want, got in (
                    ("acc", acc[q, j], _lane(o_acc, lane, ab, True)),
                    ("code", y[q, j], _lane(o_y, lane, yb, bool(p["Y_SIGNED"]))),
                    ("acc_ev", aev[q, j], _lane(o_ev, lane, eb, False)),
                    ("flags", want_flags, _lane(o_fl, lane, 4, False)),
                ):
                    if int(want) == got:
                        passed += 1
                    else:
                        failed += 1
                        dut._log.error(  # type: ignore[attr-defined]
                            f"MISMATCH {what} query {q} neuron {j}: expected {want}, got {got}")
            dut.out_ready.value = 1  # type: ignore[attr-defined]
            await RisingEdge(dut.clk)  # type: ignore[attr-defined]
            await FallingEdge(dut.clk)  # type: ignore[attr-defined]
            dut.out_ready.value = 0  # type: ignore[attr-defined]
    dut._log.info(f"hwsim_stream: {passed} passed, {failed} failed")  # type: ignore
    assert failed == 0, f"{failed} mismatches"
    assert passed == 4 * q_n * n_n
