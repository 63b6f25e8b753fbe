"""A saved W&B workspace (a "view") for a bench's project, so that it opens on the leaderboard
rather than on W&B's default grid of every key.

Sections, top first: the leaderboard table (:func:`~seg_bench.tracking.runs.log_leaderboard`),
test metrics by model (mean and spread over seeds), validation curves by epoch grouped by
model with a band over seeds, training (learning rate, throughput, per-step loss), validation
overlays, and for an Optuna study its trials' parameters against their score.

:func:`dashboard_spec` builds the workspace without touching the network; :func:`save_dashboard`
saves it when W&B is online (a key, and the server answers), and otherwise writes its JSON spec
to a file, saying so in one line. ``seg-bench dashboard``: :mod:`.dashboard_cli`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seg_bench.errors import UserError
from seg_bench.io import atomic_write
from seg_bench.paths import runs_dir
from seg_bench.tracking.loggers import wandb_mode
from seg_bench.tracking.redaction import redact_text

VIEW_NAME = "seg-bench leaderboard"
# The keys below are the ones the code logs; tests/test_dashboard.py checks them against a real
# bench's offline W&B runs.
LEADERBOARD = "leaderboard"  # tracking/runs.py: log_leaderboard
CURVES = (  # training/task.py (per epoch); their step is `epoch` (tracking/loggers.py)
    ("val/iou", "Validation IoU"),
    ("val/dice", "Validation Dice"),
    ("val/loss", "Validation loss"),
    ("train/loss_epoch", "Training loss (epoch mean)"),
)
# protocol/bench.py: the run summary holds evaluation's "overall" scores; these are always there
TEST_METRICS = ("test/iou", "test/dice", "test/precision", "test/recall")
LR_REGEX = "^lr-"  # Lightning's LearningRateMonitor: lr-<optimizer class>
THROUGHPUT = "train/samples_per_s"  # tracking/callbacks.py: Throughput
STEP_LOSS = "train/loss_step"
OVERLAYS = "val/overlay"  # tracking/callbacks.py: ValidationOverlays
SEARCH_SCORE = "best_val/iou"  # search/objective.py: the trial's summary, best_<MONITOR>
SEARCH_PARAMS = "params"  # search/objective.py: a trial's drawn values, config["params"]
_PROJECT = re.compile(r"^[^/\\#?%:]{1,128}$")  # what W&B accepts as a project name


@dataclass(frozen=True)
class SearchParam:
    """One parameter an Optuna study varies: log-scaled or not, a number or a choice."""

    name: str
    log: bool = False
    numeric: bool = True


@dataclass(frozen=True)
class DashboardResult:
    """Where the dashboard went: its URL once saved, the spec file when one was written."""

    url: str | None = None
    spec_path: Path | None = None


def _grouped_line(key: str, title: str, x: str = "epoch", **options: Any) -> Any:
    """A curve per model: the mean over its seeds, with a band of one standard deviation."""
    import wandb_workspaces.reports.v2 as wr

    return wr.LinePlot(
        title=title,
        x=x,
        y=[key],
        groupby=wr.Config("model"),
        groupby_aggfunc="mean",
        groupby_rangefunc="stddev",
        **options,
    )


def _test_bar(key: str) -> Any:
    import wandb_workspaces.reports.v2 as wr

    return wr.BarPlot(
        title=f"{key} by model (mean ± std over seeds)",
        metrics=[key],
        groupby=wr.Config("model"),
        groupby_aggfunc="mean",
        groupby_rangefunc="stddev",
    )


def _search_panels(params: Sequence[SearchParam]) -> list[Any]:
    """Parallel coordinates over every parameter and the score, the importance of each, and a
    scatter of the score against each numeric parameter."""
    import wandb_workspaces.reports.v2 as wr

    column = wr.ParallelCoordinatesPlotColumn
    config = [wr.Config(f"{SEARCH_PARAMS}.{p.name}") for p in params]
    panels: list[Any] = [
        wr.ParallelCoordinatesPlot(
            title=f"Trials: parameters vs {SEARCH_SCORE}",
            columns=[
                *(column(c, log=p.log or None) for c, p in zip(config, params, strict=True)),
                column(wr.SummaryMetric(SEARCH_SCORE)),
            ],
            layout=wr.Layout(w=24, h=8),
        ),
        wr.ParameterImportancePlot(with_respect_to=SEARCH_SCORE),
    ]
    panels += [
        wr.ScatterPlot(
            title=f"{SEARCH_SCORE} vs {p.name}",
            x=c,
            y=wr.SummaryMetric(SEARCH_SCORE),
            log_x=p.log or None,
        )
        for c, p in zip(config, params, strict=True)
        if p.numeric
    ]
    return panels


def _sections(study: str | None, params: Sequence[SearchParam]) -> list[Any]:
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    def section(name: str, panels: list[Any], columns: int = 3) -> Any:
        layout = ws.SectionLayoutSettings(columns=columns, rows=1 if columns == 1 else 2)
        return ws.Section(name=name, panels=panels, is_open=True, layout_settings=layout)

    sections = [
        section(
            "Leaderboard",
            [wr.WeavePanelSummaryTable(table_name=LEADERBOARD, layout=wr.Layout(w=24, h=12))],
            columns=1,
        ),
        section("Test metrics by model", [_test_bar(k) for k in TEST_METRICS], columns=4),
        section("Validation curves", [_grouped_line(k, t) for k, t in CURVES], columns=4),
        section(
            "Training",
            [
                wr.LinePlot(
                    title="Learning rate",
                    x="trainer/global_step",
                    metric_regex=LR_REGEX,
                    log_y=True,
                ),
                _grouped_line(THROUGHPUT, "Throughput (samples/s)"),
                _grouped_line(
                    STEP_LOSS,
                    "Training loss (per step)",
                    x="trainer/global_step",
                    smoothing_type="exponential",
                    smoothing_factor=0.6,
                ),
            ],
        ),
        section(
            "Validation overlays (prediction red, truth green)",
            [
                wr.MediaBrowser(
                    title="Validation overlays",
                    media_keys=[OVERLAYS],
                    mode="grid",
                    grid_x_axis="step",
                    grid_y_axis="run",
                    layout=wr.Layout(w=24, h=12),
                )
            ],
            columns=1,
        ),
    ]
    if study:
        sections.append(section(f"Search: {study}", _search_panels(params)))
    return sections


def dashboard_spec(
    project: str,
    *,
    entity: str = "",
    study: str | None = None,
    params: Sequence[SearchParam] = (),
    name: str = VIEW_NAME,
) -> Any:
    """The workspace (a ``wandb_workspaces.workspaces.Workspace``) of ``project``, runs grouped
    by model; with ``study``, a section of its trials' ``params`` against their score. No
    network: ``entity`` may stay empty until :func:`save_dashboard` asks W&B for it."""
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces import expr

    check_project(project)
    return ws.Workspace(
        entity=entity,
        project=project,
        name=name,
        sections=_sections(study, params),
        runset_settings=ws.RunsetSettings(
            groupby=[expr.Config("model")],
            pinned_columns=[
                "config:model.value",
                "config:seed.value",
                *(f"summary:{k}" for k in TEST_METRICS),
            ],
        ),
    )


def check_project(project: str | None) -> str:
    """``project`` when W&B would accept it as a project name; else a UserError."""
    if not project or not _PROJECT.match(project):
        raise UserError(
            f"--project '{project or ''}': give a W&B project name (e.g. seg-bench-synthetic): "
            "1 to 128 characters, none of / \\ # ? % :"
        )
    return project


def spec_json(workspace: Any) -> str:
    """The workspace as W&B stores it: the view model ``Workspace.save()`` uploads.
    (wandb-workspaces has no public serialiser; this model is the one that loads back.)"""
    return workspace._to_model().model_dump_json(by_alias=True, exclude_none=True, indent=2)


def load_spec(path: Path | str) -> Any:
    """The workspace of a spec file written by :func:`save_dashboard`."""
    import wandb_workspaces.workspaces as ws
    from pydantic import ValidationError
    from wandb_workspaces.workspaces import internal

    try:
        view = internal.View.model_validate_json(Path(path).read_text())
    except (OSError, ValidationError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a dashboard spec ({reason})") from e
    return ws.Workspace._from_model(view)


def default_output(project: str) -> Path:
    """Where a spec goes when no ``--output`` is given: ``<runs>/dashboards/<project>.json``."""
    return runs_dir() / "dashboards" / f"{check_project(project)}.json"


def write_spec(workspace: Any, path: Path | str) -> Path:
    """The workspace's JSON spec, written atomically."""
    path = Path(path)
    with atomic_write(path) as f:
        f.write(spec_json(workspace) + "\n")
    return path


def _warn(message: str) -> None:
    print(f"seg-bench: warning: {redact_text(message)}", file=sys.stderr, flush=True)


def _save_online(workspace: Any) -> str:
    """Save the view in W&B (the entity defaults to the key's own) and return its URL."""
    import wandb

    if not workspace.entity:
        entity = wandb.Api(timeout=30).default_entity  # also checks the key and the server
        if not entity:
            raise RuntimeError("the API key has no default entity; pass --entity")
        workspace.entity = entity
    workspace.save()
    return str(workspace.url)


def save_dashboard(workspace: Any, output: Path | str | None = None) -> DashboardResult:
    """Save ``workspace`` in W&B when online and return its URL; offline, or when saving fails,
    write its spec (to ``output``, default :func:`default_output`) with a one-line warning.
    An ``output`` given explicitly is written in any case."""
    path = Path(output) if output is not None else default_output(workspace.project)
    if wandb_mode() != "online":
        write_spec(workspace, path)
        _warn(
            f"W&B is offline (no WANDB_API_KEY, or WANDB_MODE=offline); wrote the dashboard spec "
            f"to {path}: rerun `seg-bench dashboard` with a key and network to save it"
        )
        return DashboardResult(spec_path=path)
    try:
        url = _save_online(workspace)
    except Exception as e:  # noqa: BLE001 - no network, a bad key, a project not there yet
        text = str(e).strip()
        reason = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
        write_spec(workspace, path)
        _warn(f"could not save the W&B workspace ({reason}); wrote its spec to {path}")
        return DashboardResult(spec_path=path)
    if output is not None:
        write_spec(workspace, path)
    return DashboardResult(url=url, spec_path=path if output is not None else None)


__all__ = [
    "VIEW_NAME",
    "DashboardResult",
    "SearchParam",
    "check_project",
    "dashboard_spec",
    "default_output",
    "load_spec",
    "save_dashboard",
    "spec_json",
    "write_spec",
]
