"""Segmentation metrics: pure functions (numpy) and torchmetrics classes.

* :mod:`~seg_bench.metrics.functional`: confusion matrix, IoU/Dice/kappa, interpretation bands;
* :mod:`~seg_bench.metrics.roc`: AUROC, exact and from streamed probability histograms;
* :mod:`~seg_bench.metrics.instance`: Kaggle DSB 2018 instance score;
* :mod:`~seg_bench.metrics.em`: ISBI 2012 V_rand / V_info, SNEMI3D adapted Rand error;
* :mod:`~seg_bench.metrics.streaming`: ``ConfusionMatrixMetric`` and ``BinnedROC``
  (imported on first use, so the numpy-only functions do not pull in torchmetrics).
"""

from seg_bench.metrics.em import adapted_rand_error, foreground_restricted_scores, isbi2012_scores
from seg_bench.metrics.functional import (
    auroc_grade,
    balanced_auroc,
    confusion_matrix,
    kappa_band,
    pixel_metrics,
)
from seg_bench.metrics.instance import (
    DSB_THRESHOLDS,
    dsb_average_precision,
    dsb_map,
    iou_matrix,
    label_overlap,
)
from seg_bench.metrics.roc import probability_histograms, roc_auc_binned, roc_auc_exact

_STREAMING = ("ConfusionMatrixMetric", "BinnedROC")

__all__ = [
    "confusion_matrix",
    "pixel_metrics",
    "balanced_auroc",
    "roc_auc_exact",
    "roc_auc_binned",
    "probability_histograms",
    "kappa_band",
    "auroc_grade",
    "DSB_THRESHOLDS",
    "label_overlap",
    "iou_matrix",
    "dsb_average_precision",
    "dsb_map",
    "foreground_restricted_scores",
    "isbi2012_scores",
    "adapted_rand_error",
    *_STREAMING,
]


def __getattr__(name: str):
    if name in _STREAMING:
        from seg_bench.metrics import streaming

        return getattr(streaming, name)
    raise AttributeError(f"module 'seg_bench.metrics' has no attribute {name!r}")
