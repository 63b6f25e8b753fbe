"""Optuna's Lightning pruning callback, limited to the validations of ``fit``.

After ``fit``, ``validate_last_step`` (training/trainer.py) validates the final weights where
the loop did not. By then the trial has trained its whole budget: pruning it at that point
would throw away a finished trial, so that validation is not reported to the pruner (the
trial's value, its best validation IoU, still counts it)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.trainer.states import TrainerFn
from optuna_integration import PyTorchLightningPruningCallback


class FitPruning(PyTorchLightningPruningCallback):
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_validation_end(trainer, pl_module)
