"""Kaggle DSB 2018 score against a per-object-pair reference, hand-worked cases, real masks."""

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from seg_bench.errors import UserError
from seg_bench.metrics.em import adapted_rand_error, foreground_restricted_scores
from seg_bench.metrics.instance import (
    DSB_THRESHOLDS,
    dsb_average_precision,
    dsb_map,
    iou_matrix,
    label_overlap,
    merge_count,
    object_counts,
    object_f1,
    split_count,
)

DATA = Path(
    os.environ.get("SEG_BENCH_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
)
DSB = DATA / "dsb2018"
needs_dsb = pytest.mark.skipif(
    not (DSB / "stage1_train").is_dir(),
    reason=f"DSB 2018 sample not found at {DSB} (set SEG_BENCH_DATA to the shared data folder)",
)


# --------------------------------------------------------------------------- reference


def reference_dsb(truth, pred):
    """Per-object-pair reference: boolean masks, exact fractions, explicit 1-to-1 check."""
    t_ids = [v for v in np.unique(truth) if v != 0]
    p_ids = [v for v in np.unique(pred) if v != 0]
    if not t_ids and not p_ids:
        return np.ones(10)
    ious = {}
    for a in t_ids:
        in_a = truth == a
        for b in p_ids:
            in_b = pred == b
            inter = int(np.logical_and(in_a, in_b).sum())
            if inter:
                ious[a, b] = Fraction(inter, int(np.logical_or(in_a, in_b).sum()))
    out = []
    for percent in range(50, 100, 5):
        t = Fraction(percent, 100)
        hit_t, hit_p = set(), set()
        for (a, b), iou in ious.items():
            if iou > t:
                assert a not in hit_t and b not in hit_p  # IoU > 0.5 matches are unique
                hit_t.add(a)
                hit_p.add(b)
        tp = len(hit_t)
        fp, fn = len(p_ids) - tp, len(t_ids) - tp
        out.append(tp / (tp + fp + fn))
    return np.array(out)


def random_pair(seed, size=40, max_objects=8):
    """Truth of random disks and a prediction that shifts, merges, splits, drops and adds."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    truth = np.zeros((size, size), np.int64)
    pred = np.zeros((size, size), np.int64)
    n = rng.integers(0, max_objects + 1)
    for k in range(1, n + 1):
        cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(3, 9))]
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
        if rng.random() < 0.15:
            continue  # missed object
        dy, dx = rng.integers(-1, 2, 2) * (rng.random() < 0.5)
        r2 = r + int(rng.integers(-1, 2))
        disk = (yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 <= r2 * r2
        pred[disk] = k
        if rng.random() < 0.15:  # split along a column
            pred[disk & (xx > cx)] = 100 + k
    if n >= 2 and rng.random() < 0.3:  # merge two predictions
        pred[pred == 2] = 1
    for k in range(rng.integers(0, 3)):  # false positives
        cy, cx = rng.integers(0, size, 2)
        pred[(yy - cy) ** 2 + (xx - cx) ** 2 <= 4] = 200 + k
    # arbitrary, non-consecutive label values
    t_map = rng.permutation(1000)[: truth.max() + 1] * 7 + 3
    t_map[0] = 0
    p_map = rng.permutation(5000)[: pred.max() + 1] + 11
    p_map[0] = 0
    return t_map[truth], p_map[pred].astype(np.uint32)


# --------------------------------------------------------------------------- vs reference


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_matches_per_pair_reference_on_random_label_images(seed):
    truth, pred = random_pair(seed)
    score, per_threshold = dsb_average_precision(truth, pred)
    expected = reference_dsb(truth, pred)
    np.testing.assert_array_equal(per_threshold, expected)
    assert score == np.mean(expected)


def test_label_overlap_returns_the_callers_ids_also_when_huge_ids_are_compacted():
    # Connectomics ids of 2**40 take the compacting path; it returned 1..n instead.
    truth = np.array([[2**40, 0, 7]], np.uint64)
    pred = np.array([[2**30, 0, 0]], np.uint64)
    table, t_ids, p_ids = label_overlap(truth, pred, return_labels=True)
    assert t_ids.tolist() == [7, 2**40] and p_ids.tolist() == [2**30]
    assert table[2, 1] == 1 and table[1, 0] == 1  # 2**40 meets 2**30; 7 meets background


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_label_overlap_and_iou_matrix_match_loops(seed):
    truth, pred = random_pair(seed, size=24, max_objects=5)
    table, t_ids, p_ids = label_overlap(truth, pred, return_labels=True)
    all_t = np.concatenate(([0], t_ids))
    all_p = np.concatenate(([0], p_ids))
    for i, a in enumerate(all_t):
        for j, b in enumerate(all_p):
            assert table[i, j] == np.sum((truth == a) & (pred == b))
    iou = iou_matrix(truth, pred)
    assert iou.shape == (t_ids.size, p_ids.size)
    for i, a in enumerate(t_ids):
        for j, b in enumerate(p_ids):
            inter = np.sum((truth == a) & (pred == b))
            union = np.sum((truth == a) | (pred == b))
            assert iou[i, j] == pytest.approx(inter / union, abs=1e-15)


# --------------------------------------------------------------------------- hand-worked


def test_iou_exactly_at_each_threshold_is_not_a_hit():
    # Nine strips of 20 px; prediction covers 11..19 px of them: IoU = 0.55, 0.60, ..., 0.95.
    truth = np.zeros((9, 20), np.int32)
    pred = np.zeros((9, 20), np.int32)
    for k in range(9):
        truth[k] = k + 1
        pred[k, : 11 + k] = k + 1
    _, ap = dsb_average_precision(truth, pred)
    tp = np.arange(9, -1, -1)  # at t = 0.50 all 9 hit, at t = 0.55 the 0.55 one does not ...
    np.testing.assert_array_equal(ap, tp / (tp + 2 * (9 - tp)))
    np.testing.assert_array_equal(ap, reference_dsb(truth, pred))


def test_empty_and_one_sided_images():
    empty = np.zeros((5, 5), np.uint8)
    one = empty.copy()
    one[1:3, 1:3] = 4
    assert dsb_average_precision(empty, empty) == (1.0, pytest.approx(np.ones(10)))
    assert dsb_average_precision(one, empty)[0] == 0.0
    assert dsb_average_precision(empty, one)[0] == 0.0
    assert dsb_average_precision(one, one)[0] == 1.0


def test_hand_worked_image():
    # truth: A (4 px), B (2 px); prediction: A' = 3 px inside A (IoU 3/4), C false positive.
    truth = np.array([[1, 1, 1, 1, 0, 2, 2, 0, 0]])
    pred = np.array([[7, 7, 7, 0, 0, 0, 0, 0, 9]])
    score, ap = dsb_average_precision(truth, pred)
    # t < 0.75: TP 1, FP 1, FN 1 -> 1/3; t >= 0.75: TP 0, FP 2, FN 2 -> 0
    np.testing.assert_allclose(ap, [1 / 3] * 5 + [0] * 5)
    assert score == pytest.approx(1 / 6)


def test_merged_prediction_matches_at_most_one_object():
    truth = np.array([[1, 1, 1, 1, 1, 1, 2, 2]])
    pred = np.ones_like(truth)  # merges both: IoU 6/8 with object 1, 2/8 with object 2
    _, ap = dsb_average_precision(truth, pred)
    np.testing.assert_allclose(ap, [1 / 2] * 5 + [0] * 5)


def test_label_values_and_dtypes_do_not_matter():
    truth, pred = random_pair(7)
    base = dsb_average_precision(truth, pred)[1]
    huge = np.where(pred > 0, pred.astype(np.int64) + 10**12, 0)  # sparse relabel path
    np.testing.assert_array_equal(dsb_average_precision(truth, huge)[1], base)
    np.testing.assert_array_equal(
        dsb_average_precision(truth.astype(np.uint16), pred.astype(np.int32))[1], base
    )
    np.testing.assert_array_equal(dsb_average_precision(truth[None], pred[None])[1], base)  # 3-D


def test_dsb_map_aggregates():
    pairs = [random_pair(s) for s in range(5)]
    res = dsb_map(pairs)
    per_image = [dsb_average_precision(t, p)[0] for t, p in pairs]
    np.testing.assert_array_equal(res["per_image"], per_image)
    assert res["score"] == pytest.approx(np.mean(per_image))
    assert res["per_threshold"].mean() == pytest.approx(res["score"])
    np.testing.assert_allclose(res["thresholds"], DSB_THRESHOLDS)
    assert "IoU > t" in res["definition"]
    assert dsb_map(iter(pairs))["score"] == res["score"]  # generators work


@pytest.mark.parametrize(
    "truth, pred, match",
    [
        (np.zeros((3, 3), float), np.zeros((3, 3), int), "truth must be an integer label image"),
        (np.zeros((3, 3), int), np.zeros((3, 4), int), "shape"),
        (np.zeros((3, 3), int), -np.ones((3, 3), int), "pred holds negative label -1"),
    ],
)
def test_errors_name_the_argument(truth, pred, match):
    with pytest.raises(UserError, match=match):
        dsb_average_precision(truth, pred)


@pytest.mark.parametrize(
    "score", [dsb_average_precision, adapted_rand_error, foreground_restricted_scores]
)
@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((3, 3), float), r"must be an integer label image \(0 = background\)"),
        (-np.ones((3, 3), int), "holds negative label -1; labels must be >= 0"),
        (np.int64(4), "must be a label image, got a scalar"),
    ],
)
def test_instance_and_em_scores_reject_bad_label_images_alike(score, bad, match):
    """One label-image check serves the DSB and the EM scores (the EM ones took scalars)."""
    with pytest.raises(UserError, match=match):
        score(np.ones((3, 3), int) if bad.ndim == 0 else bad, bad)


def test_dsb_map_errors():
    with pytest.raises(UserError, match="empty"):
        dsb_map([])
    with pytest.raises(UserError, match=r"pairs\[1\]"):
        dsb_map([(np.zeros((2, 2), int),) * 2, (np.zeros((2, 2), int), np.zeros((3, 2), int))])
    with pytest.raises(UserError, match=r"pairs\[0\] must be"):
        dsb_map([np.zeros((3, 3), int)])


# --------------------------------------------------------------------------- real DSB masks


def _dsb_images(count=3):
    import csv

    with open(DSB / "image_types.csv") as fh:
        rows = list(csv.DictReader(fh))
    picked = [r["ImageId"] for r in rows if 10 <= int(r["n_nuclei"]) <= 60][:count]
    assert picked, "no suitable DSB image"
    return picked


def _dsb_masks(image_id):
    from PIL import Image

    files = sorted((DSB / "stage1_train" / image_id / "masks").glob("*.png"))
    return [np.asarray(Image.open(f)) > 0 for f in files]


@pytest.mark.data
@needs_dsb
def test_real_dsb_truth_vs_itself_and_vs_eroded_masks():
    for n, image_id in enumerate(_dsb_images()):
        masks = _dsb_masks(image_id)
        truth = np.zeros(masks[0].shape, np.int32)
        eroded = np.zeros(masks[0].shape, np.int32)
        for k, m in enumerate(masks, start=1):
            truth[m] = k
            eroded[ndi.binary_erosion(m)] = k
        score, ap = dsb_average_precision(truth, truth)
        assert score == 1.0 and np.all(ap == 1.0)

        # Hand logic: eroded object k lies inside true object k only, so its IoU is
        # |eroded_k| / |mask_k|; it is a hit at t when 100 |eroded_k| > T |mask_k|.
        areas = np.array([m.sum() for m in masks])
        eroded_areas = np.bincount(eroded.ravel(), minlength=len(masks) + 1)[1:]
        n_true, n_pred = len(masks), int((eroded_areas > 0).sum())
        expected = []
        for percent in range(50, 100, 5):
            tp = int(np.sum((eroded_areas > 0) & (100 * eroded_areas > percent * areas)))
            expected.append(tp / (tp + (n_pred - tp) + (n_true - tp)))
        score, ap = dsb_average_precision(truth, eroded)
        np.testing.assert_array_equal(ap, expected)
        if n == 0:  # the pair-loop reference is slow; one real image is enough
            np.testing.assert_array_equal(ap, reference_dsb(truth, eroded))
        assert score == np.mean(expected)
        assert 0.0 < score < 1.0


# --------------------------------------------------------------------------- splits and merges


def test_object_counts_and_f1_hand_worked():
    truth = np.array([[1, 1, 1, 1, 0, 2, 2, 0, 3, 3]])
    # Object 1 matched (IoU 3/4), object 2 half-covered (IoU 1/2, not > 0.5), object 3 missed,
    # and one prediction on the background.
    pred = np.array([[5, 5, 5, 0, 0, 6, 0, 0, 0, 0]])
    pred[0, 4] = 7
    assert object_counts(truth, pred) == (1, 2, 2)
    assert object_f1(1, 2, 2) == pytest.approx(2 / 6)
    assert object_counts(truth, pred, iou=0.7) == (1, 2, 2)  # 3/4 > 0.7
    assert object_counts(truth, pred, iou=0.75) == (0, 3, 3)  # strict: 3/4 is not > 3/4


def test_object_counts_compare_iou_exactly_like_the_dsb_score():
    truth = np.zeros((9, 10), np.int32)
    truth[:, :] = 1  # 90 pixels
    pred = np.zeros_like(truth)
    pred.flat[:63] = 1  # IoU 63/90 = 0.7 exactly, which 0.7 * 90 in floats puts above
    assert object_counts(truth, pred, iou=0.7) == (0, 1, 1)
    assert dsb_average_precision(truth, pred)[1][4] == 0.0  # the 0.70 threshold: a miss too
    with pytest.raises(UserError, match="whole percentage"):
        object_counts(truth, pred, iou=0.705)


def test_object_f1_of_nothing_against_nothing_is_one():
    assert object_f1(0, 0, 0) == 1.0


def test_object_counts_refuse_thresholds_that_allow_several_matches():
    with pytest.raises(UserError, match="in \\[0.5, 1\\)"):
        object_counts(np.zeros((2, 2), int), np.zeros((2, 2), int), iou=0.3)


def test_one_true_object_cut_in_two_is_one_split_and_no_merge():
    truth = np.array([[1, 1, 1, 1, 1, 1, 0, 2, 2]])
    pred = np.array([[3, 3, 3, 4, 4, 4, 0, 5, 5]])
    assert split_count(truth, pred) == 1
    assert merge_count(truth, pred) == 0


def test_one_prediction_over_two_true_objects_is_one_merge_and_no_split():
    truth = np.array([[1, 1, 1, 2, 2, 2, 0, 3, 3]])
    pred = np.array([[9, 9, 9, 9, 9, 9, 0, 4, 4]])
    assert merge_count(truth, pred) == 1
    assert split_count(truth, pred) == 0


def test_a_prediction_grazing_a_second_object_is_not_a_merge():
    # The prediction covers all of object 1 but only 1 of the 4 pixels of object 2.
    truth = np.array([[1, 1, 1, 2, 2, 2, 2]])
    pred = np.array([[5, 5, 5, 5, 0, 0, 0]])
    assert merge_count(truth, pred) == 0
    # A prediction mostly on the background does not split an object it touches.
    truth = np.array([[1, 1, 1, 1, 0, 0, 0, 0, 0]])
    pred = np.array([[2, 2, 3, 3, 3, 3, 3, 3, 3]])
    assert split_count(truth, pred) == 0


def test_splits_and_merges_count_objects_not_pieces():
    # Object 1 cut in three counts once; two merged pairs count twice.
    truth = np.array([[1, 1, 1, 1, 1, 1, 0, 2, 2, 3, 3, 0, 4, 4, 5, 5]])
    pred = np.array([[6, 6, 7, 7, 8, 8, 0, 9, 9, 9, 9, 0, 1, 1, 1, 1]])
    assert split_count(truth, pred) == 1
    assert merge_count(truth, pred) == 2


# --------------------------------------------------------------------------- submission CSVs


def _solution_csv(path, labels_by_id):
    from seg_bench.data.rle import rle_encode_labels

    rows = ["ImageId,EncodedPixels,Height,Width,Usage"]
    for image_id, lab in labels_by_id.items():
        for rle in rle_encode_labels(lab).values():
            rows.append(f"{image_id},{rle},{lab.shape[0]},{lab.shape[1]},Public")
    path.write_text("\n".join(rows) + "\n")
    return path


def _two_images():
    a = np.zeros((12, 16), np.int32)
    a[1:5, 1:5], a[6:11, 8:14] = 1, 2
    b = np.zeros((10, 10), np.int32)
    b[2:8, 2:8] = 1
    return {"imgA": a, "imgB": b}


def test_submission_round_trip_scores_one_and_hand_worked_perturbations(tmp_path):
    from seg_bench.data.rle import write_submission_csv
    from seg_bench.evaluation.score import score

    truth = _two_images()
    solution = _solution_csv(tmp_path / "stage1_solution.csv", truth)
    write_submission_csv(tmp_path / "same.csv", truth)
    assert score(tmp_path / "same.csv", solution, kind="instance")["overall"]["dsb_map"] == 1.0
    # Image A loses one of its two nuclei: TP 1, FN 1 -> 1/2 at every threshold.
    dropped = {"imgA": np.where(truth["imgA"] == 2, 0, truth["imgA"]), "imgB": truth["imgB"]}
    write_submission_csv(tmp_path / "dropped.csv", dropped)
    result = score(tmp_path / "dropped.csv", solution, kind="instance")
    per_image = {r["id"]: r["dsb_ap"] for r in result["per_image"]}
    assert per_image == {"imgA": 0.5, "imgB": 1.0}
    assert result["overall"]["dsb_map"] == pytest.approx(0.75)
    # Image B's nucleus shrunk to 5x6 of 6x6 (IoU 30/36 = 0.833): hits at t = .50 to .80 only.
    shrunk = dict(truth, imgB=np.where(np.arange(10)[:, None] < 7, truth["imgB"], 0))
    write_submission_csv(tmp_path / "shrunk.csv", shrunk)
    result = score(tmp_path / "shrunk.csv", solution, kind="instance")
    assert {r["id"]: r["dsb_ap"] for r in result["per_image"]}["imgB"] == pytest.approx(0.7)


def test_submission_with_overlapping_or_out_of_range_runs_is_one_line(tmp_path):
    from seg_bench.evaluation.score import score

    solution = _solution_csv(tmp_path / "stage1_solution.csv", _two_images())
    (tmp_path / "overlap.csv").write_text("ImageId,EncodedPixels\nimgB,23 6\nimgB,25 3\n")
    with pytest.raises(
        UserError, match=r"overlap.csv: line 3 \(imgB\): overlaps the object of line 2"
    ):
        score(tmp_path / "overlap.csv", solution, kind="instance")
    (tmp_path / "past.csv").write_text("ImageId,EncodedPixels\nimgB,95 10\n")
    with pytest.raises(UserError, match=r"past.csv: line 2 \(imgB\): run 1 .* past the last"):
        score(tmp_path / "past.csv", solution, kind="instance")
    (tmp_path / "runs.csv").write_text("ImageId,EncodedPixels\nimgB,5 4 7 2\n")
    with pytest.raises(UserError, match=r"runs.csv: line 2 .*pair 2 \(start 7\) overlaps pair 1"):
        score(tmp_path / "runs.csv", solution, kind="instance")
