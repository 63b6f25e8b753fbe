"""From a RunConfig to the DataModule and the Task: every option arrives, each is checked once."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from seg_bench.config import RunConfig
from seg_bench.data import create_datamodule
from seg_bench.errors import UserError
from seg_bench.training.trainer import build_datamodule, build_task


def test_build_datamodule_passes_every_data_option():
    cfg = RunConfig(
        dataset="synthetic",
        patch_size=32,
        batch_size=3,
        num_workers=0,
        augment="paper",
        augment_params={"p_elastic": 0.5},
        samples_per_epoch=5,
        foreground_bias=0.25,
        seed=7,
        labels="region",
        weak_label_options={"jitter": 1.5, "threshold": 0.2},
        dataset_options={"n_train": 2, "image_size": 48},
    )
    dm = build_datamodule(cfg)
    assert (dm.root, dm.patch_size, dm.batch_size, dm.num_workers) == (None, 32, 3, 0)
    assert (dm.augment_name, dm.augment_params) == ("paper", {"p_elastic": 0.5})
    assert (dm.samples_per_epoch, dm.foreground_bias, dm.seed) == (5, 0.25, 7)
    assert (dm.counts["train"], dm.image_size) == (2, 48)  # dataset_options
    source = dm.label_source
    assert (source.name, source.seed) == ("region", 7)
    assert (source.click, source.options) == ({"jitter": 1.5}, {"threshold": 0.2})


def test_build_task_passes_every_model_and_optimisation_option():
    cfg = RunConfig(
        model="unet",
        width=0.0625,
        model_options={"depth": 3},
        loss="dice",
        optimizer="sgd",
        lr=0.05,
        weight_decay=1e-4,
        momentum=0.8,
        schedule="cosine",
        warmup=0.1,
        overlap=0.5,
        postprocess={"min_size": 9},
        target="boundary3",
        target_options={"boundary_weight": 3.0},
    )
    dm = SimpleNamespace(
        in_channels=3, num_classes=2, patch_size=48, input_options=lambda: {"invert_bright": True}
    )
    expected = {
        "model": "unet",
        "in_channels": 3,
        "num_classes": 2,
        "width": 0.0625,
        "model_options": {"depth": 3},
        "loss": "dice",
        "optimizer": "sgd",
        "lr": 0.05,
        "weight_decay": 1e-4,
        "momentum": 0.8,
        "schedule": "cosine",
        "warmup": 0.1,
        "target": "boundary3",
        "target_options": {"boundary_weight": 3.0},
        "window": 256,  # max(patch, 256) when the config sets none
        "overlap": 0.5,
        "postprocess": {"min_size": 9},
        "input_options": {"invert_bright": True},  # the dataset's, for predict
    }
    assert dict(build_task(cfg, dm).hparams) == expected
    cfg.window = 64
    assert build_task(cfg, dm).hparams["window"] == 64


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("patch_size", 8, "--patch-size must be >= 16, got 8"),
        ("batch_size", 0, "--batch-size must be >= 1, got 0"),
        ("foreground_bias", 1.5, r"--foreground-bias must be in \[0, 1\], got 1.5"),
        ("foreground_bias", -0.1, r"--foreground-bias must be in \[0, 1\], got -0.1"),
    ],
)
def test_config_checks_data_option_values_naming_the_option(field, value, message):
    with pytest.raises(UserError, match=message):
        RunConfig(**{field: value}).validate()


def test_the_datamodule_checks_the_patch_size_against_the_data():
    dm = create_datamodule("synthetic", n_train=1, n_val=1, n_test=1, image_size=64, patch_size=80)
    with pytest.raises(UserError, match=r"--patch-size 80 is larger than .* \(64px\)"):
        dm.setup("fit")
