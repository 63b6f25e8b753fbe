"""Lightning callbacks of the training loop."""

from __future__ import annotations

import os
import time
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint


class EpochTimer(Callback):
    """Training time without validation, for the leaderboard's 'train time' column."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start: float | None = None

    def _stop(self) -> None:
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    # Lightning runs the end-of-epoch validation before on_train_epoch_end: pause around it.
    def on_validation_start(self, trainer, pl_module) -> None:
        self._stop()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop()

    def state_dict(self) -> dict[str, float]:
        return {"seconds": self.seconds}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.seconds = state.get("seconds", 0.0)


class ChannelsLast(Callback):
    """Trains in the channels_last memory format (NHWC), where measurement found it faster:
    oneDNN's bf16 convolutions on CPUs run fastest on NHWC tensors. The model is converted
    once when fitting starts, each batch's images after Lightning moved them to the device."""

    def on_fit_start(self, trainer, pl_module) -> None:
        pl_module.to(memory_format=torch.channels_last)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # The batch dict is the one training_step receives: converting in place suffices.
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)


class MovableCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that resumes a run folder moved since it was saved (copied off a
    cluster's scratch disk, renamed): Lightning forgets the best score when the folder's path
    changes, so the next validation, however poor, would replace best.ckpt. The saved paths
    are taken to the new folder, where the files are."""

    @property
    def state_key(self) -> str:
        # Lightning keys a callback's state by its class name: keep ModelCheckpoint's, or the
        # checkpoints of runs saved before this class existed would resume without their best.
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:
            state_dict = {k: _moved(v, old, new) for k, v in state_dict.items()}
            state_dict["best_k_models"] = {
                _moved(k, old, new): v for k, v in state_dict.get("best_k_models", {}).items()
            }
            state_dict["dirpath"] = new
        super().load_state_dict(state_dict)


def _moved(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str) and value.startswith(old + os.sep):
        return new + value[len(old) :]
    return value
