"""Architectures, one file each. ``create_model(name, in_channels=, classes=, width=)`` is the
only door; a new architecture is one new file here with a ``@MODELS.register`` function.

Every factory takes ``in_channels``, ``classes`` and ``width`` (a multiplier of the channel
counts, 1.0 = the published network) and returns a module mapping B,C,H,W to logits
B,classes,H,W for any H and W (``base.PaddedModel`` pads to the network's multiple once).
Importing this package imports every module in it (smp.py defers importing
segmentation_models_pytorch, which is slow, until an smp- name is used).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import torch.nn as nn

from seg_bench.registry import MODELS

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def create_model(
    name: str, in_channels: int = 1, classes: int = 1, width: float = 1.0, **kwargs: Any
) -> nn.Module:
    return MODELS.create(name, in_channels=in_channels, classes=classes, width=width, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)


__all__ = ["MODELS", "create_model", "list_models"]
