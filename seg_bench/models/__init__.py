"""Architectures. ``create_model(name, in_channels=, classes=, width=)`` is the only door.

Every factory takes ``in_channels``, ``classes`` and ``width`` (a multiplier of the channel
counts, 1.0 = the published network) and returns a module mapping B,C,H,W to logits
B,classes,H,W for any H and W.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import torch.nn as nn

from seg_bench.registry import Registry

MODELS = Registry("model", "seg_bench.models")


def create_model(name: str, in_channels: int = 1, classes: int = 1, width: float = 1.0, **kwargs: Any) -> nn.Module:
    _import_builtins()
    return MODELS.create(name, in_channels=in_channels, classes=classes, width=width, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    _import_builtins()
    return MODELS.names(pattern)


def _import_builtins() -> None:
    """Import every module of this package for its @MODELS.register side effects, so a new
    architecture is one new file. smp.py defers importing segmentation_models_pytorch (slow)
    until an smp- name is used."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
