"""``seg-bench dashboard --project P [--study NAME --storage URL] [--output FILE]``: the saved W&B
workspace of a bench's project (seg_bench/tracking/dashboard.py), with the parameters of an
Optuna study read straight from its storage (tracking sits below search: optuna, not
seg_bench.search)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from seg_bench.errors import UserError
from seg_bench.paths import runs_dir, study_storage_url
from seg_bench.tracking.dashboard import (
    VIEW_NAME,
    SearchParam,
    check_project,
    dashboard_spec,
    save_dashboard,
)
from seg_bench.tracking.redaction import redact_text


def study_url(study: str, storage: str | None) -> str:
    """Where ``seg-bench search`` keeps the study (seg_bench/paths.py)."""
    return study_storage_url(storage, runs_dir(), study)


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return redact_text(text.splitlines()[0] if text else type(error).__name__)


def _load_study(study: str, url: str) -> Any:
    import optuna

    shown = redact_text(url)
    if url.startswith("sqlite:///") and not Path(url.split(":///", 1)[1]).is_file():
        # optuna would create an empty database there, and then find no study in it
        raise UserError(
            f"--study {study}: no study file {url.split(':///', 1)[1]}; run `seg-bench search` "
            "first, or give the study's database with --storage URL"
        )
    try:
        return optuna.load_study(study_name=study, storage=url)
    except KeyError as e:
        raise UserError(
            f"--study {study}: no such study in {shown}; `seg-bench search --show` lists a "
            "storage's studies"
        ) from e
    except Exception as e:  # noqa: BLE001 - a bad URL, a missing driver, a refused connection
        raise UserError(f"--storage {shown}: cannot open it ({_first_line(e)})") from e


def study_params(study: str, storage: str | None = None) -> list[SearchParam]:
    """The parameters an Optuna study's trials drew, by name, with their scale and kind."""
    from optuna.distributions import CategoricalDistribution

    loaded = _load_study(study, study_url(study, storage))
    distributions: dict[str, Any] = {}
    for trial in loaded.get_trials(deepcopy=False):
        distributions.update(trial.distributions)
    if not distributions:
        raise UserError(
            f"--study {study}: it has no trials yet, so no parameters to show; run "
            "`seg-bench search` first"
        )
    return [
        SearchParam(
            name,
            log=bool(getattr(dist, "log", False)),
            numeric=not isinstance(dist, CategoricalDistribution),
        )
        for name, dist in sorted(distributions.items())
    ]


def cmd_dashboard(args: argparse.Namespace) -> int:
    project = check_project(args.project or os.environ.get("WANDB_PROJECT"))
    try:
        import wandb_workspaces.workspaces  # noqa: F401
    except ImportError:
        raise UserError(
            "seg-bench dashboard needs wandb-workspaces: pip install 'seg-bench[dashboards]'"
        ) from None
    if args.storage and not args.study:
        raise UserError("--storage names the database of a study: give --study NAME too")
    params = study_params(args.study, args.storage) if args.study else []
    workspace = dashboard_spec(
        project,
        entity=args.entity or os.environ.get("WANDB_ENTITY", ""),
        study=args.study,
        params=params,
        name=args.name,
    )
    result = save_dashboard(workspace, args.spec_file)
    if result.url:
        print(f"dashboard: {result.url}")
    if result.spec_path:
        print(f"dashboard spec: {result.spec_path}")
    return 0


def add_dashboard_command(sub: Any) -> argparse.ArgumentParser:
    """The ``dashboard`` subcommand, on the subparsers ``sub`` of the seg-bench parser."""
    p = sub.add_parser("dashboard", help="a saved W&B workspace that opens on the leaderboard")
    p.add_argument(
        "--project", help="the bench's W&B project, e.g. seg-bench-synthetic ($WANDB_PROJECT)"
    )
    p.add_argument(
        "--entity", help="W&B user or team (default: $WANDB_ENTITY, else the API key's own)"
    )
    p.add_argument("--study", help="an Optuna study: add its parameters-vs-score panels")
    p.add_argument(
        "--storage",
        help="the study's database URL (default: sqlite:///<runs>/search/<study>.db)",
    )
    p.add_argument(
        "--output",
        dest="spec_file",  # a file: not console.py's --output folder check
        help="where the workspace's JSON spec goes when it cannot be saved "
        "(default: <runs>/dashboards/<project>.json)",
    )
    p.add_argument("--name", default=VIEW_NAME, help=f"the view's name (default: {VIEW_NAME})")
    p.set_defaults(func=cmd_dashboard)
    return p


__all__ = ["add_dashboard_command", "cmd_dashboard", "study_params", "study_url"]
