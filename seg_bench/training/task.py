"""SegmentationTask: what is learned (model, loss, optimizer) and what is measured.

Devices, precision and distribution belong to the Trainer; data belongs to the DataModule.
Validation runs on whole images with sliding-window prediction, and its metrics are
confusion-matrix counters summed over all processes, so under DDP they cover the whole
validation set rather than one shard. Every validation during ``fit``, and the one of the last
step (trainer.py), adds a point to the learning curve (``curve``: step, epoch, val_iou,
val_loss), which checkpoints carry, so a resumed run keeps the points of its first part.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from seg_bench.inference.outputs import foreground_classes, output_channels
from seg_bench.inference.sliding_window import predict_logits
from seg_bench.metrics import pixel_metrics
from seg_bench.models import create_model
from seg_bench.training.optimizers import build_optimizer
from seg_bench.training.targets import build_loss


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training on would only produce garbage."""

    def __init__(self, message: str, epoch: int | None = None, step: int | None = None):
        super().__init__(message)
        self.epoch, self.step = epoch, step


class SegmentationTask(L.LightningModule):
    def __init__(
        self,
        model: str = "unet",
        in_channels: int = 1,
        num_classes: int = 2,
        width: float = 1.0,
        model_options: dict[str, Any] | None = None,
        loss: str = "bce_dice",
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        schedule: str | None = None,
        warmup: float = 0.05,
        window: int | None = None,
        overlap: float = 0.25,
        postprocess: dict[str, Any] | None = None,  # kept with the checkpoint for `predict`
        target: str = "binary",  # what is learned: seg_bench/training/targets.py
        target_options: dict[str, Any] | None = None,
        input_options: dict[str, Any] | None = None,  # the dataset's, for `predict`
    ):
        super().__init__()
        self.save_hyperparameters()
        out_channels = output_channels(target, num_classes)
        self.model = create_model(
            model,
            in_channels=in_channels,
            classes=out_channels,
            width=width,
            **(model_options or {}),
        )
        self.loss_fn = build_loss(target, loss, target_options)
        self.val_confmat = MulticlassConfusionMatrix(num_classes)
        self.val_loss = MeanMetric()
        self.curve: list[dict[str, float]] = []
        self.last_val: dict[str, float] = {}

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self.loss_fn(logits, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss became {loss.item()} at epoch {self.current_epoch}, "
                f"step {self.global_step}; lower the learning rate or check the data",
                epoch=self.current_epoch,
                step=self.global_step,
            )
        self.log(
            "train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(logits)
        )
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = predict_logits(
            self.model, batch["image"], window=self.hparams.window, overlap=self.hparams.overlap
        )
        self.val_loss.update(self.loss_fn(logits, batch))
        predicted = foreground_classes(logits, self.hparams.target)  # foreground IoU, any target
        self.val_confmat.update(predicted.flatten(), batch["mask"].flatten())

    def on_validation_epoch_end(self) -> None:
        m = pixel_metrics(self.val_confmat.compute().cpu().numpy())
        scores = {k: float(m[k]) for k in ("iou", "dice", "accuracy", "kappa")}
        scores["loss"] = float(self.val_loss.compute())
        # Already reduced over all processes by the metric states: no further sync needed.
        self.log_dict({f"val/{k}": v for k, v in scores.items()}, prog_bar=True, sync_dist=False)
        self.val_confmat.reset()
        self.val_loss.reset()
        self.last_val = scores
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.add_curve_point(self.current_epoch)

    def add_curve_point(self, epoch: int) -> None:
        """The last validation's scores as the curve point of the current step."""
        point = {f"val_{k}": v for k, v in self.last_val.items()}
        self.curve.append({"step": self.global_step, "epoch": epoch, **point})

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["val_curve"] = list(self.curve)
        # Lightning keeps no RNG state: a resumed run would draw dropout masks from the seed
        # again. Patches need none (data/base.py PatchSeeds).
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        if torch.cuda.is_available():  # dropout on a GPU draws from the CUDA generators
            checkpoint["cuda_rng_states"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.curve = list(checkpoint.get("val_curve", []))
        if isinstance(checkpoint.get("torch_rng_state"), torch.Tensor):
            torch.set_rng_state(checkpoint["torch_rng_state"])
        states = checkpoint.get("cuda_rng_states")
        # Resumed on as many GPUs only: on another machine the generators do not correspond.
        if states and torch.cuda.is_available() and len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (gradient accumulation and devices included)."""
        trainer = self.trainer
        batches = trainer.num_training_batches
        if batches == float("inf") or not batches:
            trainer.fit_loop.setup_data()
            batches = trainer.num_training_batches
        return max(math.ceil(batches / max(trainer.accumulate_grad_batches, 1)), 1)

    def configure_optimizers(self):
        h = self.hparams
        opt = build_optimizer(self.parameters(), h.optimizer, h.lr, h.weight_decay, h.momentum)
        if h.schedule in STEP_SCHEDULES:
            total = max(int(self.trainer.estimated_stepping_batches), 1)
            sched = STEP_SCHEDULES[h.schedule](opt, total, h.warmup)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if h.schedule == "cosine":
            # Over the epochs the run will take: with a step budget Lightning's max_epochs is
            # -1, which made T_max 1, so the rate swung between full and zero every epoch.
            epochs = math.ceil(self.trainer.estimated_stepping_batches / self.steps_per_epoch())
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
            return {"optimizer": opt, "lr_scheduler": sched}
        if h.schedule == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="max", factor=0.5, patience=3
            )
            # Stepped only after epochs that validate: otherwise val/iou does not exist yet.
            every = self.trainer.check_val_every_n_epoch or 1
            config = {"scheduler": sched, "monitor": "val/iou", "frequency": every}
            return {"optimizer": opt, "lr_scheduler": config}
        return opt


def warmup_cosine(
    opt: torch.optim.Optimizer, total_steps: int, warmup: float
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up over the first ``warmup`` fraction of the steps, then a cosine decay
    that would reach zero one step after the last (the last step trains at about
    (pi / decay steps)^2 / 4 of the peak, 2.6e-6 at 1024 steps): the schedule ends the run.
    The peak rate is used twice (the last warm-up step and the first decay step); kept so, as
    the committed records were trained with it."""
    n_warm = max(round(warmup * total_steps), 1)

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        progress = min((step - n_warm) / max(total_steps - n_warm, 1), 1.0)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def one_cycle(
    opt: torch.optim.Optimizer, total_steps: int, warmup: float
) -> torch.optim.lr_scheduler.LRScheduler:
    """torch's one-cycle policy: linear warm-up to the configured lr, cosine annealing after."""
    lr = [g["lr"] for g in opt.param_groups]
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=total_steps, pct_start=warmup, anneal_strategy="cos"
    )


# Schedules stepped every optimizer step over the whole run (Lightning ``interval: "step"``).
STEP_SCHEDULES = {"warmup_cosine": warmup_cosine, "onecycle": one_cycle}
