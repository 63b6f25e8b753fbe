"""From logits to probabilities, class maps and, per training target, the maps that
post-processing turns into instances.

Every target gives a foreground probability (what pixel metrics score) and, for the
instance-aware targets, a *seed map* in [0, 1] whose high plateaus mark object interiors
(boundary3: the interior probability; distance: the predicted normalised distance).
"""

from __future__ import annotations

import numpy as np
import torch

TARGET_CHANNELS = {"boundary3": 3, "distance": 2}


def output_channels(target: str, num_classes: int) -> int:
    """Logit channels the network needs: binary 1 (or one per class), boundary3 3, distance 2."""
    return TARGET_CHANNELS.get(target, 1 if num_classes == 2 else num_classes)


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


def _check_channels(channels: int, target: str) -> None:
    want = TARGET_CHANNELS.get(target)
    if want is not None and channels != want:
        raise ValueError(f"target {target} needs {want} logit channels, got {channels}")


def foreground_classes(logits: torch.Tensor, target: str = "binary") -> torch.Tensor:
    """B,K,H,W logits -> B,H,W class ids scored by validation: the classes for ``binary``,
    foreground (1) = interior or boundary for ``boundary3``, channel 0 > 0 for ``distance``."""
    _check_channels(logits.shape[1], target)
    if target == "boundary3":
        return (logits.argmax(1) != 0).long()
    if target == "distance":
        return (logits[:, 0] > 0).long()
    return classes_from_logits(logits)


def target_maps(
    logits: torch.Tensor, target: str = "binary"
) -> tuple[np.ndarray, np.ndarray | None]:
    """K,H,W logits of one image -> (foreground probability H,W, seed map H,W or None).

    binary: sigmoid (one channel) or 1 - P(background) (several classes), no seeds;
    boundary3: 1 - P(background) and P(interior); distance: sigmoid of both channels.
    """
    _check_channels(logits.shape[0], target)
    logits = logits.float()
    if target == "distance":
        maps = torch.sigmoid(logits[:2]).numpy()
        return maps[0], maps[1]
    prob = probabilities(logits)
    if target == "boundary3":
        return 1.0 - prob[0], prob[1]
    return (prob if prob.ndim == 2 else 1.0 - prob[0]), None
