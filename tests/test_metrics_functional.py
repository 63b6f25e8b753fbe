"""Pixel metrics against scikit-learn, hand-worked cases and properties."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from seg_bench.errors import UserError
from seg_bench.metrics.functional import (
    auroc_grade,
    balanced_auroc,
    confusion_matrix,
    kappa_band,
    pixel_metrics,
)
from seg_bench.metrics.roc import probability_histograms, roc_auc_binned, roc_auc_exact

FAST = settings(max_examples=40, deadline=None)


@st.composite
def class_maps(draw, max_classes=5):
    c = draw(st.integers(2, max_classes))
    n = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Skewed class frequencies so that some classes are often absent.
    probs = rng.dirichlet(np.full(c, 0.5))
    target = rng.choice(c, size=n, p=probs)
    noise = rng.random(n) < draw(st.floats(0, 1))
    pred = np.where(noise, rng.choice(c, size=n, p=probs), target)
    return pred, target, c


# --------------------------------------------------------------------------- confusion matrix


@FAST
@given(class_maps())
def test_confusion_matrix_matches_sklearn(data):
    pred, target, c = data
    ours = confusion_matrix(pred, target, c)
    ref = skm.confusion_matrix(target, pred, labels=list(range(c)))
    np.testing.assert_array_equal(ours, ref)


def test_confusion_matrix_torch_in_torch_out_and_ignore_index():
    pred = torch.tensor([[0, 1], [2, 2]])
    target = torch.tensor([[0, 255], [2, 1]])
    cm = confusion_matrix(pred, target, 3, ignore_index=255)
    assert isinstance(cm, torch.Tensor)
    expected = np.zeros((3, 3), int)
    expected[0, 0] = expected[2, 2] = expected[1, 2] = 1
    np.testing.assert_array_equal(cm.numpy(), expected)
    np.testing.assert_array_equal(
        confusion_matrix(pred.numpy(), target.numpy(), 3, ignore_index=255), expected
    )


def test_confusion_matrix_accepts_bool():
    cm = confusion_matrix(np.array([True, False]), np.array([True, True]), 2)
    np.testing.assert_array_equal(cm, [[0, 0], [1, 1]])


@pytest.mark.parametrize(
    "pred, target, c, match",
    [
        (np.zeros(3, int), np.zeros(4, int), 2, "shape"),
        (np.zeros(3, float), np.zeros(3, int), 2, "pred must hold integer class ids"),
        (np.array([0, 2]), np.array([0, 1]), 2, "pred holds class id 2"),
        (np.array([0, 1]), np.array([-1, 1]), 2, "target holds class id -1"),
        (np.array([0, 1]), np.array([0, 1]), 1, "num_classes"),
        (np.array([0, 1]), np.array([0, 1]), 2.0, "num_classes"),
    ],
)
def test_confusion_matrix_errors_name_the_argument(pred, target, c, match):
    with pytest.raises(UserError, match=match):
        confusion_matrix(pred, target, c)


def test_confusion_matrix_torch_errors():
    with pytest.raises(UserError, match="pred must hold integer"):
        confusion_matrix(torch.rand(4), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(UserError, match="target holds class id 5"):
        confusion_matrix(torch.zeros(4, dtype=torch.long), torch.full((4,), 5), 2)


# --------------------------------------------------------------------------- pixel metrics


@FAST
@given(class_maps())
def test_pixel_metrics_match_sklearn(data):
    pred, target, c = data
    m = pixel_metrics(confusion_matrix(pred, target, c))
    labels = list(range(c))
    present = m["present"]
    np.testing.assert_array_equal(present, np.isin(labels, np.union1d(pred, target)))
    pc = m["per_class"]
    kw = dict(labels=labels, average=None, zero_division=0)
    for key, fn in (
        ("dice", skm.f1_score),
        ("iou", skm.jaccard_score),
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
    ):
        np.testing.assert_allclose(pc[key][present], fn(target, pred, **kw)[present], atol=1e-12)
        macro = fn(
            target, pred, labels=np.flatnonzero(present).tolist(), average="macro", zero_division=0
        )
        assert m["macro"][key] == pytest.approx(macro, abs=1e-12)
    mcm = skm.multilabel_confusion_matrix(target, pred, labels=labels)
    tn, fp = mcm[:, 0, 0], mcm[:, 0, 1]
    has_neg = tn + fp > 0
    np.testing.assert_allclose(pc["specificity"][has_neg], (tn / np.maximum(tn + fp, 1))[has_neg])
    np.testing.assert_allclose(pc["fpr"], 1 - pc["specificity"])
    np.testing.assert_allclose(pc["fnr"], 1 - pc["recall"])
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(target, pred))
    single_agreed = len(np.union1d(pred, target)) == 1
    if not single_agreed:
        assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(target, pred), abs=1e-12)
    else:
        assert m["kappa"] == 1.0
    for v in pc.values():
        assert np.all(np.isfinite(v))
    if c == 2:
        assert m["iou"] == pc["iou"][1] and m["dice"] == m["f1"] == pc["dice"][1]
        assert m["balanced_auroc"] == pytest.approx(
            skm.balanced_accuracy_score(target, pred)
            if len(np.unique(target)) == 2
            else m["balanced_auroc"]
        )
    else:
        assert m["iou"] == m["macro"]["iou"]


def test_hand_worked_binary():
    # target: 4 positives, 6 negatives; prediction: 3 TP, 1 FN, 2 FP, 4 TN.
    cm = np.array([[4, 2], [1, 3]])
    m = pixel_metrics(cm)
    assert m["iou"] == pytest.approx(3 / 6)
    assert m["dice"] == pytest.approx(6 / 9)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["fpr"] == pytest.approx(2 / 6)
    assert m["fnr"] == pytest.approx(1 / 4)
    assert m["accuracy"] == pytest.approx(7 / 10)
    # kappa: p_o = 0.7; truth 6/4, prediction 5/5, so p_e = (6*5 + 4*5) / 100 = 0.5
    assert m["kappa"] == pytest.approx((0.7 - 0.5) / (1 - 0.5))
    assert m["balanced_auroc"] == pytest.approx(1 - (2 / 6 + 1 / 4) / 2)
    assert balanced_auroc(cm) == m["balanced_auroc"]


def test_all_background_image_never_nan():
    m = pixel_metrics(confusion_matrix(np.zeros((8, 8), int), np.zeros((8, 8), int), 2))
    for key in ("iou", "dice", "precision", "recall", "specificity", "kappa", "accuracy"):
        assert m[key] == 1.0, key
    assert m["fpr"] == m["fnr"] == 0.0
    assert m["macro"]["iou"] == 1.0  # class 1 absent from both: excluded from the mean
    assert not m["present"][1]


def test_missed_and_hallucinated_objects_score_zero():
    missed = pixel_metrics([[90, 0], [10, 0]])  # positives in truth, none predicted
    assert missed["iou"] == missed["dice"] == missed["precision"] == missed["recall"] == 0.0
    halluc = pixel_metrics([[90, 10], [0, 0]])  # no positives in truth, some predicted
    assert halluc["iou"] == halluc["precision"] == halluc["recall"] == 0.0


def test_macro_excludes_absent_class():
    # class 2 appears nowhere: macro over classes 0 and 1 only
    cm = np.array([[5, 0, 0], [1, 4, 0], [0, 0, 0]])
    m = pixel_metrics(cm)
    assert m["per_class"]["iou"][2] == 1.0
    assert m["macro"]["iou"] == pytest.approx((5 / 6 + 4 / 5) / 2)
    assert m["iou"] == m["macro"]["iou"]


@pytest.mark.parametrize(
    "cm, match",
    [
        ([[1, 2, 3]], "square"),
        ([[0, 0], [0, 0]], "empty"),
        ([[1, -1], [0, 1]], "negative"),
        ([[1.0, np.nan], [0, 1]], "NaN"),
    ],
)
def test_pixel_metrics_errors(cm, match):
    with pytest.raises(UserError, match=match):
        pixel_metrics(np.array(cm))


def test_balanced_auroc_requires_binary():
    with pytest.raises(UserError, match="binary"):
        balanced_auroc(np.eye(3, dtype=int))


# --------------------------------------------------------------------------- AUROC


@FAST
@given(st.integers(0, 2**32 - 1), st.integers(2, 200), st.sampled_from([1, 2, 6]))
def test_roc_auc_exact_matches_sklearn_with_ties(seed, n, decimals):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 2, n)
    target[:2] = [0, 1]
    scores = np.round(rng.random(n) * 0.5 + 0.4 * target, decimals)  # many ties
    assert roc_auc_exact(scores, target) == pytest.approx(
        skm.roc_auc_score(target, scores), abs=1e-12
    )


def test_roc_auc_exact_hand_worked_and_torch():
    assert roc_auc_exact([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert roc_auc_exact(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])) == 0.5  # a tie
    assert roc_auc_exact(np.array([[3.0, -1.0]]), np.array([[True, False]])) == 1.0  # logits


@pytest.mark.parametrize(
    "probs, target, match",
    [
        ([0.1, 0.2], [0, 0], "no positive"),
        ([0.1, 0.2], [1, 1], "no negative"),
        ([0.1, 0.2], [0, 2], "binary"),
        ([0.1, np.nan], [0, 1], "NaN"),
        ([0.1, 0.2, 0.3], [0, 1], "shape"),
    ],
)
def test_roc_auc_exact_errors(probs, target, match):
    with pytest.raises(UserError, match=match):
        roc_auc_exact(np.array(probs), np.array(target))


def test_roc_auc_binned_close_to_exact():
    rng = np.random.default_rng(0)
    n = 200_000
    target = rng.random(n) < 0.3
    probs = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * target)))
    hp, hn = probability_histograms(probs, target, bins=10_000)
    exact = roc_auc_exact(probs, target)
    binned = roc_auc_binned(hp, hn)
    assert abs(binned - exact) < 1e-3
    assert exact == pytest.approx(skm.roc_auc_score(target, probs), abs=1e-12)


def test_roc_auc_binned_is_exact_when_scores_are_bin_values():
    rng = np.random.default_rng(1)
    bins = 100
    probs = (rng.integers(0, bins, 5000) + 0.5) / bins
    target = rng.random(5000) < probs
    hp, hn = probability_histograms(probs, target, bins=bins)
    assert roc_auc_binned(hp, hn) == pytest.approx(roc_auc_exact(probs, target), abs=1e-15)


def test_probability_histograms_add_over_chunks_and_edges():
    rng = np.random.default_rng(2)
    probs = rng.random(1000).astype(np.float32)
    probs[:3] = [0.0, 1.0, 0.5]
    target = rng.random(1000) < 0.5
    whole = probability_histograms(probs, target, bins=50)
    parts = [
        probability_histograms(p, t, bins=50)
        for p, t in zip(np.array_split(probs, 7), np.array_split(target, 7), strict=True)
    ]
    np.testing.assert_array_equal(whole[0], sum(p[0] for p in parts))
    np.testing.assert_array_equal(whole[1], sum(p[1] for p in parts))
    assert whole[0].sum() + whole[1].sum() == 1000
    hp, hn = probability_histograms(np.array([1.0]), np.array([1]), bins=10)
    assert hp[-1] == 1  # 1.0 lands in the last bin


@pytest.mark.parametrize(
    "probs, bins, match",
    [
        ([0.5, 1.5], 10, r"\[0, 1\]"),
        ([0.5, -0.1], 10, r"\[0, 1\]"),
        ([0.5, np.nan], 10, "NaN"),
        ([0.5, 0.5], 1, "bins"),
        ([1, 0], 10, "floating"),
    ],
)
def test_probability_histograms_errors(probs, bins, match):
    with pytest.raises(UserError, match=match):
        probability_histograms(np.array(probs), np.array([0, 1]), bins=bins)


def test_roc_auc_binned_errors():
    with pytest.raises(UserError, match="bins"):
        roc_auc_binned([1, 2], [1, 2, 3])
    with pytest.raises(UserError, match="hist_neg must hold whole pixel counts >= 0"):
        roc_auc_binned([1, 2], [1, -2])
    with pytest.raises(UserError, match="hist_pos must hold whole pixel counts"):
        roc_auc_binned([0.5, 0.5], [1, 0])  # was cut to [0, 0] silently: AUROC 0.0, not 0.75
    with pytest.raises(UserError, match="no positive"):
        roc_auc_binned([0, 0], [1, 2])


# --------------------------------------------------------------------------- interpretation


@pytest.mark.parametrize(
    "k, lk, fleiss",
    [
        (-0.1, "poor", "poor"),
        (0.0, "slight", "poor"),
        (0.20, "slight", "poor"),
        (0.21, "fair", "poor"),
        (0.40, "fair", "fair to good"),
        (0.41, "moderate", "fair to good"),
        (0.60, "moderate", "fair to good"),
        (0.61, "substantial", "fair to good"),
        (0.75, "substantial", "fair to good"),
        (0.76, "substantial", "excellent"),
        (0.80, "substantial", "excellent"),
        (0.81, "almost perfect", "excellent"),
        (1.0, "almost perfect", "excellent"),
    ],
)
def test_kappa_band(k, lk, fleiss):
    assert kappa_band(k) == lk
    assert kappa_band(k, scale="fleiss") == fleiss


def test_kappa_band_errors():
    for bad in (1.5, -1.01, math.nan, "0.3"):
        with pytest.raises(UserError, match="k must"):
            kappa_band(bad)
    with pytest.raises(UserError, match="scale"):
        kappa_band(0.5, scale="cohen")


@pytest.mark.parametrize(
    "a, grade",
    [
        (1.0, ("A", "excellent")),
        (0.9, ("A", "excellent")),
        (0.89, ("B", "good")),
        (0.8, ("B", "good")),
        (0.75, ("C", "fair")),
        (0.6, ("D", "poor")),
        (0.5, ("F", "fail")),
        (0.49, ("F", "worse than chance")),
        (0.0, ("F", "worse than chance")),
    ],
)
def test_auroc_grade(a, grade):
    assert auroc_grade(a) == grade


def test_auroc_grade_errors():
    for bad in (1.2, -0.1, math.nan, None):
        with pytest.raises(UserError, match="a must"):
            auroc_grade(bad)
