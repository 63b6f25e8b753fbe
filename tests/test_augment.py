"""Augmentation presets: shapes and dtypes, labels kept aligned and intact, overrides, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import seg_bench.data.augment.presets as augment_module
from seg_bench.data.augment.presets import PRESETS, build_augment, override_names
from seg_bench.data.augment.transforms import (
    FloatBrightnessContrast,
    FloatGamma,
    FloatGaussianBlur,
    FloatGaussNoise,
    labels_for_cv2,
)
from seg_bench.data.base import RandomPatchDataset, Sample, _PreparedSample
from seg_bench.errors import UserError

GEOMETRIC_STEPS = {"d4", "elastic", "grid", "piecewise", "affine"}
SHAPE = (64, 64)


def sample(channels: int = 1, seed: int = 0):
    """Disc instances with ids above 2**24 (a float32 round trip would show), an image made from
    them (bright discs on a dark background, slightly outside [0, 1]) and the binary mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    instances = np.zeros(SHAPE, np.int32)
    for k in rng.choice(2**30, 10, replace=False) + 2**24 + 1:
        cy, cx, r = rng.integers(8, 56, size=2).tolist() + [int(rng.integers(5, 10))]
        instances[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    mask = (instances > 0).astype(np.uint8)
    image = np.repeat((mask * 1.1 - 0.05).astype(np.float32)[..., None], channels, axis=2)
    return image, mask, instances


def all_steps_on(preset: str, **extra) -> dict:
    return {f"p_{s.name}": 1.0 for s in PRESETS[preset]} | extra


def test_none_is_no_augmentation():
    assert build_augment("none") is None


@pytest.mark.parametrize("preset", ["d4", "paper", "heavy"])
@pytest.mark.parametrize("channels", [1, 3])
def test_presets_keep_shapes_dtypes_and_label_sets(preset, channels):
    image, mask, instances = sample(channels)
    for overrides in ({}, all_steps_on(preset)):
        aug = build_augment(preset, **overrides)
        for _ in range(3):
            out = aug(image=image, mask=mask, instances=instances)
            assert out["image"].shape == image.shape and out["image"].dtype == np.float32
            assert out["mask"].shape == SHAPE and out["mask"].dtype == np.uint8
            assert out["instances"].shape == SHAPE and out["instances"].dtype == np.int32
            assert np.isfinite(out["image"]).all()
            assert set(np.unique(out["instances"])) <= set(np.unique(instances)) | {0}
            assert set(np.unique(out["mask"])) <= {0, 1}
            np.testing.assert_array_equal(out["mask"], (out["instances"] > 0).astype(np.uint8))


def test_d4_keeps_image_and_labels_exactly_aligned():
    image, mask, instances = sample(3)
    aug = build_augment("d4")
    seen = set()
    for _ in range(24):
        out = aug(image=image, mask=mask, instances=instances)
        np.testing.assert_array_equal(out["mask"], (out["image"][..., 0] > 0.5).astype(np.uint8))
        np.testing.assert_array_equal(out["mask"], (out["instances"] > 0).astype(np.uint8))
        seen.add(out["image"].tobytes())
    assert len(seen) > 4  # several of the 8 symmetries were drawn


@pytest.mark.parametrize("preset", ["paper", "heavy"])
def test_geometric_steps_move_image_and_labels_together(preset):
    """Every geometric step on, the image resampled by nearest neighbour too: then the
    thresholded image must be the mask (up to rounding ties between cv2 and numpy)."""
    image, mask, instances = sample(1)
    overrides = all_steps_on(preset)
    for s in PRESETS[preset]:
        if s.name not in GEOMETRIC_STEPS:
            overrides[f"p_{s.name}"] = 0.0
        elif f"{s.name}_interpolation" in override_names(preset):
            overrides[f"{s.name}_interpolation"] = cv2.INTER_NEAREST
    torch.manual_seed(0)
    aug = build_augment(preset, **overrides)
    for _ in range(4):
        out = aug(image=image, mask=mask, instances=instances)
        assert (out["mask"] == (out["image"][..., 0] > 0.5)).mean() > 0.998
        assert not np.array_equal(out["mask"], mask)


@pytest.mark.parametrize("preset", ["paper", "heavy"])
def test_photometric_steps_leave_labels_alone(preset):
    image, mask, instances = sample(3)
    geometric_off = {f"p_{s.name}": 0.0 for s in PRESETS[preset] if s.name in GEOMETRIC_STEPS}
    aug = build_augment(preset, **all_steps_on(preset, **geometric_off))
    out = aug(image=image, mask=mask, instances=instances)
    np.testing.assert_array_equal(out["mask"], mask)
    np.testing.assert_array_equal(out["instances"], instances)
    assert not np.allclose(out["image"], image)


@pytest.mark.parametrize(
    "transform",
    [
        FloatGaussianBlur(sigma=(1.0, 2.0), p=1),
        FloatGaussNoise(std=(0.05, 0.1), p=1),
        FloatBrightnessContrast(brightness=0.2, contrast=0.2, p=1),
        FloatGamma(gamma=(0.7, 1.5), p=1),
    ],
    ids=lambda t: type(t).__name__,
)
@pytest.mark.parametrize("channels", [1, 3, 6])
def test_float_photometric_transforms_do_not_clip(transform, channels):
    image = np.full((32, 32, channels), -0.3, np.float32)
    image[:, 16:] = 1.3  # flat halves: blur keeps the extremes away from the edge
    transform.set_random_seed(channels)
    out = transform(image=image)["image"]
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() < -0.05 and out.max() > 1.05


def test_overrides_reach_the_transforms():
    aug = build_augment(
        "paper",
        elastic_alpha=500,
        piecewise_scale=[0.02, 0.04],
        p_elastic=0.9,
        affine_rotate=(-30, 30),
    )
    by_name = {type(t).__name__: t for t in aug.transforms}
    assert by_name["ElasticTransform"].alpha == 500 and by_name["ElasticTransform"].p == 0.9
    assert tuple(by_name["FastPiecewiseAffine"].scale) == (0.02, 0.04)
    assert tuple(by_name["Affine"].rotate) == (-30, 30)
    assert by_name["Affine"].p == 0.5  # untouched defaults stay


def test_unknown_preset_lists_the_presets():
    with pytest.raises(
        UserError, match="unknown augmentation preset 'flips'.*none, d4, paper, heavy"
    ):
        build_augment("flips")


def test_unknown_override_is_named_and_valid_ones_listed():
    with pytest.raises(UserError) as err:
        build_augment("paper", elastic_alpah=1, bogus=2)
    text = str(err.value)
    assert "elastic_alpah" in text and "bogus" in text and "did you mean elastic_alpha" in text
    assert "p_elastic" in text and "alpha" in text and "piecewise_{scale" in text


def test_override_of_a_step_the_preset_lacks_is_unknown():
    with pytest.raises(UserError, match="gamma_gamma"):
        build_augment("paper", gamma_gamma=(0.5, 2.0))
    with pytest.raises(UserError, match="p_elastic"):
        build_augment("d4", p_elastic=1.0)
    with pytest.raises(UserError, match="no steps"):
        build_augment("none", p_d4=1.0)


def test_invalid_override_value_is_a_user_error():
    with pytest.raises(UserError, match="elastic_alpha=-5"):
        build_augment("paper", elastic_alpha=-5)
    with pytest.raises(UserError, match="piecewise"):
        build_augment("paper", piecewise_nb_rows=1)


def test_override_names_are_unique_and_documented():
    doc = augment_module.__doc__
    for preset, steps in PRESETS.items():
        names = override_names(preset)
        assert len({(s.name) for s in steps}) == len(steps)
        assert all(f"p_{s.name}" in names for s in steps)
        assert f"``{preset}``" in doc
        for s in steps:
            assert s.name in doc and s.cls.__name__ in doc


def test_augmentation_follows_torch_seed():
    image, mask, instances = sample(1)

    def run(seed):
        torch.manual_seed(seed)
        aug = build_augment("heavy")
        return [aug(image=image, mask=mask, instances=instances)["image"] for _ in range(3)]

    a, b, c = run(0), run(0), run(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_a_new_process_reseeds_from_its_torch_seed():
    image, mask, instances = sample(1)
    torch.manual_seed(0)
    aug = build_augment("heavy")
    first = aug(image=image, mask=mask, instances=instances)["image"]
    torch.manual_seed(0)
    aug._seeded_pid = None  # what a forked DataLoader worker sees: a different pid
    np.testing.assert_array_equal(aug(image=image, mask=mask, instances=instances)["image"], first)


def test_batches_from_the_patch_dataset():
    image, mask, instances = sample(3)
    prepared = [_PreparedSample(Sample("s0", (image * 200 + 20).astype(np.uint8), mask, instances))]
    ds = RandomPatchDataset(prepared, patch_size=32, length=4, augment=build_augment("heavy"))
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert item["mask"].dtype == torch.int64 and item["instances"].dtype == torch.int32
        assert set(item["instances"].unique().tolist()) <= set(np.unique(instances).tolist())


@pytest.mark.parametrize(
    "labels",
    [
        np.array([[0, 3, 3], [65535, 0, 7]], np.int32),  # small ids: straight to uint16
        np.array([[2**30, 5, 5], [2**24 + 3, 0, 2**30]], np.int32),  # big ids: renumbered
        np.array([[9, 9], [2**28, 2**28]], np.int32),  # no background pixel at all
        np.arange(1, 70_001, dtype=np.int32).reshape(280, 250) * 7,  # more ids than uint16 holds
    ],
    ids=["small", "big", "no-background", "many"],
)
def test_labels_for_cv2_round_trip(labels):
    carried, restore = labels_for_cv2(labels)
    assert carried.dtype in (np.uint16, np.float32)
    back = restore(carried)
    assert back.dtype == labels.dtype
    np.testing.assert_array_equal(back, labels)
    np.testing.assert_array_equal(
        restore(np.zeros_like(carried)), 0
    )  # the border fill stays background
