"""Dense accumulator events: whole pairs stepped in tiles, the register vectorised across neurons.

When most (query, neuron) pairs hold events at most of their adder-tree steps (e.g. a 20-bit
saturating register, where every pair clips again at ~half of its steps after the first clip),
stepping whole pairs one at a time with gathered products is the bottleneck. Here a *tile*
(a block of queries x a block of neurons) is stepped over the inputs in order: for input k the
weight row w'[:, k] of the block (weights transposed to (K, N), contiguous) is multiplied by
each query's x'[q, k] and added to the block's tree outputs; at a checkpoint of query q (the
last input of an adder-tree step) the register of every neuron of the block is updated at once:

* e = r + v (the tree output v: exact sum of the step's products);
* an event iff e leaves [reg.min, reg.max]; wrap: r = e - 2**bits * floor((e - min) / 2**bits),
  saturate: r = clip(e);
* the pair's first event: the step number and e.

Inputs with x' = 0 are skipped (adding 0 never causes an event; a step whose products are all
0 leaves the register, the partial sum and the event counts as they are).

The register arrays are floating point so that the compiled loop vectorises (AVX2: 8 float32
lanes): float32 when every value involved is an integer below 2**24 in magnitude (register
range plus twice the largest tree output; step numbers), float64 below 2**53 (exact
likewise); :func:`float_for_tiles` decides. The exact partial sums (for ``min_safe_acc_bits``)
are tracked per pair in float64 (|P| <= K max|x'| max|w'| < 2**53).

numba only (``pip install 'tempo-hwsim[fast]'``); without it the chunked path's numpy
stepper (simulator/units/partial_sums.py) computes the same integers. When the values fit
int32 lanes, :func:`evaluate_tiles` hands the pairs to the SIMD loop of tile_simd.py
instead (:func:`simd_applies`; ~5x faster; event-driven schedules with each query's active
inputs gathered), and these float tiles serve the rest (registers past 31 bits, operands
past int16, ``HWSIM_SIMD=0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixedpoint import Register
from . import tile_simd
from .chunk_stepper import PARALLEL_LOCK, numba_enabled
from .partial_sums import ChunkPlan, ChunkResult

QUERY_BLOCK = 8  # queries per tile: each weight row is reused for that many queries
NEURON_BLOCK = 256  # neurons per tile: the register arrays of a tile stay in L1/L2 cache
_NB: dict[str, object] = {}


@dataclass
class TileResult:
    """Per pair (query, neuron) of the tiles that were stepped (arrays (Q, N))."""

    acc: np.ndarray  # int64 final register values
    events: np.ndarray  # int64 wrap or saturate events
    first_step: np.ndarray  # int64 step of the first event or -1
    first_value: np.ndarray  # int64 exact result of that addition
    partial_min: np.ndarray | None  # int64 min / max checkpoint partial sum (0 included)
    partial_max: np.ndarray | None


def float_for_tiles(reg: Register, g: int, k: int, xr: tuple[int, int],
                    wr: tuple[int, int]) -> type | None:
    """float32 / float64 when every register value, tree output and step number is an exact
    integer in it (else None: the tiles cannot be used)."""
    mx = max(-xr[0], xr[1], 1)
    mw = max(-wr[0], wr[1], 1)
    tree = min(g, max(k, 1)) * mx * mw  # |tree output| and its running sums
    span = max(-reg.min, reg.max + 1) + (1 << reg.bits) + 2 * tree
    if k * mx * mw >= 1 << 53:
        return None
    if span < 1 << 24 and k < 1 << 24:
        return np.float32
    if span < 1 << 53:
        return np.float64
    return None


def tiles_available() -> bool:
    """True when the compiled tile loop can be used (numba installed and enabled)."""
    if not numba_enabled():
        return False
    if "kernel" not in _NB:
        _NB["kernel"] = _compile()
    return True


def _tile_any(mask: np.ndarray, qb: int, nb: int) -> np.ndarray:
    """bool (tiles of qb queries, tiles of nb neurons): the tile holds a True of ``mask``."""
    q, n = mask.shape
    tq, tn = -(-q // qb), -(-n // nb)
    pad = np.zeros((tq * qb, tn * nb), dtype=np.bool_)
    pad[:q, :n] = mask
    return pad.reshape(tq, qb, tn, nb).any(axis=(1, 3))


def step_tiles(
    ox: np.ndarray,
    owt: np.ndarray,
    ckpt: np.ndarray,
    live: np.ndarray,
    reg: Register,
    wrap: bool,
    track: np.ndarray | None,
    dt: type,
    dense_g: int = 0,
) -> TileResult:
    """Step every pair of the tiles that hold a ``live`` pair over all inputs.

    ox: (Q, K) x' in ``dt``; owt: (K, N) w' transposed, in ``dt``, C-contiguous; ckpt: bool
    (Q, K) checkpoints; live: bool (Q, N) pairs whose results are needed; track: bool (Q, N)
    pairs whose checkpoint partial sums' min / max are needed (their tiles track them for every
    pair). dense_g: the adder-tree width G when the schedule is dense and G <= 4 (a step's
    products are then fused into the register update; tiles that track partial sums excepted),
    else 0. Results of the other pairs of a stepped tile are exact too; pairs of skipped tiles
    hold zeros (partial min / max: 0).
    """
    tiles_available()
    kern = _NB["kernel"]
    q, n = live.shape
    qb, nb = QUERY_BLOCK, NEURON_BLOCK
    flags = _tile_any(live, qb, nb).astype(np.int8)
    track_partial = track is not None and bool(track.any())
    if track_partial:
        assert track is not None
        flags[_tile_any(track, qb, nb)] = 2
    r = np.zeros((q, n), dtype=dt)
    cnt = np.zeros((q, n), dtype=dt)
    fs = np.full((q, n), -1, dtype=dt)
    fv = np.zeros((q, n), dtype=dt)
    pmn = np.zeros((q, n) if track_partial else (1, 1), dtype=np.float64)
    pmx = np.zeros_like(pmn)
    g4 = dense_g if 0 < dense_g <= 4 else 0
    consts = np.array([reg.min, reg.max, 1 << reg.bits, 1.0 / (1 << reg.bits)], dtype=dt)
    oxd, ckc = np.ascontiguousarray(ox, dtype=dt), np.ascontiguousarray(ckpt)
    with PARALLEL_LOCK:
        kern(oxd, owt, ckc, flags, consts, wrap, g4, qb, nb, r, cnt, fs, fv,  # type: ignore[operator]
             pmn, pmx)
    return TileResult(r.astype(np.int64), cnt.astype(np.int64), fs.astype(np.int64),
                      fv.astype(np.int64),
                      pmn.astype(np.int64) if track_partial else None,
                      pmx.astype(np.int64) if track_partial else None)


def _weights_t(ow: np.ndarray, dt: type, cache: dict | None) -> np.ndarray:
    """w' transposed to (K, N), C-contiguous, in ``dt`` (kept with the read-only weights)."""
    key = ("tiles_wt", dt)
    if cache is not None and key in cache:
        return cache[key]
    wt = np.ascontiguousarray(ow.T, dtype=dt)
    if cache is not None:
        wt.flags.writeable = False
        cache[key] = wt
    return wt


def evaluate_tiles(
    plan: ChunkPlan,
    ox: np.ndarray,
    ow: np.ndarray,
    qs: np.ndarray,
    js: np.ndarray,
    reg: Register,
    policy: str,
    xr: tuple[int, int],
    wr: tuple[int, int],
    cache: dict | None = None,
    track: np.ndarray | None = None,
    sums: bool = False,
) -> ChunkResult | None:
    """The chunked path's :class:`ChunkResult` for pairs (qs, js) (distinct, in row-major
    order, as ``np.nonzero`` gives them), every pair stepped whole in
    tiles; None when the compiled loop is unavailable or its floats would not be exact.

    track: bool (F,) pairs whose partial sums' min / max enter the result (None: all).
    The result's ``sums`` (exact x'.w' of each pair) are set when the SIMD loop ran and
    wraps, tracked every pair or was asked for them (``sums``).
    """
    if not tiles_available():
        return None
    if simd_applies(plan.dense, plan.g, plan.k, reg, xr, wr, policy == "wrap"):
        return _evaluate_simd(plan, ox, ow, qs, js, reg, policy, cache, track, sums)
    dt = float_for_tiles(reg, plan.g, plan.k, xr, wr)
    if dt is None:
        return None
    q_count, n = ox.shape[0], ow.shape[0]
    every = qs.size == q_count * n  # distinct row-major pairs: all of them
    live = np.ones((q_count, n), dtype=np.bool_) if every else np.zeros((q_count, n), np.bool_)
    if not every:
        live[qs, js] = True
    tq, tj = (qs, js) if track is None else (qs[track], js[track])
    tmask = np.zeros((q_count, n), dtype=np.bool_)
    tmask[tq, tj] = True
    t = step_tiles(ox, _weights_t(ow, dt, cache), plan.ckpt, live, reg, policy == "wrap",
                   tmask, dt, plan.g if plan.dense else 0)
    del live, tmask
    if every:
        def pick(a: np.ndarray) -> np.ndarray:
            return a.ravel()
    else:
        def pick(a: np.ndarray) -> np.ndarray:
            return a[qs, js]
    ev = pick(t.events)
    zeros = np.zeros(qs.size, dtype=np.int64)
    wraps, sats = (ev, zeros) if policy == "wrap" else (zeros, ev)
    pmin = pmax = 0
    if t.partial_min is not None and t.partial_max is not None:
        pmin = int(t.partial_min[tq, tj].min(initial=0))
        pmax = int(t.partial_max[tq, tj].max(initial=0))
    return ChunkResult(pick(t.acc), wraps, sats, pick(t.first_step), pick(t.first_value),
                       pmin, pmax, int(qs.size))


def simd_applies(dense: bool, g: int, k: int, reg: Register, xr: tuple[int, int],
                 wr: tuple[int, int], wrap: bool) -> bool:
    """True when :func:`evaluate_tiles` steps with the SIMD loop of tile_simd.py (int32
    lanes exact, the compiled loop of this schedule checked here): several times faster
    than the float tiles, so also worth it where the streamed wrap pass would skip most
    chunks. ``dense``: the dense schedule, else the event-driven one (gathered weights)."""
    return (tiles_available() and tile_simd.fits(reg, g, k, xr, wr)
            and tile_simd.ready(g, wrap, gather=not dense))


def _evaluate_simd(
    plan: ChunkPlan,
    ox: np.ndarray,
    ow: np.ndarray,
    qs: np.ndarray,
    js: np.ndarray,
    reg: Register,
    policy: str,
    cache: dict | None,
    track: np.ndarray | None,
    sums: bool = False,
) -> ChunkResult:
    """:func:`evaluate_tiles` by the SIMD loop of tile_simd.py (dense schedule, or the
    event-driven one with each query's active inputs gathered): the lane blocks holding a
    pair to track run the variant that tracks partial sums."""
    q_count, n = ox.shape[0], ow.shape[0]
    every = qs.size == q_count * n  # distinct row-major pairs: all of them
    live = np.ones((q_count, n), dtype=np.bool_) if every else np.zeros((q_count, n), np.bool_)
    if not every:
        live[qs, js] = True
    tq, tj = (qs, js) if track is None else (qs[track], js[track])
    if every and track is not None:
        tmask = track.reshape(q_count, n)
    else:
        tmask = np.zeros((q_count, n), dtype=np.bool_)
        tmask[tq, tj] = True
    per_item = None if plan.dense else 1
    items = tile_simd.items_of(live & ~tmask, per_item)
    titems = tile_simd.items_of(tmask, per_item) if tq.size else None
    if titems is not None:  # a block stepped with tracking need not be stepped again
        tracked = np.zeros((q_count, -(-n // tile_simd.LANES)), dtype=np.bool_)
        tracked[titems[:, 0], titems[:, 1]] = True
        items = items[~tracked[items[:, 0], items[:, 1]]]
    active = None if plan.dense else plan.active
    r, ev, fs, fv, pmn, pmx, exact = tile_simd.step_dense(
        ox, ow, plan.g, reg, policy == "wrap", items, titems, cache, active=active, sums=sums,
        first_events=False)
    _first_query_events(ox, ow, plan.g, reg, policy == "wrap", items, titems, cache, active,
                        ev, fs, fv, None if every else live)
    del live

    def pick(a: np.ndarray) -> np.ndarray:  # int32 kept: every value fits (tile_simd.fits)
        return a.reshape(-1) if every and a.flags.c_contiguous else a[qs, js]

    ev = pick(ev)
    zeros = np.zeros(qs.size, dtype=np.int32)
    wraps, sats = (ev, zeros) if policy == "wrap" else (zeros, ev)
    pmin = int(pmn[tq, tj].min(initial=0)) if tq.size else 0
    pmax = int(pmx[tq, tj].max(initial=0)) if tq.size else 0
    known = policy == "wrap" or track is None or sums  # the exact sums of every pair
    return ChunkResult(pick(r), wraps, sats, pick(fs), pick(fv), pmin, pmax, int(qs.size),
                       pick(exact) if known else None)


def _first_query_events(ox: np.ndarray, ow: np.ndarray, g: int, reg: Register, wrap: bool,
                        items: np.ndarray, titems: np.ndarray | None, cache: dict | None,
                        active: np.ndarray | None, ev: np.ndarray, fs: np.ndarray,
                        fv: np.ndarray, live: np.ndarray | None = None) -> None:
    """Fill the first events (fs / fv, in place) of the first query with an event.

    The chunked path reports one first event: the earliest one of the first query (in
    query order) that has any among the pairs it asked for (``live``, bool (Q, N); None:
    all) (acc_chunked.py). The loop without first events stepped every item; that query's
    items are stepped again with them, so every other query's entries stay -1 / 0."""
    hit = np.flatnonzero(ev.any(axis=1) if live is None else ((ev != 0) & live).any(axis=1))
    if not hit.size:
        return
    q0 = int(hit[0])
    per = tile_simd.QUERIES if active is None else 1  # queries per item
    qa = q0 - q0 % per  # the first query of q0's items
    mine = [its[its[:, 0] == qa] for its in (items, titems) if its is not None]
    one = np.concatenate(mine)
    one[:, 0] = 0
    _, ev1, fs1, fv1, *_ = tile_simd.step_dense(
        ox[qa:qa + per], ow, g, reg, wrap, one, None, cache,
        active=None if active is None else active[qa:qa + per])
    if not np.array_equal(ev1[q0 - qa], ev[q0]):  # the same loop: it cannot differ
        raise AssertionError("the SIMD tile loop counted different events on a second run")
    fs[q0] = fs1[q0 - qa]
    fv[q0] = fv1[q0 - qa]


def _compile() -> object:
    # The helpers become module globals, not closure cells: numba keys a cached function by
    # its closure's pickled contents, and a dispatcher pickles differently in every process,
    # so a kernel closing over them was compiled anew (and cached again) in each process.
    global _first_events, _tile4, _tile
    import numba

    @numba.njit(cache=True, nogil=True, parallel=True)
    def kernel(ox, owt, ckpt, flags, consts, wrap, g4, qb, nb,  # noqa: PLR0913
               r_out, cnt_out, fs_out, fv_out, pmn_out, pmx_out):  # pragma: no cover - compiled
        q_all, k_all = ox.shape
        n_all = owt.shape[1]
        n_tq = flags.shape[0]
        n_tj = flags.shape[1]
        for t in numba.prange(n_tq * n_tj):
            tq = t // n_tj
            tj = t - tq * n_tj
            if flags[tq, tj] == 1 and g4 > 0:
                _tile4(ox, owt, consts, wrap, g4, tq * qb, min(tq * qb + qb, q_all), tj * nb,
                       min(tj * nb + nb, n_all), k_all, r_out, cnt_out, fs_out, fv_out)
            elif flags[tq, tj]:
                _tile(ox, owt, ckpt, consts, wrap, flags[tq, tj] == 2, tq * qb,
                      min(tq * qb + qb, q_all), tj * nb, min(tj * nb + nb, n_all), k_all,
                      r_out, cnt_out, fs_out, fv_out, pmn_out, pmx_out)

    @numba.njit(nogil=True, inline="always")
    def _first_events(ri, eb, fsi, fvi, st, zero):  # pragma: no cover - compiled
        """Record step ``st`` and e for the pairs of a row whose first event this step was
        (r != e and none before); returns how many. Read-only unless there is one: the
        updates above store unconditionally (conditional stores in them compiled to masked
        stores, vmaskmovps, several times slower on this AMD host)."""
        n_new = 0
        for jj in range(ri.size):
            n_new += 1 if (fsi[jj] < zero) & (ri[jj] != eb[jj]) else 0
        if n_new:
            for jj in range(ri.size):
                if fsi[jj] < zero and ri[jj] != eb[jj]:
                    fsi[jj] = st
                    fvi[jj] = eb[jj]
        return n_new

    @numba.njit(nogil=True, inline="always")
    def _tile4(ox, owt, consts, wrap, g, q0, q1, j0, j1, k_all,  # noqa: PLR0913
               r_out, cnt_out, fs_out, fv_out):  # pragma: no cover - compiled
        """Dense schedule, G <= 4: each step's (up to) four products fused into the update."""
        mn = consts[0]
        mx = consts[1]
        wide = consts[2]
        inv = consts[3]
        zero = mn - mn
        one = zero + 1
        nq = q1 - q0
        r = np.zeros((nq, j1 - j0), dtype=owt.dtype)
        cnt = np.zeros_like(r)
        fs = np.full_like(r, -1)
        fv = np.zeros_like(r)
        eb = np.empty(j1 - j0, dtype=owt.dtype)  # this step's exact sums e, one row
        pending = np.full(nq, j1 - j0, dtype=np.int64)  # pairs of a row without an event yet
        st = zero
        for k0 in range(0, k_all, g):
            m = min(g, k_all - k0)
            k1 = k0 + 1 if m > 1 else k0  # missing terms: x = 0 times any row
            k2 = k0 + 2 if m > 2 else k0
            k3 = k0 + 3 if m > 3 else k0
            w0 = owt[k0, j0:j1]
            w1 = owt[k1, j0:j1]
            w2 = owt[k2, j0:j1]
            w3 = owt[k3, j0:j1]
            for i in range(nq):
                x0 = ox[q0 + i, k0]
                x1 = ox[q0 + i, k1] if m > 1 else zero
                x2 = ox[q0 + i, k2] if m > 2 else zero
                x3 = ox[q0 + i, k3] if m > 3 else zero
                if x0 == zero and x1 == zero and x2 == zero and x3 == zero:
                    continue
                # 2-D indexing, not row views: a view per row and step cost ~7 % here
                if wrap:
                    for jj in range(j1 - j0):
                        e = r[i, jj] + (x0 * w0[jj] + x1 * w1[jj] + x2 * w2[jj] + x3 * w3[jj])
                        c = e - wide * np.floor((e - mn) * inv)
                        eb[jj] = e
                        cnt[i, jj] += one if c != e else zero
                        r[i, jj] = c
                else:
                    for jj in range(j1 - j0):
                        e = r[i, jj] + (x0 * w0[jj] + x1 * w1[jj] + x2 * w2[jj] + x3 * w3[jj])
                        c = mn if e < mn else e
                        c = mx if c > mx else c
                        eb[jj] = e
                        cnt[i, jj] += one if c != e else zero
                        r[i, jj] = c
                if pending[i] > 0:
                    pending[i] -= _first_events(r[i], eb, fs[i], fv[i], st, zero)
            st += one
        r_out[q0:q1, j0:j1] = r
        cnt_out[q0:q1, j0:j1] = cnt
        fs_out[q0:q1, j0:j1] = fs
        fv_out[q0:q1, j0:j1] = fv

    @numba.njit(nogil=True, inline="always")
    def _tile(ox, owt, ckpt, consts, wrap, track, q0, q1, j0, j1, k_all,  # noqa: PLR0913
              r_out, cnt_out, fs_out, fv_out, pmn_out, pmx_out):  # pragma: no cover - compiled
        mn = consts[0]
        mx = consts[1]
        wide = consts[2]
        inv = consts[3]
        zero = mn - mn
        one = zero + 1
        nq = q1 - q0
        nj = j1 - j0
        v = np.zeros((nq, nj), dtype=owt.dtype)
        r = np.zeros((nq, nj), dtype=owt.dtype)
        cnt = np.zeros((nq, nj), dtype=owt.dtype)
        fs = np.full((nq, nj), -1, dtype=owt.dtype)
        fv = np.zeros((nq, nj), dtype=owt.dtype)
        p = np.zeros((nq if track else 1, nj), dtype=np.float64)
        pmn = np.zeros_like(p)
        pmx = np.zeros_like(p)
        dirty = np.zeros(nq, dtype=np.bool_)
        step = np.zeros(nq, dtype=owt.dtype)
        eb = np.empty(nj, dtype=owt.dtype)
        pending = np.full(nq, nj, dtype=np.int64)
        for k in range(k_all):
            wrow = owt[k, j0:j1]
            for i in range(nq):
                xv = ox[q0 + i, k]
                if xv != zero:
                    vi = v[i]
                    for jj in range(nj):
                        vi[jj] += xv * wrow[jj]
                    dirty[i] = True
                if not ckpt[q0 + i, k]:
                    continue
                if dirty[i]:
                    vi = v[i]
                    if track:
                        pi = p[i]
                        pn = pmn[i]
                        px = pmx[i]
                        for jj in range(nj):
                            s = pi[jj] + vi[jj]
                            pi[jj] = s
                            pn[jj] = s if s < pn[jj] else pn[jj]
                            px[jj] = s if s > px[jj] else px[jj]
                    ri = r[i]
                    ci = cnt[i]
                    if wrap:
                        for jj in range(nj):
                            e = ri[jj] + vi[jj]
                            vi[jj] = zero
                            c = e - wide * np.floor((e - mn) * inv)
                            eb[jj] = e
                            ci[jj] += one if c != e else zero
                            ri[jj] = c
                    else:
                        for jj in range(nj):
                            e = ri[jj] + vi[jj]
                            vi[jj] = zero
                            c = mn if e < mn else e
                            c = mx if c > mx else c
                            eb[jj] = e
                            ci[jj] += one if c != e else zero
                            ri[jj] = c
                    if pending[i] > 0:
                        pending[i] -= _first_events(ri, eb, fs[i], fv[i], step[i], zero)
                    dirty[i] = False
                step[i] += one
        r_out[q0:q1, j0:j1] = r
        cnt_out[q0:q1, j0:j1] = cnt
        fs_out[q0:q1, j0:j1] = fs
        fv_out[q0:q1, j0:j1] = fv
        if track:
            pmn_out[q0:q1, j0:j1] = pmn
            pmx_out[q0:q1, j0:j1] = pmx

    return kernel
