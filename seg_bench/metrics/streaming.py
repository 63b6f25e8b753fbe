"""Stateful pixel metrics for training loops (torchmetrics ``Metric`` subclasses).

Each metric keeps a few counters whose distributed reduction is a plain sum: a (C, C)
confusion matrix, or two probability histograms. Memory does not grow with the number of
pixels seen, and ``compute`` hands the counters to the pure functions in
:mod:`seg_bench.metrics.functional`, so the stateful and the functional results are the same
numbers by construction.

``compute`` returns plain Python floats and numpy arrays (on the CPU), ready to log or plot.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from seg_bench.errors import UserError
from seg_bench.metrics.functional import (
    _check_num_classes,
    _confusion_matrix_torch,
    pixel_metrics,
)
from seg_bench.metrics.roc import _auc_from_grouped_counts, _check_bins

__all__ = ["ConfusionMatrixMetric", "BinnedROC"]


class ConfusionMatrixMetric(Metric):
    """Accumulates a (C, C) confusion matrix; ``compute`` returns :func:`pixel_metrics`.

    Parameters
    ----------
    num_classes : int
        Number of classes (>= 2).
    ignore_index : int, optional
        Target value whose pixels are skipped.
    validate_args : bool, default True
        Check that class ids lie in ``[0, num_classes)`` on every update (one device sync).

    Examples
    --------
    >>> m = ConfusionMatrixMetric(num_classes=2)
    >>> m.update(torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 1, 1]))
    >>> round(m.compute()["iou"], 4)
    0.6667
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_index = ignore_index
        self.validate_args = validate_args
        self.add_state(
            "confmat",
            default=torch.zeros(self.num_classes, self.num_classes, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        """Add a batch of predicted class ids and true class ids (same shape)."""
        self.confmat += _confusion_matrix_torch(
            preds, target, self.num_classes, self.ignore_index, validate=self.validate_args
        )

    def compute(self) -> dict[str, Any]:
        return pixel_metrics(self.confmat.detach().cpu().numpy())


class BinnedROC(Metric):
    """Streaming AUROC from two probability histograms (constant memory: 2 x ``bins`` counts).

    ``update(probs, target)`` adds positive-class probabilities in [0, 1] and binary targets.
    ``compute()`` returns a dict:

    * ``auroc``: area under the ROC curve, ties within a bin counted 1/2 (see
      :func:`~seg_bench.metrics.functional.roc_auc_binned`); NaN, with a warning, when only
      one class has been seen (a validation set without positives must not crash training);
    * ``fpr``, ``tpr``, ``thresholds``: ``bins + 1`` ROC points from (0, 0) to (1, 1); point
      ``k`` predicts positive where ``prob >= thresholds[k]`` (bin edges, descending);
    * ``precision``, ``recall``: the PR curve on the same thresholds (precision 1.0 where
      nothing is predicted positive, as in scikit-learn); ``average_precision``: the step
      integral sum((R_k - R_{k-1}) * P_k);
    * ``hist_pos``, ``hist_neg``, ``definition``.

    Parameters
    ----------
    bins : int, default 10000
    validate_args : bool, default True
        Check probabilities lie in [0, 1] and targets are binary (one device sync per update).

    Examples
    --------
    >>> m = BinnedROC(bins=100)
    >>> m.update(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
    >>> m.compute()["auroc"]
    0.75
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, bins: int = 10_000, validate_args: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bins = _check_bins(bins)
        self.validate_args = validate_args
        self.add_state(
            "hist_pos", default=torch.zeros(self.bins, dtype=torch.long), dist_reduce_fx="sum"
        )
        self.add_state(
            "hist_neg", default=torch.zeros(self.bins, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        """Add a batch of probabilities (any shape) and binary targets (same shape)."""
        if probs.shape != target.shape:
            raise UserError(
                f"probs has shape {tuple(probs.shape)} but target has shape "
                f"{tuple(target.shape)}; they must match"
            )
        if not probs.is_floating_point():
            raise UserError(f"probs must be floating-point probabilities, got dtype {probs.dtype}")
        p = probs.detach().reshape(-1)
        if p.dtype in (torch.float16, torch.bfloat16):
            p = p.float()
        t = target.detach().reshape(-1)
        if self.validate_args and p.numel():
            lo, hi = float(p.min()), float(p.max())
            if not (lo >= 0.0 and hi <= 1.0):
                raise UserError(
                    f"probs must lie in [0, 1], got min {lo}, max {hi}; apply a sigmoid first"
                )
            if t.dtype != torch.bool and bool(((t != 0) & (t != 1)).any()):
                raise UserError("target must be binary (0/1 or bool)")
        idx = torch.clamp((p * self.bins).floor().long(), 0, self.bins - 1)
        key = idx + self.bins * t.long()
        counts = torch.bincount(key, minlength=2 * self.bins)
        self.hist_neg += counts[: self.bins]
        self.hist_pos += counts[self.bins :]

    def compute(self) -> dict[str, Any]:
        hp = self.hist_pos.detach().cpu().numpy()
        hn = self.hist_neg.detach().cpu().numpy()
        n_pos, n_neg = int(hp.sum()), int(hn.sum())
        if n_pos == 0 or n_neg == 0:
            warnings.warn(
                f"BinnedROC saw only one class (positives: {n_pos}, negatives: {n_neg}); "
                "auroc is NaN",
                stacklevel=2,
            )
            auroc = float("nan")
        else:
            auroc = _auc_from_grouped_counts(hp, hn)
        # Threshold k/bins, k = bins .. 0: predicted positive = bins >= k.
        tps = np.concatenate(([0], np.cumsum(hp[::-1])))
        fps = np.concatenate(([0], np.cumsum(hn[::-1])))
        thresholds = np.arange(self.bins, -1, -1) / self.bins
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr = tps / n_pos if n_pos else np.full(tps.shape, np.nan)
            fpr = fps / n_neg if n_neg else np.full(fps.shape, np.nan)
            precision = np.where(tps + fps > 0, tps / np.maximum(tps + fps, 1), 1.0)
        recall = tpr
        average_precision = (
            float(np.sum(np.diff(recall) * precision[1:])) if n_pos else float("nan")
        )
        return {
            "auroc": auroc,
            "fpr": fpr,
            "tpr": tpr,
            "thresholds": thresholds,
            "precision": precision,
            "recall": recall,
            "average_precision": average_precision,
            "hist_pos": hp,
            "hist_neg": hn,
            "definition": (
                f"binned AUROC over {self.bins} equal probability bins; pairs in one bin count 1/2"
            ),
        }
