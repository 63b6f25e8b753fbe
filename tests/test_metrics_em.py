"""ISBI 2012 V_rand / V_info and SNEMI3D adapted Rand error: hand-worked values and skimage."""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage.metrics import adapted_rand_error as sk_adapted_rand_error

from seg_bench.errors import UserError
from seg_bench.metrics.em import (
    ISBI2012_THRESHOLDS,
    adapted_rand_error,
    foreground_restricted_scores,
    isbi2012_scores,
    thinned_cells,
)

DATA = Path(
    os.environ.get("SEG_BENCH_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
)
ISBI = DATA / "isbi2012"


# ------------------------------------------------------------- hand-worked V_rand / V_info


def test_identical_segmentations_score_one():
    gt = np.array([[1, 1, 0, 2, 2], [1, 1, 0, 2, 2], [0, 0, 0, 3, 3]])
    res = foreground_restricted_scores(gt, gt * 5)  # label values do not matter
    assert res["v_rand"] == pytest.approx(1.0)
    assert res["v_info"] == pytest.approx(1.0)
    assert "foreground-restricted" in res["definition"]


def test_split_object():
    # GT: one object of 4 px. Prediction: split into halves.
    # p = (1/2, 1/2): sum p^2 = 1/2, sum t^2 = 1, sum s^2 = 1/2 -> V_rand = 1 / (3/2) = 2/3.
    # H(T) = 0, I = 0 -> V_info = 0.
    res = foreground_restricted_scores(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 2, 2]]))
    assert res["v_rand"] == pytest.approx(2 / 3)
    assert res["rand_merge"] == pytest.approx(1.0)  # no false merges
    assert res["rand_split"] == pytest.approx(1 / 2)
    assert res["v_info"] == pytest.approx(0.0)


def test_one_of_two_objects_split():
    # GT A, B of 2 px each; prediction keeps A, splits B into two 1-px pieces.
    # p = (1/2, 1/4, 1/4): sum p^2 = 3/8, sum t^2 = 1/2, sum s^2 = 3/8 -> V_rand = 6/7.
    # H(T) = log 2, H(S) = 1.5 log 2, H(S,T) = H(S) -> I = log 2 -> V_info = 2/2.5 = 0.8.
    res = foreground_restricted_scores(np.array([[1, 1, 2, 2]]), np.array([[1, 1, 2, 3]]))
    assert res["v_rand"] == pytest.approx(6 / 7)
    assert res["v_info"] == pytest.approx(0.8)
    assert res["info_merge"] == pytest.approx(1.0)
    assert res["info_split"] == pytest.approx(2 / 3)


def test_predicted_background_inside_gt_counts_as_singletons():
    # Same numbers as above: B's two pixels are predicted membrane (0), i.e. two singletons.
    gt = np.array([[1, 1, 2, 2, 0]])
    pred = np.array([[1, 1, 0, 0, 4]])  # label 4 lies on GT background: ignored
    res = foreground_restricted_scores(gt, pred)
    assert res["v_rand"] == pytest.approx(6 / 7)
    assert res["v_info"] == pytest.approx(0.8)


def test_merge_of_two_objects():
    # GT A, B (2 px each) merged: sum p^2 = 1/2, sum t^2 = 1/2, sum s^2 = 1 -> V_rand = 2/3.
    # H(S) = 0 -> I = 0 -> V_info = 0.
    res = foreground_restricted_scores(np.array([[1, 1, 2, 2]]), np.array([[3, 3, 3, 3]]))
    assert res["v_rand"] == pytest.approx(2 / 3)
    assert res["rand_split"] == pytest.approx(1.0)
    assert res["v_info"] == pytest.approx(0.0)


def test_foreground_restricted_errors():
    with pytest.raises(UserError, match="no foreground"):
        foreground_restricted_scores(np.zeros((3, 3), int), np.ones((3, 3), int))
    with pytest.raises(UserError, match="shape"):
        foreground_restricted_scores(np.ones((3, 3), int), np.ones((3, 2), int))
    with pytest.raises(UserError, match="gt_labels must be an integer"):
        foreground_restricted_scores(np.ones((3, 3)), np.ones((3, 3), int))


# --------------------------------------------------------------------------- ISBI 2012 protocol


def _cells(seed, size=48, spacing=12):
    """A grid of cells separated by 1-px membranes (GT 255 = cell, 0 = membrane)."""
    rng = np.random.default_rng(seed)
    gt = np.full((size, size), 255, np.uint8)
    for pos in range(spacing, size, spacing):
        gt[pos + int(rng.integers(-2, 3)), :] = 0
        gt[:, pos + int(rng.integers(-2, 3))] = 0
    return gt


def test_perfect_membrane_map_scores_one():
    gts = np.stack([_cells(0), _cells(1)])
    membrane = (gts == 0).astype(np.float32)
    res = isbi2012_scores(membrane, gts)
    assert res["v_rand"] == pytest.approx(1.0) and res["v_info"] == pytest.approx(1.0)
    assert res["v_rand_pooled"] == pytest.approx(1.0)
    np.testing.assert_array_equal(res["thresholds"], ISBI2012_THRESHOLDS)
    assert res["thresholds"].tolist() == [k / 10 for k in range(11)]
    # At t = 1.0 nothing is interior: every GT pixel is a singleton.
    assert res["v_rand_per_threshold"][-1] < 0.1
    # Interior maps give the same result.
    res2 = isbi2012_scores(list(1.0 - membrane), list(gts), prob_of="interior")
    np.testing.assert_allclose(res2["v_rand_per_threshold"], res["v_rand_per_threshold"])


def test_max_is_taken_of_the_slice_average():
    rng = np.random.default_rng(3)
    gts = np.stack([_cells(s) for s in range(3)])
    membrane = np.clip((gts == 0) * 0.6 + rng.random(gts.shape) * 0.5, 0, 1)
    res = isbi2012_scores(membrane, gts)
    # Recompute each (threshold, slice) score by hand from the 4-connected components.
    four = ndi.generate_binary_structure(2, 1)
    per = np.zeros((11, 3))
    info = np.zeros((11, 3))
    for z in range(3):
        gt_lab, _ = ndi.label(gts[z] != 0, four)
        for k, t in enumerate(ISBI2012_THRESHOLDS):
            pred_lab, _ = ndi.label((1 - membrane[z]) > t, four)
            r = foreground_restricted_scores(gt_lab, pred_lab)
            per[k, z], info[k, z] = r["v_rand"], r["v_info"]
    np.testing.assert_allclose(res["v_rand_per_slice"], per)
    assert res["v_rand"] == pytest.approx(per.mean(axis=1).max())
    assert res["v_info"] == pytest.approx(info.mean(axis=1).max())
    # Not the mean of the per-slice maxima (which can only be larger or equal).
    assert res["v_rand"] <= per.max(axis=0).mean() + 1e-12
    assert res["v_rand_threshold"] == ISBI2012_THRESHOLDS[np.argmax(per.mean(axis=1))]


def test_thinning_hand_worked_thick_border():
    # GT: two cells (columns 0-1 and 3-4) split by a 1-px membrane; the prediction's border
    # is 3 px wide (columns 1-3). Unthinned, columns 1 and 3 are 6 singletons inside GT cells:
    # sum p^2 = sum s^2 = 2 (3/12)^2 + 6/144 = 1/6, sum t^2 = 2 (1/2)^2, V_rand = 0.5.
    # Thinned, columns 1 and 3 join their cells and column 2 is the watershed line: 1.0.
    gt = np.full((3, 5), 255, np.uint8)
    gt[:, 2] = 0
    membrane = np.zeros((3, 5))
    membrane[:, 1:4] = 1.0
    plain = isbi2012_scores(membrane, gt)
    thin = isbi2012_scores(membrane, gt, thin=True)
    assert plain["v_rand"] == pytest.approx(0.5)
    assert thin["v_rand"] == pytest.approx(1.0) and thin["v_info"] == pytest.approx(1.0)
    assert "thinned" in thin["definition"] and "no boundary thinning" in plain["definition"]


def test_thinned_cells_keep_cells_and_leave_one_px_lines():
    interior = np.ones((4, 11), bool)
    interior[:, 3:8] = False  # a 5-px border between two cells
    interior[1, 9] = False  # a border pixel inside the right cell, touching only that cell
    out = thinned_cells(interior)
    assert out[:, :5].tolist() == [[1] * 5] * 4 and out[:, 6:].tolist() == [[2] * 5] * 4
    assert (out[:, 5] == 0).all()  # the middle column, equidistant from both cells
    assert not thinned_cells(np.zeros((3, 3), bool)).any()


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3))
def test_thinning_makes_v_rand_blind_to_border_width(seed, grow):
    # Widening a perfect membrane map costs the unthinned V_rand, never the thinned one
    # (the purpose of the challenge's thinning: scores robust to border width).
    gt = _cells(seed)
    membrane = ndi.binary_dilation(gt == 0, iterations=grow).astype(np.float32)
    assert isbi2012_scores(membrane, gt)["v_rand"] < 0.95
    thin = isbi2012_scores(membrane, gt, thin=True)
    assert thin["v_rand"] > 0.98 and thin["v_info"] > 0.98


def test_isbi2012_errors():
    gt = _cells(0)
    with pytest.raises(UserError, match="prob_of"):
        isbi2012_scores(gt / 255.0, gt, prob_of="cells")
    with pytest.raises(UserError, match="slices"):
        isbi2012_scores(np.stack([gt / 255.0] * 2), gt)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        isbi2012_scores(gt.astype(float), gt)
    with pytest.raises(UserError, match="float"):
        isbi2012_scores(gt, gt)
    with pytest.raises(UserError, match="no cell-interior"):
        isbi2012_scores(np.zeros((4, 4)), np.zeros((4, 4), np.uint8))


@pytest.mark.data
@pytest.mark.skipif(
    not (ISBI / "train-labels.tif").is_file(),
    reason=f"ISBI 2012 sample not found at {ISBI} (set SEG_BENCH_DATA)",
)
def test_real_isbi_labels_against_themselves():
    import tifffile

    labels = tifffile.imread(ISBI / "train-labels.tif")[:2]
    res = isbi2012_scores((labels == 0).astype(np.float32), labels)
    assert res["v_rand"] == pytest.approx(1.0) and res["v_info"] == pytest.approx(1.0)
    shifted = np.roll(labels == 0, 2, axis=2).astype(np.float32)
    worse = isbi2012_scores(shifted, labels)
    assert worse["v_rand"] < 0.99 and worse["v_info"] < 0.99


# --------------------------------------------------------------------------- SNEMI3D


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_adapted_rand_matches_skimage(seed):
    rng = np.random.default_rng(seed)
    shape = (4, 9, 9)
    gt = rng.integers(0, 5, shape)
    gt[0, 0, :2] = [1, 1]  # at least one foreground pair
    pred = np.where(rng.random(shape) < 0.7, gt, rng.integers(0, 6, shape)) * 3
    ours = adapted_rand_error(gt, pred)
    are, sk_prec, sk_rec = sk_adapted_rand_error(gt, pred)
    assert ours["are"] == pytest.approx(are, abs=1e-12)
    # scikit-image 0.26 returns precision and recall swapped (see em.py).
    assert ours["precision"] == pytest.approx(sk_rec, abs=1e-12)
    assert ours["recall"] == pytest.approx(sk_prec, abs=1e-12)


def test_adapted_rand_merge_case_documents_the_skimage_swap():
    gt = np.array([[1, 1, 2, 2]])
    merged = np.array([[5, 5, 5, 5]])
    ours = adapted_rand_error(gt, merged)
    # pairs together in both: 2 + 2 = 4 (ordered pairs); in GT: 4; in prediction: 12
    assert ours["recall"] == 1.0
    assert ours["precision"] == pytest.approx(4 / 12)
    assert ours["are"] == pytest.approx(1 - 2 * 4 / (4 + 12))
    _, sk_prec, sk_rec = sk_adapted_rand_error(gt, merged)
    assert (sk_prec, sk_rec) == pytest.approx((1.0, 4 / 12))  # swapped names


def test_adapted_rand_snemi3d_variant_hand_worked():
    gt = np.array([[1, 1, 2, 2, 0]])
    pred = np.array([[1, 1, 1, 0, 3]])
    # GT-foreground contingency: (1,1) = 2, (2,1) = 1, (2,0) = 1; N = 5 voxels.
    # counts^2: both = 4 + 1 + 1/5, GT = 2^2 + 2^2 = 8, prediction = 3^2 + 1/5
    res = adapted_rand_error(gt, pred, variant="snemi3d")
    assert res["precision"] == pytest.approx(5.2 / 9.2)
    assert res["recall"] == pytest.approx(5.2 / 8)
    assert res["are"] == pytest.approx(1 - 2 * 5.2 / (8 + 9.2))
    sk = adapted_rand_error(gt, pred)  # distinct pairs, predicted 0 a normal label
    assert sk["are"] == pytest.approx(1 - 2 * 2 / (4 + 6))
    assert "scikit-image" in sk["definition"] and "challenge-script" in res["definition"]


def test_adapted_rand_identical_is_zero_and_errors():
    vol = np.random.default_rng(0).integers(0, 4, (3, 5, 5))
    vol[0, 0, :2] = 1
    assert adapted_rand_error(vol, vol + 10 * (vol > 0))["are"] == pytest.approx(0.0)
    with pytest.raises(UserError, match="variant"):
        adapted_rand_error(vol, vol, variant="cremi")
    with pytest.raises(UserError, match="no voxel"):
        adapted_rand_error(np.zeros((2, 2), int), np.ones((2, 2), int))
    with pytest.raises(UserError, match="pred_labels must be an integer"):
        adapted_rand_error(vol, vol * 0.5)


def test_evaluation_keeps_both_definitions_per_image_and_pools_them_alike():
    from seg_bench.evaluation.evaluate import aggregate, image_record
    from seg_bench.inference.postprocess import PostprocessConfig

    truth = (_cells(4) == 0).astype(np.uint8)  # membrane = class 1, as ISBI 2012 trains
    prob = ndi.binary_dilation(truth).astype(np.float32)  # a perfect but 3-px-wide border
    rec, _ = image_record(prob, truth, truth, "em", PostprocessConfig())
    direct = isbi2012_scores(prob[None], truth[None] == 0, thin=True)
    assert rec["vrand_thinned_by_threshold"] == pytest.approx(direct["v_rand_per_threshold"])
    other = dict(rec, vrand_thinned_by_threshold=[0.0] * 11, vrand_by_threshold=[1.0] * 11)
    out = aggregate([rec, other])
    by_t = np.array(rec["vrand_thinned_by_threshold"]) / 2  # the mean with [0.0] * 11
    assert out["vrand_thinned"] == pytest.approx(by_t.max())
    assert out["vrand"] == pytest.approx(((np.array(rec["vrand_by_threshold"]) + 1) / 2).max())
    alone = aggregate([rec])  # the 3-px border costs only the unthinned score
    assert alone["vrand"] < 0.95 < alone["vrand_thinned"]
