"""Test-split evaluation: whole-image prediction, post-processing, per-image metrics."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from seg_bench.config import RunConfig
from seg_bench.data.base import SegmentationDataModule
from seg_bench.inference import predict_logits


def probabilities(logits: torch.Tensor) -> np.ndarray:
    """K,H,W logits -> H,W foreground probability (binary) or K,H,W class probabilities."""
    logits = logits.float()
    if logits.shape[0] == 1:
        return torch.sigmoid(logits[0]).numpy()
    return logits.softmax(0).numpy()


def confusion(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    idx = truth.astype(np.int64).ravel() * num_classes + pred.astype(np.int64).ravel()
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def evaluate(
    model: torch.nn.Module, dm: SegmentationDataModule, cfg: RunConfig, split: str = "test"
) -> dict[str, Any]:
    """Score every image of ``split``; returns per-image records and the pooled totals."""
    per_image = []
    seconds = 0.0
    pixels = 0
    for sample in dm.samples(split):
        image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1)))[None]
        start = time.perf_counter()
        logits = predict_logits(model, image, window=dm.patch_size, overlap=cfg.overlap, tta=cfg.tta)[0]
        seconds += time.perf_counter() - start
        pixels += sample.mask.size
        prob = probabilities(logits)
        pred = (prob > cfg.postprocess.get("threshold", 0.5)).astype(np.uint8) if prob.ndim == 2 else prob.argmax(0)
        cm = confusion(pred, sample.mask, dm.num_classes)
        per_image.append({"id": sample.id, "confmat": cm.tolist()})
    return {
        "overall": aggregate(per_image),
        "per_image": per_image,
        "inference_mpix_per_s": pixels / 1e6 / max(seconds, 1e-9),
    }


# Per-image entries that are averaged over images; everything derived from the confusion
# matrix is computed from the pooled matrix instead (a pixel-weighted, not image-weighted, score).
MEAN_KEYS_EXCLUDED = ("id", "confmat")


def aggregate(per_image: list[dict[str, Any]], indices: np.ndarray | None = None) -> dict[str, float]:
    """Dataset-level scores over ``indices`` (all images by default; repeats allowed, for bootstrap)."""
    if indices is None:
        indices = np.arange(len(per_image))
    chosen = [per_image[i] for i in indices]
    pooled = np.sum([np.asarray(r["confmat"]) for r in chosen], axis=0)
    out = pooled_metrics(pooled)
    keys = {k for r in chosen for k, v in r.items() if k not in MEAN_KEYS_EXCLUDED and isinstance(v, (int, float))}
    for k in sorted(keys):
        values = [r[k] for r in chosen if isinstance(r.get(k), (int, float))]
        out[k] = float(np.mean(values)) if values else float("nan")
    return out


def pooled_metrics(confmat: np.ndarray) -> dict[str, float]:
    from seg_bench.task import positive_iou_dice

    return {k: float(v) for k, v in positive_iou_dice(torch.from_numpy(np.asarray(confmat))).items()}
