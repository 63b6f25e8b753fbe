"""torchmetrics classes: chunked == one-shot == functional, and DDP-style state sums."""

import copy

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from seg_bench.errors import UserError
from seg_bench.metrics.functional import confusion_matrix, pixel_metrics
from seg_bench.metrics.roc import probability_histograms, roc_auc_binned, roc_auc_exact
from seg_bench.metrics.streaming import BinnedROC, ConfusionMatrixMetric


def _segmentation_batch(seed, n=6, c=4, size=16):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (n, size, size), generator=g)
    flip = torch.rand(n, size, size, generator=g) < 0.3
    pred = torch.where(flip, torch.randint(0, c, (n, size, size), generator=g), target)
    return pred, target


def _prob_batch(seed, n=20_000):
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(n, generator=g) < 0.3).long()
    probs = torch.sigmoid(torch.randn(n, generator=g) + 1.5 * target)
    return probs, target


def _same_dict(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _same_dict(a[k], b[k])
        elif isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k])
        elif isinstance(a[k], float) and np.isnan(a[k]):
            assert np.isnan(b[k])
        else:
            assert a[k] == b[k], k


# --------------------------------------------------------------------------- confusion matrix


def test_confusion_matrix_metric_chunks_equal_one_shot_and_functional():
    pred, target = _segmentation_batch(0)
    whole = ConfusionMatrixMetric(num_classes=4)
    whole.update(pred, target)
    chunked = ConfusionMatrixMetric(num_classes=4)
    for p, t in zip(pred.split(2), target.split(2), strict=True):
        chunked.update(p, t)
    torch.testing.assert_close(chunked.confmat, whole.confmat, rtol=0, atol=0)
    expected = pixel_metrics(confusion_matrix(pred.numpy(), target.numpy(), 4))
    _same_dict(chunked.compute(), expected)
    ref = skm.confusion_matrix(target.numpy().ravel(), pred.numpy().ravel(), labels=range(4))
    np.testing.assert_array_equal(whole.confmat.numpy(), ref)


def test_confusion_matrix_metric_merge_state_equals_whole():
    pred, target = _segmentation_batch(1, n=8)
    whole = ConfusionMatrixMetric(num_classes=4)
    whole.update(pred, target)
    rank0, rank1 = ConfusionMatrixMetric(num_classes=4), ConfusionMatrixMetric(num_classes=4)
    rank0.update(pred[:3], target[:3])
    rank1.update(pred[3:], target[3:])
    # What a DDP all-reduce does with dist_reduce_fx="sum":
    manual = rank0.confmat + rank1.confmat
    torch.testing.assert_close(manual, whole.confmat, rtol=0, atol=0)
    rank0.merge_state(rank1)
    torch.testing.assert_close(rank0.confmat, whole.confmat, rtol=0, atol=0)
    _same_dict(rank0.compute(), whole.compute())
    assert rank0._reductions["confmat"] is not None  # sum-reduced across processes


def test_confusion_matrix_metric_reset_ignore_index_and_errors():
    m = ConfusionMatrixMetric(num_classes=2, ignore_index=255)
    m.update(torch.tensor([0, 1, 1]), torch.tensor([0, 255, 1]))
    assert int(m.confmat.sum()) == 2
    m.reset()
    assert int(m.confmat.sum()) == 0
    with pytest.raises(UserError, match="pred holds class id 3"):
        m.update(torch.tensor([3]), torch.tensor([0]))
    with pytest.raises(UserError, match="shape"):
        m.update(torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(UserError, match="num_classes"):
        ConfusionMatrixMetric(num_classes=1)


# --------------------------------------------------------------------------- binned ROC


def test_binned_roc_chunks_equal_one_shot_and_functional():
    probs, target = _prob_batch(0)
    whole = BinnedROC(bins=1000)
    whole.update(probs, target)
    chunked = BinnedROC(bins=1000)
    for p, t in zip(probs.split(3000), target.split(3000), strict=True):
        chunked.update(p, t)
    torch.testing.assert_close(chunked.hist_pos, whole.hist_pos, rtol=0, atol=0)
    torch.testing.assert_close(chunked.hist_neg, whole.hist_neg, rtol=0, atol=0)
    hp, hn = probability_histograms(probs.numpy(), target.numpy(), bins=1000)
    np.testing.assert_array_equal(whole.hist_pos.numpy(), hp)
    np.testing.assert_array_equal(whole.hist_neg.numpy(), hn)
    res = chunked.compute()
    assert res["auroc"] == roc_auc_binned(hp, hn)
    assert abs(res["auroc"] - roc_auc_exact(probs.numpy(), target.numpy())) < 1e-3


def test_binned_roc_merge_state_equals_whole():
    probs, target = _prob_batch(1)
    whole = BinnedROC()
    whole.update(probs, target)
    a, b = BinnedROC(), BinnedROC()
    a.update(probs[:7000], target[:7000])
    b.update(probs[7000:], target[7000:])
    manual = copy.deepcopy(a)
    manual.hist_pos = a.hist_pos + b.hist_pos
    manual.hist_neg = a.hist_neg + b.hist_neg
    a.merge_state(b)
    _same_dict(a.compute(), whole.compute())
    _same_dict(manual.compute(), whole.compute())


def test_binned_roc_curves():
    probs, target = _prob_batch(2)
    m = BinnedROC(bins=10_000)
    m.update(probs, target)
    r = m.compute()
    assert (r["fpr"][0], r["tpr"][0]) == (0.0, 0.0)
    assert (r["fpr"][-1], r["tpr"][-1]) == (1.0, 1.0)
    assert np.all(np.diff(r["fpr"]) >= 0) and np.all(np.diff(r["tpr"]) >= 0)
    assert r["thresholds"][0] == 1.0 and r["thresholds"][-1] == 0.0
    # The trapezoid area under the returned curve is the reported AUROC.
    area = float(np.sum(np.diff(r["fpr"]) * (r["tpr"][1:] + r["tpr"][:-1]) / 2))
    assert area == pytest.approx(r["auroc"], abs=1e-12)
    assert r["auroc"] == pytest.approx(skm.roc_auc_score(target, probs), abs=1e-3)
    assert r["average_precision"] == pytest.approx(
        skm.average_precision_score(target, probs), abs=2e-3
    )
    assert r["precision"][0] == 1.0 and r["recall"][-1] == 1.0
    assert m.hist_pos.shape == (10_000,)  # constant memory: the state never grows


def test_binned_roc_half_precision_and_bool_target():
    probs, target = _prob_batch(3, n=2000)
    m = BinnedROC(bins=100)
    m.update(probs.half(), target.bool())
    assert int(m.hist_pos.sum() + m.hist_neg.sum()) == 2000


def test_binned_roc_one_class_is_nan_with_warning():
    m = BinnedROC(bins=10)
    m.update(torch.tensor([0.2, 0.7]), torch.tensor([0, 0]))
    with pytest.warns(UserWarning, match="only one class"):
        assert np.isnan(m.compute()["auroc"])


@pytest.mark.parametrize(
    "probs, target, match",
    [
        (torch.tensor([0.5, 1.2]), torch.tensor([0, 1]), r"\[0, 1\]"),
        (torch.tensor([0.5, 0.2]), torch.tensor([0, 2]), "binary"),
        (torch.tensor([1, 0]), torch.tensor([0, 1]), "floating"),
        (torch.tensor([0.5, 0.2]), torch.tensor([0]), "shape"),
    ],
)
def test_binned_roc_errors(probs, target, match):
    with pytest.raises(UserError, match=match):
        BinnedROC(bins=10).update(probs, target)
    with pytest.raises(UserError, match="bins"):
        BinnedROC(bins=1)
