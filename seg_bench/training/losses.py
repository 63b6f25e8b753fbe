"""Segmentation losses. Binary tasks use one logit channel; multi-class tasks one per class.

Every loss is ``loss(logits B,K,H,W, batch) -> scalar``; it reads ``batch["mask"]`` (B,H,W class
ids) and, for the border-weighted loss, ``batch["instances"]``. The losses of the instance
targets (seg_bench/training/targets.py) read ``batch["target"]`` as well.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from seg_bench.registry import LOSSES

LossFn = Callable[[torch.Tensor, dict], torch.Tensor]


def _binary(logits: torch.Tensor) -> bool:
    return logits.shape[1] == 1


def _one_hot(mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    if _binary(logits):
        return mask.unsqueeze(1).to(logits.dtype)
    return F.one_hot(mask, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)


def _probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if _binary(logits) else logits.softmax(1)


def cross_entropy(
    logits: torch.Tensor, batch: dict, weight: torch.Tensor | None = None
) -> torch.Tensor:
    mask = batch["mask"]
    if _binary(logits):
        per_pixel = F.binary_cross_entropy_with_logits(
            logits[:, 0], mask.to(logits.dtype), reduction="none"
        )
    else:
        per_pixel = F.cross_entropy(logits, mask, reduction="none")
    if weight is not None:
        return (per_pixel * weight).sum() / weight.sum()
    return per_pixel.mean()


def soft_dice(logits: torch.Tensor, batch: dict, eps: float = 1.0) -> torch.Tensor:
    """1 - Dice of the probabilities, summed over the batch per class (stable on empty patches)."""
    probs = _probs(logits.float())
    target = _one_hot(batch["mask"], logits).float()
    dims = (0, 2, 3)
    inter = (probs * target).sum(dims)
    denom = probs.sum(dims) + target.sum(dims)
    return 1.0 - ((2 * inter + eps) / (denom + eps)).mean()


def bce_dice(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    return cross_entropy(logits, batch) + soft_dice(logits, batch)


def focal(logits: torch.Tensor, batch: dict, gamma: float = 2.0) -> torch.Tensor:
    """Lin et al. 2017: cross entropy scaled by (1 - p_true)^gamma."""
    mask = batch["mask"]
    if _binary(logits):
        target = mask.to(logits.dtype)
        ce = F.binary_cross_entropy_with_logits(logits[:, 0], target, reduction="none")
    else:
        ce = F.cross_entropy(logits, mask, reduction="none")
    p_true = torch.exp(-ce)
    return ((1 - p_true) ** gamma * ce).mean()


def unet_weight_map(
    instances: np.ndarray, mask: np.ndarray, w0: float = 10.0, sigma: float = 5.0
) -> np.ndarray:
    """Ronneberger et al. 2015, eq. 2: class-balancing weight plus w0·exp(-(d1+d2)²/2σ²), where
    d1, d2 are the distances to the nearest and second-nearest object. The border term only
    applies to pixels in no object, which is where touching objects must be separated: the
    background of nuclei, but the positive class of EM membranes (ISBI), whose objects are the
    cells the membranes separate."""
    fg = mask > 0
    frac = fg.mean()
    wc = (
        np.where(fg, 0.5 / max(frac, 1e-6), 0.5 / max(1 - frac, 1e-6))
        if 0 < frac < 1
        else np.ones(mask.shape)
    )
    ids = np.unique(instances)
    ids = ids[ids > 0]
    if len(ids) < 2:
        return wc.astype(np.float32)
    dists = np.stack([ndi.distance_transform_edt(instances != i) for i in ids])
    dists.sort(axis=0)
    border = w0 * np.exp(-((dists[0] + dists[1]) ** 2) / (2 * sigma**2))
    return (wc + np.where(instances > 0, 0.0, border)).astype(np.float32)


def border_weighted_ce(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    inst = batch["instances"].cpu().numpy()
    mask = batch["mask"].cpu().numpy()
    weight = np.stack([unet_weight_map(i, m) for i, m in zip(inst, mask, strict=True)])
    return cross_entropy(logits, batch, torch.from_numpy(weight).to(logits.device))


def boundary3_ce_dice(
    logits: torch.Tensor, batch: dict, boundary_weight: float = 5.0
) -> torch.Tensor:
    """Target boundary3: softmax cross-entropy with the boundary class weighted
    ``boundary_weight`` (background and interior 1) + soft Dice over the three classes."""
    target = batch["target"]
    weight = torch.tensor([1.0, 1.0, boundary_weight], device=logits.device)
    ce = F.cross_entropy(logits.float(), target, weight=weight)
    return ce + soft_dice(logits, {"mask": target})


def distance_bce_mse(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """Target distance: BCE + soft Dice on the foreground logit (channel 0) + mean squared
    error of the sigmoid of channel 1 against the normalised distance map."""
    fg = bce_dice(logits[:, :1], batch)
    distance = torch.sigmoid(logits[:, 1].float())
    return fg + F.mse_loss(distance, batch["target"].float())


_NAMES = {
    "bce": (cross_entropy, "binary cross-entropy (one logit channel)"),
    "ce": (cross_entropy, "cross-entropy over classes"),
    "dice": (soft_dice, "soft Dice"),
    "bce_dice": (bce_dice, "cross-entropy + soft Dice"),
    "focal": (focal, "focal loss (gamma 2)"),
    "unet_weighted": (border_weighted_ce, "U-Net border-weighted cross-entropy (Ronneberger 2015)"),
    "boundary3_ce_dice": (
        boundary3_ce_dice,
        "target boundary3: boundary-weighted softmax cross-entropy + soft Dice",
    ),
    "distance_bce_mse": (
        distance_bce_mse,
        "target distance: BCE + soft Dice (foreground) + MSE (normalised distance)",
    ),
}
for _name, (_fn, _doc) in _NAMES.items():
    LOSSES.register(_name, _doc)(_fn)


def get_loss(name: str) -> LossFn:
    return LOSSES.get(name)
