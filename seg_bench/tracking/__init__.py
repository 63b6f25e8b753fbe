"""Experiment tracking: W&B (online or offline), CSV or TensorBoard, never in training's way.

- :mod:`~seg_bench.tracking.loggers`: ``--logger`` kinds and :func:`build_logger` (W&B falls
  back to CSV with one warning).
- :mod:`~seg_bench.tracking.callbacks`: learning rate, throughput, validation overlays.
- :mod:`~seg_bench.tracking.runs`: :func:`tracked_run` (logger + callbacks + closing),
  run summaries, checkpoint artifacts, the leaderboard table.
- :mod:`~seg_bench.tracking.redaction`: what keeps passwords and API keys out of every log.
- :mod:`~seg_bench.tracking.dashboard`: the saved W&B workspace of a bench's project
  (``seg-bench dashboard``: :mod:`~seg_bench.tracking.dashboard_cli`).
"""

from seg_bench.tracking.callbacks import Throughput, ValidationOverlays, tracking_callbacks
from seg_bench.tracking.dashboard import (
    DashboardResult,
    SearchParam,
    dashboard_spec,
    load_spec,
    save_dashboard,
)
from seg_bench.tracking.loggers import (
    EPOCH_METRICS,
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
    "EPOCH_METRICS",
    "KINDS",
    "MASK",
    "DashboardResult",
    "SearchParam",
    "Throughput",
    "TrackedRun",
    "ValidationOverlays",
    "build_logger",
    "dashboard_spec",
    "default_project",
    "is_wandb",
    "load_spec",
    "logger_kind",
    "log_leaderboard",
    "redact",
    "redact_text",
    "register_secret",
    "resolve_kind",
    "run_config",
    "save_dashboard",
    "tracked_run",
    "tracking_callbacks",
    "wandb_mode",
]
