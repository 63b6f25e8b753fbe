"""Every real dataset sample trains and tests end to end on the smoke profile."""

import os
import subprocess

import pytest
from conftest import REPO, real_data

from seg_bench.protocol.bench import bench

pytestmark = [pytest.mark.data, pytest.mark.slow]

CASES = {
    "isbi2012": ("isbi2012", ["vrand", "vinfo", "vrand_thinned", "vinfo_thinned"]),
    "epfl": ("epfl_mito", []),
    "ncmir": ("ncmir_mito", []),
    "dsb2018": ("dsb2018", ["dsb_map"]),
}


@pytest.mark.parametrize("dataset", sorted(CASES))
def test_smoke_bench_on_real_sample(dataset, tmp_path):
    folder, extra = CASES[dataset]
    root = real_data(folder)
    [record] = bench(
        dataset,
        models=["unet"],
        profile="smoke",
        results_dir=tmp_path / "res",
        runs_dir=tmp_path / "runs",
        leaderboard_dir=tmp_path / "lb",
        overrides={"root": str(root), "logger": "none"},
    )
    overall = record["metrics"]["overall"]
    for key in ["iou", "dice", "kappa", "auroc", "fnr", "fpr", *extra]:
        assert key in overall and overall[key] == overall[key], key  # present and not NaN
    assert record["data"]["root"] == str(root)  # the leaderboard names the folder it read
    split = record["data"]["splits"]
    assert not set(split["train"]) & set(split["test"])  # no leakage between splits
    assert (tmp_path / "lb" / f"{dataset}.md").read_text().count("| unet |") == 1


def test_make_bench_isbi2012_smoke(tmp_path):
    root = real_data("isbi2012")
    env = {**os.environ, "SEG_BENCH_RUNS": str(tmp_path / "runs")}
    done = subprocess.run(
        [
            "make",
            "-s",
            "bench",
            "DATASET=isbi2012",
            "PROFILE=smoke",
            "SEEDS=1",
            "MODELS=unet,segnet",
            f"ROOT={root}",
            f"LEADERBOARDS={tmp_path / 'lb'}",
            "ARGS=--logger none",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    board = (tmp_path / "lb" / "isbi2012.md").read_text()
    assert "| unet |" in board and "| segnet |" in board and "V_rand" in board
    assert len(list((tmp_path / "runs" / "results" / "isbi2012").glob("*.json"))) == 2


def test_description_names_the_folder_found_through_seg_bench_data(monkeypatch):
    root = real_data("isbi2012")
    monkeypatch.setenv("SEG_BENCH_DATA", str(root.parent))
    from seg_bench.data import create_datamodule

    assert create_datamodule("isbi2012", patch_size=64).describe()["root"] == str(root)
