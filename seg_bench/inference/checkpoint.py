"""Trained models from checkpoints, read without running any code from the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from lightning.fabric.utilities.data import AttributeDict

from seg_bench.errors import UserError
from seg_bench.inference.outputs import output_channels
from seg_bench.models import create_model


class TrainedModel(nn.Module):
    """The network a checkpoint holds, with the hyper-parameters it was trained with.

    Built from the registry and the checkpoint's ``hyper_parameters`` alone, so inference needs
    neither the training code nor Lightning's loader."""

    def __init__(self, hparams: dict[str, Any]):
        super().__init__()
        self.hparams = AttributeDict(hparams)
        classes = int(hparams.get("num_classes", 2))
        self.model = create_model(
            hparams["model"],
            in_channels=int(hparams.get("in_channels", 1)),
            classes=output_channels(hparams.get("target", "binary"), classes),
            width=float(hparams.get("width", 1.0)),
            **(hparams.get("model_options") or {}),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)

    def load_weights(self, state_dict: dict[str, Any]) -> None:
        """The ``model.`` entries of a training checkpoint (the rest is loss and metric state);
        a network wrapped by ``torch.compile`` (before 2026-12-06) named them
        ``model._orig_mod.``."""
        weights = {
            k.replace("model._orig_mod.", "model.", 1): v
            for k, v in state_dict.items()
            if k.startswith("model.")
        }
        self.load_state_dict(weights)


def load_checkpoint(path: str | Path) -> TrainedModel:
    """The trained network of a checkpoint, read with ``weights_only=True`` (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    # noqa: BLE001 - a damaged file makes torch raise almost anything (OSError, KeyError, ...)
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"{path} is not a readable seg-bench checkpoint (truncated or foreign? {reason})"
        ) from None
    if (
        not isinstance(ckpt, dict)
        or not isinstance(ckpt.get("hyper_parameters"), dict)
        or not isinstance(ckpt.get("state_dict"), dict)
    ):
        raise UserError(f"{path} is not a seg-bench checkpoint (no hyper_parameters/state_dict)")
    hp = ckpt["hyper_parameters"]
    try:
        if not isinstance(hp.get("model"), str):
            raise UserError("no model name in its hyper-parameters")
        task = TrainedModel(hp)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - damaged hyper-parameters
        raise UserError(
            f"{path} holds hyper-parameters that build no model ({type(e).__name__}: "
            f"{str(e)[:200]})"
        ) from None
    try:
        task.load_weights(ckpt["state_dict"])
    # noqa: BLE001 - RuntimeError for a mismatch; damaged entries raise others
    except Exception as e:
        lines = str(e).splitlines()
        first = lines[1].strip() if len(lines) > 1 else (lines[0] if lines else type(e).__name__)
        raise UserError(
            f"{path} does not match the model it names ({hp.get('model')}): {first}"
        ) from None
    return task.eval()


def load_model_for_inference(
    path: str | Path, expected_model: str | None = None, classes: int | None = None
):
    """Like ``load_checkpoint`` but also checks the architecture and number of classes."""
    task = load_checkpoint(path)
    hp = task.hparams
    if expected_model and hp["model"] != expected_model:
        raise UserError(f"{path} holds a '{hp['model']}' model, not '{expected_model}'")
    if classes and hp["num_classes"] != classes:
        raise UserError(f"{path} predicts {hp['num_classes']} classes, not {classes}")
    return task
