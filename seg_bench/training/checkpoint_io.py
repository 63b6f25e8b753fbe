"""Checkpoints written atomically: a killed run or a full disk never leaves a truncated file
where a good one was."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from seg_bench.io import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        with atomic_write(Path(path), "wb") as f:
            torch.save(checkpoint, f)

    def remove_checkpoint(self, path) -> None:
        if os.path.exists(path):
            os.remove(path)
