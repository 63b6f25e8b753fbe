"""No run is ever lost: a run folder and a result record per configuration, every option and
data check before a folder is touched, and leaderboards that say what they compare and never
replace the committed ones unasked."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
import torch

import seg_bench.cli as cli
import seg_bench.hardware as hardware_module
from seg_bench.config import RunConfig, resolve_config
from seg_bench.errors import UserError
from seg_bench.protocol.postprocess_report import missing_targets, select_by_target
from seg_bench.protocol.records import (
    load_records,
    missing_asked,
    record_path_for,
    select_records,
)
from seg_bench.training.run_dir import NOT_IN_KEY, claim_run_dir, config_key, run_dir_for

FAST = ["--profile", "smoke", "--width", "0.0625", "--set", "num_workers=0", "--logger", "none"]


def fast_config(**overrides) -> RunConfig:
    """What `train FAST` resolves to."""
    values = {"width": 0.0625, "num_workers": 0, "logger": "none", **overrides}
    return resolve_config("synthetic", "unet", "smoke", **values)


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(cli, "RUNS_DIR", tmp_path / "runs")
    return tmp_path / "runs"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def one_error_line(capsys) -> str:
    """The error: one line, the last of stderr (bench's progress lines may come before it)."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[-1].startswith("seg-bench: error: ") and "Traceback" not in err, err
    assert [line for line in lines if "error" in line.lower()] == lines[-1:], err
    return lines[-1]


# --- the configuration key ----------------------------------------------------------------------
def changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, dict):
        return {**value, "extra": 1}
    return f"{value}-other"


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(RunConfig)])
def test_every_field_but_the_operational_ones_changes_the_config_key(name):
    cfg = resolve_config("synthetic", "unet", "smoke")
    other = dataclasses.replace(cfg, **{name: changed(getattr(cfg, name))})
    assert (config_key(other) == config_key(cfg)) == (name in NOT_IN_KEY)


def test_the_key_is_the_same_from_a_config_and_from_its_json_record():
    cfg = fast_config(lr=0.01)
    assert config_key(json.loads(json.dumps(cfg.to_dict()))) == config_key(cfg)
    assert run_dir_for(Path("r"), cfg).name == f"unet__seed0__smoke__{config_key(cfg)}"
    assert record_path_for(Path("res"), cfg).name == f"unet__seed0__{config_key(cfg)}.json"


# --- the user's report: a failed or different command never costs the previous run ------------
def test_a_bad_patch_size_after_a_run_fails_before_touching_it(runs, capsys):
    assert cli.main(["train", *FAST]) == 0
    folder = run_dir_for(runs, fast_config())
    before = snapshot(folder)
    assert {"checkpoints/best.ckpt", "checkpoints/last.ckpt"} <= set(before)
    capsys.readouterr()
    assert cli.main(["train", *FAST, "--patch-size", "4096"]) == 2
    assert "--patch-size 4096 is larger than" in one_error_line(capsys)
    assert snapshot(folder) == before
    assert sorted(p.name for p in (runs / "synthetic").iterdir()) == [folder.name]


def test_another_learning_rate_trains_beside_the_first_run_and_both_records_stay(runs):
    assert cli.main(["train", *FAST]) == 0
    first = run_dir_for(runs, fast_config())
    before = snapshot(first)
    assert cli.main(["train", *FAST, "--lr", "0.01"]) == 0
    second = run_dir_for(runs, fast_config(lr=0.01))
    assert second != first and snapshot(first) == before
    assert (second / "checkpoints" / "best.ckpt").is_file()
    records = load_records(runs / "results", "synthetic")
    assert sorted(r["config"]["lr"] for r in records) == [0.002, 0.01]


def test_the_same_config_resumes_its_own_last_checkpoint_whatever_its_logger(tmp_path):
    cfg = fast_config()
    folder = tmp_path / "run"
    assert claim_run_dir(cfg, folder) is None
    last = folder / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"weights")
    again = dataclasses.replace(cfg, logger="csv", num_workers=2)
    assert claim_run_dir(again, folder) == last and last.read_bytes() == b"weights"


def test_a_run_folder_of_another_config_is_refused_and_force_says_what_it_removes(
    runs, tmp_path, capsys
):
    folder = tmp_path / "mine"
    claim_run_dir(fast_config(), folder)
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    before = snapshot(folder)
    argv = ["train", *FAST, "--lr", "0.01", "--run-dir", str(folder)]
    assert cli.main(argv) == 2
    err = one_error_line(capsys)
    assert f"{folder} holds a run of another configuration (lr 0.002 -> 0.01)" in err
    assert "--force" in err and snapshot(folder) == before
    assert cli.main([*argv, "--force"]) == 0
    err = capsys.readouterr().err
    assert f"--force: removing {folder} (checkpoints/best.ckpt, config.json)" in err
    assert json.loads((folder / "config.json").read_text())["lr"] == 0.01


def test_a_run_folder_another_process_trains_in_is_refused_untouched(tmp_path):
    from seg_bench.io import file_lock
    from seg_bench.training.trainer import train

    folder = tmp_path / "run"
    claim_run_dir(fast_config(), folder)
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"being written by the other process")
    (folder / "checkpoints" / ".last.ckpt.1234.tmp").write_bytes(b"its live temporary file")
    before = snapshot(folder)
    with file_lock(folder):  # the other process holds the folder
        for force in (False, True):
            with pytest.raises(UserError, match=r"run: another process is training in this run"):
                train(fast_config(), folder, progress=False, force=force)
    assert snapshot(folder) == before


def test_bench_resumes_its_own_run_and_leaves_other_configs_alone(tmp_path, monkeypatch):
    from seg_bench.protocol import bench as bench_module

    dirs = {"results_dir": tmp_path / "res", "runs_dir": tmp_path / "runs", "leaderboard_dir": None}
    overrides = {"width": 0.0625, "num_workers": 0, "logger": "none"}
    other = run_dir_for(dirs["runs_dir"], fast_config(lr=0.01))
    claim_run_dir(fast_config(lr=0.01), other)
    mine = run_dir_for(dirs["runs_dir"], fast_config())
    claim_run_dir(fast_config(), mine)
    (mine / "checkpoints").mkdir()
    (mine / "checkpoints" / "last.ckpt").write_bytes(b"an interrupted run")
    seen = {}

    def fake_train(cfg, run_dir, *a, prepared=None, **k):
        seen["run_dir"], seen["resume"] = run_dir, prepared.resume
        raise KeyboardInterrupt  # stop here: what bench would resume is all this test needs

    monkeypatch.setattr(bench_module, "train", fake_train)
    with pytest.raises(KeyboardInterrupt):
        bench_module.bench("synthetic", ["unet"], "smoke", overrides=overrides, **dirs)
    assert seen == {"run_dir": mine, "resume": mine / "checkpoints" / "last.ckpt"}
    assert sorted(p.name for p in other.iterdir()) == ["config.json"]


# --- hardware options: one line, exit 2, nothing touched ----------------------------------------
@pytest.mark.parametrize(
    ("argv", "cores", "message"),
    [
        (["--accelerator", "gpu"], 2, "--accelerator gpu: no CUDA GPU is visible"),
        (["--accelerator", "cuda"], 2, "--accelerator cuda: no CUDA GPU is visible"),
        (["--devices", "4"], 2, "--devices 4: this machine has 2 CPU core(s)"),
        (["--devices", "4"], 8, "--devices 4: 4 processes, but the synthetic validation split"),
    ],
)
def test_hardware_options_beyond_the_machine_or_the_splits_are_one_line(
    argv, cores, message, runs, capsys, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware_module, "cpu_cores", lambda: cores)
    for command in (["train"], ["bench", "--models", "unet"]):
        assert cli.main([*command, *FAST, "--accelerator", "cpu", *argv]) == 2
        assert message in one_error_line(capsys)
    assert not (runs / "synthetic").exists()  # no run folder


# --- records and leaderboards --------------------------------------------------------------------
def fake_record(model: str, created: str, profile: str = "smoke", **config) -> dict:
    cfg = resolve_config("synthetic", model, profile, **config)
    return {
        "model": model,
        "seed": 0,
        "labels": "manual",
        "profile": profile,
        "created": created,
        "config": cfg.to_dict(),
    }


def test_the_leaderboard_compares_one_profile_and_the_newest_config_of_each_model():
    old = fake_record("unet", "2024-01-01T00:00:00")
    new = fake_record("unet", "2024-01-02T00:00:00", lr=0.01)
    seg = fake_record("segnet", "2024-01-01T00:00:00")
    cpu = fake_record("unet", "2023-12-01T00:00:00", profile="cpu")
    chosen, left = select_records([old, new, seg, cpu])
    assert chosen == [new, seg] and left == [old, cpu]
    asked = {config_key(old["config"]): ("unet", "manual", "binary")}
    chosen, _ = select_records([old, new, seg, cpu], prefer=asked)
    assert chosen == [old, seg]  # bench passes the configurations it ran
    assert select_records([old, new, seg, cpu], profile="cpu")[0] == [cpu]


def test_a_model_whose_asked_configuration_failed_gets_no_row_not_an_older_one():
    # Every seed of the rerun at lr 0.01 failed: the table must not show the older lr as if it
    # were the asked configuration's result.
    old = fake_record("unet", "2024-01-01T00:00:00")
    seg = fake_record("segnet", "2024-01-01T00:00:00")
    rerun = resolve_config("synthetic", "unet", "smoke", lr=0.01)
    asked = {config_key(rerun): ("unet", "manual", "binary")}
    chosen, left = select_records([old, seg], prefer=asked)
    assert chosen == [seg] and left == [old]
    assert missing_asked(chosen, asked) == ["unet (manual labels)"]
    assert missing_asked([old, seg], asked) == []


def test_the_method_study_applies_what_bench_asked_to_its_own_target_only():
    binary = fake_record("unet", "2024-01-01T00:00:00")
    boundary = fake_record("unet", "2024-01-02T00:00:00", target="boundary3")
    failed = resolve_config("synthetic", "unet", "smoke", lr=0.01)  # asked binary, failed
    asked = {config_key(failed): ("unet", "manual", "binary")}
    assert select_by_target([binary, boundary], "smoke", asked) == [boundary]
    assert select_records([binary, boundary], "smoke", asked)[0] == []


def test_a_failed_target_is_named_where_the_model_keeps_a_row_from_another():
    # bench --set target=boundary3 failed for unet: its row comes from binary, and the user is
    # told so instead of reading the binary row as the boundary3 result.
    binary = fake_record("unet", "2024-01-01T00:00:00")
    seg = fake_record("segnet", "2024-01-01T00:00:00", target="boundary3")
    asked = {
        config_key(resolve_config("synthetic", m, "smoke", target="boundary3")): (
            m,
            "manual",
            "boundary3",
        )
        for m in ("unet", "segnet", "resunet")
    }
    by_target = select_by_target([binary, seg], "smoke", asked)
    assert by_target == [binary, seg]
    # resunet has no row at all: missing_asked names it, not this.
    assert missing_targets(by_target, by_target, asked) == [
        "unet (manual labels), target boundary3"
    ]
    assert missing_targets(by_target, by_target, None) == []
    # A weak-label run is on the leaderboard but never in the method study: not "failed".
    weak = fake_record("unet", "2024-01-03T00:00:00", labels="floodfill")
    weak["labels"] = "floodfill"
    asked_weak = {config_key(weak["config"]): ("unet", "floodfill", "binary")}
    assert missing_targets(by_target, [*by_target, weak], asked_weak) == []


def test_a_seed_held_twice_by_one_configuration_counts_once_the_newest():
    # A record under its name from before keys (unet__seed0.json) and a keyed copy of the run.
    legacy = fake_record("unet", "2024-01-01T00:00:00")
    keyed = fake_record("unet", "2024-01-03T00:00:00")
    seed1 = {**fake_record("unet", "2024-01-02T00:00:00"), "seed": 1}
    chosen, left = select_records([legacy, keyed, seed1])
    assert chosen == [keyed, seed1] and left == [legacy]


def test_a_record_under_its_name_from_before_keys_is_found_not_rerun(tmp_path):
    cfg = resolve_config("synthetic", "unet", "smoke")
    legacy = tmp_path / "synthetic" / "unet__seed0.json"
    legacy.parent.mkdir()
    legacy.write_text(json.dumps(fake_record("unet", "2024-01-01T00:00:00")))
    assert record_path_for(tmp_path, cfg) == legacy
    other = resolve_config("synthetic", "unet", "smoke", lr=0.5)  # another configuration
    assert record_path_for(tmp_path, other).name == f"unet__seed0__{config_key(other)}.json"


def test_leaderboard_after_train_finds_its_record_and_writes_beside_the_records(runs, capsys):
    assert cli.main(["train", *FAST, "--lr", "0.01"]) == 0
    capsys.readouterr()
    assert cli.main(["leaderboard", "--dataset", "synthetic"]) == 0
    md = (runs / "results" / "leaderboards" / "synthetic.md").read_text()
    assert "| unet |" in md and capsys.readouterr().out.startswith("# synthetic leaderboard")
    reproduce = next(line for line in md.splitlines() if "**Reproduce**" in line)
    # The models and every option the profile does not set (the CLI's width, the lr).
    assert "MODELS=unet ARGS='--set lr=0.01 --set width=0.0625'" in reproduce


def test_a_leaderboard_of_a_profile_without_records_names_the_profiles_there(runs, capsys):
    assert cli.main(["train", *FAST]) == 0
    capsys.readouterr()
    assert cli.main(["leaderboard", "--dataset", "synthetic", "--profile", "paper"]) == 2
    line = one_error_line(capsys)
    assert "no result records of profile 'paper'" in line and "holds profiles smoke" in line


def committed_board(tmp_path):
    """A leaderboards/ folder of a git checkout holding a committed synthetic.md."""
    checkout = tmp_path / "checkout"
    board = checkout / "leaderboards"
    board.mkdir(parents=True)
    (board / "synthetic.md").write_text("the published table\n")
    git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "leaderboards"], check=True)
    subprocess.run([*git, "commit", "-qm", "tables"], check=True)
    return board


def test_committed_leaderboards_are_kept_unless_forced(runs, tmp_path, capsys):
    board = committed_board(tmp_path)
    assert cli.main(["train", *FAST]) == 0
    capsys.readouterr()
    argv = ["leaderboard", "--dataset", "synthetic", "--leaderboard-dir", str(board)]
    assert cli.main(argv) == 2
    assert f"{board / 'synthetic.md'} is a committed leaderboard" in one_error_line(capsys)
    assert (board / "synthetic.md").read_text() == "the published table\n"
    assert not (board / "synthetic.csv").exists()
    assert cli.main([*argv, "--force"]) == 0
    assert (board / "synthetic.md").read_text().startswith("# synthetic leaderboard")


def test_a_bench_refuses_a_committed_leaderboard_before_its_search(runs, tmp_path, monkeypatch):
    # The refusal came after every model's search: hours of trials, then nothing written.
    import seg_bench.search as search
    from seg_bench.protocol.bench import bench

    board = committed_board(tmp_path)

    def no_search(*args, **kwargs):
        raise AssertionError("searched before the leaderboard was checked")

    monkeypatch.setattr(search, "run_search", no_search)
    with pytest.raises(UserError, match="is a committed leaderboard"):
        bench("synthetic", models=["unet"], profile="smoke", trials=3, leaderboard_dir=board)
