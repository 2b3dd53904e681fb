"""Dense accumulator tiles as explicit SIMD code: int16 products in pairs, int32 registers.

The same results as the float tiles of tile_stepper.py (``G``-input adder-tree steps, dense
or event-driven), for every (query, neuron) pair of the given lane blocks, computed by a
loop written in LLVM IR and compiled once per process with llvmlite (numba's code
generator):

* one *item* is one query and a block of 16 neurons; its 16 registers, event counters and
  first events stay in vector registers over all ceil(K / G) steps;
* a step's G products are summed in pairs: x'_2i * w'_2i + x'_2i+1 * w'_2i+1, two int16
  products into one int32 (``vpmaddwd`` on x86); G odd gets a zero slot per step;
* e = r + tree output (int32); wrap: r = ((e - min) mod 2**bits) + min; saturate: r =
  clip(e); an event iff r != e; first event: the step number and e;
* ``track``: the exact partial sum P (int32) and its min / max over the checkpoints (0
  included), for ``min_safe_acc_bits``;
* event-driven schedules (``active``): each query's active inputs in order, G per step;
  the loop gathers the two weight rows of each pair by input index from a (lane blocks,
  K + 1, 16) copy of the weights (row K: zeros, for padding slots) and interleaves them.

Exact whenever :func:`fits` holds: |x'|, |w'| <= 32767, every e, r and P (and e - min)
within int32. Compared with the numba tiles (float lanes, registers in memory on every
step) it is ~5x faster on this AVX2 host (docs/performance.md). Weights are re-laid out once
per read-only weight matrix, (lane blocks, K pairs, 16 lanes, 2) int16.

A self-test against a plain numpy step loop runs before first use; any failure (no
llvmlite, a compile error, a wrong result) leaves the numba tiles in charge. ``HWSIM_SIMD=0``
turns this path off.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import threading
from typing import Any

import numpy as np

from ..fixedpoint import Register
from .tile_simd_ir import LANES, QUERIES, tiles_ir

_STATE: dict[str, Any] = {}
_LOCK = threading.RLock()  # self-test and compilation, once per process
_INT32 = (1 << 31) - 1


def fits(reg: Register, g: int, k: int, xr: tuple[int, int], wr: tuple[int, int]) -> bool:
    """True when the int32 lanes hold every value exactly: operands in int16 (no
    -32768 * -32768 pair), the register plus a step's tree output, every partial sum P and
    (the wrapping loop carries it) P - min below 2**31 in magnitude."""
    mx = max(-xr[0], xr[1], 0)
    mw = max(-wr[0], wr[1], 0)
    if mx > 32767 or mw > 32767 or reg.bits > 31:
        return False
    pairs = -(-max(g, 1) // 2)
    tree = 2 * pairs * mx * mw
    return (1 << reg.bits) + tree <= _INT32 and k * mx * mw - reg.min <= _INT32 and k < _INT32


def enabled() -> bool:
    """True unless HWSIM_SIMD=0 (the switch only; :func:`available` also compiles)."""
    return os.environ.get("HWSIM_SIMD", "1").strip() not in ("0", "false", "no", "off")


def available() -> bool:
    """True when enabled and the compiled loop passed its self-test in this process (one
    variant; :func:`ready` checks each one before its first use)."""
    if not enabled():
        return False
    with _LOCK:
        if "ok" not in _STATE:
            try:
                _STATE["why"] = _self_test()
            except Exception as exc:  # any failure only disables this path
                _STATE["why"] = f"the SIMD tile loop failed: {exc}"
            _STATE["ok"] = not _STATE["why"]
    return bool(_STATE["ok"])


def ready(g: int, wrap: bool, gather: bool = False) -> bool:
    """True when :func:`available` and the loops for G-input steps (with and without
    partial sums; ``gather``: the event-driven ones) agree with a plain step loop here:
    checked once per variant, before the first use; a variant that fails stays unused (the
    float tiles run instead)."""
    if not available():
        return False
    key = ("ready", -(-max(g, 1) // 2), bool(wrap), bool(gather))
    with _LOCK:
        if key not in _STATE:
            try:
                _STATE[key] = not _check(g, wrap, gather)
            except Exception:  # only disables this variant
                _STATE[key] = False
    return bool(_STATE[key])


def why_unavailable() -> str:
    """'' when :func:`available`, else the reason."""
    if not enabled():
        return "HWSIM_SIMD=0"
    available()
    return str(_STATE["why"])


# ------------------------------------------------------------------------ compiling


_ARGS = ("P", "I", "I", "P", "I", "P", "I", "I", "i", "i", "i", "P", "P", "P", "P", "P", "P",
         "P", "I")


def _kernel(pairs: int, wrap: bool, track: bool, gather: bool = False,
            sums: bool = False, first: bool = True) -> Any:
    """The compiled ``tiles`` function (ctypes) of this variant, compiled once per process."""
    sums = sums and not wrap and not track  # the only variant where it changes the loop
    key = ("fn", pairs, wrap, track, gather, sums, first, LANES, QUERIES)
    if key in _STATE:
        return _STATE[key]
    with _LOCK:
        if key not in _STATE:
            _STATE[key] = _compile(pairs, wrap, track, gather, sums, first)
    return _STATE[key]


def _compile(pairs: int, wrap: bool, track: bool, gather: bool, sums: bool,
             first: bool = True) -> Any:
    from .llvm_jit import compile_function

    ct = {"P": ctypes.c_void_p, "I": ctypes.c_int64, "i": ctypes.c_int32}
    args = _ARGS + (("P", "I", "P") if gather else ())
    ir = tiles_ir(pairs, wrap, track, LANES, 1 if gather else QUERIES, gather=gather,
                  sums=sums, first=first)
    return compile_function(ir, "tiles", [ct[a] for a in args])


# ------------------------------------------------------------------- layout and driver


def _slots(a: np.ndarray, g: int, steps: int) -> np.ndarray:
    """int16 (rows, steps * 2 * ceil(G / 2)): each step's G values, then zero slots."""
    rows, k = a.shape
    pairs = -(-g // 2)
    out = np.zeros((rows, steps, 2 * pairs), dtype=np.int16)
    if 2 * pairs == g and steps * g == k:
        out[:] = a.reshape(rows, steps, g)
    else:
        full = np.zeros((rows, steps * g), dtype=np.int16)
        full[:, :k] = a
        out[:, :, :g] = full.reshape(rows, steps, g)
    return out.reshape(rows, steps * 2 * pairs)


def weight_blocks(ow: np.ndarray, g: int, cache: dict | None = None) -> np.ndarray:
    """w' (N, K) as int16 (ceil(N / LANES), steps * pairs, LANES, 2): per lane block, per
    int16 pair of a step, the block's weights for its two inputs (kept with read-only
    weights)."""
    key = ("tile_simd_w", g, LANES)
    if cache is not None and key in cache:
        return cache[key]
    n, k = ow.shape
    steps = -(-k // g)
    pairs = -(-g // 2)
    nb = -(-n // LANES)
    pad = np.zeros((nb * LANES, steps * 2 * pairs), dtype=np.int16)
    pad[:n] = _slots(ow, g, steps)
    out = np.ascontiguousarray(pad.reshape(nb, LANES, steps * pairs, 2).transpose(0, 2, 1, 3))
    if cache is not None:
        out.flags.writeable = False
        cache[key] = out
    return out


def _threads() -> int:
    from ..kernels_ort import _threads as cpus

    return cpus()


def weight_rows(ow: np.ndarray, cache: dict | None = None) -> np.ndarray:
    """w' (N, K) as int16 (ceil(N / LANES), K + 1, LANES): per lane block, one row of the
    block's weights per input, and a zero row K (padding slots point there); kept with
    read-only weights. The event-driven loop gathers two rows per int16 pair."""
    key = ("tile_simd_rows", LANES)
    if cache is not None and key in cache:
        return cache[key]
    n, k = ow.shape
    nb = -(-n // LANES)
    pad = np.zeros((nb * LANES, k + 1), dtype=np.int16)
    pad[:n, :k] = ow
    out = np.ascontiguousarray(pad.reshape(nb, LANES, k + 1).transpose(0, 2, 1))
    if cache is not None:
        out.flags.writeable = False
        cache[key] = out
    return out


def _active_slots(ox: np.ndarray, active: np.ndarray, g: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Event-driven layout: per query its active inputs in order, G per step (then zero
    slots up to 2 * ceil(G / 2)). Returns x int16 (Q, slots), input index int32 (Q, slots;
    K for a padding slot) and steps int64 (Q,) = ceil(active inputs / G)."""
    q, k = ox.shape
    pairs = -(-g // 2)
    n_act = active.sum(axis=1, dtype=np.int64)
    steps = -(-n_act // g)
    width = int(steps.max(initial=0)) * 2 * pairs
    xs = np.zeros((q, max(width, 2)), dtype=np.int16)
    idx = np.full((q, max(width, 2)), k, dtype=np.int32)
    qs, ks = np.nonzero(active)
    rank = np.arange(qs.size, dtype=np.int64) - np.repeat(np.cumsum(n_act) - n_act, n_act)
    pos = rank // g * (2 * pairs) + rank % g
    xs[qs, pos] = ox[qs, ks]
    idx[qs, pos] = ks
    return xs, idx, steps


def step_dense(
    ox: np.ndarray,
    ow: np.ndarray,
    g: int,
    reg: Register,
    wrap: bool,
    items: np.ndarray,
    track_items: np.ndarray | None = None,
    cache: dict | None = None,
    active: np.ndarray | None = None,
    sums: bool = False,
    first_events: bool = True,
) -> tuple[np.ndarray, ...]:
    """Step the items (:func:`items_of`) over every input, G-input steps; ``track_items``
    likewise, with partial sums tracked. ``sums``: the exact sums of ``items`` too (free
    when wrapping; one more addition per step when saturating). ``first_events`` False:
    the loop without first events (fs stays -1 and fv 0 everywhere; ~20 % faster when
    first events come late).

    ox: (Q, K) x' integers, ow: (N, K) w' integers (:func:`fits` must hold). ``active``:
    bool (Q, K), the event-driven schedule (only active inputs, G of them per step; items of
    one query each: ``items_of(mask, 1)``); None: dense. Returns int32 (Q, N) arrays r,
    events, first step (-1: none), first value (e; 0 without an event), partial min, partial
    max (zeros where not tracked) and the exact sums (every pair wrapping; tracked pairs, or
    all with ``sums``, saturating; else 0); entries of pairs not stepped are 0 (first step
    -1).
    """
    q, k = ox.shape
    pairs = -(-g // 2)
    per_item = 1 if active is not None else QUERIES
    rows = -(-q // per_item) * per_item  # items start at multiples of per_item
    extra: tuple[int, ...] = ()
    if active is None:
        steps = -(-k // g)
        xs = np.zeros((rows, steps * pairs), dtype=np.int32)
        xs[:q] = _slots(ox, g, steps).view(np.int32)  # each int32: one step's int16 pair
        wb = weight_blocks(ow, g, cache)
        wstride = wb.shape[1] * LANES * 2
    else:
        x16, idx, stq = _active_slots(ox, active, g)
        xs = x16.view(np.int32)
        steps = 0  # per query: stq
        wb = weight_rows(ow, cache)
        wstride = wb.shape[1] * LANES
        extra = (idx.ctypes.data, idx.shape[1], stq.ctypes.data)
    cols = wb.shape[0] * LANES
    outs = [np.zeros((rows, cols), dtype=np.int32) for _ in range(7)]
    outs[2][:] = -1  # first step: written only at a first event
    mask = (1 << reg.bits) - 1  # bits <= 31 (fits)
    runs = [(items, False)] + ([(track_items, True)] if track_items is not None else [])
    ptrs = [o.ctypes.data for o in outs]
    for its, track in runs:
        if its is None or not len(its):
            continue
        its = np.ascontiguousarray(its, dtype=np.int64)
        fn = _kernel(pairs, wrap, track, active is not None, sums, first_events)

        def run(i0: int, i1: int, fn: Any = fn, its: np.ndarray = its) -> None:
            fn(its.ctypes.data, i0, i1, xs.ctypes.data, xs.shape[1], wb.ctypes.data,
               wstride, steps, reg.min, reg.max, mask, *ptrs, cols, *extra)

        nt = min(_threads(), max(1, len(its) // 64))
        if nt == 1:
            run(0, len(its))
            continue
        run_shared(run, len(its), nt)
    n = ow.shape[0]
    return tuple(o[:q, :n] for o in outs)


CHUNKS_PER_THREAD = 8  # items are handed out in this many pieces per thread


def run_shared(run: Any, count: int, threads: int) -> None:
    """``run(i0, i1)`` over [0, count) in pieces taken in turn by ``threads`` threads (this
    one included): items differ in cost (phase 1 ends when their lanes' first events come),
    so equal static shares left one thread waiting for the other (~7 % of the loop)."""
    cuts = np.linspace(0, count, threads * CHUNKS_PER_THREAD + 1).astype(np.int64)
    pieces = itertools.count()  # next() is atomic under the GIL
    failed: list[BaseException] = []

    def work() -> None:
        try:
            while not failed and (i := next(pieces)) < cuts.size - 1:
                if cuts[i + 1] > cuts[i]:
                    run(int(cuts[i]), int(cuts[i + 1]))
        except BaseException as exc:  # raised again in the calling thread
            failed.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads - 1)]
    for t in workers:
        t.start()
    try:
        work()
    finally:
        for t in workers:
            t.join()
    if failed:
        raise failed[0]


def items_of(mask: np.ndarray, per_item: int | None = None) -> np.ndarray:
    """int64 (M, 2) items (first query, lane block): ``per_item`` (default QUERIES) queries
    from a multiple of it, LANES neurons, holding a True of ``mask`` (Q, N); ordered by lane
    block (its weights stay in cache across queries)."""
    qb = QUERIES if per_item is None else per_item
    q, n = mask.shape
    nb = -(-n // LANES)
    ng = -(-q // qb)
    pad = np.zeros((ng * qb, nb * LANES), dtype=np.bool_)
    pad[:q, :n] = mask
    bs, gs = np.nonzero(pad.reshape(ng, qb, nb, LANES).any(axis=(1, 3)).T)
    return np.stack([gs * qb, bs], axis=1).astype(np.int64)


# ------------------------------------------------------------------------ self-test


def _reference(ox: np.ndarray, ow: np.ndarray, g: int, reg: Register, wrap: bool,
               active: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Plain numpy step loop (int64): r, events, first step, first value, partial min/max,
    exact sums. ``active``: each query's inactive inputs dropped first (event-driven
    steps)."""
    if active is not None:
        rows = [_reference(ox[i:i + 1, active[i]], ow[:, active[i]], g, reg, wrap)
                for i in range(ox.shape[0])]
        return tuple(np.concatenate([r[j] for r in rows]) for j in range(7))
    q, k = ox.shape
    n = ow.shape[0]
    prods = ox.astype(np.int64)[:, None, :] * ow.astype(np.int64)[None, :, :]
    r = np.zeros((q, n), np.int64)
    p = np.zeros((q, n), np.int64)
    ev = np.zeros((q, n), np.int64)
    fs = np.full((q, n), -1, np.int64)
    fv = np.zeros((q, n), np.int64)
    lo = np.zeros((q, n), np.int64)
    hi = np.zeros((q, n), np.int64)
    for s, a in enumerate(range(0, k, g)):
        t = prods[:, :, a:a + g].sum(axis=2)
        e = r + t
        p += t
        c = (e - reg.min) % (1 << reg.bits) + reg.min if wrap else np.clip(e, reg.min, reg.max)
        new = (c != e) & (fs < 0)
        fs[new] = s
        fv[new] = e[new]
        ev += c != e
        r = c
        np.minimum(lo, p, out=lo)
        np.maximum(hi, p, out=hi)
    return r, ev, fs, fv, lo, hi, p


def _check(g: int, wrap: bool, gather: bool = False) -> str:
    """'' when the loops of G's variant (both step lengths that share it, with and without
    partial sums; ``gather``: event-driven, random inputs inactive) agree with
    :func:`_reference` on random and extreme operands and on registers wide and narrow, else
    what differed."""
    pairs = -(-max(g, 1) // 2)
    rng = np.random.default_rng(2026 + g)
    names = ("register", "events", "first step", "first value", "partial min", "partial max",
             "sums")
    for gg in sorted({2 * pairs, max(1, 2 * pairs - 1)}):
        for bits, track, signed in ((9, False, True), (12, True, True), (16, False, True),
                                    (20, True, True), (11, True, False)):
            q, k, n = 3, 37, 21
            ox = rng.integers(-255, 256, (q, k)).astype(np.int64)
            ow = rng.integers(-128, 128, (n, k)).astype(np.int64)
            ox[0] = 255
            ow[0] = -128
            ow[1] = 127
            reg = Register(bits, signed)
            act = None
            if gather:
                act = rng.random((q, k)) < 0.6
                act[1] = False  # a query without a step
                ox[~act] = 0
            its = items_of(np.ones((q, n), dtype=np.bool_), 1 if gather else None)
            want = _reference(ox, ow, gg, reg, wrap, act)
            for sums, first in itertools.product((False,) if track else (False, True),
                                                 (True, False)):
                got = step_dense(ox, ow, gg, reg, wrap, its[:0] if track else its,
                                 its if track else None, active=act, sums=sums,
                                 first_events=first)
                used = [True, True, first, first, track, track, wrap or track or sums]
                if not first and (got[2].min() != -1 or got[2].max() != -1 or got[3].any()):
                    return ("the SIMD tile loop without first events stored some (G="
                            f"{gg}, {'wrap' if wrap else 'saturate'})")
                for name, a, b, use in zip(names, got, want, used, strict=True):
                    if use and not np.array_equal(a.astype(np.int64), b):
                        return (f"the SIMD tile loop differs from a plain step loop ({name}, "
                                f"G={gg}, {'wrap' if wrap else 'saturate'}"
                                f"{', event-driven' if gather else ''})")
    return ""


def _self_test() -> str:
    """'' when one variant (G = 4, wrap) compiles and agrees with a plain step loop."""
    return _check(4, True)
