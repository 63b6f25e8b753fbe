"""2-process DDP on the CPU (gloo): validation metrics cover the whole validation set."""

import os
import subprocess
import sys

import pytest
import torch
from lightning.fabric.utilities.distributed import _suggested_max_num_threads

from seg_bench.config import resolve_config
from seg_bench.training.task import SegmentationTask
from seg_bench.training.trainer import build_datamodule, build_trainer

pytestmark = pytest.mark.slow

# Three validation images: two processes hold two and one; a per-shard metric would differ
# from the whole-set metric, and Lightning's default sampler would score one image twice.
DATA = "dataset_options={n_train: 4, n_val: 3, n_test: 1, image_size: 80}"


def test_ddp_validation_metrics_cover_the_whole_validation_set(tmp_path):
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "seg_bench.cli",
        "train",
        "--profile",
        "smoke",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--accelerator",
        "cpu",
        "--precision",
        "32",
        "--set",
        DATA,
        "--set",
        "max_epochs=2",
        "--run-dir",
        str(run),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    state = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint"))
    ddp_iou = float(state["current_score"])

    # The same weights validated by one process over all three images.
    cfg = resolve_config(
        "synthetic",
        "unet",
        "smoke",
        precision="32",
        accelerator="cpu",
        dataset_options={"n_train": 4, "n_val": 3, "n_test": 1, "image_size": 80},
    )
    dm = build_datamodule(cfg)
    task = SegmentationTask.load_from_checkpoint(last, map_location="cpu")
    trainer, _, _ = build_trainer(cfg, tmp_path / "single", progress=False)
    # With the threads of a DDP rank (Lightning's suggestion for 2 processes), so that
    # convolutions sum in the same order and no logit near 0 flips a pixel.
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", _suggested_max_num_threads(2))))
    try:
        single = trainer.validate(task, datamodule=dm, verbose=False)[0]
    finally:
        torch.set_num_threads(threads)
    assert ddp_iou == pytest.approx(single["val/iou"], abs=1e-6)

    # And it is not what either shard alone would give.
    shard_ious = []
    for ids in ([0, 2], [1]):
        dm_shard = build_datamodule(cfg)
        dm_shard._prepared["val"] = [dm_shard.samples("val")[i] for i in ids]
        trainer, _, _ = build_trainer(cfg, tmp_path / f"shard{ids[0]}", progress=False)
        shard_ious.append(trainer.validate(task, datamodule=dm_shard, verbose=False)[0]["val/iou"])
    assert all(abs(s - ddp_iou) > 1e-4 for s in shard_ious)
