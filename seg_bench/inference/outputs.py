"""From logits to probabilities and class maps."""

from __future__ import annotations

import numpy as np
import torch


def probabilities(logits: torch.Tensor) -> np.ndarray:
    """K,H,W logits -> H,W foreground probability (binary) or K,H,W class probabilities."""
    logits = logits.float()
    if logits.shape[0] == 1:
        return torch.sigmoid(logits[0]).numpy()
    return logits.softmax(0).numpy()


def classes_from_logits(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    if logits.shape[1] == 1:
        return (torch.sigmoid(logits[:, 0].float()) > threshold).long()
    return logits.argmax(1)
