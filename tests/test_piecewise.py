"""The fast piecewise affine warp against scikit-image's PiecewiseAffineTransform (the oracle)."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.transform import PiecewiseAffineTransform, warp

from seg_bench.data.augment.piecewise import (
    FastPiecewiseAffine,
    checkerboard_diagonals,
    grid_diagonals,
    nearest_index,
    piecewise_affine_maps,
    regular_grid,
    remap_image,
    remap_labels,
    take_labels,
)


def skimage_transform(src: np.ndarray, dst: np.ndarray) -> PiecewiseAffineTransform:
    src2, dst2 = src.reshape(-1, 2), dst.reshape(-1, 2)
    if hasattr(PiecewiseAffineTransform, "from_estimate"):
        return PiecewiseAffineTransform.from_estimate(src2, dst2)
    tform = PiecewiseAffineTransform()
    tform.estimate(src2, dst2)
    return tform


def skimage_maps(
    tform: PiecewiseAffineTransform, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    xy = tform(np.stack([xx.ravel(), yy.ravel()], axis=1)).reshape(*shape, 2)
    return xy[..., 0], xy[..., 1]


def jittered(shape, rows, cols, std, seed):
    h, w = shape
    src = regular_grid(shape, rows, cols)
    rng = np.random.default_rng(seed)
    dst = np.clip(src + rng.normal(0, std, src.shape) * (w, h), 0, (w - 1, h - 1))
    return src, dst


def smooth_image(shape, channels=1):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    planes = [np.sin(xx / 7 + k) * np.cos(yy / 5 - k) * 0.5 + 0.5 for k in range(channels)]
    return np.stack(planes, axis=-1).astype(np.float32)


def blob_labels(shape, n=12, seed=0, big_ids=True):
    """Disc instances; ids above 2**24 so that any float32 round trip would show."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    ids = rng.choice(2**30 if big_ids else 1000, n, replace=False) + (2**24 + 1 if big_ids else 1)
    for k in ids:
        cy, cx, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(3, 9)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return labels


@pytest.mark.parametrize("shape,rows,cols", [((32, 32), 4, 4), ((45, 70), 3, 6), ((64, 48), 2, 2)])
def test_identity_displacements_give_the_identity_warp(shape, rows, cols):
    src = regular_grid(shape, rows, cols)
    for anti in (None, ~checkerboard_diagonals(rows, cols)):
        map_x, map_y = piecewise_affine_maps(shape, src, src, anti)
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
        np.testing.assert_allclose(map_x, xx, atol=1e-4)
        np.testing.assert_allclose(map_y, yy, atol=1e-4)
    img = smooth_image(shape, 3)
    np.testing.assert_allclose(remap_image(img, map_x, map_y), img, atol=1e-6)
    labels = blob_labels(shape)
    np.testing.assert_array_equal(remap_labels(labels, map_x, map_y), labels)


@pytest.mark.parametrize("seed", range(4))
def test_maps_match_skimage_for_random_displacements(seed):
    shape, rows, cols = (40, 52), 4, 5
    src, dst = jittered(shape, rows, cols, 0.05, seed)
    tform = skimage_transform(src, dst)
    anti = grid_diagonals(tform._tesselation.simplices, rows, cols)
    map_x, map_y = piecewise_affine_maps(shape, src, dst, anti)
    ref_x, ref_y = skimage_maps(tform, shape)
    np.testing.assert_allclose(map_x, ref_x, atol=1e-3)
    np.testing.assert_allclose(map_y, ref_y, atol=1e-3)


@pytest.mark.parametrize("seed", range(3))
def test_warped_image_and_labels_match_skimage_warp(seed):
    shape, rows, cols = (48, 48), 4, 4
    src, dst = jittered(shape, rows, cols, 0.04, seed)
    tform = skimage_transform(src, dst)
    map_x, map_y = piecewise_affine_maps(
        shape, src, dst, grid_diagonals(tform._tesselation.simplices, rows, cols)
    )
    img = smooth_image(shape, 3)
    ours = remap_image(img, map_x, map_y)
    ref = warp(img, tform, order=1, mode="edge", preserve_range=True).astype(np.float32)
    # cv2 interpolates at 1/32 pixel; the image changes by < 0.2 per pixel.
    assert np.abs(ours - ref).mean() < 2e-3
    labels = blob_labels(shape, seed=seed)
    ref_labels = warp(labels, tform, order=0, mode="edge", preserve_range=True).astype(np.int32)
    assert (remap_labels(labels, map_x, map_y) == ref_labels).mean() > 0.99


def test_the_cell_diagonal_is_a_real_choice():
    """Both splits interpolate the control points exactly but differ inside the cells."""
    shape, rows, cols = (41, 41), 3, 3  # control points on pixel centres
    src, dst = jittered(shape, rows, cols, 0.08, 0)
    a = piecewise_affine_maps(shape, src, dst, np.zeros((2, 2), bool))
    b = piecewise_affine_maps(shape, src, dst, np.ones((2, 2), bool))
    ii, jj = np.rint(src[..., 1]).astype(int), np.rint(src[..., 0]).astype(int)
    for maps in (a, b):
        np.testing.assert_allclose(maps[0][ii, jj], dst[..., 0], atol=1e-3)
        np.testing.assert_allclose(maps[1][ii, jj], dst[..., 1], atol=1e-3)
    assert np.abs(a[0] - b[0]).max() > 0.1


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(8, 40),
    w=st.integers(8, 40),
    rows=st.integers(2, 5),
    cols=st.integers(2, 5),
    seed=st.integers(0, 2**16),
)
def test_maps_match_skimage_property(h, w, rows, cols, seed):
    src, dst = jittered((h, w), rows, cols, 0.05, seed)
    tform = skimage_transform(src, dst)
    map_x, map_y = piecewise_affine_maps(
        (h, w), src, dst, grid_diagonals(tform._tesselation.simplices, rows, cols)
    )
    ref_x, ref_y = skimage_maps(tform, (h, w))
    np.testing.assert_allclose(map_x, ref_x, atol=1e-3)
    np.testing.assert_allclose(map_y, ref_y, atol=1e-3)


def test_pixels_outside_a_partial_grid_map_to_minus_one_like_skimage():
    src = np.stack(np.meshgrid([5.5, 20.0, 33.2], [4.0, 25.7]), axis=-1)
    dst = src + np.random.default_rng(0).normal(0, 1.5, src.shape)
    tform = skimage_transform(src, dst)
    map_x, map_y = piecewise_affine_maps(
        (30, 40), src, dst, grid_diagonals(tform._tesselation.simplices, 2, 3)
    )
    ref_x, ref_y = skimage_maps(tform, (30, 40))
    np.testing.assert_allclose(map_x, ref_x, atol=1e-3)
    np.testing.assert_allclose(map_y, ref_y, atol=1e-3)
    assert (map_x == -1).any()
    labels = np.arange(1, 30 * 40 + 1, dtype=np.int32).reshape(30, 40)
    out = remap_labels(labels, map_x, map_y, fill=0)
    np.testing.assert_array_equal(out == 0, map_x == -1)


def test_take_labels_handles_channels_and_outside_pixels():
    labels = np.arange(2 * 3 * 2, dtype=np.int32).reshape(2, 3, 2)
    map_x = np.array([[2.4, -1.0, 0.0], [1.6, 0.0, 2.0]], np.float32)
    map_y = np.array([[0.0, -1.0, 1.2], [0.4, 0.0, 5.0]], np.float32)
    index = nearest_index(map_x, map_y, labels.shape)
    np.testing.assert_array_equal(index, [[2, -1, 3], [2, 0, -1]])
    out = take_labels(labels, index, fill=-7)
    assert out.shape == labels.shape and out.dtype == labels.dtype
    np.testing.assert_array_equal(out[0, 0], labels[0, 2])
    np.testing.assert_array_equal(out[0, 1], [-7, -7])


def test_grid_diagonals_round_trip():
    rows, cols = 4, 5
    anti = np.random.default_rng(1).random((rows - 1, cols - 1)) > 0.5
    simplices = []
    for i in range(rows - 1):
        for j in range(cols - 1):
            p00, p01, p10, p11 = (
                i * cols + j,
                i * cols + j + 1,
                (i + 1) * cols + j,
                (i + 1) * cols + j + 1,
            )
            simplices += (
                [[p00, p01, p10], [p01, p10, p11]]
                if anti[i, j]
                else [[p00, p01, p11], [p00, p10, p11]]
            )
    np.testing.assert_array_equal(grid_diagonals(np.array(simplices), rows, cols), anti)
    with pytest.raises(ValueError, match="one cell"):
        grid_diagonals(np.array([[0, 2, 6]]), rows, cols)


def test_bad_inputs_raise_naming_the_argument():
    src = regular_grid((20, 20), 3, 3)
    with pytest.raises(ValueError, match="dst_points"):
        piecewise_affine_maps((20, 20), src, src[:2])
    bent = src.copy()
    bent[1, 1, 0] += 2
    with pytest.raises(ValueError, match="rectilinear"):
        piecewise_affine_maps((20, 20), bent, bent)
    with pytest.raises(ValueError, match="anti_diagonal"):
        piecewise_affine_maps((20, 20), src, src, np.zeros((3, 3), bool))


@pytest.mark.parametrize("channels", [1, 3, 7])
def test_transform_keeps_shapes_dtypes_and_label_sets(channels):
    shape = (48, 56)
    img = smooth_image(shape, channels)
    labels = blob_labels(shape)
    mask = (labels > 0).astype(np.uint8)
    aug = A.Compose(
        [FastPiecewiseAffine(scale=(0.03, 0.06), p=1.0)],
        additional_targets={"instances": "mask"},
        seed=0,
    )
    for _ in range(3):
        out = aug(image=img, mask=mask, instances=labels)
        assert out["image"].shape == img.shape and out["image"].dtype == np.float32
        assert out["mask"].dtype == np.uint8 and out["instances"].dtype == np.int32
        assert set(np.unique(out["instances"])) <= set(np.unique(labels))
        assert set(np.unique(out["mask"])) <= {0, 1}
        # image, mask and instances moved together
        np.testing.assert_array_equal(out["mask"], (out["instances"] > 0).astype(np.uint8))
        assert not np.array_equal(out["image"], img)


def test_image_and_labels_share_the_warp():
    shape = (64, 64)
    labels = blob_labels(shape, n=20, big_ids=False)
    image = labels.astype(np.float32)[..., None]  # ids < 2**24: exact in float32
    aug = A.Compose(
        [FastPiecewiseAffine(scale=0.05, interpolation=cv2.INTER_NEAREST, p=1.0)],
        additional_targets={"instances": "mask"},
        seed=1,
    )
    out = aug(image=image, mask=(labels > 0).astype(np.uint8), instances=labels)
    # Same maps, nearest both ways; only exact .5 ties may round differently.
    assert (out["image"][..., 0] == out["instances"]).mean() > 0.999


def test_zero_scale_and_p_zero_leave_the_data_alone():
    img = smooth_image((32, 32), 1)
    out = A.Compose([FastPiecewiseAffine(scale=(0.0, 0.0), p=1.0)], seed=0)(image=img)["image"]
    np.testing.assert_allclose(out, img, atol=1e-6)
    out = A.Compose([FastPiecewiseAffine(p=0.0)], seed=0)(image=img)["image"]
    np.testing.assert_array_equal(out, img)


def test_same_seed_same_result_and_absolute_scale():
    img = smooth_image((32, 40), 3)
    outs = [
        A.Compose([FastPiecewiseAffine(scale=3.0, absolute_scale=True, p=1.0)], seed=7)(image=img)[
            "image"
        ]
        for _ in range(2)
    ]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.allclose(outs[0], img)


def test_invalid_grid_size_is_rejected():
    with pytest.raises(ValueError, match="nb_rows"):
        FastPiecewiseAffine(nb_rows=1, strict=True)


def test_jittered_maps_stay_inside_the_image():
    t = FastPiecewiseAffine(scale=0.3, nb_rows=(2, 6), nb_cols=(2, 6), p=1.0)
    t.set_random_seed(0)
    for _ in range(10):
        params = t.get_params_dependent_on_data({"shape": (40, 50, 1)}, {})
        assert params["map_x"].min() >= -1e-3 and params["map_x"].max() <= 49 + 1e-3
        assert params["map_y"].min() >= -1e-3 and params["map_y"].max() <= 39 + 1e-3
        assert params["index"].min() >= 0
