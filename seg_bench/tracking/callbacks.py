"""The Lightning callbacks that feed a run's logger: the learning rate, training throughput,
and validation overlays (prediction and ground truth, as W&B masks or TensorBoard images)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger

from seg_bench.tracking.loggers import is_wandb
from seg_bench.tracking.redaction import warn_once


class Throughput(Callback):
    """Training samples per second (all processes), logged once per epoch."""

    def __init__(self) -> None:
        self._start = self._paused = self._val_start = 0.0
        self._samples = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._samples, self._paused = time.perf_counter(), 0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        image = batch.get("image") if isinstance(batch, dict) else None
        self._samples += len(image) if image is not None else 0

    # Lightning validates before on_train_epoch_end: that time is not training.
    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self._paused += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self._start - self._paused
        if seconds > 0 and self._samples:
            rate = self._samples * trainer.world_size / seconds
            pl_module.log(
                "train/samples_per_s", float(rate), on_epoch=True, on_step=False, sync_dist=False
            )


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """A CHW image, min-max scaled to 0..255: HWC for RGB, HW for one channel."""
    x = image.detach().float().cpu()
    x = x.permute(1, 2, 0) if x.shape[0] == 3 else x[0]
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    return (x.numpy() * 255).astype(np.uint8)


def _overlay_rgb(gray: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    rgb = np.repeat(gray[..., None], 3, axis=-1) if gray.ndim == 2 else gray
    rgb = rgb.astype(np.float32)
    rgb[..., 0] = np.where(pred > 0, 0.5 * rgb[..., 0] + 127, rgb[..., 0])  # prediction: red
    rgb[..., 1] = np.where(truth > 0, 0.5 * rgb[..., 1] + 127, rgb[..., 1])  # truth: green
    return rgb.clip(0, 255).astype(np.uint8)


class ValidationOverlays(Callback):
    """Logs the first validation images with their predicted and true masks: on the first and
    last epoch and every ``every_n_epochs`` in between (W&B masks, or TensorBoard RGB overlays)."""

    def __init__(
        self, every_n_epochs: int = 5, max_images: int = 4, key: str = "val/overlay"
    ) -> None:
        self.every = max(1, int(every_n_epochs))
        self.max_images = max_images
        self.key = key

    def _due(self, trainer) -> bool:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        return epoch == 0 or last or (epoch + 1) % self.every == 0

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        first_batch = batch_idx == 0 and dataloader_idx == 0
        if not first_batch or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if not self._due(trainer) or not isinstance(batch, dict) or "image" not in batch:
            return
        loggers = [
            lg for lg in trainer.loggers if is_wandb(lg) or isinstance(lg, TensorBoardLogger)
        ]
        if not loggers:
            return
        try:
            self._log(trainer, pl_module, batch, loggers)
        except Exception as e:  # noqa: BLE001 - a picture is never worth a failed run
            warn_once("overlay", f"could not log validation overlays: {type(e).__name__}: {e}")

    @torch.no_grad()
    def _log(self, trainer, pl_module, batch, loggers) -> None:
        from seg_bench.inference.outputs import foreground_classes
        from seg_bench.inference.sliding_window import predict_logits

        n = min(self.max_images, len(batch["image"]))
        image = batch["image"][:n]
        hp = getattr(pl_module, "hparams", {})
        logits = predict_logits(
            pl_module.model, image, window=hp.get("window"), overlap=hp.get("overlap", 0.25)
        )
        pred = foreground_classes(logits, hp.get("target", "binary")).cpu().numpy().astype(np.uint8)
        truth = batch["mask"][:n].detach().cpu().numpy()
        truth = (truth[:, 0] if truth.ndim == 4 else truth).astype(np.uint8)
        images = [_to_uint8(x) for x in image]
        ids = batch.get("id")
        captions = [str(i) for i in ids[:n]] if isinstance(ids, (list, tuple)) else None
        for lg in loggers:
            if is_wandb(lg):
                labels = _class_labels(int(hp.get("num_classes", 2)))
                masks = [
                    {
                        "prediction": {"mask_data": p, "class_labels": labels},
                        "ground_truth": {"mask_data": t, "class_labels": labels},
                    }
                    for p, t in zip(pred, truth, strict=True)
                ]
                kwargs = {"caption": captions} if captions else {}
                lg.log_image(
                    key=self.key, images=images, step=trainer.global_step, masks=masks, **kwargs
                )
            else:
                rgb = np.stack(
                    [_overlay_rgb(g, p, t) for g, p, t in zip(images, pred, truth, strict=True)]
                )
                lg.experiment.add_images(self.key, rgb, trainer.global_step, dataformats="NHWC")


def _class_labels(num_classes: int) -> dict[int, str]:
    if num_classes == 2:
        return {0: "background", 1: "object"}
    return {0: "background"} | {i: f"class {i}" for i in range(1, num_classes)}


def tracking_callbacks(logger: Any, overlay_every: int = 5) -> list[Callback]:
    """Learning rate, throughput and overlays; nothing when there is no logger."""
    if not logger:
        return []
    return [
        LearningRateMonitor(logging_interval="epoch"),
        Throughput(),
        ValidationOverlays(overlay_every),
    ]


__all__ = ["Throughput", "ValidationOverlays", "tracking_callbacks"]
