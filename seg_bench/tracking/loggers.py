"""The Lightning logger of one run, chosen by ``--logger`` / ``RunConfig.logger``.

``auto``        W&B, online when ``WANDB_API_KEY`` is set (or ``WANDB_MODE=online``), otherwise
                offline into the run directory (``<run_dir>/wandb/offline-run-*``; upload later
                with ``wandb sync <that dir>``). ``WANDB_MODE=disabled`` makes it CSV.
``wandb``       the same, chosen explicitly.
``csv``         ``<run_dir>/logs/csv/metrics.csv`` and ``hparams.yaml`` (``csv-part2``... for
                the parts of a resumed run).
``tensorboard`` ``<run_dir>/logs/tensorboard`` (needs the ``tensorboard`` package).
``none``        no logger.

A W&B failure (package missing, no network, bad key) never stops training: it warns once per
process and the run logs to CSV instead. Every config is redacted before any logger sees it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from seg_bench.errors import UserError
from seg_bench.io import atomic_write
from seg_bench.tracking.redaction import redact, redact_text, warn_once

KINDS = ("auto", "wandb", "csv", "tensorboard", "none")
# What the best of an epoch-level metric is (its W&B summary): the best epoch, not the last.
EPOCH_METRICS = {
    "val/iou": "max",
    "val/dice": "max",
    "val/accuracy": "max",
    "val/kappa": "max",
    "val/loss": "min",
    "train/loss_epoch": "min",
    "train/samples_per_s": "mean",
}


def resolve_kind(kind: str | None) -> str:
    """The logger kind ``kind`` means here: ``auto`` becomes ``wandb`` (or ``csv`` when
    ``WANDB_MODE=disabled``); an unknown kind is a UserError."""
    kind = (kind or "auto").lower()
    if kind not in KINDS:
        raise UserError(f"unknown logger '{kind}'. Known: {', '.join(KINDS)}")
    if kind == "auto":
        return "csv" if os.environ.get("WANDB_MODE", "").lower() == "disabled" else "wandb"
    return kind


def wandb_mode() -> str:
    """'online' when a key is configured (or WANDB_MODE asks for it), 'disabled' when
    WANDB_MODE says so (an explicit mode= would override the variable), else 'offline'."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode == "disabled":
        return "disabled"
    if mode in ("online", "run"):
        return "online"
    if mode in ("offline", "dryrun"):
        return "offline"
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def default_project(dataset: str | None) -> str:
    """``$WANDB_PROJECT``, else ``seg-bench-<dataset>``."""
    return os.environ.get("WANDB_PROJECT") or f"seg-bench-{dataset or 'runs'}"


def is_wandb(logger: Any) -> bool:
    return isinstance(logger, WandbLogger)


def logger_kind(logger: Any) -> str:
    """The kind of a built logger: ``wandb``, ``csv``, ``tensorboard``, ``none`` or its class."""
    if not logger:
        return "none"
    for cls, kind in (
        (WandbLogger, "wandb"),
        (CSVLogger, "csv"),
        (TensorBoardLogger, "tensorboard"),
    ):
        if isinstance(logger, cls):
            return kind
    return type(logger).__name__


def build_logger(
    kind: str | None,
    run_dir: Path | str,
    project: str | None = None,
    group: str | None = None,
    name: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    config: dict[str, Any] | None = None,
    job_type: str | None = None,
    resumable: bool = True,
) -> Any:
    """A Lightning logger for one run, or ``False`` for kind ``none``. W&B problems fall back to
    CSV with one warning per process; the config is redacted before any logger sees it.
    ``resumable``: a W&B run keeps its id in ``run_dir``, so building the logger of a resumed
    run again goes on in the same W&B run."""
    kind = resolve_kind(kind)
    if kind == "none":
        return False
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    safe = redact(dict(config or {}))
    project = project or default_project(safe.get("dataset"))
    if kind == "wandb":
        try:
            resume = {"id": wandb_run_id(run_dir), "resume": "allow"} if resumable else {}
            return _wandb_logger(run_dir, project, group, name, tags, safe, job_type, resume)
        except Exception as e:  # noqa: BLE001 - any W&B failure must leave training alone
            _give_up_on_wandb(e)
            kind = "csv"
    logger = _local_logger(kind, run_dir)
    logger.log_hyperparams({**safe, "group": group, "name": name, "tags": list(tags or ())})
    return logger


def _local_logger(kind: str, run_dir: Path) -> CSVLogger | TensorBoardLogger:
    if kind == "csv":
        return CSVLogger(save_dir=str(run_dir), name="logs", version=csv_version(run_dir))
    try:
        return TensorBoardLogger(
            save_dir=str(run_dir), name="logs", version="tensorboard", default_hp_metric=False
        )
    except ModuleNotFoundError as e:
        raise UserError(
            "--logger tensorboard needs the tensorboard package: pip install tensorboard"
        ) from e


def csv_version(run_dir: Path) -> str:
    """``csv``, or ``csv-part2``... for a resumed run: Lightning's CSV writer deletes the
    metrics.csv it finds, so a resumed run lost the metrics of its first part."""
    logs, version, part = run_dir / "logs", "csv", 1
    while (logs / version / "metrics.csv").exists():
        part += 1
        version = f"csv-part{part}"
    return version


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of this run folder, made once and kept in it, so a resumed run goes on
    in its W&B run instead of starting a second one of the same name."""
    path = run_dir / "wandb_run_id"
    if path.exists():
        return path.read_text().strip()
    run_id = secrets.token_hex(6)  # W&B ids: letters and digits, unique within the project
    with atomic_write(path, "w") as f:
        f.write(run_id)
    return run_id


def _give_up_on_wandb(error: Exception) -> None:
    text = str(error).strip()
    reason = text.splitlines()[0] if text else type(error).__name__
    warn_once(
        "wandb",
        f"W&B logging unavailable ({type(error).__name__}: {reason}); "
        "logging to CSV under the run directory instead",
    )
    with contextlib.suppress(Exception):
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=1)


def _wandb_logger(
    run_dir: Path, project, group, name, tags, config, job_type=None, resume=None
) -> WandbLogger:
    import wandb

    if wandb.run is not None:  # a run left open would swallow this one (WandbLogger reuses it)
        wandb.finish()
    settings = wandb.Settings(
        console="off",  # Lightning's own output stays on the terminal, not in the run
        silent=True,
        save_code=False,
        init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", 60)),
    )
    logger = WandbLogger(
        project=project,
        group=group,
        name=name,
        tags=list(tags or ()),
        job_type=job_type,
        save_dir=str(run_dir),
        config=config,
        mode=wandb_mode(),  # not WandbLogger(offline=...), which rewrites os.environ
        **(resume or {}),  # a resumed run goes on in its W&B run (wandb_run_id)
        settings=settings,
        allow_val_change=True,
    )
    # Private: WandbLogger always passes anonymous=None to wandb.init, which W&B deprecated
    # and warns about; no constructor argument leaves it out, so drop it from the init kwargs.
    logger._wandb_init.pop("anonymous", None)
    with _redacted_argv():
        run = logger.experiment  # start now, so a failure surfaces here and not in fit
    _define_metrics(run)
    return logger


def _define_metrics(run: Any) -> None:
    """Epoch-level metrics plot against ``epoch`` (comparable across batch sizes, unlike the
    global step Lightning gives every key) and summarise to their best value."""
    for key, summary in EPOCH_METRICS.items():
        run.define_metric(key, step_metric="epoch", summary=summary)


@contextlib.contextmanager
def _redacted_argv() -> Iterator[None]:
    """W&B stores the command line (sys.argv) in each run's metadata, e.g. a --storage URL with
    its password: let it see a redacted copy while the run starts, and only then (Lightning's
    DDP launcher starts the other processes with the real sys.argv)."""
    saved = sys.argv
    sys.argv = [redact_text(a) for a in saved]
    try:
        yield
    finally:
        sys.argv = saved


__all__ = [
    "EPOCH_METRICS",
    "KINDS",
    "build_logger",
    "default_project",
    "is_wandb",
    "logger_kind",
    "resolve_kind",
    "wandb_mode",
]
