"""Optuna search: resumable SQLite studies, failed and interrupted trials, user errors, bench
integration, DDP inside a trial. Trials use the smoke profile cut to 1 epoch of 8 samples."""

from __future__ import annotations

import contextlib
import io
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from wandb_offline import read_offline_run

from seg_bench import cli, search
from seg_bench.errors import UserError
from seg_bench.search import runner

FAST = {"max_epochs": 1, "samples_per_epoch": 8, "logger": "none"}
FAST_ARGS = "--profile smoke --epochs 1 --set samples_per_epoch=8 --logger none".split()
BASE = ["search", "--dataset", "synthetic", "--model", "unet", *FAST_ARGS]
PASSWORD = "Sup3r-s3cret"


def run_cli(argv: list[str], runs: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "RUNS_DIR", runs)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trials_of(runs: Path, name: str = "synthetic-unet-smoke"):
    import optuna

    url = search.storage_url(None, runs, name)
    return sorted(
        optuna.load_study(study_name=name, storage=url).get_trials(), key=lambda t: t.number
    )


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """2 trials, then the same command with --trials 3, then once more, then --show."""
    runs = tmp_path_factory.mktemp("search") / "runs"
    first = run_cli([*BASE, "--trials", "2"], runs)
    second = run_cli([*BASE, "--trials", "3"], runs)
    third = run_cli([*BASE, "--trials", "3"], runs)
    shown = run_cli([*BASE, "--show"], runs)
    return SimpleNamespace(runs=runs, first=first, second=second, third=third, shown=shown)


def test_rerun_resumes_to_the_target_number_of_trials(resumed):
    for rc, _, err in (resumed.first, resumed.second, resumed.third):
        assert rc == 0, err
    trials = trials_of(resumed.runs)
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["run_dir"] for t in trials}) == 3
    for t in trials:
        assert (Path(t.user_attrs["run_dir"]) / "checkpoints" / "best.ckpt").exists()
        assert Path(t.user_attrs["run_dir"]).name == f"trial_{t.number}"
    assert "running 1 more" in resumed.second[2]
    assert "running" not in resumed.third[2]  # a finished study runs nothing
    best = max(trials, key=lambda t: t.value)
    out = resumed.second[1]
    assert f"best: trial {best.number}" in out
    assert f"optimizer {best.params['optimizer']}" in out and f"lr {best.params['lr']:.3g}" in out
    assert (resumed.runs / "search" / "synthetic-unet-smoke.db").exists()


def test_show_prints_trials_and_importances(resumed):
    rc, out, err = resumed.shown
    assert rc == 0, err
    lines = out.splitlines()
    assert (
        lines[0].startswith("study 'synthetic-unet-smoke'")
        and "3 complete, 0 pruned, 0 failed" in lines[0]
    )
    header = next(line for line in lines if line.startswith("#"))
    for column in ("state", "val/iou", "duration", "params"):
        assert column in header
    rows = [line for line in lines if line[:1].isdigit()]
    assert len(rows) == 3 and all(
        "COMPLETE" in r and "optimizer=" in r and "lr=" in r for r in rows
    )
    importances = next(line for line in lines if line.startswith("parameter importances"))
    assert "lr" in importances


def test_show_with_other_run_options_refuses_the_study_they_would_not_run(resumed):
    """The study trained with the profile's loss; --show --loss dice would run another study,
    so showing this one as its result is refused, naming the option."""
    rc, out, err = run_cli([*BASE, "--loss", "dice", "--show"], resumed.runs)
    assert rc == 2 and out == ""
    assert "other fixed options (loss" in err and "'dice' now" in err
    assert len(err.strip().splitlines()) == 1
    # An option the study searched: its trials drew lr, none trained at the lr given.
    rc, out, err = run_cli([*BASE, "--lr", "0.0123", "--show"], resumed.runs)
    assert rc == 2 and out == "" and "searched lr" in err


def test_best_params_and_bench_use_the_study(resumed, tmp_path, monkeypatch):
    """bench --trials reuses the finished study, trains with its best parameters, and logs the
    seed's run (offline W&B) with its test metrics in the summary."""
    from seg_bench.config import RunConfig
    from seg_bench.protocol.bench import bench, run_dir_for

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_X_DISABLE_STATS", "true")
    params = search.best_params("synthetic", "unet", "smoke", runs_dir=resumed.runs)
    assert set(params) == {"optimizer", "lr"}
    records = bench(
        "synthetic",
        models=["unet"],
        profile="smoke",
        seeds=1,
        results_dir=tmp_path / "results",
        runs_dir=resumed.runs,
        leaderboard_dir=None,
        overrides={**FAST, "logger": "wandb"},
        trials=3,
    )
    assert len(trials_of(resumed.runs)) == 3, "the finished study was reused, not extended"
    cfg = records[0]["config"]
    assert (cfg["optimizer"], cfg["lr"]) == (params["optimizer"], params["lr"])
    run = read_offline_run(run_dir_for(resumed.runs, RunConfig(**cfg)))  # the run's own folder
    assert run["run"]["group"] == "bench-synthetic-smoke" and run["run"]["name"] == "unet-seed0"
    assert run["config"]["lr"] == params["lr"]
    assert run["summary"]["test/iou"] == pytest.approx(records[0]["metrics"]["overall"]["iou"])


def test_nan_trial_is_recorded_failed_and_the_study_goes_on(tmp_path):
    runs = tmp_path / "runs"
    space = {"optimizer": {"choices": ["sgd"]}, "lr": {"choices": [1e-2, 1e30]}}
    name = search.default_study_name("synthetic", "unet", "smoke")
    study = search.open_study(
        name,
        search.storage_url(None, runs, name),
        search.parse_space(space),
        dataset="synthetic",
        model="unet",
    )
    study.enqueue_trial({"optimizer": "sgd", "lr": 1e30})  # diverges to NaN on the second step
    study.enqueue_trial({"optimizer": "sgd", "lr": 1e-2})
    messages = []
    result = search.run_search(
        "synthetic",
        "unet",
        2,
        "smoke",
        space=space,
        overrides=FAST,
        runs_dir=runs,
        echo=messages.append,
    )
    failed, ok = trials_of(runs)
    assert failed.state.name == "FAIL" and failed.params["lr"] == 1e30
    assert failed.user_attrs["fail_reason"].startswith("non-finite loss: loss became nan")
    assert ok.state.name == "COMPLETE" and result.best_number == 1
    assert any("trial 0: failed: non-finite loss" in m for m in messages)


def test_bench_refuses_to_train_defaults_when_no_trial_completed(tmp_path, monkeypatch):
    """Every trial fails: bench --trials stops with one line naming the search, instead of
    training the profile's rate as if the search had chosen it."""

    def failing_train(cfg, run_dir, logger=False, callbacks=None, progress=True):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("seg_bench.training.trainer.train", failing_train)
    runs = tmp_path / "runs"
    argv = ["bench", "--dataset", "synthetic", "--models", "unet", "--seeds", "1"]
    rc, _, err = run_cli([*argv, *FAST_ARGS, "--trials", "2"], runs)
    assert rc == 2
    line = err.strip().splitlines()[-1]
    assert "search unet" in line and "no completed trial (0 pruned, 2 failed)" in line
    assert "nothing tuned to train" in line and "--profile smoke --show" in line
    assert not (runs / "results").exists()  # no run trained


def test_errors_and_ctrl_c_with_a_fake_trainer(tmp_path, monkeypatch):
    """A trial that raises is FAIL with its reason; Ctrl-C inside fit (which Lightning turns
    into SystemExit) stops the search with the trial marked interrupted, and the rerun
    finishes the target without counting it."""
    calls = []

    def fake_train(cfg, run_dir, logger=False, callbacks=None, progress=True):
        calls.append(cfg.lr)
        if len(calls) == 2:
            raise RuntimeError(f"disk on fire at postgresql://u:{PASSWORD}@h/db")
        if len(calls) == 3:
            raise SystemExit(1)  # what Lightning's trainer does after catching KeyboardInterrupt
        return SimpleNamespace(best_val={"val/iou": 0.1 * len(calls)}, best_checkpoint=None)

    monkeypatch.setattr("seg_bench.training.trainer.train", fake_train)
    runs = tmp_path / "runs"
    rc, _, err = run_cli([*BASE, "--trials", "4"], runs)
    assert rc == 130 and "interrupted" in err
    trials = trials_of(runs)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "FAIL"]
    assert (
        trials[1].user_attrs["fail_reason"]
        == "RuntimeError: disk on fire at postgresql://u:***@h/db"
    )
    assert trials[2].user_attrs["fail_reason"] == "interrupted"
    assert PASSWORD not in err

    rc, out, err = run_cli([*BASE, "--trials", "4"], runs)
    assert rc == 0, err
    trials = trials_of(runs)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    study, _ = search.load("synthetic", "unet", "smoke", runs_dir=runs)
    assert search.finished_trials(study) == 4
    assert "best: trial 4" in out


def test_user_errors_are_one_line(tmp_path):
    runs = tmp_path / "runs"
    port = free_port()
    cases = [
        (["--trials", "0"], "--trials: must be >= 1"),
        (["--trials", "-2"], "--trials: must be >= 1"),
        ([], "--trials N is required"),
        (["--trials", "1", "--storage", "postgresql//nohost/db"], "not a database URL"),
        (["--trials", "1", "--storage", "nosuchdb://u:x@h/db"], "malformed --storage URL"),
        (
            [
                "--trials",
                "1",
                "--storage",
                f"postgresql://bench:{PASSWORD}@127.0.0.1:{port}/optuna",
            ],
            "cannot open the study storage",
        ),
        (
            ["--trials", "1", "--space", "optimizer,momentum"],
            "unknown search parameter(s) momentum",
        ),
        (["--trials", "1", "--pruner", "asha"], "unknown pruner 'asha'"),
        (["--show"], "no search for synthetic/unet/smoke yet"),
    ]
    for extra, expected in cases:
        rc, out, err = run_cli([*BASE, *extra], runs)
        assert rc == 2, (extra, err)
        assert expected in err, (extra, err)
        assert len(err.strip().splitlines()) == 1, err
        assert PASSWORD not in err + out
    rc, _, err = run_cli(
        [
            *BASE,
            "--trials",
            "1",
            "--storage",
            f"postgresql://bench:{PASSWORD}@127.0.0.1:{port}/optuna",
        ],
        runs,
    )
    assert "postgresql://bench:***@127.0.0.1" in err


def test_a_study_keeps_its_search_space(tmp_path):
    runs = tmp_path / "runs"
    name = "synthetic-unet-smoke"
    search.open_study(
        name,
        search.storage_url(None, runs, name),
        search.parse_space("optimizer,lr"),
        dataset="synthetic",
        model="unet",
    )
    with pytest.raises(
        UserError, match=r"created with search space \[optimizer,lr\], not \[optimizer,lr,loss\]"
    ):
        search.run_search(
            "synthetic",
            "unet",
            1,
            "smoke",
            space="optimizer,lr,loss",
            overrides=FAST,
            runs_dir=runs,
        )
    with pytest.raises(UserError, match="belongs to model 'unet'"):
        search.run_search(
            "synthetic", "segnet", 1, "smoke", study_name=name, overrides=FAST, runs_dir=runs
        )
    # an explicitly fixed key leaves the space, and then it is a different space too
    with pytest.raises(UserError, match="not \\[optimizer\\]"):
        search.run_search(
            "synthetic", "unet", 1, "smoke", overrides={**FAST, "lr": 1e-3}, runs_dir=runs
        )


def test_a_study_refuses_trials_under_other_fixed_options(tmp_path, monkeypatch):
    def fake_train(cfg, run_dir, logger=False, callbacks=None, progress=True):
        return SimpleNamespace(best_val={"val/iou": 0.5}, best_checkpoint=None)

    monkeypatch.setattr("seg_bench.training.trainer.train", fake_train)
    runs = tmp_path / "runs"
    search.run_search("synthetic", "unet", 1, "smoke", overrides=FAST, runs_dir=runs)
    more = {**FAST, "max_epochs": 3}  # a longer budget: its trials are not comparable
    with pytest.raises(UserError, match=r"other fixed options \(max_epochs 1 there, 3 now\)"):
        search.run_search("synthetic", "unet", 2, "smoke", overrides=more, runs_dir=runs)
    result = search.run_search("synthetic", "unet", 2, "smoke", overrides=FAST, runs_dir=runs)
    assert result.finished == 2  # the same options continue it
    # How the bench tests the trained networks is no option of the trials: `bench --trials N
    # --tta` after `bench --trials N` was refused, and bench has no --study to get round it.
    tested = {**FAST, "tta": True}
    result = search.run_search("synthetic", "unet", 2, "smoke", overrides=tested, runs_dir=runs)
    assert result.finished == 2


def test_storage_urls_are_masked_and_normalised(tmp_path):
    assert search.mask_url(f"postgresql://u:{PASSWORD}@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert search.storage_url("postgres://u:p@h/db", tmp_path, "s") == "postgresql://u:p@h/db"
    assert (
        search.storage_url(str(tmp_path / "x.db"), tmp_path, "s")
        == f"sqlite:///{tmp_path / 'x.db'}"
    )
    assert (
        search.storage_url(None, tmp_path, "s")
        == f"sqlite:///{(tmp_path / 'search' / 's.db').resolve()}"
    )
    assert (tmp_path / "search").is_dir()  # made for SQLite to create its file in


def test_the_dashboard_opens_a_study_where_search_keeps_it(tmp_path, monkeypatch):
    # The dashboard had its own copy of the rule, without the postgres:// alias.
    from seg_bench.tracking.dashboard_cli import study_url

    monkeypatch.setenv("SEG_BENCH_RUNS", str(tmp_path))
    for storage in (None, "postgres://u:p@h/db", str(tmp_path / "x.db"), " sqlite:///a.db "):
        assert study_url("s", storage) == search.storage_url(storage, tmp_path, "s")
    with pytest.raises(UserError, match="--storage 'localhost:5432' is not a database URL"):
        study_url("s", "localhost:5432")
    with pytest.raises(UserError, match=r"--storage '\*\*\*@host:5432/db' is not a data") as err:
        study_url("s", f"user:{PASSWORD}@host:5432/db")  # no scheme: the password stays out
    assert PASSWORD not in str(err.value)


@pytest.mark.slow
def test_ddp_spawn_inside_a_trial_prunes_from_the_worker(tmp_path, monkeypatch):
    """2 CPU processes in one trial: the ranks train with the trial's parameters, rank 0
    reports val/iou, and a pruning decision taken in the worker reaches the study."""
    import optuna
    import torch

    monkeypatch.setattr(
        runner, "build_pruner", lambda kind, epochs: optuna.pruners.ThresholdPruner(lower=2.0)
    )
    runs = tmp_path / "runs"
    overrides = {
        **FAST,
        "max_epochs": 2,
        "accelerator": "cpu",
        "devices": 2,
        "strategy": "ddp",
        "precision": "32",
    }
    result = search.run_search("synthetic", "unet", 1, "smoke", overrides=overrides, runs_dir=runs)
    (trial,) = trials_of(runs)
    assert trial.state.name == "PRUNED", trial.user_attrs.get("fail_reason")
    assert list(trial.intermediate_values) == [0]  # stopped after the first epoch
    assert result.counts["PRUNED"] == 1
    ckpt = torch.load(
        Path(trial.user_attrs["run_dir"]) / "checkpoints" / "last.ckpt",
        map_location="cpu",
        weights_only=False,
    )
    assert ckpt["hyper_parameters"]["lr"] == trial.params["lr"]
    assert ckpt["hyper_parameters"]["optimizer"] == trial.params["optimizer"]


def _study_with_one_trial(runs: Path, name: str, value: float, storage: str | None = None):
    import optuna

    study = search.open_study(
        name,
        search.storage_url(storage, runs, name),
        search.parse_space("lr"),
        dataset="synthetic",
        model="unet",
    )
    dist = optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)
    study.add_trial(
        optuna.trial.create_trial(params={"lr": 1e-3}, distributions={"lr": dist}, value=value)
    )


def test_show_lists_the_studies_that_exist_when_the_asked_one_is_missing(tmp_path):
    """Only a smoke study exists: --show for the cpu profile names it, its trials and best
    value, in one line; --study picks it."""
    runs = tmp_path / "runs"
    _study_with_one_trial(runs, "synthetic-unet-smoke", 0.75)
    _study_with_one_trial(runs, "synthetic-segnet-smoke", 0.5)
    show = ["search", "--dataset", "synthetic", "--model", "unet", "--show"]
    rc, out, err = run_cli([*show, "--profile", "cpu"], runs)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "no study 'synthetic-unet-cpu'" in err
    assert "synthetic-unet-smoke (1 trial, best val/iou 0.7500)" in err
    assert "synthetic-segnet-smoke (1 trial, best val/iou 0.5000)" in err
    assert "--study NAME" in err

    rc, out, err = run_cli([*show, "--profile", "cpu", "--study", "synthetic-unet-smoke"], runs)
    assert rc == 0, err
    assert out.startswith("study 'synthetic-unet-smoke'") and "1 complete" in out


def test_show_lists_the_studies_of_a_named_storage(tmp_path):
    runs, db = tmp_path / "runs", str(tmp_path / "shared.db")
    _study_with_one_trial(runs, "mine", 0.25, storage=db)
    show = ["search", "--dataset", "synthetic", "--model", "unet", "--show", "--storage", db]
    rc, _, err = run_cli([*show, "--study", "theirs"], runs)
    assert rc == 2 and "no study 'theirs'" in err and "mine (1 trial, best val/iou 0.2500)" in err
    rc, out, err = run_cli([*show, "--study", "mine"], runs)
    assert rc == 0 and out.startswith("study 'mine'"), err


def test_optimizer_choices_are_the_registered_optimizers(monkeypatch):
    from seg_bench.registry import OPTIMIZERS

    assert set(search.parse_space("optimizer")["optimizer"]["choices"]) == {
        "sgd",
        "adagrad",
        "adam",
        "adamw",
    }
    OPTIMIZERS.names()  # loads the built-ins before the registry is copied
    monkeypatch.setattr(OPTIMIZERS, "_entries", dict(OPTIMIZERS._entries))
    OPTIMIZERS.register("lion", "a newly registered optimizer")(lambda params, **kw: None)
    assert "lion" in search.parse_space("optimizer")["optimizer"]["choices"]


def test_a_study_keeps_drawing_from_its_stored_choices(tmp_path, monkeypatch):
    """A study created when the optimizers were listed in another order continues with that
    order (Optuna refuses categorical choices that change), instead of failing its trials."""
    monkeypatch.setattr(
        "seg_bench.training.trainer.train",
        lambda cfg, run_dir, **kw: SimpleNamespace(best_val={"val/iou": 0.5}, best_checkpoint=None),
    )
    runs, name = tmp_path / "runs", "synthetic-unet-smoke"
    old = {"optimizer": {"choices": ["sgd", "adagrad", "adam", "adamw"]}}
    search.open_study(
        name, search.storage_url(None, runs, name), old, dataset="synthetic", model="unet"
    )
    result = search.run_search(
        "synthetic", "unet", 2, "smoke", space="optimizer", overrides=FAST, runs_dir=runs
    )
    assert result.counts["COMPLETE"] == 2
    (trial, _) = trials_of(runs)
    assert list(trial.distributions["optimizer"].choices) == old["optimizer"]["choices"]


def test_the_final_weights_validation_never_prunes_a_finished_trial():
    import optuna
    import torch
    from lightning.pytorch.trainer.states import TrainerFn

    from seg_bench.search.pruning import FitPruning

    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    trial = optuna.create_study(pruner=AlwaysPrune()).ask()
    pruning = FitPruning(trial, monitor="val/iou")

    def validation_end(fn, global_step=6, max_steps=8, epoch=2, max_epochs=-1):
        trainer = SimpleNamespace(
            sanity_checking=False,
            callback_metrics={"val/iou": torch.tensor(0.5)},
            state=SimpleNamespace(fn=fn),
            global_step=global_step,
            max_steps=max_steps,
            current_epoch=epoch,
            max_epochs=max_epochs,
        )
        pruning.on_validation_end(trainer, SimpleNamespace(current_epoch=epoch))

    validation_end(TrainerFn.VALIDATING)  # validate_last_step, after fit
    validation_end(TrainerFn.FITTING, global_step=8)  # the step budget ends on a validation
    validation_end(TrainerFn.FITTING, max_steps=-1, epoch=2, max_epochs=3)  # last epoch
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {}
    with pytest.raises(optuna.TrialPruned):
        validation_end(TrainerFn.FITTING)  # a validation with steps to go still prunes
    with pytest.raises(optuna.TrialPruned):
        validation_end(TrainerFn.FITTING, max_steps=-1, epoch=1, max_epochs=3)


def test_a_trial_scores_its_final_validation_too():
    # The final weights' validation is not reported to the pruner, so the reported epochs
    # alone scored a trial whose last epoch was its best at the one before.
    import optuna

    from seg_bench.search.objective import best_value

    trial = optuna.create_study(direction="maximize").ask()
    for epoch, iou in enumerate([0.5, 0.6, 0.7]):
        trial.report(iou, epoch)
    assert best_value(trial, SimpleNamespace(best_val={"val/iou": 0.8})) == pytest.approx(0.8)
    assert best_value(trial, SimpleNamespace(best_val={})) == pytest.approx(0.7)  # ddp_spawn


def test_a_resumed_sqlite_study_draws_new_trials_and_a_fresh_one_stays_reproducible(tmp_path):
    from seg_bench.search.storage import open_study

    spec = {"lr": {"low": 1e-5, "high": 1e-1, "log": True}}

    def first_lr(db: str) -> float:
        study = open_study("s", f"sqlite:///{tmp_path / db}", spec, dataset="d", model="m")
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        study.tell(trial, 0.5)
        return lr

    fresh = first_lr("a.db")
    assert first_lr("b.db") == fresh  # a fresh study: the seed decides
    assert first_lr("a.db") != fresh  # resumed: its random start repeated trial 0's lr


def test_a_study_that_stored_tta_among_its_fixed_options_still_continues(tmp_path):
    from seg_bench.search.storage import open_study

    url, spec = f"sqlite:///{tmp_path / 's.db'}", {"lr": {"low": 1e-4, "high": 1e-2}}
    open_study("s", url, spec, dataset="d", model="m", fixed={"width": 0.25, "tta": False})
    open_study("s", url, spec, dataset="d", model="m", fixed={"width": 0.25})  # no error
    with pytest.raises(UserError, match=r"width 0.25 there, 0.5 now"):
        open_study("s", url, spec, dataset="d", model="m", fixed={"width": 0.5})


def test_a_trial_stopped_by_an_input_error_does_not_count_towards_the_target(tmp_path, monkeypatch):
    # The error stops the study; it counted as a finished trial, so the fixed rerun ran one
    # trial fewer than asked.
    from seg_bench.errors import DataError

    broken = [True]

    def fake_train(cfg, run_dir, logger=False, callbacks=None, progress=True):
        if broken[0]:
            raise DataError("/data/isbi2012/train-volume.tif: file not found")
        return SimpleNamespace(best_val={"val/iou": 0.5}, best_checkpoint=None)

    monkeypatch.setattr("seg_bench.training.trainer.train", fake_train)
    runs = tmp_path / "runs"
    rc, _, err = run_cli([*BASE, "--trials", "2"], runs)
    assert rc == 2 and "train-volume.tif: file not found" in err
    study, _ = search.load("synthetic", "unet", "smoke", runs_dir=runs)
    assert search.finished_trials(study) == 0
    broken[0] = False  # the user fixes the data
    rc, out, err = run_cli([*BASE, "--trials", "2"], runs)
    assert rc == 0, err
    states = [t.state.name for t in trials_of(runs)]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "1 stopped by an input error" in search.show(
        search.load("synthetic", "unet", "smoke", runs_dir=runs)[0]
    )


def test_a_worker_with_nothing_left_to_run_says_why(tmp_path):
    # A trial left RUNNING (its worker killed, no heartbeat) filled the target: the next
    # worker returned at once and printed nothing.
    from seg_bench.search.runner import _run_trials
    from seg_bench.search.storage import open_study

    spec = {"lr": {"low": 1e-4, "high": 1e-2}}
    study = open_study("s", f"sqlite:///{tmp_path / 's.db'}", spec, dataset="d", model="m")
    done = study.ask()
    study.tell(done, 0.5)
    left = study.ask()  # left running by a killed worker
    said = []
    # the study and its storage are named (password masked), as when a worker does run trials
    named = SimpleNamespace(study_name="s", masked_url="postgresql://u:***@db/optuna")
    ran = _run_trials(study, objective=named, target=2, timeout=None, shared=True, echo=said.append)
    assert ran == 0 and len(said) == 1
    assert said[0].startswith(
        "search: study 's' in postgresql://u:***@db/optuna: 1 of 2 trials finished and 1 "
        "running in other workers"
    )
    # Every trial finished, none running: CI's second worker came this late and said nothing.
    study.tell(left, 0.4)
    said.clear()
    assert _run_trials(study, named, target=2, timeout=None, shared=True, echo=said.append) == 0
    assert said == [
        "search: study 's' in postgresql://u:***@db/optuna: 2 of 2 trials finished, so this "
        "one runs none: raise --trials"
    ]
