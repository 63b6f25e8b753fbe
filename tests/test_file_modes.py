"""Every output is as readable as the user's umask makes any new file: a lab mate on a shared
cluster can open results written under umask 022, nobody else those written under 077."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import seg_bench.cli as cli
from seg_bench.io import atomic_write, current_umask, new_file_mode


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def modes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode)
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".")  # lock files are not outputs
    }


def test_the_umask_is_read_without_changing_it(umask):
    assert current_umask() == umask and os.umask(umask) == umask
    assert new_file_mode() == 0o666 & ~umask


def test_atomic_write_gives_the_mode_open_gives(umask, tmp_path):
    with open(tmp_path / "plain", "w") as f:
        f.write("x")
    with atomic_write(tmp_path / "atomic") as f:
        f.write("x")
    assert modes(tmp_path)["atomic"] == modes(tmp_path)["plain"] == 0o666 & ~umask


def test_every_kind_of_output_follows_the_umask(umask, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "RUNS_DIR", tmp_path / "runs")
    fast = ["--profile", "smoke", "--width", "0.0625", "--set", "num_workers=0", "--logger", "none"]
    assert cli.main(["bench", "--models", "unet", *fast]) == 0
    ckpt = next((tmp_path / "runs" / "synthetic").glob("unet__*/checkpoints/best.ckpt"))
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray((np.arange(64 * 64) % 251).reshape(64, 64).astype(np.uint8)).save(
        images / "a.png"
    )
    (tmp_path / "points.csv").write_text("image,x,y\na.png,10,10\n")
    predict = ["predict", "--checkpoint", str(ckpt), "--input", str(images)]
    out = tmp_path / "pred"
    assert (
        cli.main(
            [*predict, "--output", str(out), "--instances", "--dsb-csv", str(tmp_path / "sub.csv")]
        )
        == 0
    )
    weak = ["weak-labels", "--images", str(images), "--points", str(tmp_path / "points.csv")]
    assert cli.main([*weak, "--output", str(tmp_path / "weak")]) == 0
    found = modes(tmp_path)
    expected_kinds = [
        "runs/results/synthetic/unet__seed0__",  # record and preview arrays
        "runs/results/leaderboards/synthetic.md",
        "runs/results/leaderboards/synthetic.csv",
        "runs/results/leaderboards/synthetic/roc.png",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "config.json",
        "pred/a_mask.png",
        "pred/a_prob.tif",
        "pred/a_instances.tif",
        "sub.csv",
        "weak/a.tif",
    ]
    for kind in expected_kinds:
        assert any(kind in name for name in found), (kind, sorted(found))
    wrong = {name: oct(mode) for name, mode in found.items() if mode != 0o666 & ~umask}
    assert not wrong, wrong
