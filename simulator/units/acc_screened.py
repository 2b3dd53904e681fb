"""No-event accumulation: one exact product when a separable bound rules out every event.

With offset operands and no pre-add, |every partial sum of (q, j)| <= min(sum_k |x'_qk| max|w'|,
max|x'| sum_k |w'_jk|). When that fits the register, one exact matrix product settles the layer;
when it also fits the width of the final sums, ``min_safe_acc_bits`` is exact too. Otherwise
the chunk-prefix bounds of prefix_screen.py (exact K-chunk sums, which add up to the exact
product) usually prove the final sums' width exact without the chunked path's absolute-sum
product: for every layer when ONNX Runtime sums the chunks (VPRTempo's feature layer in 2
chunks, its output layer in 32). For inputs x' >= 0 (zx = 0) without ONNX Runtime, where
BLAS would sum long chunks in float64, the sign bounds of sign_split.py do it instead (a
4x shorter product, exact positive sums for the few pairs it leaves open). Weight facts
are computed once per (read-only) weight matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import kernels
from ..fixedpoint import Register
from ..kernels import _mm_frozen, exact_matmul
from .accumulator import LaneStats, MacSpec, bits_for_range, range_of
from .offset_inputs import offset_inputs
from .prefix_screen import PrefixBounds, exact_prefix_range, prefix_bounds, screen_chunks
from .sign_split import SplitSums, split_sign_sums


@dataclass(frozen=True)
class _WeightInfo:
    """Per weight matrix, computed once: w' = w - zw in a small dtype and its abs bounds."""

    ow: np.ndarray  # (N, K) int8 when zw == 0, else int16
    lo: int
    hi: int
    abs_max: int
    abs_row_sum_max: int
    derived: dict = field(default_factory=dict)  # e.g. chunked float copies (partial_sums)


_WEIGHT_INFO: dict[int, tuple[object, object, _WeightInfo]] = {}


def weight_info(w: np.ndarray, zw: np.ndarray) -> _WeightInfo:
    """Cached by identity of the (read-only) weight and zero-point arrays."""
    import weakref

    key = id(w)
    hit = _WEIGHT_INFO.get(key)
    if hit is not None and hit[0]() is w and hit[1]() is zw:  # type: ignore[operator]
        return hit[2]
    zw64 = np.asarray(zw, dtype=np.int64)
    if w.dtype == np.int8 and not zw64.any():
        ow = w
    else:
        ow = (w.astype(np.int16) - zw64.astype(np.int16)[:, None]).astype(np.int16)
    lo, hi = int(ow.min(initial=0)), int(ow.max(initial=0))
    aw = np.abs(ow.astype(np.int16))
    info = _WeightInfo(ow, lo, hi, int(aw.max(initial=0)),
                       int(aw.sum(axis=1, dtype=np.int64).max(initial=0)))
    if not (_mm_frozen(w) and isinstance(zw, np.ndarray) and _mm_frozen(zw)):
        return info
    if len(_WEIGHT_INFO) >= 16:
        _WEIGHT_INFO.pop(next(iter(_WEIGHT_INFO)))
    _WEIGHT_INFO[key] = (weakref.ref(w, lambda _r, d=_WEIGHT_INFO: d.pop(key, None)),
                         weakref.ref(zw), info)
    return info


def accumulate_screened(
    x: np.ndarray,
    zx: int,
    w: np.ndarray,
    zw: np.ndarray,
    spec: MacSpec,
    track_max: bool,
    exact_headroom: bool,
    known: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, LaneStats] | None:
    """Offset operands without pre-add, when a separable bound proves no event can happen.

    When it computes the exact products but cannot settle the headroom they are left in
    ``known["sums"]`` for the chunked path.

    |every partial sum of (q, j)| <= min(sum_k |x'_qk| * max|w'|, max|x'| * sum_k |w'_jk|).
    Returns None when that bound does not settle the run (the general path then runs).
    """
    reg = spec.register
    wi = weight_info(w, zw)
    ox, xlo, xhi, ax_row = offset_inputs(x, zx)
    ax_max = max(-xlo, xhi, 0)
    sep = min(int(ax_row.max(initial=0)) * wi.abs_max, ax_max * wi.abs_row_sum_max)
    if sep > min(reg.max, -reg.min):
        return None
    split = screen = None
    cache = wi.derived if _mm_frozen(w) else None
    xr, wr = (min(xlo, 0), max(xhi, 0)), (wi.lo, wi.hi)
    q, n = x.shape[0], w.shape[0]
    if track_max and exact_headroom and xlo >= 0 and not _ort_screen(q * n * x.shape[1], cache):
        split = split_sign_sums(ox, wi.ow, ax_max, cache)  # sums and sign bounds (BLAS)
    elif track_max and exact_headroom:  # sums and prefix bounds from chunk products
        screen = prefix_bounds(ox, wi.ow, xr, wr, cache, screen_chunks(q, n))
    if split is not None:
        total = split.exact
    elif screen is not None:
        total = screen.sums
    else:
        total = exact_matmul(ox, wi.ow, a_range=xr, b_range=wr)
    zeros = np.zeros(n, dtype=np.int64)
    stats = LaneStats(zeros, zeros.copy(), zeros.copy(), 0, None, 0)
    if not track_max:
        return total, stats
    if split is not None and split.summary is not None:  # found with the sums
        lo_known, hi_known = min(split.summary.s_range[0], 0), max(split.summary.s_range[1], 0)
    elif screen is not None:
        lo_known, hi_known = screen.sums_range
    else:
        lo_known, hi_known = range_of(total)
    stats.max_abs_acc = max(-lo_known, hi_known)
    stats.partial_min, stats.partial_max = lo_known, hi_known
    safe = Register(bits_for_range(lo_known, hi_known), True)
    if sep <= min(safe.max, -safe.min):
        return total, stats  # the bound proves the final range is the widest: exact
    if not exact_headroom:
        stats.partial_exact = False
        stats.partial_bound = sep
        return total, stats
    if split is not None and _split_settles(split, safe):
        return total, stats
    if screen is not None and _prefixes_settle(screen, ox, wi.ow, safe):
        return total, stats
    if known is not None:
        known["sums"] = total
    return None


def _ort_screen(products: int, cache: dict | None) -> bool:
    """True when the chunk-prefix screen's chunk sums come from ONNX Runtime (read-only
    weights, a product it takes): then it also screens inputs x' >= 0. For the bench's
    feature layer 2 chunks settle every pair (~5 ms past the exact product), where the sign
    bounds' 4x shorter product, its pass and the open pairs took ~30 ms. BLAS would sum the
    long chunks in float64, so without ONNX Runtime the sign bounds stay."""
    return cache is not None and products >= kernels.ORT_MIN_PRODUCTS and kernels.uses_ort()


def _split_settles(split: SplitSums, safe: Register) -> bool:
    """True when every partial sum of every pair provably stays inside ``safe`` (the width
    of the final sums): [S - U, U] from the block bound, exact [neg, pos] for the pairs that
    bound leaves unsettled (x' >= 0: every prefix lies between the negative and the positive
    products' sums, whatever the order or the skipped inputs)."""
    qs, js = split.open_pairs(safe.min, safe.max)
    if not qs.size:
        return True
    pos = split.exact_pos(qs, js)
    neg = split.exact[qs, js] - pos
    return not bool(((neg < safe.min) | (pos > safe.max)).any())


PREFIX_SCAN_MAX_FRACTION = 1 / 32  # above this share of open pairs (and more than
PREFIX_SCAN_ALWAYS = 1 << 22  # this many products to step) the chunked path runs


def _prefixes_settle(screen: PrefixBounds, ox: np.ndarray, ow: np.ndarray,
                     safe: Register) -> bool:
    """True when every index-order prefix sum of every pair provably stays inside ``safe``:
    the chunk-prefix bounds of prefix_screen.py, then every input stepped for the few pairs
    they leave open. False (the chunked path then runs) when a prefix leaves ``safe`` or too
    many pairs are open."""
    out = (screen.lo < safe.min) | (screen.hi > safe.max)  # of the pairs listed; the rest
    qs, js = screen.qs[out], screen.js[out]  # stay inside the final width, so inside safe
    if not qs.size:
        return True
    if qs.size > screen.sums.size * PREFIX_SCAN_MAX_FRACTION and \
            qs.size * ox.shape[1] > PREFIX_SCAN_ALWAYS:
        return False
    lo, hi = exact_prefix_range(ox, ow, qs, js)
    return not bool(((lo < safe.min) | (hi > safe.max)).any())
