"""One training run: config -> DataModule + SegmentationTask + Trainer -> best checkpoint.

A run directory holds ``checkpoints/last.ckpt`` (every epoch) and ``checkpoints/best.ckpt``;
running the same config into the same directory resumes from ``last.ckpt``.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from seg_bench.config import RunConfig
from seg_bench.data import SegmentationDataModule, create_datamodule
from seg_bench.io import write_json
from seg_bench.training.callbacks import ChannelsLast, EpochTimer
from seg_bench.training.checkpoint_io import AtomicCheckpointIO
from seg_bench.training.precision import PrecisionChoice, choose_precision, resolve_precision
from seg_bench.training.task import SegmentationTask


@dataclass
class TrainResult:
    task: SegmentationTask
    datamodule: SegmentationDataModule
    best_checkpoint: Path | None
    train_time_s: float
    epochs: int
    best_val: dict[str, float]
    is_global_zero: bool = True  # under DDP only rank 0 evaluates and writes results
    precision_choice: PrecisionChoice | None = None


def quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")


def build_datamodule(cfg: RunConfig) -> SegmentationDataModule:
    return create_datamodule(
        cfg.dataset,
        root=cfg.root,
        patch_size=cfg.patch_size,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        augment=cfg.augment,
        augment_params=cfg.augment_params,
        samples_per_epoch=cfg.samples_per_epoch,
        foreground_bias=cfg.foreground_bias,
        seed=cfg.seed,
        labels=cfg.labels,
        weak_label_options=cfg.weak_label_options,
        **cfg.dataset_options,
    )


def build_task(cfg: RunConfig, dm: SegmentationDataModule) -> SegmentationTask:
    return SegmentationTask(
        model=cfg.model,
        in_channels=dm.in_channels,
        num_classes=dm.num_classes,
        width=cfg.width,
        model_options=cfg.model_options,
        loss=cfg.loss,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
        schedule=cfg.schedule,
        warmup=cfg.warmup,
        window=cfg.inference_window(dm.patch_size),
        overlap=cfg.overlap,
        postprocess=cfg.postprocess,
    )


def build_trainer(
    cfg: RunConfig,
    run_dir: Path,
    logger: Any = False,
    callbacks: list[Callback] | None = None,
    progress: bool = True,
    precision: PrecisionChoice | None = None,
) -> tuple[L.Trainer, ModelCheckpoint, EpochTimer]:
    """``precision``: what ``choose_precision`` decided; None takes the unmeasured rule."""
    ckpt = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor="val/iou",
        mode="max",
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
    timer = EpochTimer()
    precision = precision or PrecisionChoice(resolve_precision(cfg.precision, cfg.accelerator))
    layout = [ChannelsLast()] if precision.channels_last else []
    trainer = L.Trainer(
        default_root_dir=run_dir,
        max_epochs=-1 if cfg.max_steps else cfg.max_epochs,  # a step budget ends the run
        max_steps=cfg.max_steps or -1,
        max_time={"seconds": cfg.max_time_s} if cfg.max_time_s else None,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=precision.precision,
        check_val_every_n_epoch=cfg.val_every,
        num_sanity_val_steps=0,
        logger=logger,
        callbacks=[ckpt, timer, *layout, *(callbacks or [])],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress,
        enable_model_summary=False,
        use_distributed_sampler=False,  # the DataModule shards itself, see data/base.py
        deterministic=False,
        log_every_n_steps=1,
    )
    return trainer, ckpt, timer


def train(
    cfg: RunConfig,
    run_dir: Path,
    logger: Any = False,
    callbacks: list[Callback] | None = None,
    progress: bool = True,
) -> TrainResult:
    quiet_lightning()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    task = build_task(cfg, dm)
    choice = choose_precision(cfg, task.model, dm.in_channels)
    if cfg.compile:
        task.model = torch.compile(task.model)
    trainer, ckpt, timer = build_trainer(cfg, run_dir, logger, callbacks, progress, choice)
    last = run_dir / "checkpoints" / "last.ckpt"
    if not resume_matches(cfg, run_dir) and (run_dir / "checkpoints").exists():
        warnings.warn(
            f"{run_dir} holds a run with another configuration; starting afresh", stacklevel=2
        )
        shutil.rmtree(run_dir / "checkpoints")
    if trainer.is_global_zero:
        write_json(run_dir / "config.json", cfg.to_dict())
    resume = last if last.exists() else None
    trainer.fit(task, datamodule=dm, ckpt_path=resume)
    best = Path(ckpt.best_model_path) if ckpt.best_model_path else None
    if best is not None and best.exists() and trainer.is_global_zero:
        state = torch.load(best, map_location="cpu", weights_only=True)
        task.load_state_dict(state["state_dict"])
    best_val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if ckpt.best_model_score is not None:
        best_val["val/iou"] = float(ckpt.best_model_score)
    return TrainResult(
        task, dm, best, timer.seconds, trainer.current_epoch, best_val, trainer.is_global_zero,
        choice,
    )  # fmt: skip


def resume_matches(cfg: RunConfig, run_dir: Path) -> bool:
    """A checkpoint in ``run_dir`` may only be resumed by the configuration that wrote it."""
    try:
        with open(run_dir / "config.json") as f:
            return json.load(f) == json.loads(json.dumps(cfg.to_dict()))
    except (OSError, ValueError):
        return False
