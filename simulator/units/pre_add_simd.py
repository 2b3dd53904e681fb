"""Hot pre-add pairs of a dense schedule as explicit SIMD code, vectorised across queries.

The same integers as the numba kernel of pre_add_kernel.py, for pre-add groups of two
inputs (``pre_add_width = 2``, e.g. VPMADDUBSW's int16 pairs): for every hot entry (neuron
j, input pair g) and every query q, the exact pair sum s = x'_q,2g w'_j,2g + x'_q,2g+1
w'_j,2g+1 is fitted into the signed pre-add register (wrap: ((s - min) mod 2**bits) + min,
saturate: clip) and, per (query, neuron), the corrections fitted - s are summed, the
negative ones too, and the events (fitted != s) counted.

One loop, written in LLVM IR and compiled once per process (llvm_jit.py): per block of 16
queries and per neuron, its hot pairs in turn, each one load of the 16 queries' two inputs
(int16, laid out (query blocks, pairs, 16, 2)) and one ``vpmaddwd`` against the pair's two weights;
the three sums stay in vector registers and are stored once per (block, neuron), lane by
lane, into int32 (queries, N) arrays (0 for neurons without a hot pair). No pruning by input size:
every hot entry is evaluated for every query (the numba kernel prunes per query but runs
one entry at a time, ~5x slower here).

Exact whenever :func:`fits` holds: int16 inputs and weights (not both -32768), |s| and
|s - min| below 2**30, and every per-neuron sum within int32. A self-test against numpy
runs before first use; any failure leaves the numba kernel in charge. ``HWSIM_SIMD=0``
turns this path off (as it does the SIMD tiles).
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from ..fixedpoint import Register

LANES = 16  # queries per block: two AVX2 registers of int32
_STATE: dict[str, Any] = {}
_LOCK = threading.RLock()


def fits(xmax: int, wmax: int, reg: Register, per_neuron: int) -> bool:
    """True when the int32 lanes hold every value: |x'| and |w'| <= 32767, a pair sum and
    its distance from the register's min below 2**30, and ``per_neuron`` hot pairs'
    corrections (each at most |s| + 2**bits) summed below 2**31."""
    if xmax > 32767 or wmax > 32767 or reg.bits > 29:
        return False
    s = 2 * xmax * wmax
    return s - reg.min < 1 << 30 and per_neuron * (s + (1 << reg.bits)) < 1 << 31


def available() -> bool:
    """True when enabled (HWSIM_SIMD) and both variants passed the self-test here."""
    from .tile_simd import enabled

    if not enabled():
        return False
    with _LOCK:
        if "ok" not in _STATE:
            try:
                _STATE["why"] = _self_test()
            except Exception as exc:  # any failure only disables this path
                _STATE["why"] = f"the SIMD pre-add loop failed: {exc}"
            _STATE["ok"] = not _STATE["why"]
    return bool(_STATE["ok"])


def why_unavailable() -> str:
    """'' when :func:`available`, else the reason."""
    from .tile_simd import enabled

    if not enabled():
        return "HWSIM_SIMD=0"
    available()
    return str(_STATE["why"])


def _ir(wrap: bool) -> str:
    v, h, h32, b1 = "<16 x i32>", "<32 x i16>", "<32 x i32>", "<16 x i1>"
    z = "zeroinitializer"
    even = ", ".join(f"i32 {2 * i}" for i in range(LANES))
    odd = ", ".join(f"i32 {2 * i + 1}" for i in range(LANES))
    smin, smax = "@llvm.smin.v16i32", "@llvm.smax.v16i32"

    def splat(name: str, scalar: str) -> str:
        return (f"  %{name}.s = insertelement {v} poison, i32 {scalar}, i64 0\n"
                f"  %{name} = shufflevector {v} %{name}.s, {v} poison, {v} {z}\n")

    if wrap:
        fit = ("  %d0 = sub <16 x i32> %s, %mnv\n  %a0 = and <16 x i32> %d0, %mkv\n"
               "  %f = add <16 x i32> %a0, %mnv\n")
    else:
        fit = (f"  %l = call {v} {smax}({v} %s, {v} %mnv)\n"
               f"  %f = call {v} {smin}({v} %l, {v} %mxv)\n")
    stores = []
    for i in range(LANES):  # lane i: query q0 + i, column t of the (queries, N) outputs
        stores.append(f"  %qi{i} = add i64 %q0, {i}\n  %qr{i} = mul i64 %qi{i}, %orow\n"
                      f"  %oo{i} = add i64 %qr{i}, %t")
        for arr, val in (("od", "%ad"), ("on", "%an"), ("oc", "%ac")):
            stores.append(f"  %{arr}v{i} = extractelement {v} {val}, i64 {i}\n"
                          f"  %{arr}a{i} = getelementptr i32, ptr %{arr}, i64 %oo{i}\n"
                          f"  store i32 %{arr}v{i}, ptr %{arr}a{i}, align 4")
    stores.append(f"  %acs = call i32 @llvm.vector.reduce.add.v16i32({v} %ac)\n"
                  "  %acs64 = sext i32 %acs to i64\n"
                  "  %cna = getelementptr i64, ptr %cn, i64 %t\n"
                  "  %cnv = load i64, ptr %cna, align 8\n"
                  "  %cnn = add i64 %cnv, %acs64\n"
                  "  store i64 %cnn, ptr %cna, align 8")
    stores = "\n".join(stores)
    return f"""
declare {v} {smax}({v}, {v})
declare {v} {smin}({v}, {v})
declare i32 @llvm.vector.reduce.add.v16i32({v})

define void @preadd(ptr noalias %xp, i64 %xrow, i64 %b0, i64 %b1, ptr noalias %gs,
                    ptr noalias %wp, ptr noalias %jptr, i64 %nj, i32 %mn,
                    i32 %mx, i32 %mask, ptr noalias %od, ptr noalias %on, ptr noalias %oc,
                    i64 %orow, ptr noalias %cn) {{
entry:
{splat("mnv", "%mn")}{splat("mxv", "%mx")}{splat("mkv", "%mask")}\
  %any = icmp slt i64 %b0, %b1
  br i1 %any, label %blk, label %done

blk:
  %b = phi i64 [ %b0, %entry ], [ %bn, %blkend ]
  %q0 = mul i64 %b, {LANES}
  %bg = mul i64 %b, %xrow
  br label %nt

nt:
  %t = phi i64 [ 0, %blk ], [ %tn, %tstore ]
  %tmore = icmp slt i64 %t, %nj
  br i1 %tmore, label %tbody, label %blkend

tbody:
  %e0a = getelementptr i64, ptr %jptr, i64 %t
  %e0 = load i64, ptr %e0a, align 8
  %t1 = add i64 %t, 1
  %e1a = getelementptr i64, ptr %jptr, i64 %t1
  %e1 = load i64, ptr %e1a, align 8
  br label %eh

eh:
  %e = phi i64 [ %e0, %tbody ], [ %en, %ebody ]
  %ad = phi {v} [ {z}, %tbody ], [ %adn, %ebody ]
  %an = phi {v} [ {z}, %tbody ], [ %ann, %ebody ]
  %ac = phi {v} [ {z}, %tbody ], [ %acn, %ebody ]
  %emore = icmp slt i64 %e, %e1
  br i1 %emore, label %ebody, label %tstore

ebody:
  %ga = getelementptr i64, ptr %gs, i64 %e
  %g = load i64, ptr %ga, align 8
  %gq = add i64 %bg, %g
  %xo = mul i64 %gq, {2 * LANES}
  %xa = getelementptr i16, ptr %xp, i64 %xo
  %xv = load {h}, ptr %xa, align 2
  %wa = getelementptr i32, ptr %wp, i64 %e
  %w = load i32, ptr %wa, align 4
{splat("wv", "%w")}\
  %wh = bitcast {v} %wv to {h}
  %xe = sext {h} %xv to {h32}
  %we = sext {h} %wh to {h32}
  %pr = mul {h32} %xe, %we
  %pe = shufflevector {h32} %pr, {h32} poison, {v} <{even}>
  %po = shufflevector {h32} %pr, {h32} poison, {v} <{odd}>
  %s = add {v} %pe, %po
{fit}\
  %d = sub {v} %f, %s
  %adn = add {v} %ad, %d
  %dm = call {v} {smin}({v} %d, {v} {z})
  %ann = add {v} %an, %dm
  %ne = icmp ne {v} %d, {z}
  %nes = zext {b1} %ne to {v}
  %acn = add {v} %ac, %nes
  %en = add i64 %e, 1
  br label %eh

tstore:
{stores}
  %tn = add i64 %t, 1
  br label %nt

blkend:
  %bn = add i64 %b, 1
  %bmore = icmp slt i64 %bn, %b1
  br i1 %bmore, label %blk, label %done

done:
  ret void
}}
"""


def _kernel(wrap: bool) -> Any:
    key = ("fn", bool(wrap))
    with _LOCK:
        if key not in _STATE:
            from .llvm_jit import compile_function

            p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
            _STATE[key] = compile_function(
                _ir(wrap), "preadd",
                [p, i64, i64, i64, p, p, p, i64, i32, i32, i32, p, p, p, i64, p])
    return _STATE[key]


def operands(ow: np.ndarray, hot_j: np.ndarray, hot_g: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per hot entry (neuron ``hot_j``, pair ``hot_g``, sorted by neuron): the pair index
    and its two weights as one int32 (low, high int16); each neuron's entry range (N + 1
    bounds). Pair g holds inputs 2g and 2g + 1 (a missing last input weighs 0)."""
    k = ow.shape[1]
    c0 = 2 * hot_g
    c1 = np.minimum(c0 + 1, k - 1)
    w0 = ow[hot_j, c0].astype(np.int64)
    w1 = np.where(c0 + 1 < k, ow[hot_j, c1], 0).astype(np.int64)
    wpair = ((w0 & 0xFFFF) | ((w1 & 0xFFFF) << 16)).astype(np.uint32).view(np.int32)
    jptr = np.searchsorted(hot_j, np.arange(ow.shape[0] + 1)).astype(np.int64)
    return hot_g.astype(np.int64), np.ascontiguousarray(wpair), jptr


def evaluate(ox: np.ndarray, n: int, ops: tuple[np.ndarray, ...], reg: Register, wrap: bool
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(Q, N) int32 arrays (C order): the sum of all and of the negative corrections, and
    the events, of the hot entries ``ops`` (:func:`operands`, N = ``n`` neurons) for inputs
    x' ``ox`` (Q, K); and the events per neuron (int64 (N,)). The caller checks :func:`fits`
    and :func:`available`."""
    from .tile_simd import _threads, run_shared

    gs, wpair, jptr = ops
    q, k = ox.shape
    qp = -(-q // LANES) * LANES
    pairs = -(-k // 2)
    xpad = np.zeros((qp, 2 * pairs), dtype=np.int16)
    xpad[:q, :k] = ox
    # (blocks, G, 16, 2): a block's inputs contiguous (a pair stride of Q would alias
    # the rows into a few cache sets)
    xp = np.ascontiguousarray(  # each int32: one query's two inputs of a pair
        xpad.view(np.int32).reshape(qp // LANES, LANES, pairs).transpose(0, 2, 1))
    outs = [np.empty((qp, n), dtype=np.int32) for _ in range(3)]  # every entry written
    fn = _kernel(wrap)
    mask = (1 << reg.bits) - 1

    blocks = qp // LANES
    nt = min(_threads(), blocks)
    per_neuron = np.zeros((blocks, n), dtype=np.int64)  # event counts, a row per block

    def run(b0: int, b1: int) -> None:
        fn(xp.ctypes.data, pairs, b0, b1, gs.ctypes.data, wpair.ctypes.data,
           jptr.ctypes.data, n, reg.min, reg.max, mask, *(o.ctypes.data for o in outs), n,
           per_neuron[b0].ctypes.data)

    def run_blocks(b0: int, b1: int) -> None:
        for b in range(b0, b1):
            run(b, b + 1)

    if nt == 1:
        run_blocks(0, blocks)
    else:
        run_shared(run_blocks, blocks, nt)
    return outs[0][:q], outs[1][:q], outs[2][:q], per_neuron.sum(axis=0)


def _reference(ox: np.ndarray, ow: np.ndarray, hot_j: np.ndarray, hot_g: np.ndarray,
               reg: Register, wrap: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain numpy (int64): the same three (Q, N) arrays."""
    q, k = ox.shape
    n = ow.shape[0]
    xpad = np.zeros((q, k + 1), dtype=np.int64)
    xpad[:, :k] = ox
    wpad = np.zeros((n, k + 1), dtype=np.int64)
    wpad[:, :k] = ow
    c0 = 2 * hot_g
    c1 = np.where(c0 + 1 < k, c0 + 1, k)
    s = xpad[:, c0] * wpad[hot_j, c0] + xpad[:, c1] * wpad[hot_j, c1]  # (Q, E)
    f = (s - reg.min) % (1 << reg.bits) + reg.min if wrap else np.clip(s, reg.min, reg.max)
    d = f - s
    out = [np.zeros((q, n), dtype=np.int64) for _ in range(3)]
    for i in range(q):
        np.add.at(out[0][i], hot_j, d[i])
        np.add.at(out[1][i], hot_j, np.minimum(d[i], 0))
        np.add.at(out[2][i], hot_j, d[i] != 0)
    return out[0], out[1], out[2]


def _self_test() -> str:
    """'' when both variants agree with :func:`_reference` on random operands (ragged query
    and input counts, a neuron without hot pairs, extreme inputs), else what differed."""
    rng = np.random.default_rng(1357)
    for wrap in (False, True):
        for q, k, n, bits in ((1, 7, 3, 16), (37, 64, 21, 16), (20, 33, 5, 12)):
            ox = rng.integers(-255, 256, (q, k))
            ox[0] = 255
            ow = rng.integers(-128, 128, (n, k))
            ow[0, :2] = -128
            hot = rng.random((n, -(-k // 2))) < 0.5
            hot[-1] = False  # a neuron without hot pairs
            hot_j, hot_g = np.nonzero(hot)
            reg = Register(bits, True)
            got = evaluate(ox, n, operands(ow, hot_j, hot_g), reg, wrap)
            want = _reference(ox, ow, hot_j, hot_g, reg, wrap)
            want = (*want, want[2].sum(axis=0))
            for name, a, b in zip(("corrections", "negative corrections", "events",
                                   "events per neuron"), got, want, strict=True):
                if not np.array_equal(a.astype(np.int64), b):
                    return (f"the SIMD pre-add loop differs from numpy ({name}, "
                            f"{'wrap' if wrap else 'saturate'}, {bits} bits)")
    return ""
