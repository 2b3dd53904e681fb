"""Stepping flagged K-chunks checkpoint by checkpoint: a compiled loop and a numpy fallback.

An *item* is one (query, neuron) pair and one K-chunk that may hold an accumulator event (or
a partial sum outside the width found so far). Stepping it starts from the checkpoint before
the chunk (value ``prefix - products of the up to G - 1 earlier active inputs``), adds the
products in input order and, at each checkpoint (the last input of an adder-tree step),
applies the register's policy:

* wrap: an event iff the new partial sum lies in another 2**bits window than the previous
  checkpoint (the register holds the partial sum modulo 2**bits);
* saturate: register r = clip(r + tree output); an event iff the unclipped value leaves the
  range; the offset d = r - partial sum carries over to the next chunk.

Two implementations give the same integers: numba (``pip install 'tempo-hwsim[fast]'``), a
plain loop over the products of each item, and numpy (gathers and cumulative sums). The
environment variable ``HWSIM_NUMBA=0`` forces numpy; tests run both (tests/
test_overflow_paths.py). Why numba: docs/performance.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np

_NB: dict[str, object] = {}

PARALLEL_LOCK = threading.Lock()
"""Held around every call of a parallel compiled kernel (``parallel=True``): numba's
``workqueue`` threading layer (chosen by :func:`numba_enabled`) must not be entered by two
Python threads at once."""


def row_pairs(kernel: Callable[..., None], args: tuple, rows: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """(qs, js) int64, row-major, from a compiled two-pass pair scan over ``rows`` rows:
    ``kernel(*args, counts, None, None)`` writes each row's count into counts (rows,), then
    ``kernel(*args, starts, qs, js)`` (starts (rows + 1,): each row's first slot) fills the
    pairs; the kernel skips rows with none in the second pass."""
    starts = np.zeros(rows + 1, dtype=np.int64)
    kernel(*args, starts[1:], None, None)
    np.cumsum(starts, out=starts)
    qs = np.empty(int(starts[-1]), dtype=np.int64)
    js = np.empty_like(qs)
    if qs.size:
        kernel(*args, starts, qs, js)
    return qs, js


def serialized(kernel: Callable[..., None]) -> Callable[..., None]:
    """``kernel`` (a compiled parallel function) called under PARALLEL_LOCK."""

    def locked(*args: object) -> None:
        with PARALLEL_LOCK:
            kernel(*args)

    return locked


def _choose_threading_layer() -> None:
    """Run numba's parallel kernels on its ``workqueue`` layer unless NUMBA_THREADING_LAYER
    says otherwise.

    Why: the kernels alternate with float32 BLAS products (OpenBLAS threads). Under the
    default ``omp`` layer, GNU OpenMP's idle workers spin after each kernel and take the cores
    from OpenBLAS's threads: on this 2-core host 24 alternations of a 500 x 262 x 500 product
    pair and a chunk pass took 206 ms against 61 ms with ``workqueue``, whose idle workers
    sleep (docs/performance.md). Takes effect only if no numba kernel has launched threads in
    this process yet, and only when hwsim's first kernel runs on the main thread: in a worker
    thread (a Dask worker, a thread pool) numba keeps its default layer, as a service
    process's other users may expect.
    """
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    if threading.current_thread() is not threading.main_thread():
        return
    import numba

    numba.config.THREADING_LAYER = "workqueue"


def numba_enabled() -> bool:
    """True when numba is installed, not disabled by HWSIM_NUMBA=0, and the caller is the
    main thread.

    Off the main thread (a Dask worker's task thread, a thread pool) the numpy fallbacks run:
    they give the same integers. Why: twice in full CI runs a sweep on two external Dask
    workers stalled for 300 s inside a point that steps overflow events (worker alive,
    unresponsive to SIGTERM), with the compiled parallel kernels launched from the worker's
    task thread; the cause was not found. Set HWSIM_NUMBA_THREADS=1 to use numba there too.
    """
    if os.environ.get("HWSIM_NUMBA", "1").strip() in ("0", "false", "no", "off"):
        return False
    if threading.current_thread() is not threading.main_thread() and \
            os.environ.get("HWSIM_NUMBA_THREADS", "0").strip() != "1":
        return False
    if "kernel" not in _NB:
        try:
            _choose_threading_layer()
            _NB["kernel"] = _compile()
        except ImportError:
            _NB["kernel"] = None
    return _NB["kernel"] is not None


def step_items(
    ox: np.ndarray,
    ow: np.ndarray,
    qs: np.ndarray,
    js: np.ndarray,
    pi: np.ndarray,
    ci: np.ndarray,
    start: np.ndarray,
    d: np.ndarray | None,
    plan: object,
    reg_min: int,
    reg_max: int,
    bits: int,
    wrap: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Step items (pair pi, chunk ci) with the compiled loop; ``start``: per item the exact
    prefix sum P at the chunk's first input.

    Returns per item (wraps, saturations, first event step or -1, its exact value) and the
    (min, max) of the checkpoint partial sums seen. Saturate: ``d`` (per pair) is updated.
    """
    kern = _NB["kernel"]
    n = pi.size
    nw = np.zeros(n, dtype=np.int64)
    ns = np.zeros(n, dtype=np.int64)
    fs = np.full(n, -1, dtype=np.int64)
    fv = np.zeros(n, dtype=np.int64)
    pm = np.zeros(2, dtype=np.int64)
    dd = d if d is not None else np.zeros(1, dtype=np.int64)
    kern(  # type: ignore[operator]
        ox, ow, qs, js, pi, ci, start, dd, d is not None, plan.cs, plan.ext_pos,  # type: ignore[attr-defined]
        plan.ckpt, plan.stepno, reg_min, reg_max, bits, wrap,  # type: ignore[attr-defined]
        nw, ns, fs, fv, pm,
    )
    return nw, ns, fs, fv, int(pm[0]), int(pm[1])


def _compile() -> object:
    import numba

    @numba.njit(cache=True, nogil=True)
    def kernel(ox, ow, qs, js, pi, ci, pstart, d, use_d, cs, ext_pos, ckpt, stepno,  # noqa: PLR0913
               reg_min, reg_max, bits, wrap, nw, ns, fs, fv, pm):  # pragma: no cover - compiled
        k = ox.shape[1]
        wide = np.int64(1) << bits
        lo_seen = pm[0]
        hi_seen = pm[1]
        for it in range(pi.size):
            p = pi[it]
            c = ci[it]
            q = qs[p]
            j = js[p]
            start = pstart[it]
            for e in range(ext_pos.shape[2]):
                kk = ext_pos[q, c, e]
                if kk < k:
                    start -= np.int64(ox[q, kk]) * np.int64(ow[j, kk])
            cur = pstart[it]  # P(a); the register holds the checkpoint before: start
            prev = start
            if wrap:
                win = (start - reg_min) // wide
                r = start - wide * win
            elif use_d:
                r = start + d[p]
            else:
                r = start
            a = c * cs
            b = min(a + cs, k)
            cnt = 0
            for kk in range(a, b):
                cur += np.int64(ox[q, kk]) * np.int64(ow[j, kk])
                if not ckpt[q, kk]:
                    continue
                if cur < lo_seen:
                    lo_seen = cur
                if cur > hi_seen:
                    hi_seen = cur
                ex = r + (cur - prev)
                if ex < reg_min or ex > reg_max:
                    cnt += 1
                    if fs[it] < 0:
                        fs[it] = stepno[q, kk]
                        fv[it] = ex
                    if wrap:
                        win = (cur - reg_min) // wide
                        r = cur - wide * win
                    else:
                        r = reg_min if ex < reg_min else reg_max
                else:
                    r = ex
                prev = cur
            if wrap:
                nw[it] = cnt
            else:
                ns[it] = cnt
                if use_d:
                    d[p] = r - prev
        pm[0] = lo_seen
        pm[1] = hi_seen

    return kernel
