"""One tracked run: the logger and callbacks of a training run, its final summary, its best
checkpoint as a W&B artifact, and closing it with the right exit code.

Naming: project ``seg-bench-<dataset>`` (``--project`` or ``WANDB_PROJECT`` override it), group
per benchmark (``bench-<dataset>-<profile>``) or per Optuna study (the study name), run name
``<model>-seed<k>`` or ``trial-<n>``, tags model, profile and dataset. What is logged: the full
config (redacted, also offline), per-step and per-epoch losses and metrics, the learning rate,
training throughput, validation overlays every few epochs, final test metrics in the run
summary, and with ``--log-model`` the best checkpoint as a ``model`` artifact. ``bench`` also
logs the leaderboard as a W&B table (:func:`log_leaderboard`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from seg_bench.tracking.callbacks import tracking_callbacks
from seg_bench.tracking.loggers import (
    build_logger,
    default_project,
    is_wandb,
    logger_kind,
    resolve_kind,
)
from seg_bench.tracking.redaction import redact, warn_once


@dataclass
class TrackedRun:
    """A run's logger (``False`` for none) and callbacks; ``owned``: closed by :meth:`finish`."""

    logger: Any
    callbacks: list[Callback] = field(default_factory=list)
    log_model: bool = False
    owned: bool = True
    finished: bool = False

    @property
    def kind(self) -> str:
        return logger_kind(self.logger)

    def summary(self, metrics: dict[str, Any]) -> None:
        """Final numbers: the W&B run summary, or one last row for CSV/TensorBoard."""
        if not self.logger or not metrics:
            return
        metrics = redact(dict(metrics))
        try:
            if is_wandb(self.logger):
                self.logger.experiment.summary.update(metrics)
                return
            numeric = {
                k: float(v)
                for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
            if numeric:
                self.logger.log_metrics(numeric)
                self.logger.save()
        except Exception as e:  # noqa: BLE001
            warn_once("summary", f"could not write the run summary: {type(e).__name__}: {e}")

    def log_checkpoint(
        self, path: Path | str | None, metadata: dict[str, Any] | None = None
    ) -> None:
        """With --log-model: the best checkpoint as a W&B ``model`` artifact (aliases best and
        latest)."""
        if not (self.log_model and path and Path(path).exists() and is_wandb(self.logger)):
            return
        try:
            import wandb

            run = self.logger.experiment
            artifact = wandb.Artifact(
                name=f"model-{run.id}", type="model", metadata=redact(dict(metadata or {}))
            )
            artifact.add_file(str(path), name="best.ckpt")
            run.log_artifact(artifact, aliases=["best", "latest"])
        except Exception as e:  # noqa: BLE001
            warn_once("artifact", f"could not log the checkpoint artifact: {type(e).__name__}: {e}")

    def finish(self, exit_code: int = 0) -> None:
        """Close an owned run once (W&B with ``exit_code``); later calls do nothing."""
        if self.finished or not self.owned or not self.logger:
            self.finished = True
            return
        self.finished = True
        try:
            if is_wandb(self.logger):
                # build_logger started the W&B run already, so this does not start a new one
                # (off rank zero it is Lightning's no-op experiment).
                self.logger.experiment.finish(exit_code=exit_code)
            else:
                self.logger.save()
        except Exception as e:  # noqa: BLE001
            warn_once("finish", f"could not close the {self.kind} run: {type(e).__name__}: {e}")


def run_config(cfg: Any, **extra: Any) -> dict[str, Any]:
    """The config a run logs: ``cfg`` (a RunConfig or a mapping) and ``extra``, redacted."""
    values = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    return redact({**values, **extra})


@contextlib.contextmanager
def tracked_run(
    cfg: Any,
    run_dir: Path | str,
    *,
    group: str | None,
    name: str | None,
    tags: list[str] | tuple[str, ...] = (),
    extra: dict[str, Any] | None = None,
    kind: str | None = None,
    project: str | None = None,
    log_model: bool = False,
    logger: Any = None,
) -> Iterator[TrackedRun]:
    """Build the logger and callbacks for ``cfg`` (``kind`` defaults to ``cfg.logger``), and
    close the run when the block ends: exit code 0 on success or an Optuna prune, 1 otherwise.
    Pass ``logger`` to use one you own instead (it is not closed here)."""
    owned = logger is None
    if owned:
        logger = build_logger(
            kind or getattr(cfg, "logger", "auto"),
            run_dir,
            project=project,
            group=group,
            name=name,
            tags=[t for t in tags if t],
            config=run_config(cfg, **(extra or {})),
        )
    epochs = getattr(cfg, "max_epochs", 20) or 20
    every = max(1, min(5, math.ceil(epochs / 4)))  # at least 4 overlays a run
    run = TrackedRun(logger, tracking_callbacks(logger, every), log_model, owned)
    try:
        yield run
    except BaseException as e:
        # by name: tracking sits below search and does not import Optuna for one class
        run.finish(exit_code=0 if type(e).__name__ == "TrialPruned" else 1)
        raise
    run.finish(0)


def log_leaderboard(
    dataset: str,
    csv_path: Path | str,
    kind: str | None,
    group: str,
    project: str | None = None,
    run_dir: Path | str = "runs",
) -> None:
    """The leaderboard CSV as a W&B table, in a short run of its own (W&B kinds only)."""
    if resolve_kind(kind) != "wandb" or not Path(csv_path).exists():
        return
    try:
        import pandas as pd
        import wandb

        table = wandb.Table(dataframe=pd.read_csv(csv_path))
        logger = build_logger(
            "wandb",
            Path(run_dir),
            project or default_project(dataset),
            group,
            f"leaderboard-{dataset}",
            ["leaderboard"],
            {"dataset": dataset},
            job_type="leaderboard",
            resumable=False,  # one short run per leaderboard written
        )
        if not is_wandb(logger):
            return
        logger.experiment.log({"leaderboard": table})
        logger.experiment.finish()
    except Exception as e:  # noqa: BLE001
        warn_once("leaderboard", f"could not log the leaderboard table: {type(e).__name__}: {e}")


__all__ = ["TrackedRun", "log_leaderboard", "run_config", "tracked_run"]
