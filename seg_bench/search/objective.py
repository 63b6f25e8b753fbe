"""One trial: draw its parameters, train with them into ``<runs>/search/<study>/trial_<n>``,
and return its best ``val/iou``; or record why it failed, in the trial's user attribute
``fail_reason`` (``interrupted`` for Ctrl-C), and let the study go on.

A :class:`~seg_bench.errors.UserError` is a problem every trial would have (a bad option): the
trial fails, the study stops, and the runner raises it once. A loss that becomes NaN/inf, or any
other exception, fails only that trial (with its traceback in ``fail_traceback``).

DDP inside a trial: ``--strategy ddp`` becomes ``ddp_spawn``, because the ``ddp`` launcher
re-executes the command in every rank and each rank would run its own study; with spawn, every
rank trains with the trial's parameters, rank 0 reports to Optuna, and ``check_pruned()`` after
``fit`` turns a pruning decision made in a worker into a pruned trial.
"""

from __future__ import annotations

import math
import shutil
import socket
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seg_bench.errors import UserError
from seg_bench.search.display import ABORTED, INTERRUPTED
from seg_bench.search.space import MONITOR, suggest
from seg_bench.tracking.redaction import redact_text

# Search trials need several validations that differ for pruning to compare; smoke trains
# 1 epoch of 2 steps, after which every trial scores the same. Explicit options win.
SEARCH_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "smoke": {"max_epochs": 4, "samples_per_epoch": 32}
}


def trial_config(
    dataset: str, model: str, profile: str, overrides: dict[str, Any], params: dict[str, Any]
) -> Any:
    """The RunConfig of a trial: the profile (with the search defaults above), the explicit
    options, then the trial's parameters."""
    from seg_bench.config import resolve_config

    merged = {**SEARCH_PROFILE_DEFAULTS.get(profile, {}), **overrides, **params}
    cfg = resolve_config(dataset, model, profile, **merged)
    if cfg.num_nodes > 1:
        raise UserError(
            "multi-node DDP inside a search trial is not supported; run one search worker per "
            "machine against a shared --storage instead"
        )
    if cfg.strategy == "ddp" or (cfg.strategy == "auto" and _more_than_one(cfg.devices)):
        cfg.strategy = "ddp_spawn"  # 'ddp' would re-execute the whole search in every rank
    return cfg


def _more_than_one(devices: Any) -> bool:
    """Would Lightning's 'auto' strategy launch several processes for these devices?"""
    text = str(devices).strip()
    if text in ("-1", "auto"):
        import torch

        return torch.cuda.device_count() > 1
    if text.isdigit():
        return int(text) > 1
    return "," in text.strip(",") or (isinstance(devices, (list, tuple)) and len(devices) > 1)


@dataclass
class Objective:
    """The function Optuna calls once per trial (see the module docstring)."""

    study_name: str
    masked_url: str
    spec: dict[str, dict[str, Any]]
    dataset: str
    model: str
    profile: str
    overrides: dict[str, Any]
    trial_root: Path
    project: str | None = None
    log_model: bool = False
    progress: bool = False
    abort: list[UserError] = field(default_factory=list)  # the error that stopped the study

    def __call__(self, trial: Any) -> float:
        import optuna

        params = suggest(trial, self.spec)
        run_dir = self.trial_root / f"trial_{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        try:
            return self._train(trial, params, run_dir)
        except optuna.TrialPruned:
            raise
        except BaseException as e:
            self._record_failure(trial, e)
            raise

    def _train(self, trial: Any, params: dict[str, Any], run_dir: Path) -> float:
        from seg_bench.search.pruning import FitPruning
        from seg_bench.tracking.runs import tracked_run
        from seg_bench.training.trainer import train

        cfg = trial_config(self.dataset, self.model, self.profile, self.overrides, params)
        if run_dir.exists():  # trial numbers are never reused, so this is a stale directory
            shutil.rmtree(run_dir)
        pruning = FitPruning(trial, monitor=MONITOR)
        extra = {"study": self.study_name, "trial": trial.number, "params": params}
        with tracked_run(
            cfg,
            run_dir,
            group=self.study_name,
            name=f"trial-{trial.number}",
            tags=[self.model, self.profile, self.dataset, "search"],
            extra={**extra, "storage": self.masked_url},
            project=self.project,
            log_model=self.log_model,
        ) as run:
            try:
                result = train(
                    cfg,
                    run_dir,
                    logger=run.logger,
                    callbacks=[pruning, *run.callbacks],
                    progress=self.progress,
                )
            except SystemExit as e:  # Lightning turns Ctrl-C inside fit into sys.exit(1)
                raise KeyboardInterrupt from e
            pruning.check_pruned()  # a pruning decision taken in a DDP worker
            value = best_value(trial, result)
            run.summary({f"best_{MONITOR}": value, "trial": trial.number, "state": "COMPLETE"})
            run.log_checkpoint(
                result.best_checkpoint, {MONITOR: value, "trial": trial.number, "params": params}
            )
        return value

    def _record_failure(self, trial: Any, error: BaseException) -> None:
        from seg_bench.training.task import NonFiniteLossError

        if isinstance(error, KeyboardInterrupt):
            trial.set_user_attr("fail_reason", INTERRUPTED)
        elif isinstance(error, NonFiniteLossError):
            trial.set_user_attr("fail_reason", redact_text(f"non-finite loss: {error}"))
        elif isinstance(error, UserError):  # every trial would hit it: stop, and say it once
            trial.set_user_attr("fail_reason", redact_text(str(error)))
            trial.set_user_attr(ABORTED, True)
            self.abort.append(error)
            trial.study.stop()
        elif isinstance(error, Exception):
            reason = redact_text(f"{type(error).__name__}: {error}")[:2000]
            tb = redact_text("".join(traceback.format_exception(error)))[-4000:]
            trial.set_user_attr("fail_reason", reason)
            trial.set_user_attr("fail_traceback", tb)


def best_value(trial: Any, result: Any) -> float:
    """The trial's best val/iou: the best of the epochs it reported to the study (also right
    under ddp_spawn, where the checkpoint callback's best score stays in the worker) and the
    training result's (which holds the final weights' validation, never reported: see
    search/pruning.py)."""
    from optuna.trial import TrialState

    running = trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    reported = [
        v
        for t in running
        if t.number == trial.number
        for v in t.intermediate_values.values()
        if v is not None and math.isfinite(v)
    ]
    value = result.best_val.get(MONITOR)
    if value is not None and math.isfinite(value):
        reported.append(value)
    if not reported:
        raise RuntimeError(f"training finished without a finite {MONITOR}")
    return float(max(reported))
