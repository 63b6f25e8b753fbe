"""Pixel-level metrics as pure functions: confusion matrix, overlap scores, kappa.

Everything here is a plain function of arrays (numpy, or torch where noted), so each one can
be checked against an oracle (scikit-learn) in isolation. The stateful, distributed versions
live in :mod:`seg_bench.metrics.streaming` and only accumulate the counters these functions
consume (a confusion matrix here; two probability histograms for :mod:`seg_bench.metrics.roc`).

Conventions
-----------
``confmat[i, j]`` counts pixels whose *target* is class ``i`` and whose *prediction* is class
``j`` (rows = truth, columns = prediction), as in ``sklearn.metrics.confusion_matrix`` and
torchmetrics.

Zero-division rules (why an all-background image never gives NaN)
-----------------------------------------------------------------
A per-class ratio whose numerator and denominator are both 0 is decided by the one error count
that could have made it non-zero:

* IoU and Dice of a class that is absent from both truth and prediction: **1.0** (truth and
  prediction agree that the class is not there).
* precision with no predicted pixels of the class: 1.0 if the class is also absent from the
  truth, 0.0 if it was missed (FN > 0).
* recall (sensitivity) with no true pixels of the class: 1.0 if nothing was predicted either,
  0.0 if there are false positives. FNR = 1 - recall.
* specificity with no negative pixels (the class covers the whole truth): 1.0 if the prediction
  also covers everything, 0.0 otherwise. FPR = 1 - specificity.
* Cohen's kappa when chance agreement is 1 (truth and prediction are the same single class):
  1.0. (scikit-learn returns NaN there.)

**Macro averages skip classes absent from both truth and prediction**, so an unused class
neither inflates (with its 1.0) nor deflates the mean. For a binary problem the headline keys
(``iou``, ``dice``, ...) are the positive-class (class 1) values; a binary image with no
positives anywhere therefore scores ``iou = dice = 1.0``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from seg_bench.errors import UserError
from seg_bench.metrics.inputs import check_same_shape, is_torch, to_numpy

__all__ = [
    "confusion_matrix",
    "pixel_metrics",
    "balanced_auroc",
    "kappa_band",
    "auroc_grade",
]

# --------------------------------------------------------------------------- helpers


def _not_class_ids(name: str, dtype: Any) -> UserError:
    return UserError(
        f"{name} must hold integer class ids, got dtype {dtype}; "
        "take the argmax over the class axis (or threshold probabilities) first"
    )


def _check_id_range(x: Any, name: str, num_classes: int) -> None:
    """Class ids in [0, num_classes); ``x`` is a numpy array or a torch tensor."""
    if not (x.size if isinstance(x, np.ndarray) else x.numel()):
        return
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise UserError(
            f"{name} holds class id {bad}, outside [0, {num_classes - 1}] for "
            f"num_classes={num_classes}"
        )


def _check_class_ids(x: np.ndarray, name: str, num_classes: int) -> None:
    if x.dtype == bool:
        return
    if not np.issubdtype(x.dtype, np.integer):
        raise _not_class_ids(name, x.dtype)
    _check_id_range(x, name, num_classes)


def _check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise UserError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if num_classes < 2:
        raise UserError(f"num_classes must be >= 2, got {num_classes}")
    return int(num_classes)


def _ratio(num: np.ndarray, den: np.ndarray, other_error: np.ndarray) -> np.ndarray:
    """num/den, and where den == 0: 1.0 if ``other_error`` == 0 else 0.0 (see module doc)."""
    num = num.astype(np.float64)
    den = den.astype(np.float64)
    out = np.where(other_error == 0, 1.0, 0.0)
    np.divide(num, den, out=out, where=den > 0)
    return out


# --------------------------------------------------------------------------- confusion matrix


def confusion_matrix(pred: Any, target: Any, num_classes: int, ignore_index: int | None = None):
    """Confusion matrix of class-id maps, counted with one ``bincount``.

    Parameters
    ----------
    pred : array of int or bool, any shape
        Predicted class ids (not probabilities or logits).
    target : array of int or bool, same shape as ``pred``
        True class ids.
    num_classes : int
        Number of classes C (>= 2); ids must lie in ``[0, C)``.
    ignore_index : int, optional
        Pixels whose *target* equals this value are not counted (e.g. 255 for "unlabelled").

    Returns
    -------
    confmat : (C, C) int64 array
        ``confmat[i, j]`` = number of pixels with target ``i`` predicted as ``j``. A numpy
        input gives a numpy array; a torch input gives a torch tensor on the same device.

    Examples
    --------
    >>> import numpy as np
    >>> confusion_matrix(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), num_classes=2)
    array([[1, 1],
           [0, 2]])
    """
    num_classes = _check_num_classes(num_classes)
    if is_torch(pred) or is_torch(target):
        return _confusion_matrix_torch(pred, target, num_classes, ignore_index)
    p = to_numpy(pred, "pred")
    t = to_numpy(target, "target")
    check_same_shape(p, t, "pred", "target")
    p, t = p.ravel(), t.ravel()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    _check_class_ids(p, "pred", num_classes)
    _check_class_ids(t, "target", num_classes)
    key = t.astype(np.int64) * num_classes + p.astype(np.int64)
    counts = np.bincount(key, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _confusion_matrix_torch(
    pred, target, num_classes: int, ignore_index: int | None, validate: bool = True
):
    import torch

    if not (is_torch(pred) and is_torch(target)):
        raise UserError("pred and target must both be torch tensors or both be numpy arrays")
    check_same_shape(pred, target, "pred", "target")
    p, t = pred.reshape(-1), target.reshape(-1)
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    for x, name in ((p, "pred"), (t, "target")):
        if x.dtype == torch.bool:
            continue
        if x.is_floating_point() or x.is_complex():
            raise _not_class_ids(name, x.dtype)
        if validate:
            _check_id_range(x, name, num_classes)
    key = t.long() * num_classes + p.long()
    return torch.bincount(key, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


# --------------------------------------------------------------------------- pixel metrics


def _check_confmat(confmat: Any) -> np.ndarray:
    cm = to_numpy(confmat, "confmat")
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 2:
        raise UserError(f"confmat must be a square (C, C) matrix with C >= 2, got shape {cm.shape}")
    if not (np.issubdtype(cm.dtype, np.integer) or np.issubdtype(cm.dtype, np.floating)):
        raise UserError(f"confmat must hold counts, got dtype {cm.dtype}")
    if np.issubdtype(cm.dtype, np.floating) and not np.all(np.isfinite(cm)):
        raise UserError("confmat holds NaN or infinite values")
    if (cm < 0).any():
        raise UserError("confmat holds negative counts")
    if cm.sum() == 0:
        raise UserError("confmat is empty (all counts are 0): no pixels were scored")
    return cm


def _cohen_kappa(cm: np.ndarray) -> float:
    # Exact arithmetic on integer counts: kappa = (N*trace - sum r_c p_c) / (N^2 - sum r_c p_c).
    if np.issubdtype(cm.dtype, np.integer):
        rows = [int(v) for v in cm.sum(axis=1)]
        cols = [int(v) for v in cm.sum(axis=0)]
        n = sum(rows)
        trace = int(np.trace(cm))
    else:
        rows, cols = list(cm.sum(axis=1)), list(cm.sum(axis=0))
        n, trace = float(cm.sum()), float(np.trace(cm))
    chance = sum(r * c for r, c in zip(rows, cols, strict=True))
    den = n * n - chance
    if den == 0:  # chance agreement 1: both are one and the same class everywhere
        return 1.0
    return float((n * trace - chance) / den)


def pixel_metrics(confmat: Any) -> dict[str, Any]:
    """Overlap and agreement scores from a confusion matrix.

    Parameters
    ----------
    confmat : (C, C) array of non-negative counts
        Rows = truth, columns = prediction (see :func:`confusion_matrix`).

    Returns
    -------
    dict
        ``accuracy`` (pixel accuracy), ``kappa`` (Cohen's kappa: (p_o - p_e) / (1 - p_e) with
        p_o observed and p_e chance agreement), headline ``iou``, ``dice``, ``f1`` (= dice),
        ``precision``, ``recall``, ``sensitivity`` (= recall), ``specificity``, ``fpr``,
        ``fnr``; ``per_class`` (dict of (C,) arrays), ``macro`` (dict of floats: means over
        classes present in truth or prediction), ``present`` ((C,) bool), ``num_pixels``,
        ``average`` (what the headline keys are) and ``definition``. For C == 2 the headline
        keys are the class-1 values and ``balanced_auroc`` is added; for C > 2 they are the
        macro averages. Zero-division rules: see the module docstring.

    Examples
    --------
    >>> m = pixel_metrics([[5, 1], [0, 2]])
    >>> round(m["iou"], 4), round(m["dice"], 4), m["recall"]
    (0.6667, 0.8, 1.0)
    """
    cm = _check_confmat(confmat)
    c = cm.shape[0]
    tp = np.diag(cm).astype(np.float64)
    truth = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    n = float(cm.sum())
    fp = predicted - tp
    fn = truth - tp
    tn = n - tp - fp - fn
    present = (truth + predicted) > 0

    per_class = {
        "iou": _ratio(tp, tp + fp + fn, fp + fn),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, fp + fn),
        "precision": _ratio(tp, tp + fp, fn),
        "recall": _ratio(tp, tp + fn, fp),
        "specificity": _ratio(tn, tn + fp, fn),
    }
    per_class["fpr"] = 1.0 - per_class["specificity"]
    per_class["fnr"] = 1.0 - per_class["recall"]
    per_class["f1"] = per_class["dice"]
    per_class["sensitivity"] = per_class["recall"]
    macro = {k: float(v[present].mean()) for k, v in per_class.items()}

    out: dict[str, Any] = {
        "accuracy": float(tp.sum() / n),
        "kappa": _cohen_kappa(cm),
    }
    if c == 2:
        out.update({k: float(v[1]) for k, v in per_class.items()})
        out["balanced_auroc"] = 1.0 - (out["fpr"] + out["fnr"]) / 2.0
        out["average"] = "binary: positive class 1"
    else:
        out.update(macro)
        out["average"] = "macro over classes present in truth or prediction"
    out.update(
        per_class=per_class,
        macro=macro,
        present=present,
        num_pixels=int(round(n)),
        definition=(
            "pixel confusion matrix (rows truth, cols prediction); 0/0 -> 1.0 when truth and "
            "prediction agree the set is empty, else 0.0; macro skips classes absent from both"
        ),
    )
    return out


def balanced_auroc(confmat: Any) -> float:
    """Area under the one-point ROC curve of a hard binary prediction: 1 - (FPR + FNR) / 2.

    This equals balanced accuracy, (sensitivity + specificity) / 2: the ROC "curve" through
    (0, 0), (FPR, TPR) and (1, 1) has exactly this area.

    Parameters
    ----------
    confmat : (2, 2) array of counts
        Rows truth, columns prediction; class 1 is positive.

    Returns
    -------
    float

    Examples
    --------
    >>> round(balanced_auroc([[8, 2], [1, 9]]), 6)  # FPR 0.2, FNR 0.1
    0.85
    """
    cm = _check_confmat(confmat)
    if cm.shape != (2, 2):
        raise UserError(f"balanced_auroc needs a binary (2, 2) confmat, got shape {cm.shape}")
    m = pixel_metrics(cm)
    return m["balanced_auroc"]


# --------------------------------------------------------------------------- interpretation


def kappa_band(k: float, scale: str = "landis_koch") -> str:
    """Verbal band of a kappa value.

    Landis & Koch (1977): < 0 poor, [0, 0.20] slight, (0.20, 0.40] fair, (0.40, 0.60]
    moderate, (0.60, 0.80] substantial, (0.80, 1] almost perfect. Fleiss (1981): < 0.40 poor,
    [0.40, 0.75] fair to good, > 0.75 excellent. Upper bounds are inclusive, so the published
    two-decimal tables (0.21-0.40, ...) are reproduced exactly.

    Parameters
    ----------
    k : float in [-1, 1]
    scale : {"landis_koch", "fleiss"}

    Returns
    -------
    str

    Examples
    --------
    >>> kappa_band(0.65), kappa_band(0.65, scale="fleiss")
    ('substantial', 'fair to good')
    """
    if isinstance(k, bool) or not isinstance(k, (int, float, np.integer, np.floating)):
        raise UserError(f"k must be a number, got {k!r}")
    k = float(k)
    if math.isnan(k) or not -1.0 <= k <= 1.0:
        raise UserError(f"k must be a kappa value in [-1, 1], got {k}")
    if scale == "landis_koch":
        if k < 0:
            return "poor"
        for upper, name in (
            (0.20, "slight"),
            (0.40, "fair"),
            (0.60, "moderate"),
            (0.80, "substantial"),
        ):
            if k <= upper:
                return name
        return "almost perfect"
    if scale == "fleiss":
        if k < 0.40:
            return "poor"
        return "fair to good" if k <= 0.75 else "excellent"
    raise UserError(f"scale must be 'landis_koch' or 'fleiss', got {scale!r}")


def auroc_grade(a: float) -> tuple[str, str]:
    """Academic grade of an AUROC value.

    [0.9, 1] A excellent, [0.8, 0.9) B good, [0.7, 0.8) C fair, [0.6, 0.7) D poor,
    [0.5, 0.6) F fail. Below 0.5 the scores rank the classes the wrong way round: it is
    graded F with the description "worse than chance" (check for swapped labels or
    inverted scores: 1 - a would be the AUROC of the flipped score).

    Parameters
    ----------
    a : float in [0, 1]

    Returns
    -------
    (grade, description) : tuple of str

    Examples
    --------
    >>> auroc_grade(0.93)
    ('A', 'excellent')
    """
    if isinstance(a, bool) or not isinstance(a, (int, float, np.integer, np.floating)):
        raise UserError(f"a must be a number, got {a!r}")
    a = float(a)
    if math.isnan(a) or not 0.0 <= a <= 1.0:
        raise UserError(f"a must be an AUROC value in [0, 1], got {a}")
    for lower, grade, text in (
        (0.9, "A", "excellent"),
        (0.8, "B", "good"),
        (0.7, "C", "fair"),
        (0.6, "D", "poor"),
        (0.5, "F", "fail"),
    ):
        if a >= lower:
            return grade, text
    return "F", "worse than chance"
