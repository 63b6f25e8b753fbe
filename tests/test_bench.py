"""The protocol end to end on the smoke profile: records, resume, leaderboard, user errors."""

import contextlib
import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from seg_bench.cli import main
from seg_bench.config import resolve_config
from seg_bench.errors import UserError
from seg_bench.models import MODELS
from seg_bench.protocol.bench import bench
from seg_bench.protocol.records import load_records, record_path_for, select_records
from seg_bench.training.run_dir import config_key


# A model small enough for the protocol tests below, registered in-process. The README's recipe
# itself (a user's file through --plugin, $SEG_BENCH_PLUGINS or an entry point, run by the
# command) is proven in tests/test_plugins.py.
@MODELS.register("toy_fcn", "two 3x3 convolutions (test-only)")
def toy_fcn(in_channels: int = 1, classes: int = 1, width: float = 1.0) -> nn.Module:
    c = max(4, int(16 * width))
    return nn.Sequential(
        nn.Conv2d(in_channels, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, classes, 3, padding=1)
    )


@pytest.fixture
def dirs(tmp_path):
    return {
        "results_dir": tmp_path / "results",
        "runs_dir": tmp_path / "runs",
        "leaderboard_dir": tmp_path / "lb",
    }


def test_registered_toy_model_is_trained_benched_and_ranked(dirs):
    records = bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=2, **dirs)
    assert [(r["model"], r["seed"]) for r in records] == [("toy_fcn", 0), ("toy_fcn", 1)]
    rec = records[0]
    assert rec["params"] == sum(p.numel() for p in toy_fcn(width=0.125).parameters())
    overall = rec["metrics"]["overall"]
    for key in ("iou", "dice", "accuracy", "auroc", "fnr", "fpr", "dsb_map"):
        assert 0.0 <= overall[key] <= 1.0, key
    assert -1.0 <= overall["kappa"] <= 1.0
    assert len(rec["metrics"]["per_image"]) == 2  # the smoke test split
    assert rec["hardware"]["cores"] >= 1 and rec["commit"]
    assert rec["precision"] in ("32-true", "bf16-mixed", "16-mixed")
    md = (dirs["leaderboard_dir"] / "synthetic.md").read_text()
    assert f"precision {rec['precision']}" in md
    assert "| toy_fcn |" in md and "PROFILE=smoke SEEDS=2" in md
    rows = list(csv.DictReader(open(dirs["leaderboard_dir"] / "synthetic.csv")))
    assert rows[0]["model"] == "toy_fcn" and rows[0]["seeds"] == "2"
    assert float(rows[0]["iou"]) == pytest.approx(
        (records[0]["metrics"]["overall"]["iou"] + records[1]["metrics"]["overall"]["iou"]) / 2
    )


def test_rerun_skips_finished_pairs_and_force_redoes_them(dirs, monkeypatch):
    bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, **dirs)
    path = record_path_for(dirs["results_dir"], resolve_config("synthetic", "toy_fcn", "smoke"))
    first = json.loads(path.read_text())

    import seg_bench.protocol.bench as bench_module

    def fail(*a, **k):
        raise AssertionError("a finished (model, seed) pair was retrained")

    monkeypatch.setattr(bench_module, "run_one", fail)
    bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, **dirs)
    monkeypatch.undo()
    bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, force=True, **dirs)
    assert json.loads(path.read_text())["created"] >= first["created"]
    assert len(load_records(dirs["results_dir"], "synthetic")) == 1


def test_a_killed_force_rerun_leaves_no_record_naming_removed_checkpoints(dirs, monkeypatch):
    import seg_bench.protocol.bench as bench_module
    from seg_bench.protocol.retest import preview_path

    bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, **dirs)
    path = record_path_for(dirs["results_dir"], resolve_config("synthetic", "toy_fcn", "smoke"))
    assert path.exists() and preview_path(path).exists()

    def killed(*a, **k):
        raise KeyboardInterrupt  # the --force rerun dies after removing the old run folder

    monkeypatch.setattr(bench_module, "train", killed)
    with pytest.raises(KeyboardInterrupt):
        bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, force=True, **dirs)
    assert not path.exists() and not preview_path(path).exists()
    monkeypatch.undo()
    # The plain rerun trains again instead of calling the pair done with its checkpoint gone.
    [record] = bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, **dirs)
    assert path.exists() and Path(record["checkpoint"]).is_file()


def test_force_never_empties_a_folder_that_is_not_one_runs(tmp_path):
    from seg_bench.training.run_dir import claim_run_dir

    runs = tmp_path / "runs"
    for name in ("a", "b"):  # two runs under one parent: --run-dir runs --force
        (runs / name / "checkpoints").mkdir(parents=True)
        (runs / name / "config.json").write_text("{}")
        (runs / name / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    cfg = resolve_config("synthetic", "toy_fcn", "smoke")
    with pytest.raises(UserError, match=r"runs: --force replaces one run's folder.*nothing was"):
        claim_run_dir(cfg, runs, force=True)
    assert (runs / "a" / "checkpoints" / "best.ckpt").read_bytes() == b"weights"


def test_a_record_named_by_an_older_key_is_found_and_not_retrained(dirs, monkeypatch):
    # Records made while bf16_exclude was part of the key carry that key in their file name.
    bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, **dirs)
    cfg = resolve_config("synthetic", "toy_fcn", "smoke")
    path = record_path_for(dirs["results_dir"], cfg)
    old = json.loads(path.read_text())
    old["config"]["bf16_exclude"] = {"resunet": "an exclusion since lifted"}
    older = path.with_name("toy_fcn__seed0__0badc0de.json")
    older.write_text(json.dumps(old))
    path.unlink()
    failed = path.with_name("toy_fcn__seed0__feedf00d.failed.json")
    failed.write_text(json.dumps(old))  # a failure note is never taken for the record
    assert record_path_for(dirs["results_dir"], cfg) == older

    import seg_bench.protocol.bench as bench_module

    def fail(*a, **k):
        raise AssertionError("a finished run under an older key name was retrained")

    monkeypatch.setattr(bench_module, "run_one", fail)
    records = bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, **dirs)
    assert records[0]["created"] == old["created"] and not path.exists()
    other = resolve_config("synthetic", "toy_fcn", "smoke", lr=0.5)  # a configuration of its own
    assert record_path_for(dirs["results_dir"], other).name.endswith(f"{config_key(other)}.json")


@pytest.fixture
def every_change_reaches_every_record(monkeypatch):
    """Version 2 changed DSB scoring only; here it reaches the synthetic records too."""
    from seg_bench.evaluation import evaluate

    monkeypatch.setattr(evaluate, "VERSION_CHANGES", {2: ("a change", lambda record: True)})


@pytest.mark.usefixtures("every_change_reaches_every_record")
def test_rescore_retests_an_older_evaluation_from_the_checkpoint_without_training(
    dirs, monkeypatch
):
    from seg_bench.evaluation.evaluate import EVALUATION_VERSION

    bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, **dirs)
    path = record_path_for(dirs["results_dir"], resolve_config("synthetic", "toy_fcn", "smoke"))
    first = json.loads(path.read_text())
    old = json.loads(path.read_text())  # as an older evaluation wrote it: no version, stale IoU
    del old["metrics"]["evaluation_version"]
    old["metrics"]["overall"]["iou"] = -1.0
    path.write_text(json.dumps(old))

    import seg_bench.protocol.bench as bench_module

    def fail(*a, **k):
        raise AssertionError("rescoring retrained a finished pair")

    monkeypatch.setattr(bench_module, "run_one", fail)
    bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, **dirs)
    assert json.loads(path.read_text())["metrics"]["overall"]["iou"] == -1.0  # no --rescore
    md = (dirs["leaderboard_dir"] / "synthetic.md").read_text()
    assert "evaluation v1" in md

    bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, rescore=True, **dirs)
    new = json.loads(path.read_text())
    assert new["metrics"]["evaluation_version"] == EVALUATION_VERSION
    # The same checkpoint and test images: the scores the first evaluation gave.
    assert new["metrics"]["overall"] == pytest.approx(first["metrics"]["overall"])
    assert {k: new[k] for k in ("created", "train_time_s", "commit", "checkpoint")} == {
        k: first[k] for k in ("created", "train_time_s", "commit", "checkpoint")
    }
    assert new["rescored"]["created"] >= first["created"] and new["rescored"]["hardware"]
    md = (dirs["leaderboard_dir"] / "synthetic.md").read_text()
    assert f"evaluation v{EVALUATION_VERSION}" in md
    assert "evaluation versions mixed" not in md  # "mixed" alone: precision bf16-mixed


def test_tta_tests_the_plain_runs_network_without_training_it_again(dirs, monkeypatch):
    bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, **dirs)
    plain_path = record_path_for(
        dirs["results_dir"], resolve_config("synthetic", "toy_fcn", "smoke")
    )
    plain_text = plain_path.read_text()
    plain = json.loads(plain_text)

    import seg_bench.protocol.bench as bench_module

    def fail(*a, **k):
        raise AssertionError("a test-time option retrained the network")

    monkeypatch.setattr(bench_module, "run_one", fail)
    (tta,) = bench(
        "synthetic", models=["toy_fcn"], profile="smoke", seeds=1, overrides={"tta": True}, **dirs
    )
    path = record_path_for(
        dirs["results_dir"], resolve_config("synthetic", "toy_fcn", "smoke", tta=True)
    )
    assert path != plain_path and json.loads(path.read_text()) == tta
    assert plain_path.read_text() == plain_text  # the plain record is untouched
    assert tta["config"]["tta"] is True and tta["metrics"]["tta"] is True
    assert plain["metrics"]["tta"] is False
    same = ("checkpoint", "train_time_s", "curve", "commit", "params")
    assert {k: tta[k] for k in same} == {k: plain[k] for k in same}
    assert tta["tested"]["from"] == plain_path.name and tta["tested"]["hardware"]
    # Newer than its twin, so a plain `leaderboard` shows the variant that was asked for last.
    assert tta["created"] == tta["tested"]["created"] >= plain["created"]
    (shown,), _ = select_records(load_records(dirs["results_dir"], "synthetic"))
    assert shown["config"]["tta"] is True
    md = (dirs["leaderboard_dir"] / "synthetic.md").read_text()
    assert "ARGS='--set tta=true'" in md and "test variant scored at" in md


def test_tta_on_a_fresh_folder_trains_the_plain_run_once_and_records_both(dirs):
    records = bench(
        "synthetic", models=["toy_fcn"], profile="smoke", seeds=2, overrides={"tta": True}, **dirs
    )
    assert [(r["seed"], r["config"]["tta"]) for r in records] == [(0, True), (1, True)]
    every = load_records(dirs["results_dir"], "synthetic")
    assert sorted((r["seed"], r["config"]["tta"]) for r in every) == [
        (0, False),
        (0, True),
        (1, False),
        (1, True),
    ]
    plain = {r["seed"]: r for r in every if not r["config"]["tta"]}
    assert all(r["checkpoint"] == plain[r["seed"]]["checkpoint"] for r in records)


@pytest.mark.parametrize("reached", [True, False])
def test_rescore_of_a_v1_record_whose_checkpoint_is_gone(dirs, request, reached):
    """Reached by a later change: --rescore says to retrain. Not reached (v2 changed DSB's
    method study only, v3 watershed splitting and hole filling; EPFL's v1 records have lost
    their checkpoints): it is left alone."""
    if reached:
        request.getfixturevalue("every_change_reaches_every_record")
    # Without the synthetic profile's watershed, no change reaches the record unless forced.
    plain = {"overrides": {"postprocess": {"watershed": False}}}
    bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, **plain, **dirs)
    cfg = resolve_config("synthetic", "toy_fcn", "smoke", **plain["overrides"])
    path = record_path_for(dirs["results_dir"], cfg)
    old = json.loads(path.read_text())
    del old["metrics"]["evaluation_version"]
    old["checkpoint"] = str(dirs["runs_dir"] / "gone.ckpt")
    path.write_text(json.dumps(old))
    gone = "cannot rescore, its checkpoint .*gone.ckpt is gone"
    with pytest.raises(UserError, match=gone) if reached else contextlib.nullcontext():
        bench(
            "synthetic", models=["toy_fcn"], profile="smoke", seeds=1, rescore=True,
            **plain, **dirs,
        )  # fmt: skip
    assert json.loads(path.read_text()) == old  # nothing half-written, nothing redone


def test_damaged_record_is_redone(dirs):
    path = record_path_for(dirs["results_dir"], resolve_config("synthetic", "toy_fcn", "smoke"))
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "metr')  # a truncated write from an older tool
    bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, **dirs)
    assert json.loads(path.read_text())["model"] == "toy_fcn"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--models", "unet,nope", "--profile", "smoke"], "unknown model 'nope'"),
        (["bench", "--dataset", "nope", "--profile", "smoke"], "unknown dataset 'nope'"),
        (["bench", "--profile", "huge"], "unknown profile 'huge'"),
        (["train", "--profile", "smoke", "--lr", "-1"], "--lr must be positive"),
        (["train", "--profile", "smoke", "--loss", "l1"], "unknown loss 'l1'"),
        (["train", "--profile", "smoke", "--optimizer", "lion"], "unknown optimizer 'lion'"),
        (["train", "--profile", "smoke", "--set", "bogus=1"], "unknown config keys ['bogus']"),
        (["bench", "--seeds", "0", "--profile", "smoke"], "--seeds must be at least 1"),
    ],
)
def test_user_errors_are_one_line_without_traceback(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_leaderboard_without_records_says_what_to_run(tmp_path):
    with pytest.raises(UserError, match="run `seg-bench bench --dataset synthetic`"):
        from seg_bench.protocol.report import write_leaderboard

        write_leaderboard("synthetic", tmp_path / "none", tmp_path / "lb")


def test_label_source_study_trains_on_weak_labels_and_tests_on_manual(dirs):
    for labels in ("manual", "floodfill", "region"):
        bench(
            "synthetic", models=["toy_fcn"], profile="smoke", overrides={"labels": labels}, **dirs
        )
    records = load_records(dirs["results_dir"], "synthetic")
    assert sorted(r["labels"] for r in records) == ["floodfill", "manual", "region"]
    for r in records:
        quality = r["data"]["weak_label_quality"]
        assert ("train" in quality) == (r["labels"] != "manual")
        # Test images are always the manual masks: the same ids and truth for every source.
        assert [im["id"] for im in r["metrics"]["per_image"]] == ["test-0000", "test-0001"]
    truth_pixels = {sum(sum(im["confmat"][1]) for im in r["metrics"]["per_image"]) for r in records}
    assert len(truth_pixels) == 1
    from seg_bench.protocol.report import write_leaderboard

    md = write_leaderboard("synthetic", dirs["results_dir"], dirs["leaderboard_dir"], by="labels")
    assert "kappa (floodfill)" in md and "FNR (region)" in md
    assert "| floodfill |" in md and "| region |" in md  # weak-label quality rows
    board = (dirs["leaderboard_dir"] / "synthetic.md").read_text()  # written by the last bench
    assert (
        "| toy_fcn |" in board and "floodfill" not in board
    )  # the leaderboard ranks manual-mask runs
    assert (dirs["leaderboard_dir"] / "synthetic_labels.md").read_text() == md


def test_a_changed_config_is_refused_in_a_run_folder_and_force_starts_afresh(tmp_path, capsys):
    from seg_bench.training.run_dir import resume_matches
    from seg_bench.training.trainer import train

    cfg = resolve_config("synthetic", "toy_fcn", "smoke", max_epochs=2)
    train(cfg, tmp_path, progress=False)
    assert resume_matches(cfg, tmp_path)
    shorter = resolve_config("synthetic", "toy_fcn", "smoke", max_epochs=1)
    assert not resume_matches(shorter, tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(UserError, match=r"another configuration \(max_epochs 2 -> 1\).*--force"):
        train(shorter, tmp_path, progress=False)
    assert last.read_bytes() == before  # refused before anything was touched
    result = train(shorter, tmp_path, progress=False, force=True)
    assert result.epochs == 1
    assert "--force: removing" in capsys.readouterr().err


def test_auto_precision_is_measured_and_the_record_states_the_choice(dirs, monkeypatch):
    import seg_bench.training.precision as prec

    ms = {"fp32": 349.0, "fp32+cl": 340.0, "bf16": 226.0, "bf16+cl": 164.0}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(prec, "isolated_timer", lambda *a: lambda name, limit: [ms[name]] * 3)
    monkeypatch.setenv("SEG_BENCH_CACHE", str(dirs["runs_dir"] / "cache"))  # a fresh cache
    monkeypatch.setattr(prec, "BF16_PROVEN", ("toy_fcn",))  # as if the benchmark covered it
    monkeypatch.setattr(prec, "planned_steps", lambda cfg: 10**4)  # as if long enough to time
    [rec] = bench("synthetic", models=["toy_fcn"], profile="smoke", seeds=1, **dirs)
    choice = rec["precision_choice"]
    assert rec["precision"] == "bf16-mixed" and choice["channels_last"] is True
    assert choice["setting"] == "bf16+cl" and choice["ms_per_step"] == ms
    assert choice["ratio"] == pytest.approx(349 / 164)
    assert json.loads(open(choice["cache_file"]).read())["ms_per_step"] == ms
    md = (dirs["leaderboard_dir"] / "synthetic.md").read_text()
    assert "precision bf16-mixed" in md


def test_rescoring_refuses_a_split_other_than_the_one_the_network_trained_with(tmp_path):
    # Today's data module could hold other test images (a changed split rule, new files): the
    # record kept the old split, describing images that were not the ones tested.
    from seg_bench.protocol.retest import check_same_split

    trained = {"dataset": "ncmir", "data": {"splits": {"train": [1, 2], "test": [4, 5, 6]}}}
    check_same_split({"test": ["4", "5", "6"], "val": ["3"]}, trained, tmp_path / "r.json")
    check_same_split({"test": ["9"]}, {"dataset": "ncmir"}, tmp_path / "r.json")  # no split kept
    with pytest.raises(UserError, match=r"r\.json: the test split of ncmir today is not the one"):
        check_same_split({"test": ["4", "5", "7"]}, trained, tmp_path / "r.json")
    # Only the images today's split leaves out as unscored may be missing (DSB Usage Ignored).
    check_same_split({"test": ["4", "6"]}, trained, tmp_path / "r.json", ignored_test=["5"])
    with pytest.raises(UserError, match="the test split"):
        check_same_split({"test": ["4"]}, trained, tmp_path / "r.json", ignored_test=["5"])
