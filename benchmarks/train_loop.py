"""The seg-bench plumbing the training benchmarks share: the cpu profile's config, pre-generated
batches from the real DataModule, the network SegmentationTask builds, and a hand-written
PyTorch training step to hold Lightning against.

Scripts import this as ``from train_loop import ...`` (next to ``common``, on their own path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from common import intervals, now, sync


def cpu_config(model: str = "unet", dataset: str = "synthetic", **overrides: Any):
    """The cpu profile's RunConfig (explicitly the cpu profile, also on a GPU machine)."""
    from seg_bench.config import resolve_config

    return resolve_config(dataset, model, "cpu", **overrides)


def profile_precision(cfg) -> str:
    """The precision seg-bench's training would use for this config on this machine (``auto``
    on a CPU: the cached step-time measurement of seg_bench.training.precision)."""
    from seg_bench.models import create_model
    from seg_bench.training.precision import choose_precision

    model = create_model(cfg.model, in_channels=1, classes=1, width=cfg.width, **cfg.model_options)
    return choose_precision(cfg, model, in_channels=1).precision


def profile_steps(cfg) -> int:
    """Optimizer steps one training run of this config takes: the configured steps, else
    epochs x batches of an epoch whose length comes from the data (every training pixel once)."""
    import math

    from seg_bench.config import planned_steps
    from seg_bench.training.trainer import build_datamodule

    steps = planned_steps(cfg)
    if steps is None:
        steps = cfg.max_epochs * math.ceil(build_datamodule(cfg).epoch_length() / cfg.batch_size)
    return int(steps)


def datamodule(cfg, stage: str = "fit"):
    from seg_bench.training.trainer import build_datamodule

    dm = build_datamodule(cfg)
    dm.setup(stage)
    return dm


def pregenerate(dm, n: int, seed: int = 0) -> list[dict]:
    """``n`` training batches from the DataModule's own train loader, in-process, seeded."""
    import torch

    torch.manual_seed(seed)
    workers, dm.num_workers = dm.num_workers, 0
    out: list[dict] = []
    try:
        while len(out) < n:
            for batch in dm.train_dataloader():
                out.append(batch)
                if len(out) == n:
                    break
    finally:
        dm.num_workers = workers
    return out


class _ListDataset:
    def __init__(self, items: list):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def batch_loader(batches: list[dict]):
    """A DataLoader handing out pre-made batches as they are (same feeding for every consumer)."""
    from torch.utils.data import DataLoader

    return DataLoader(_ListDataset(batches), batch_size=None, shuffle=False, num_workers=0)


def autocast(device_type: str, precision: str):
    import torch

    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)


def make_model(cfg, dm, seed: int = 0, device: str = "cpu", channels_last: bool = False):
    """The same network SegmentationTask builds (create_model with the task's arguments)."""
    import torch

    from seg_bench.models import create_model

    torch.manual_seed(seed)
    classes = 1 if dm.num_classes == 2 else dm.num_classes
    model = create_model(
        cfg.model, in_channels=dm.in_channels, classes=classes, width=cfg.width, **cfg.model_options
    )
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.train()


class HandLoop:
    """A plain PyTorch training step: forward + loss under autocast, backward, optimizer step.

    Mirrors what Lightning's automatic optimisation does with SegmentationTask (zero_grad with
    set_to_none, the task's loss and optimizer, autocast around forward and loss only; a
    GradScaler for 16-mixed), without any of the framework around it.
    """

    def __init__(
        self, cfg, model, precision: str, device: str = "cpu", channels_last: bool = False
    ):
        import torch

        from seg_bench.training.losses import get_loss
        from seg_bench.training.optimizers import build_optimizer

        self.model = model
        self.loss_fn = get_loss(cfg.loss)
        self.opt = build_optimizer(
            model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum
        )
        self.precision = precision
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.scaler = torch.amp.GradScaler("cuda") if precision == "16-mixed" else None

    def step(self, batch: dict):
        import torch

        image = batch["image"].to(self.device, non_blocking=True)
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        target = {"mask": batch["mask"].to(self.device, non_blocking=True)}
        if "instances" in batch:
            target["instances"] = batch["instances"]
        with autocast(self.device.type, self.precision):
            loss = self.loss_fn(self.model(image), target)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        return loss

    def run(self, batches: Iterable[dict]) -> list[float]:
        """Per-step wall times, start-to-start (the data fetch included, as in Lightning)."""
        stamps = []
        for batch in batches:
            sync(self.device)
            stamps.append(now())
            self.step(batch)
        sync(self.device)
        stamps.append(now())
        return intervals(stamps)
