"""AUROC as pure functions: exact (Mann-Whitney U), from probability histograms, and the
histograms themselves, which stream: the histograms of several chunks sum to the whole's.

Ties count 1/2, as in ``sklearn.metrics.roc_auc_score``; the stateful, distributed version is
``seg_bench.metrics.streaming.BinnedROC``. The one-point AUROC of a hard prediction,
:func:`~seg_bench.metrics.functional.balanced_auroc`, lives with the confusion-matrix scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seg_bench.errors import UserError
from seg_bench.metrics.inputs import check_same_shape, to_numpy

__all__ = ["roc_auc_exact", "roc_auc_binned", "probability_histograms"]


def _binary_target(target: np.ndarray, name: str = "target") -> np.ndarray:
    if target.dtype == bool:
        return target
    if not (np.issubdtype(target.dtype, np.integer) or np.issubdtype(target.dtype, np.floating)):
        raise UserError(f"{name} must be binary (0/1 or bool), got dtype {target.dtype}")
    if target.size and not np.isin(target, (0, 1)).all():
        bad = target[~np.isin(target, (0, 1))].ravel()[0]
        raise UserError(f"{name} must be binary (0/1 or bool); found the value {bad!r}")
    return target.astype(bool)


def _auc_from_grouped_counts(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUROC from positive/negative counts per score group, groups in ascending score order.

    Pairs within a group are ties and count 1/2 (the trapezoidal rule), which is what
    ``sklearn.metrics.roc_auc_score`` does.
    """
    pos = np.asarray(pos)
    neg = np.asarray(neg)
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        missing = "positive" if n_pos == 0 else "negative"
        raise UserError(f"target has no {missing} pixels: AUROC is undefined with one class only")
    if n_pos * n_neg < 2**62:  # exact integer arithmetic
        pos = pos.astype(np.int64)
        neg = neg.astype(np.int64)
        neg_below = np.cumsum(neg) - neg
        twice = int(np.dot(pos, 2 * neg_below + neg))
        return twice / (2 * n_pos * n_neg)
    pos = pos.astype(np.float64)
    neg = neg.astype(np.float64)
    neg_below = np.cumsum(neg) - neg
    return float(np.dot(pos, neg_below + 0.5 * neg) / (float(n_pos) * float(n_neg)))


def roc_auc_exact(probs: Any, target: Any) -> float:
    """Threshold-free AUROC (Mann-Whitney U), ties counted 1/2 as in scikit-learn.

    Sorts all scores: O(n log n) time and several n-sized arrays of memory. For whole volumes
    stream :func:`probability_histograms` (or ``streaming.BinnedROC``) and use
    :func:`roc_auc_binned`.

    Parameters
    ----------
    probs : array of float, any shape
        Scores; any real values (probabilities, logits), no NaN.
    target : array of {0, 1} or bool, same shape
        1 = positive.

    Returns
    -------
    float
        Probability that a random positive scores above a random negative (+ 1/2 for ties).

    Examples
    --------
    >>> roc_auc_exact([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    """
    p = to_numpy(probs, "probs")
    t = to_numpy(target, "target")
    check_same_shape(p, t, "probs", "target")
    if not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.integer)):
        raise UserError(f"probs must be numeric, got dtype {p.dtype}")
    p = p.ravel()
    t = _binary_target(t.ravel())
    if np.issubdtype(p.dtype, np.floating) and np.isnan(p).any():
        raise UserError("probs holds NaN values")
    order = np.argsort(p, kind="stable")
    s = p[order]
    y = t[order]
    if s.size == 0:
        raise UserError("probs is empty")
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    pos = np.add.reduceat(y.astype(np.int64), starts)
    size = np.diff(np.append(starts, s.size))
    return _auc_from_grouped_counts(pos, size - pos)


def _check_bins(bins: Any) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise UserError(f"bins must be an int >= 2, got {bins!r}")
    return int(bins)


def probability_histograms(probs: Any, target: Any, bins: int = 10_000):
    """Histograms of the probabilities of positive and of negative pixels.

    Bin ``k`` holds probabilities in ``[k / bins, (k + 1) / bins)``; 1.0 goes to the last bin.
    Summing the histograms of several chunks gives the histograms of the whole.

    Parameters
    ----------
    probs : array of float in [0, 1], any shape
    target : array of {0, 1} or bool, same shape
    bins : int, default 10000

    Returns
    -------
    hist_pos, hist_neg : (bins,) int64 arrays

    Examples
    --------
    >>> hp, hn = probability_histograms([0.05, 0.95, 0.5], [0, 1, 1], bins=10)
    >>> hp.tolist(), hn.tolist()
    ([0, 0, 0, 0, 0, 1, 0, 0, 0, 1], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    """
    bins = _check_bins(bins)
    p = to_numpy(probs, "probs")
    t = to_numpy(target, "target")
    check_same_shape(p, t, "probs", "target")
    if not np.issubdtype(p.dtype, np.floating):
        raise UserError(f"probs must be floating-point probabilities, got dtype {p.dtype}")
    if p.dtype == np.float16:
        p = p.astype(np.float32)
    p = p.ravel()
    t = _binary_target(t.ravel())
    if p.size and not (p.min() >= 0.0 and p.max() <= 1.0):  # also catches NaN
        raise UserError(
            f"probs must lie in [0, 1] (got min {np.nanmin(p)}, max {np.nanmax(p)}, "
            f"NaN present: {bool(np.isnan(p).any())}); apply a sigmoid/softmax first"
        )
    idx = np.minimum(np.floor(p * p.dtype.type(bins)).astype(np.int64), bins - 1)
    key = idx + bins * t.astype(np.int64)
    counts = np.bincount(key, minlength=2 * bins)
    return counts[bins:], counts[:bins]


def roc_auc_binned(hist_pos: Any, hist_neg: Any) -> float:
    """AUROC from probability histograms of positives and negatives (equal bins, ascending).

    Pairs in the same bin count 1/2, so the error against :func:`roc_auc_exact` is at most
    ``0.5 * sum(hist_pos * hist_neg) / (P * N)``; with 10,000 bins it is typically < 1e-4.

    Parameters
    ----------
    hist_pos, hist_neg : (bins,) arrays of non-negative counts
        From :func:`probability_histograms` or ``streaming.BinnedROC``.

    Returns
    -------
    float

    Examples
    --------
    >>> roc_auc_binned([0, 1, 3], [2, 1, 0])  # (1 * (2 + 1/2) + 3 * 3) / (4 * 3)
    0.9583333333333334
    """
    hp = to_numpy(hist_pos, "hist_pos")
    hn = to_numpy(hist_neg, "hist_neg")
    for h, name in ((hp, "hist_pos"), (hn, "hist_neg")):
        if h.ndim != 1:
            raise UserError(f"{name} must be 1-D, got shape {h.shape}")
        if (h < 0).any() or not np.array_equal(h, np.round(h)):
            raise UserError(f"{name} must hold whole pixel counts >= 0, got {h.tolist()[:8]}")
    if hp.shape != hn.shape:
        raise UserError(f"hist_pos has {hp.size} bins but hist_neg has {hn.size}; they must match")
    return _auc_from_grouped_counts(hp, hn)
