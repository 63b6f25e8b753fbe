"""Optuna's Lightning pruning callback, limited to the validations of ``fit``.

The validation of a trial's final weights comes once it has trained its whole budget: inside
``fit`` where the budget ends on a validated epoch, else after it (``validate_last_step``,
training/trainer.py). Pruning the trial then would throw away a finished trial, so that
validation is not reported to the pruner (the trial's value, its best validation IoU, still
counts it)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.trainer.states import TrainerFn
from optuna_integration import PyTorchLightningPruningCallback


class FitPruning(PyTorchLightningPruningCallback):
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not budget_spent(trainer):
            super().on_validation_end(trainer, pl_module)


def budget_spent(trainer: Any) -> bool:
    """Whether this validation is of the final weights: the step budget is reached, or (an
    epoch budget) this is the last epoch."""
    if trainer.max_steps and trainer.max_steps > 0:
        return trainer.global_step >= trainer.max_steps
    return bool(trainer.max_epochs) and trainer.current_epoch >= trainer.max_epochs - 1
