"""How well weak labels agree with manual masks, scored with the benchmark's own metrics."""

from __future__ import annotations

from typing import Any

import numpy as np

from seg_bench.errors import UserError
from seg_bench.metrics import confusion_matrix, pixel_metrics

__all__ = ["label_quality"]


def label_quality(weak: Any, truth: Any) -> dict[str, float]:
    """Agreement of binarised weak labels with manual masks.

    Parameters
    ----------
    weak, truth : (H, W) arrays
        Label images or masks; every nonzero pixel counts as foreground.

    Returns
    -------
    quality : dict
        ``iou``, ``dice`` and Cohen's ``kappa`` of foreground vs background, as
        :func:`seg_bench.metrics.pixel_metrics` scores them (its zero-division rules): with no
        foreground in either, ``iou`` and ``dice`` are 1.0, and ``kappa`` is 1.0 (the two
        agree on every pixel and chance agreement is total).

    Examples
    --------
    >>> label_quality(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]))["dice"]
    0.8
    """
    a, b = np.asarray(weak), np.asarray(truth)
    if a.shape != b.shape or a.ndim != 2:
        raise UserError(
            f"weak labels {a.shape} and truth {b.shape} must be 2-D images of the same shape"
        )
    if a.size == 0:
        raise UserError(f"weak labels and truth are empty images (shape {a.shape})")
    scores = pixel_metrics(confusion_matrix(a != 0, b != 0, num_classes=2))
    return {k: float(scores[k]) for k in ("iou", "dice", "kappa")}
