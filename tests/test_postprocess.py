"""Post-processing: config validation, each step against scikit-image, 3-class round trip."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage.filters import apply_hysteresis_threshold, threshold_otsu

from seg_bench.errors import UserError
from seg_bench.inference.postprocess import (
    PostprocessConfig,
    binarize,
    boundary_targets,
    postprocess,
    remove_small_instances,
    three_class_instances,
    watershed_split,
)
from seg_bench.metrics.instance import dsb_average_precision


def disks(centres, radii, shape=(48, 48)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    for k, ((cy, cx), r) in enumerate(zip(centres, radii, strict=True), start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return lab


def same_instances(a, b):
    return dsb_average_precision(a, b)[1][-1] == 1.0  # every IoU > 0.95 and 1-to-1


# --------------------------------------------------------------------------- config


def test_config_round_trip_and_json():
    cfg = PostprocessConfig(
        threshold="otsu",
        hysteresis=[0.3, 0.6],
        fill_holes=True,
        min_size=10,
        watershed=True,
        min_distance=3,
        h=1.5,
    )
    d = cfg.to_dict()
    assert d["hysteresis"] == [0.3, 0.6]
    assert PostprocessConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert cfg.hysteresis == (0.3, 0.6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": "mean"}, "threshold"),
        ({"hysteresis": (0.7, 0.3)}, "hysteresis"),
        ({"hysteresis": (0.3,)}, "hysteresis"),
        ({"min_size": -1}, "min_size"),
        ({"min_size": 2.5}, "min_size"),
        ({"min_distance": 0}, "min_distance"),
        ({"h": 0}, "h must"),
        ({"fill_holes": "yes"}, "fill_holes"),
        ({"connectivity": 0}, "connectivity"),
        ({"watershed": True, "three_class": True}, "three_class"),
    ],
)
def test_config_errors_name_the_field(kwargs, match):
    with pytest.raises(UserError, match=match):
        PostprocessConfig(**kwargs)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(UserError, match="treshold"):
        PostprocessConfig.from_dict({"treshold": 0.5})


# --------------------------------------------------------------------------- steps


def test_thresholds_match_skimage():
    rng = np.random.default_rng(0)
    prob = np.clip(
        rng.normal(0.3, 0.1, (32, 32)) + (disks([(16, 16)], [8], (32, 32)) > 0) * 0.4, 0, 1
    )
    np.testing.assert_array_equal(binarize(prob, 0.5), prob > 0.5)
    np.testing.assert_array_equal(binarize(prob, "otsu"), prob > threshold_otsu(prob))
    np.testing.assert_array_equal(
        binarize(prob, hysteresis=(0.4, 0.8)), apply_hysteresis_threshold(prob, 0.4, 0.8)
    )
    assert not binarize(np.full((4, 4), 0.7), "otsu").any()  # constant image: no foreground
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        binarize(prob * 2)
    with pytest.raises(UserError, match="floating"):
        binarize(np.ones((2, 2), int))


def test_hole_filling_leaves_the_gap_a_ring_of_touching_nuclei_encloses():
    # Filling the mask before labelling made the gap foreground, and the watershed merged the
    # ring (min_distance 5 or 8: one object, mAP 0).
    truth = disks([(12, 20), (20, 12), (28, 20), (20, 28)], [6, 6, 6, 6])
    prob = (truth > 0).astype(float)
    gap = (prob == 0) & ndi.binary_fill_holes(prob > 0.5)
    assert gap[20, 20] and gap.sum() > 20
    for min_distance in (3, 5, 8):
        config = PostprocessConfig(watershed=True, min_distance=min_distance, fill_holes=True)
        mask, inst = postprocess(prob, config)
        assert inst.max() == 4 and not mask[gap].any()
        assert dsb_average_precision(truth, inst)[0] > 0.9


def test_fill_holes_and_min_size():
    prob = np.zeros((20, 20))
    prob[2:10, 2:10] = 0.9
    prob[5, 5] = 0.1  # a hole
    prob[15, 15] = 0.9  # a 1-px speck
    mask, inst = postprocess(prob, PostprocessConfig(fill_holes=True, min_size=5))
    assert mask[5, 5] and not mask[15, 15]
    assert inst.max() == 1 and inst.dtype == np.int32
    np.testing.assert_array_equal(mask, inst > 0)
    mask, inst = postprocess(prob)
    assert not mask[5, 5] and inst.max() == 2
    assert ndi.binary_fill_holes(prob > 0.5)[5, 5]


def test_remove_small_instances_renumbers_in_order():
    lab = np.array([[7, 7, 7, 0, 3, 0, 9, 9]])
    np.testing.assert_array_equal(remove_small_instances(lab, 2), [[1, 1, 1, 0, 0, 0, 2, 2]])
    with pytest.raises(UserError, match="min_size"):
        remove_small_instances(lab, -1)


@pytest.mark.parametrize("h", [None, 1.0])
def test_watershed_splits_touching_disks(h):
    truth = disks([(20, 14), (20, 27)], [8, 8])
    prob = (truth > 0).astype(float)
    _, cc = postprocess(prob, PostprocessConfig())
    assert cc.max() == 1  # the two disks touch
    _, ws = postprocess(prob, PostprocessConfig(watershed=True, min_distance=5, h=h))
    assert ws.max() == 2
    assert dsb_average_precision(truth, ws)[0] > 0.9


@pytest.mark.parametrize("min_distance", [3, 5, 8])
def test_the_distance_watershed_leaves_an_elongated_nucleus_whole(min_distance):
    # peak_local_max picks a peak every min_distance pixels along a flat ridge of the distance
    # transform, and each became a marker: a 30 x 14 ellipse came out as 2-3 objects (mAP 0),
    # a 10 x 70 bar as 8-21.
    yy, xx = np.mgrid[:40, :90]
    ellipse = ((yy - 20) / 7) ** 2 + ((xx - 25) / 15) ** 2 < 1
    bar = np.zeros((40, 90), bool)
    bar[5:15, 10:80] = True
    for shape in (ellipse, bar):
        labels = watershed_split(shape, min_distance=min_distance)
        assert labels.max() == 1 and (labels > 0).sum() == shape.sum()
    truth = disks([(20, 14), (20, 27)], [8, 8])  # two touching nuclei still split
    assert watershed_split(truth > 0, min_distance=min_distance).max() == 2
    ap, _ = dsb_average_precision(ellipse.astype(np.int32), watershed_split(ellipse, min_distance))
    assert ap == 1.0


def test_watershed_keeps_every_foreground_pixel():
    mask = np.zeros((10, 30), bool)
    mask[2:8, 2:8] = True
    mask[4, 20] = True  # tiny object
    lab = watershed_split(mask, min_distance=3)
    np.testing.assert_array_equal(lab > 0, mask)
    assert lab.max() == 2
    assert not watershed_split(np.zeros((5, 5), bool)).any()


def test_connectivity_option():
    diag = np.eye(4) * 0.9
    assert postprocess(diag, PostprocessConfig(connectivity=1))[1].max() == 4
    assert postprocess(diag, PostprocessConfig(connectivity=2))[1].max() == 1
    with pytest.raises(UserError, match="connectivity"):
        postprocess(diag, PostprocessConfig(connectivity=3))


# --------------------------------------------------------------------------- 3-class targets


def test_boundary_targets_hand_worked():
    lab = np.zeros((6, 8), int)
    lab[1:5, 1:4] = 1
    lab[1:5, 4:7] = 2  # touching object
    t = boundary_targets(lab)
    assert t.dtype == np.uint8
    assert t[2].tolist() == [0, 2, 1, 2, 2, 1, 2, 0]
    assert t[0].tolist() == [0] * 8
    assert t[1].tolist() == [0, 2, 2, 2, 2, 2, 2, 0]
    with pytest.raises(UserError, match="instance_labels"):
        boundary_targets(lab.astype(float))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_three_class_round_trip_separated_objects(seed):
    rng = np.random.default_rng(seed)
    # Non-touching disks on a grid, radius >= 3 so every object keeps an interior.
    centres = [(8 + 16 * i, 8 + 16 * j) for i in range(3) for j in range(3) if rng.random() < 0.7]
    truth = disks(centres, rng.integers(3, 7, len(centres)).tolist())
    onehot = np.eye(3)[boundary_targets(truth)].transpose(2, 0, 1)
    mask, inst = postprocess(onehot, PostprocessConfig(three_class=True))
    np.testing.assert_array_equal(mask, truth > 0)
    assert inst.max() == len(centres)
    if centres:
        assert same_instances(truth, inst)


def test_three_class_touching_objects():
    truth = disks([(20, 14), (20, 28), (34, 21)], [8, 7, 6])
    onehot = np.eye(3)[boundary_targets(truth)].transpose(2, 0, 1)
    mask, inst = three_class_instances(onehot)
    assert inst.max() == 3
    np.testing.assert_array_equal(mask, truth > 0)
    assert dsb_average_precision(truth, inst)[0] > 0.9


def test_three_class_shape_error():
    with pytest.raises(UserError, match=r"\(3, H, W\)"):
        postprocess(np.zeros((2, 5, 5)), PostprocessConfig(three_class=True))


def test_volumes_work():
    vol = np.zeros((6, 12, 12))
    vol[1:4, 2:6, 2:6] = 0.8
    vol[2:5, 7:11, 7:11] = 0.8
    mask, inst = postprocess(vol, PostprocessConfig(min_size=5))
    assert inst.max() == 2 and mask.shape == vol.shape
    lab3 = boundary_targets(inst)
    assert set(np.unique(lab3)) == {0, 1, 2}
