"""Readout of place-recognition outputs: best match, Recall@N, precision-recall curve.

Convention: scores are **(queries, places)** - one row per query image, as
``simulator.engine.simulate(...).outputs`` gives them (VPRTempo's own similarity matrix is the
transpose, (places, queries)). Higher is more similar. Ground truth is a boolean matrix of the
same shape.

Ties are broken towards the **lower place index** everywhere (as ``np.argmax``), so integer
output codes, which tie often, give reproducible results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PRCurve",
    "best_match",
    "ground_truth",
    "pr_curve",
    "rank_places",
    "recall_at_n",
    "recalls",
]


def ground_truth(
    n_queries: int, n_places: int, tolerance: int = 0, offset: int = 0
) -> np.ndarray:
    """bool (n_queries, n_places): query i matches places ``i + offset - tol .. i + offset + tol``.

    ``offset`` is VPRTempo's ``skip // filter`` when the query starts later than the database.
    Queries whose match lies outside the database have an all-False row (ignored by recall).
    """
    if n_queries < 0 or n_places < 0 or tolerance < 0:
        raise ValueError("n_queries, n_places and tolerance must be >= 0")
    q = np.arange(n_queries)[:, None] + offset
    p = np.arange(n_places)[None, :]
    centre_inside = (q >= 0) & (q < n_places)
    return (np.abs(p - q) <= tolerance) & centre_inside


def _check(scores: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores)
    g = np.asarray(gt, dtype=bool)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D (queries, places), got shape {s.shape}")
    if s.shape != g.shape:
        raise ValueError(f"scores {s.shape} and ground truth {g.shape} differ in shape")
    return s, g


def rank_places(scores: np.ndarray) -> np.ndarray:
    """int64 (queries, places): place indices by decreasing score, ties by lower index."""
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D (queries, places), got shape {s.shape}")
    if np.issubdtype(s.dtype, np.integer):
        key = -s.astype(np.int64)
    else:
        key = -s.astype(np.float64)
    return np.argsort(key, axis=1, kind="stable").astype(np.int64)


def best_match(scores: np.ndarray) -> np.ndarray:
    """int64 (queries,): the best place per query (argmax, ties -> lower index)."""
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D (queries, places), got shape {s.shape}")
    return np.argmax(s, axis=1).astype(np.int64)


def recall_at_n(scores: np.ndarray, gt: np.ndarray, n: int) -> float:
    """Fraction of queries (with at least one true match) whose top ``n`` places hold one."""
    s, g = _check(scores, gt)
    if n < 1:
        raise ValueError(f"N must be >= 1, got {n}")
    has = g.any(axis=1)
    if not has.any():
        return float("nan")
    s, g = s[has], g[has]
    top = rank_places(s)[:, :n]
    hit = np.take_along_axis(g, top, axis=1).any(axis=1)
    return float(hit.mean())


def recalls(
    scores: np.ndarray, gt: np.ndarray, ns: Sequence[int] = (1, 5, 10)
) -> dict[int, float]:
    """{N: Recall@N} for each N in ``ns`` (N larger than the places counts as all places)."""
    s, g = _check(scores, gt)
    return {int(n): recall_at_n(s, g, min(int(n), s.shape[1])) for n in ns}


@dataclass(frozen=True)
class PRCurve:
    """Precision-recall curve (single best match per query), VPRTempo's ``createPR``.

    precision, recall: float64 (n_thresh + 1,), starting at (P=1, R=0);
    thresholds: float64 (n_thresh,), from the highest to the lowest best-match score.
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray

    def recall_at_precision(self, precision: float = 1.0) -> float:
        """Largest recall reached at or above ``precision``."""
        ok = self.precision >= precision
        return float(self.recall[ok].max()) if ok.any() else 0.0


def pr_curve(scores: np.ndarray, gt: np.ndarray, n_thresh: int = 100) -> PRCurve:
    """Precision and recall of each query's best match over ``n_thresh`` score thresholds.

    A query counts as a ground-truth positive if it has any true match; its best match is
    accepted at threshold t when its score >= t. Matches VPRTempo's ``createPR(matching='single')``
    except for ties (lower index wins here).
    """
    s, g = _check(scores, gt)
    if n_thresh < 2:
        raise ValueError("n_thresh must be >= 2")
    s = s.astype(np.float64)
    gtp = int(g.any(axis=1).sum())
    best = best_match(s)
    rows = np.arange(s.shape[0])
    correct = g[rows, best]
    score = s[rows, best]
    thr = np.linspace(score.max(), score.min(), n_thresh) if score.size else np.zeros(n_thresh)
    prec = [1.0]
    rec = [0.0]
    for t in thr:
        accepted = score >= t
        tp = int(np.count_nonzero(correct & accepted))
        fp = int(np.count_nonzero(~correct & accepted))
        prec.append(tp / (tp + fp) if tp + fp else 1.0)
        rec.append(tp / gtp if gtp else 0.0)
    return PRCurve(np.asarray(prec), np.asarray(rec), np.asarray(thr, dtype=np.float64))
