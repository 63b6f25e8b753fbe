"""Instance segmentation score of the Kaggle Data Science Bowl 2018.

Definition (Kaggle DSB 2018 evaluation page):

* IoU thresholds t = 0.50, 0.55, ..., 0.95 (ten values);
* at threshold t a predicted object and a true object are a hit (TP) when their IoU is
  **strictly greater** than t; unmatched predictions are FP, unmatched true objects FN;
* per image: the mean over t of TP(t) / (TP(t) + FP(t) + FN(t));
* the score: the mean over images.

Our conventions for the cases the competition never met: an image with no objects in either
truth or prediction scores 1.0 at every threshold; objects in only one of them score 0.0.

The comparison IoU > t is done exactly on integers, ``100 * intersection > T * union`` with
T = 50, 55, ..., 95, so an IoU of exactly 0.55 (e.g. 11/20) is never a hit at t = 0.55,
whatever the floating-point rounding of 0.55.

Labels need not be consecutive (they are relabelled internally); 0 is background. Label
images cannot overlap, so every pixel belongs to at most one object on each side.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from seg_bench.errors import UserError
from seg_bench.metrics.inputs import check_label_pair

__all__ = [
    "DSB_THRESHOLDS",
    "label_overlap",
    "iou_matrix",
    "dsb_average_precision",
    "dsb_map",
    "object_counts",
    "object_f1",
    "split_count",
    "merge_count",
]

# IoU thresholds in percent; the comparison is done on integers (see module doc).
_THRESHOLDS_PERCENT = np.arange(50, 100, 5, dtype=np.int64)
DSB_THRESHOLDS = _THRESHOLDS_PERCENT / 100.0

_DEFINITION = (
    "Kaggle DSB 2018: mean over IoU thresholds 0.50:0.05:0.95 of TP/(TP+FP+FN), hit when "
    "IoU > t (strict); mean over images; empty truth and prediction -> 1.0"
)


def _compact(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map raw label values to 0 (background, if 0) and 1..n; returns (ids 1..n, mapped)."""
    ids, inverse = np.unique(raw, return_inverse=True)
    if ids.size and ids[0] == 0:
        return ids[1:], inverse.ravel()
    return ids, inverse.ravel() + 1


def _overlap_pairs(truth: np.ndarray, pred: np.ndarray):
    """Sparse contingency table of two label images, from the pixels that are not
    background in both (background/background pixels carry no information).

    Returns ``(t_ids, p_ids, i, j, count, area_t, area_p)``: original object ids (true and
    predicted, increasing), the non-zero entries (i, j, count) with objects numbered 1..n in
    the order of ``t_ids`` / ``p_ids`` and 0 for background (the (0, 0) entry is omitted),
    and the object areas (index 0 unused).
    """
    t = truth.ravel()
    p = pred.ravel()
    fg = (t != 0) | (p != 0)
    t, p = t[fg], p[fg]
    hi_t = int(t.max(initial=0))
    hi_p = int(p.max(initial=0))
    t_orig = p_orig = None
    if (hi_t + 1) * (hi_p + 1) >= 2**62:  # huge label values: compact each side first
        t_orig, t = _compact(t)
        p_orig, p = _compact(p)
        hi_t, hi_p = int(t.max(initial=0)), int(p.max(initial=0))
    width = hi_p + 1
    key = t.astype(np.int64) * width + p.astype(np.int64)
    n_bins = (hi_t + 1) * width
    if n_bins <= max(4 * key.size, 1 << 16):  # small label values: one bincount
        counts = np.bincount(key, minlength=n_bins)
        pairs = np.flatnonzero(counts)
        counts = counts[pairs]
    else:  # sparse label values: one sort of the foreground pixels
        pairs, counts = np.unique(key, return_counts=True)
    t_ids, i = _compact(pairs // width)
    p_ids, j = _compact(pairs % width)
    if t_orig is not None:  # back to the ids the caller gave (compacted ids start at 1)
        t_ids, p_ids = t_orig[t_ids - 1], p_orig[p_ids - 1]
    counts = counts.astype(np.int64)
    area_t = np.bincount(i, weights=counts, minlength=t_ids.size + 1).astype(np.int64)
    area_p = np.bincount(j, weights=counts, minlength=p_ids.size + 1).astype(np.int64)
    return t_ids, p_ids, i, j, counts, area_t, area_p


def label_overlap(truth: Any, pred: Any, return_labels: bool = False):
    """Contingency table of two label images, counted over pixel pairs in one pass.

    The pair (true label, predicted label) of every pixel that is not background in both
    is packed into one integer and counted with one ``bincount`` (one sort instead when the
    label values are large and sparse); there is no loop over object pairs.

    Parameters
    ----------
    truth, pred : integer label images of the same shape
        0 is background; other labels need not be consecutive.
    return_labels : bool, default False
        Also return the original label ids of rows 1.. and columns 1...

    Returns
    -------
    overlap : (n_true + 1, n_pred + 1) int64 array
        ``overlap[i, j]`` = pixels in true object i and predicted object j; row and column 0
        are background. Objects are numbered in increasing order of their original labels.
    truth_ids, pred_ids : int arrays, only with ``return_labels=True``

    Examples
    --------
    >>> import numpy as np
    >>> label_overlap(np.array([[0, 7, 7]]), np.array([[3, 3, 0]]))
    array([[0, 1],
           [1, 1]])
    """
    t, p = check_label_pair(truth, pred, "truth", "pred")
    t_ids, p_ids, i, j, counts, _, _ = _overlap_pairs(t, p)
    table = np.zeros((t_ids.size + 1, p_ids.size + 1), dtype=np.int64)
    table[i, j] = counts
    table[0, 0] = t.size - counts.sum()
    if return_labels:
        return table, t_ids, p_ids
    return table


def iou_matrix(truth: Any, pred: Any) -> np.ndarray:
    """IoU of every true object with every predicted object.

    Parameters
    ----------
    truth, pred : integer label images of the same shape (0 = background)

    Returns
    -------
    (n_true, n_pred) float64 array
        Objects in increasing order of their original labels.

    Examples
    --------
    >>> import numpy as np
    >>> iou_matrix(np.array([[1, 1, 0, 0]]), np.array([[0, 2, 2, 0]]))
    array([[0.33333333]])
    """
    table = label_overlap(truth, pred)
    inter = table[1:, 1:].astype(np.float64)
    area_t = table[1:, :].sum(axis=1).astype(np.float64)
    area_p = table[:, 1:].sum(axis=0).astype(np.float64)
    union = area_t[:, None] + area_p[None, :] - inter
    return inter / union


def dsb_average_precision(truth_labels: Any, pred_labels: Any) -> tuple[float, np.ndarray]:
    """Kaggle DSB 2018 score of one image.

    Parameters
    ----------
    truth_labels, pred_labels : integer label images of the same shape (0 = background)

    Returns
    -------
    score : float
        Mean over the ten thresholds of TP / (TP + FP + FN).
    per_threshold : (10,) float64 array
        TP / (TP + FP + FN) at t = 0.50, 0.55, ..., 0.95 (see ``DSB_THRESHOLDS``).

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1, 1, 1, 1, 0, 2, 2]])
    >>> pred = np.array([[5, 5, 5, 0, 0, 0, 0]])       # IoU 3/4 with object 1; object 2 missed
    >>> score, ap = dsb_average_precision(truth, pred)
    >>> ap.round(2).tolist()
    [0.5, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    t, p = check_label_pair(truth_labels, pred_labels, "truth", "pred")
    t_ids, p_ids, i, j, inter, area_t, area_p = _overlap_pairs(t, p)
    n_t, n_p = t_ids.size, p_ids.size
    if n_t == 0 and n_p == 0:
        per_threshold = np.ones(_THRESHOLDS_PERCENT.size)
        return 1.0, per_threshold
    obj = (i > 0) & (j > 0)
    inter = inter[obj]
    union = area_t[i[obj]] + area_p[j[obj]] - inter
    # IoU > 0.5 matches are unique: if a true object A had IoU > 0.5 with two disjoint
    # predictions B and C, then |A n B| > |A u B|/2 >= |A|/2 and likewise for C, so
    # |A n B| + |A n C| > |A|, impossible. Counting the pairs above each threshold (all >= 0.5)
    # is therefore the number of one-to-one matches; no assignment problem is needed.
    hits = 100 * inter[:, None] > _THRESHOLDS_PERCENT[None, :] * union[:, None]
    tp = hits.sum(axis=0)
    fp = n_p - tp
    fn = n_t - tp
    per_threshold = tp / (tp + fp + fn)
    return float(np.mean(per_threshold)), per_threshold


def dsb_map(pairs: Iterable[tuple[Any, Any]]) -> dict[str, Any]:
    """Kaggle DSB 2018 score of a set of images.

    Parameters
    ----------
    pairs : iterable of (truth_labels, pred_labels)
        One pair of label images per image.

    Returns
    -------
    dict
        ``score`` (mean over images), ``per_image`` ((n_images,) array), ``per_threshold``
        ((10,) array: the mean over images at each threshold; its mean is ``score``),
        ``thresholds`` and ``definition``.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1, 1, 0, 2]])
    >>> dsb_map([(a, a), (a, np.zeros_like(a))])["score"]
    0.5
    """
    per_image, per_threshold = [], []
    for k, pair in enumerate(pairs):
        try:
            truth, pred = pair
        except (TypeError, ValueError) as exc:
            raise UserError(f"pairs[{k}] must be a (truth_labels, pred_labels) pair") from exc
        try:
            score, ap = dsb_average_precision(truth, pred)
        except UserError as exc:
            raise UserError(f"pairs[{k}]: {exc}") from exc
        per_image.append(score)
        per_threshold.append(ap)
    if not per_image:
        raise UserError("pairs is empty: no images to score")
    per_image_arr = np.asarray(per_image)
    return {
        "score": float(per_image_arr.mean()),
        "per_image": per_image_arr,
        "per_threshold": np.mean(per_threshold, axis=0),
        "thresholds": DSB_THRESHOLDS.copy(),
        "definition": _DEFINITION,
    }


def object_counts(truth_labels: Any, pred_labels: Any, iou: float = 0.5) -> tuple[int, int, int]:
    """(TP, FP, FN) of the objects at IoU > ``iou`` (strict, as in the DSB score; iou >= 0.5
    so matches are one-to-one).

    Examples
    --------
    >>> import numpy as np
    >>> object_counts(np.array([[1, 1, 0, 2]]), np.array([[3, 3, 0, 0]]))
    (1, 0, 1)
    """
    if not 0.5 <= iou < 1.0 or abs(100 * iou - round(100 * iou)) > 1e-9:
        raise UserError(
            f"iou must be a whole percentage in [0.5, 1) (one-to-one matches), got {iou}"
        )
    t, p = check_label_pair(truth_labels, pred_labels, "truth", "pred")
    t_ids, p_ids, i, j, inter, area_t, area_p = _overlap_pairs(t, p)
    obj = (i > 0) & (j > 0)
    union = area_t[i[obj]] + area_p[j[obj]] - inter[obj]
    # On integers, as the DSB score compares: in floats 0.7 * 90 = 62.99..., so 63 / 90 passed.
    percent = round(100 * iou)
    tp = int((100 * inter[obj] > percent * union).sum())
    return tp, int(p_ids.size) - tp, int(t_ids.size) - tp


def object_f1(tp: int, fp: int, fn: int) -> float:
    """2 TP / (2 TP + FP + FN); 1.0 when there is nothing to find and nothing found.

    >>> object_f1(1, 0, 1)
    0.6666666666666666
    """
    total = 2 * tp + fp + fn
    return 1.0 if total == 0 else 2 * tp / total


def _object_pairs(truth: Any, pred: Any) -> tuple[np.ndarray, ...]:
    """Object pairs (i true, j predicted, 1-based) with the overlap and both areas."""
    t, p = check_label_pair(truth, pred, "truth", "pred")
    _, _, i, j, inter, area_t, area_p = _overlap_pairs(t, p)
    obj = (i > 0) & (j > 0)
    return i[obj], j[obj], inter[obj], area_t, area_p


def split_count(truth_labels: Any, pred_labels: Any) -> int:
    """True objects *split*: hit by two or more predictions, each of which lies more than
    half inside that true object.

    Examples
    --------
    >>> import numpy as np
    >>> split_count(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 2, 2]]))
    1
    """
    i, j, inter, _, area_p = _object_pairs(truth_labels, pred_labels)
    hit = 2 * inter > area_p[j]
    return int((np.bincount(i[hit]) >= 2).sum()) if hit.any() else 0


def merge_count(truth_labels: Any, pred_labels: Any) -> int:
    """Predictions that *merge*: cover more than half of each of two or more true objects.

    Examples
    --------
    >>> import numpy as np
    >>> merge_count(np.array([[1, 1, 2, 2]]), np.array([[5, 5, 5, 5]]))
    1
    """
    i, j, inter, area_t, _ = _object_pairs(truth_labels, pred_labels)
    covered = 2 * inter > area_t[i]
    return int((np.bincount(j[covered]) >= 2).sum()) if covered.any() else 0
