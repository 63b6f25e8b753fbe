"""One training run: config -> DataModule + SegmentationTask + Trainer -> best checkpoint.

A run directory holds ``checkpoints/last.ckpt`` (every validated epoch) and ``best.ckpt``;
the final weights are always validated, also where the budget ends between validations;
running the same config into the same directory resumes from the newer of the two; another
config is refused there (see run_dir.py, which also validates everything before the folder is
touched).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from seg_bench.config import RunConfig
from seg_bench.data import SegmentationDataModule, create_datamodule
from seg_bench.registry import LABEL_SOURCES
from seg_bench.training.callbacks import ChannelsLast, EpochTimer, MovableCheckpoint
from seg_bench.training.checkpoint_io import AtomicCheckpointIO
from seg_bench.training.precision import PrecisionChoice, resolve_precision
from seg_bench.training.run_dir import PreparedRun, prepare_run, run_precision
from seg_bench.training.targets import target_transform
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
    # A resumed run finds its own checkpoints, and no validation score until its next
    # validation: expected, and claim_run_dir already refuses another configuration's folder.
    warnings.filterwarnings("ignore", "Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", ".*could not find the monitored key.*")


def config_arguments(cfg: RunConfig, constructor: Any) -> dict[str, Any]:
    """The RunConfig fields that ``constructor`` takes as keyword arguments of the same name."""
    params = inspect.signature(constructor).parameters
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in params}


def build_datamodule(cfg: RunConfig) -> SegmentationDataModule:
    # Every dataset takes the base class's arguments (its own ones come from dataset_options).
    label_source = LABEL_SOURCES.create(cfg.labels, options=cfg.weak_label_options, seed=cfg.seed)
    dm = create_datamodule(
        cfg.dataset,
        **config_arguments(cfg, SegmentationDataModule.__init__),
        label_source=label_source,
        **cfg.dataset_options,
    )
    dm.target_transform = target_transform(
        cfg.target, dm, cfg.target_options
    )  # UserError if it cannot be made
    return dm


def build_task(cfg: RunConfig, dm: SegmentationDataModule) -> SegmentationTask:
    return SegmentationTask(
        **{
            **config_arguments(cfg, SegmentationTask.__init__),
            # From the data, and the tile size worked out from the training patch.
            "in_channels": dm.in_channels,
            "num_classes": dm.num_classes,
            "window": cfg.inference_window(dm.patch_size),
            "input_options": dm.input_options(),
        }
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
    ckpt = MovableCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor="val/iou",
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    # Every validated epoch, for resuming: save_last on the best checkpoint writes last.ckpt
    # only when the best improves, so a killed run went back to its last improvement.
    last = MovableCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False
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
        callbacks=[ckpt, last, timer, *layout, *(callbacks or [])],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress,
        enable_model_summary=False,
        use_distributed_sampler=False,  # the DataModule shards itself, see data/base.py
        deterministic=False,
        log_every_n_steps=1,
    )
    return trainer, ckpt, timer


def last_checkpoint(trainer: L.Trainer) -> ModelCheckpoint:
    return next(c for c in trainer.checkpoint_callbacks if c.filename == "last")


def validate_last_step(
    trainer: L.Trainer,
    task: SegmentationTask,
    dm: SegmentationDataModule,
    best: ModelCheckpoint,
    last: ModelCheckpoint,
) -> None:
    """Validate the final weights where the loop did not: a step budget that ends mid-epoch,
    or a last epoch off ``val_every``. Lightning validates only at the end of such epochs, so
    the run's last steps were never scored and could not become its best checkpoint."""
    step = trainer.global_step
    if step == 0 or (task.curve and task.curve[-1]["step"] == step):
        return
    trainer.validate(task, datamodule=dm, verbose=False)
    task.add_curve_point(epoch=trainer.current_epoch - 1)  # fit has counted the last epoch
    iou = trainer.callback_metrics["val/iou"]
    if best.best_model_score is None or iou > best.best_model_score:
        path = str(Path(best.dirpath) / f"{best.filename}{best.FILE_EXTENSION}")
        best.best_model_path = best.kth_best_model_path = path
        best.best_model_score = best.kth_value = iou.detach().clone()
        best.best_k_models = {path: best.best_model_score}
        trainer.save_checkpoint(path)
    # After the best's bookkeeping, so a rerun resumes from here and finds the run complete.
    trainer.save_checkpoint(Path(last.dirpath) / f"{last.filename}{last.FILE_EXTENSION}")


def best_scores(curve: list[dict], best: ModelCheckpoint, trainer: L.Trainer) -> dict:
    """Every validation score of the best checkpoint's validation (its curve point: the first
    with the highest IoU, as ModelCheckpoint keeps it), not the last validation's; runs from
    before curve points kept every score fall back to the last validation's, with the best IoU."""
    point = max(curve, key=lambda p: p["val_iou"]) if curve else {}
    if "val_dice" in point:
        return {f"val/{k[4:]}": float(v) for k, v in point.items() if k.startswith("val_")}
    scores = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if best.best_model_score is not None:
        scores["val/iou"] = float(best.best_model_score)
    return scores


def train(
    cfg: RunConfig,
    run_dir: Path,
    logger: Any = False,
    callbacks: list[Callback] | None = None,
    progress: bool = True,
    prepared: PreparedRun | None = None,
    force: bool = False,
) -> TrainResult:
    """Train ``cfg`` into ``run_dir``, resuming its own unfinished run there.

    ``prepared``: what ``prepare_run`` returned when the caller validated and claimed the
    folder itself (before starting a logger in it); otherwise that happens here first, and a
    folder holding another configuration is refused unless ``force``."""
    quiet_lightning()
    run_dir = Path(run_dir)
    if prepared is not None:  # the caller holds the folder's lock, and closes it
        return _train(cfg, run_dir, logger, callbacks, progress, prepared)
    prepared = prepare_run(cfg, run_dir, force)
    with prepared.lock:
        return _train(cfg, run_dir, logger, callbacks, progress, prepared)


def _train(cfg, run_dir, logger, callbacks, progress, prepared: PreparedRun) -> TrainResult:
    dm = prepared.datamodule
    task = build_task(cfg, dm)
    choice = run_precision(
        cfg,
        task.model,
        dm.in_channels,
        run_dir,
        prepared.resume is not None,
        patch_size=dm.patch_size,
    )
    if cfg.compile:  # in place: the weights keep their names, so checkpoints load anywhere
        task.model.compile()
    trainer, ckpt, timer = build_trainer(cfg, run_dir, logger, callbacks, progress, choice)
    trainer.fit(task, datamodule=dm, ckpt_path=prepared.resume)
    if not trainer.interrupted:
        validate_last_step(trainer, task, dm, ckpt, last_checkpoint(trainer))
    best = Path(ckpt.best_model_path) if ckpt.best_model_path else None
    if best is not None and best.exists() and trainer.is_global_zero:
        state = torch.load(best, map_location="cpu", weights_only=True)
        task.load_state_dict(state["state_dict"])
    return TrainResult(
        task,
        dm,
        best,
        timer.seconds,
        trainer.current_epoch,
        best_scores(task.curve, ckpt, trainer),
        trainer.is_global_zero,
        choice,
    )
