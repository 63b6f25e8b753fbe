"""Experiment tracking: W&B (online or offline), CSV or TensorBoard, never in training's way.

- :mod:`~seg_bench.tracking.loggers`: ``--logger`` kinds and :func:`build_logger` (W&B falls
  back to CSV with one warning).
- :mod:`~seg_bench.tracking.callbacks`: learning rate, throughput, validation overlays.
- :mod:`~seg_bench.tracking.runs`: :func:`tracked_run` (logger + callbacks + closing),
  run summaries, checkpoint artifacts, the leaderboard table.
- :mod:`~seg_bench.tracking.redaction`: what keeps passwords and API keys out of every log.
"""

from seg_bench.tracking.callbacks import Throughput, ValidationOverlays, tracking_callbacks
from seg_bench.tracking.loggers import (
    KINDS,
    build_logger,
    default_project,
    is_wandb,
    logger_kind,
    resolve_kind,
    wandb_mode,
)
from seg_bench.tracking.redaction import MASK, redact, redact_text, register_secret
from seg_bench.tracking.runs import TrackedRun, log_leaderboard, run_config, tracked_run

__all__ = [
    "KINDS",
    "MASK",
    "Throughput",
    "TrackedRun",
    "ValidationOverlays",
    "build_logger",
    "default_project",
    "is_wandb",
    "logger_kind",
    "log_leaderboard",
    "redact",
    "redact_text",
    "register_secret",
    "resolve_kind",
    "run_config",
    "tracked_run",
    "tracking_callbacks",
    "wandb_mode",
]
