"""Dashboards: the W&B workspace of a bench's project shows exactly what a bench logs, its spec
is written (and loads back) without network, and optuna-dashboard serves a study."""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from wandb_offline import read_offline_run

from seg_bench.errors import UserError
from seg_bench.tracking import dashboard as dash
from seg_bench.tracking.dashboard_cli import add_dashboard_command, study_params

STUDY = "synthetic-unet-smoke"  # the study bench --trials makes (search/storage.py)


def _flat(config: dict, prefix: str = "") -> set[str]:
    """Config keys as W&B names nested values: ``params.lr``."""
    keys = set()
    for k, v in config.items():
        keys.add(prefix + k)
        if isinstance(v, dict):
            keys |= _flat(v, f"{prefix}{k}.")
    return keys


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Everything a real smoke bench (2 epochs, a 2-trial search first) logs to W&B offline:
    metric keys (history and summary), media and table keys, config keys, per training run."""
    from seg_bench.protocol.bench import bench

    root = tmp_path_factory.mktemp("dashboard")
    with pytest.MonkeyPatch.context() as mp:
        for var, value in {
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_X_DISABLE_STATS": "true",
            "SEG_BENCH_RUNS": str(root / "runs"),
        }.items():
            mp.setenv(var, value)
        mp.delenv("WANDB_PROJECT", raising=False)
        for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            mp.setenv(var, str(root / "wandb-home" / var.lower()))
        bench(
            "synthetic",
            models=["unet"],
            profile="smoke",
            seeds=1,
            results_dir=root / "results",
            runs_dir=root / "runs",
            leaderboard_dir=root / "lb",
            trials=2,
            overrides={"max_epochs": 2, "samples_per_epoch": 8, "logger": "wandb"},
        )
    runs = [read_offline_run(p) for p in sorted(root.rglob("offline-run-*"))]
    assert len(runs) == 4 and all(r["exited"] for r in runs), "2 trials, 1 seed, 1 leaderboard"
    metrics = set().union(*(set().union(*r["history"], r["summary"]) for r in runs))
    return SimpleNamespace(
        runs=runs,
        metrics=metrics,
        media={k.removesuffix("/_type") for k in metrics if k.endswith("/_type")},
        config=set().union(*(_flat(r["config"]) for r in runs)),
        summary=set().union(*(r["summary"] for r in runs)),
        projects={r["run"]["project"] for r in runs},
        study_runs=[r for r in runs if r["run"]["group"] == STUDY],
        root=root,
    )


def _panel_keys(panel) -> list[tuple[str, str]]:
    """(kind, key) of every logged key a panel reads: metric, summary, config, media, table,
    or a regex that must match a metric."""
    import wandb_workspaces.reports.v2 as wr

    def kind_of(m) -> tuple[str, str]:
        if m is None:  # an axis or grouping left unset
            return "none", ""
        if isinstance(m, wr.Config):
            return "config", m.name
        if isinstance(m, wr.SummaryMetric):
            return "summary", m.name
        return "metric", m if isinstance(m, str) else m.name

    if isinstance(panel, wr.LinePlot):
        regex = [("regex", panel.metric_regex)] if panel.metric_regex else []
        return [*map(kind_of, [panel.x, *panel.y, panel.groupby]), *regex]
    if isinstance(panel, wr.BarPlot):
        return list(map(kind_of, [*panel.metrics, panel.groupby]))
    if isinstance(panel, wr.ScatterPlot):
        return list(map(kind_of, [panel.x, panel.y]))
    if isinstance(panel, wr.ParallelCoordinatesPlot):
        return [kind_of(c.metric) for c in panel.columns]
    if isinstance(panel, wr.ParameterImportancePlot):
        return [("summary", panel.with_respect_to)]
    if isinstance(panel, wr.MediaBrowser):
        return [("media", k) for k in panel.media_keys]
    if isinstance(panel, wr.WeavePanelSummaryTable):
        return [("media", panel.table_name)]
    raise AssertionError(f"the test does not know which keys a {type(panel).__name__} reads")


def _spec_keys(workspace) -> dict[str, list[tuple[str, str]]]:
    return {
        f"{section.name}: {getattr(panel, 'title', None) or type(panel).__name__}": _panel_keys(
            panel
        )
        for section in workspace.sections
        for panel in section.panels
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_panel_reads_keys_a_bench_logs_and_each_main_metric_has_a_panel(logged):
    params = [dash.SearchParam("lr", log=True), dash.SearchParam("optimizer", numeric=False)]
    spec = dash.dashboard_spec("seg-bench-synthetic", study=STUDY, params=params)
    assert logged.projects == {spec.project}
    known = {
        "metric": logged.metrics,
        "summary": logged.summary,
        "config": logged.config,
        "media": logged.media,
    }
    panels = _spec_keys(spec)
    for title, keys in panels.items():
        for kind, key in keys:
            if kind == "none":
                continue
            if kind == "regex":
                assert any(re.search(key, k) for k in logged.metrics), (title, key)
            else:
                assert key in known[kind], f"{title} reads {kind} '{key}', which no run logs"
    # the runs table: grouped by model, pinned columns a bench's runs have
    assert [g.name for g in spec.runset_settings.groupby] == ["model"]
    for column in spec.runset_settings.pinned_columns[1:]:  # [0] is W&B's run:displayName
        section, key = column.split(":", 1)
        assert key.removesuffix(".value") in known[section], column

    read = {key for keys in panels.values() for _, key in keys}
    main = {
        "leaderboard",
        "val/iou",
        "val/loss",
        "test/iou",
        "test/dice",
        "train/samples_per_s",
        "val/overlay",
        "params.lr",
        "params.optimizer",
        "best_val/iou",
    }
    assert main <= read
    lr_keys = {k for k in logged.metrics if k.startswith("lr-")}
    assert lr_keys and any(k == "regex" for keys in panels.values() for k, _ in keys)
    trial_config = logged.study_runs[0]["config"]
    assert {"lr", "optimizer"} == set(trial_config["params"]), "the study's parameters"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_epoch_metrics_summarise_to_their_best_epoch(logged):
    """define_metric: IoU and Dice keep their maximum, losses their minimum (not the last)."""
    seed_run = next(r for r in logged.runs if r["run"]["name"] == "unet-seed0")
    history = seed_run["history"]
    for key, best in (("val/iou", max), ("val/dice", max), ("val/loss", min)):
        values = [row[key] for row in history if key in row]
        assert len(values) == 2  # one per epoch
        goal = "max" if best is max else "min"
        assert seed_run["summary"][key] == {goal: pytest.approx(best(values))}
    epochs = [row["epoch"] for row in history if "val/iou" in row]
    assert epochs == [0, 1], "validation rows carry their epoch, the curves' x axis"


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seg-bench")
    add_dashboard_command(parser.add_subparsers(required=True))
    args = parser.parse_args(["dashboard", *argv])
    return args.func(args)


def test_offline_dashboard_writes_a_spec_that_loads_back_and_names_the_project(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = tmp_path / "spec.json"
    assert _cli(["--project", "seg-bench-drive", "--output", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert stderr.count("\n") == 1 and stderr.startswith("seg-bench: warning: W&B is offline")
    assert str(out) in stderr and stdout.strip() == f"dashboard spec: {out}"
    spec = json.loads(out.read_text())
    assert spec["project"] == "seg-bench-drive" and spec["displayName"] == dash.VIEW_NAME
    loaded = dash.load_spec(out)
    built = dash.dashboard_spec("seg-bench-drive")
    assert loaded.project == "seg-bench-drive"
    assert [s.name for s in loaded.sections] == [s.name for s in built.sections]
    assert _spec_keys(loaded) == _spec_keys(built)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.json"], "no temporary file left"

    assert _cli(["--project", "seg-bench-drive"]) == 0  # default: <runs>/dashboards/<project>
    default = tmp_path / "runs" / "dashboards" / "seg-bench-drive.json"
    assert json.loads(default.read_text())["project"] == "seg-bench-drive"


def test_online_saves_the_view_and_falls_back_to_the_spec_when_saving_fails(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    saved = []

    def save(workspace):
        saved.append(workspace.project)
        return "https://wandb.ai/lab/p?nw=seg-bench"

    monkeypatch.setattr(dash, "_save_online", save)
    assert _cli(["--project", "p"]) == 0
    stdout, stderr = capsys.readouterr()
    assert saved == ["p"] and stdout == "dashboard: https://wandb.ai/lab/p?nw=seg-bench\n"
    assert stderr == "" and not (tmp_path / "runs" / "dashboards").exists()

    def refused(workspace):
        raise ConnectionError("Max retries exceeded with url: /graphql\n(a long traceback)")

    monkeypatch.setattr(dash, "_save_online", refused)
    assert _cli(["--project", "p"]) == 0
    stdout, stderr = capsys.readouterr()
    spec = tmp_path / "runs" / "dashboards" / "p.json"
    assert stderr == (
        "seg-bench: warning: could not save the W&B workspace (ConnectionError: Max retries "
        f"exceeded with url: /graphql); wrote its spec to {spec}\n"
    )
    assert stdout == f"dashboard spec: {spec}\n" and dash.load_spec(spec).project == "p"


def _make_study(path: Path, name: str = "toy") -> str:
    """A tiny SQLite study made with optuna directly: a log-scaled float and a choice."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    url = f"sqlite:///{path}"
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    dists = {
        "lr": FloatDistribution(1e-5, 1e-1, log=True),
        "optimizer": CategoricalDistribution(["adam", "sgd"]),
    }
    for i, (lr, opt) in enumerate([(1e-3, "adam"), (1e-2, "sgd"), (3e-4, "adam")]):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": lr, "optimizer": opt}, distributions=dists, value=0.5 + i / 10
            )
        )
    return url


def test_a_study_adds_its_parameters_against_the_score(tmp_path, monkeypatch):
    import wandb_workspaces.reports.v2 as wr

    url = _make_study(tmp_path / "toy.db")
    params = study_params("toy", url)
    assert params == [
        dash.SearchParam("lr", log=True, numeric=True),
        dash.SearchParam("optimizer", log=False, numeric=False),
    ]
    spec = dash.dashboard_spec("p", study="toy", params=params)
    section = spec.sections[-1]
    assert section.name == "Search: toy"
    coords = next(p for p in section.panels if isinstance(p, wr.ParallelCoordinatesPlot))
    assert [(c.metric.name, c.log) for c in coords.columns] == [
        ("params.lr", True),
        ("params.optimizer", None),
        ("best_val/iou", None),
    ]
    scatters = [p for p in section.panels if isinstance(p, wr.ScatterPlot)]
    assert [(s.x.name, s.log_x) for s in scatters] == [("params.lr", True)], "numbers only"
    assert "Search: toy" not in [s.name for s in dash.dashboard_spec("p").sections]

    # the command reads the study's default file, <runs>/search/<study>.db, like seg-bench search
    (tmp_path / "runs" / "search").mkdir(parents=True)
    _make_study(tmp_path / "runs" / "search" / "mine.db", "mine")
    assert _cli(["--project", "p", "--study", "mine", "--output", str(tmp_path / "s.json")]) == 0
    assert "Search: mine" in [s.name for s in dash.load_spec(tmp_path / "s.json").sections]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--project", "a/b"], "--project 'a/b': give a W&B project name"),
        ([], "--project '': give a W&B project name"),
        (["--project", "p", "--storage", "sqlite:///x.db"], "give --study NAME too"),
        (["--project", "p", "--study", "gone"], "--study gone: no study file"),
        (["--project", "p", "--study", "other", "--storage", "STUDY_DB"], "no such study in"),
        (["--project", "p", "--study", "x", "--storage", "nosuchdb://h/db"], "--storage nosuchdb"),
    ],
)
def test_bad_dashboard_options_are_one_line_user_errors(argv, message, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    url = _make_study(tmp_path / "toy.db")
    argv = [url if a == "STUDY_DB" else a for a in argv]
    with pytest.raises(UserError) as err:
        _cli(argv)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "runs" / "dashboards").exists(), "nothing written"
    assert not (tmp_path / "runs" / "search" / "gone.db").exists(), "no empty database made"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


@pytest.mark.timeout(120)
def test_optuna_dashboard_serves_a_study_on_loopback(tmp_path):
    url = _make_study(tmp_path / "toy.db", "toy-study")
    script = Path(sys.executable).parent / "optuna-dashboard"
    command = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from optuna_dashboard._cli import main; main()"]
    )
    port = _free_port()
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--server", "wsgiref", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status, _ = _get(f"http://127.0.0.1:{port}/")
                break
            except OSError:  # not listening yet
                time.sleep(0.25)
        assert status == 200, f"no HTTP 200 within 60 s (exit code {server.poll()})"
        status, body = _get(f"http://127.0.0.1:{port}/api/studies")
        names = [s["study_name"] for s in json.loads(body)["study_summaries"]]
        assert status == 200 and names == ["toy-study"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
