"""Whole-image prediction. Placeholder single pass; sliding window + TTA come next."""

from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    image: torch.Tensor,
    window: int | tuple[int, int] | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    tta: bool = False,
) -> torch.Tensor:
    """Logits B,K,H,W for images B,C,H,W of any size."""
    return model(image)
