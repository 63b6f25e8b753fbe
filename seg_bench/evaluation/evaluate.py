"""Test-split evaluation: whole-image sliding-window prediction, post-processing, and
per-image metric records from which every dataset-level score (and its bootstrap) is derived.

Per image we keep only small sufficient statistics: the confusion matrix, probability
histograms (for pooled AUROC/ROC/PR), the DSB AP, and the ISBI 2012 scores per threshold, so
any subset of images (a bootstrap resample) can be re-scored exactly without the predictions.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from seg_bench.config import RunConfig
from seg_bench.data.base import SegmentationDataModule
from seg_bench.inference.device import inference_device
from seg_bench.inference.instances import (
    SEEDED,
    instances_from_logits,
    methods_for,
    run_method,
)
from seg_bench.inference.outputs import probabilities, target_maps
from seg_bench.inference.postprocess import PostprocessConfig, postprocess
from seg_bench.inference.sliding_window import predict_logits
from seg_bench.inference.tuning import tune
from seg_bench.metrics import (
    confusion_matrix,
    dsb_average_precision,
    isbi2012_scores,
    pixel_metrics,
    probability_histograms,
    roc_auc_binned,
)
from seg_bench.metrics.instance import merge_count, object_counts, split_count

# Datasets whose evaluation scores every post-processing method (tuned on validation first).
METHOD_STUDY = ("dsb2018",)
HIST_BINS = 1000  # pooled AUROC within ~1e-3 of exact; 2 x 1000 counts per image in the record
# Raised whenever the same predictions would score differently; records without it are 1.
EVALUATION_VERSION = 5
# What each version changed, and which records the change can reach: records that no change
# between their versions reaches score the same predictions alike.
VERSION_CHANGES = {
    2: (
        "post-processing grids grow past a binding edge, in DSB 2018's method study",
        lambda record: record.get("dataset") in METHOD_STUDY,
    ),
    3: (
        "the distance watershed joins peaks on one plateau of the distance transform into one "
        "marker (it split elongated nuclei); hole filling fills each object's own holes, not "
        "the gap touching objects enclose",
        lambda record: record.get("dataset") in METHOD_STUDY or splits_or_fills(record),
    ),
    4: (
        "the seeded watershed of DSB 2018's method study also tunes grow: peaks of the seed map "
        "beyond grow px of every seed become markers, so a seedless nucleus touching a seeded "
        "one is not flooded (models with a seed map only)",
        lambda record: record.get("dataset") in METHOD_STUDY and has_seed_map(record),
    ),
    5: (
        "DSB 2018's official stage-1 test split leaves out the images whose solution rows all "
        "say Usage Ignored, as Kaggle's leaderboards and seg-bench score do",
        lambda record: official_dsb_test(record),
    ),
}


def official_dsb_test(record: dict[str, Any]) -> bool:
    """Whether a record was tested on DSB 2018's official stage-1 test set (evaluation v5)."""
    split = str((record.get("data") or {}).get("split") or "")
    return record.get("dataset") == "dsb2018" and split.startswith("official stage1_test")


def splits_or_fills(record: dict[str, Any]) -> bool:
    """Whether a record's post-processing splits by watershed or fills holes (evaluation v3)."""
    post = (record.get("config") or {}).get("postprocess") or {}
    return bool(post.get("watershed") or post.get("fill_holes"))


def has_seed_map(record: dict[str, Any]) -> bool:
    """Whether a record's network gives a seed map (boundary3 or distance target)."""
    return ((record.get("config") or {}).get("target") or "binary") != "binary"


DEFINITIONS = {
    "pixel": "pooled confusion matrix over test images (rows truth, cols prediction), positive "
    "class 1",
    "auroc": f"threshold-free ROC AUC of pooled pixel probabilities, {HIST_BINS}-bin histograms",
    "auroc_balanced": "single-threshold 1 - (FPR + FNR) / 2 at the post-processed mask",
    "dsb_map": "Kaggle DSB 2018: mean over images of mean over IoU>t, t=0.50..0.95, of "
    "TP/(TP+FP+FN)",
    "vrand": "ISBI 2012 foreground-restricted Rand F-score: per-threshold slice mean, max over "
    "t=0..1 step .1",
    "vinfo": "ISBI 2012 foreground-restricted information score: per-threshold slice mean, max "
    "over t",
    "vrand_thinned": "vrand after thinning the predicted borders to 1-px watershed lines, as the "
    "challenge's final ranking (Fiji getMaximalVRandAfterThinning)",
    "vinfo_thinned": "vinfo after the same thinning",
    "methods": "DSB only: every post-processing method (seg_bench/inference/instances.py), its "
    "parameters tuned on the validation split; per image: map, ap50, ap75, tp/fp/fn at IoU > "
    ".5, splits (true objects hit by 2+ predictions lying more than half inside each), merges "
    "(predictions covering more than half of each of 2+ true objects)",
}


def image_record(
    prob: np.ndarray,
    truth: np.ndarray,
    truth_instances: np.ndarray,
    instance_metric: str | None,
    post: PostprocessConfig,
    instances: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Sufficient statistics of one image; also returns the predicted instance labels
    (``instances``, when given, replace those of ``post``)."""
    if instances is None:
        mask, instances = postprocess(prob, post)
    else:
        mask = instances > 0
    rec: dict[str, Any] = {"confmat": confusion_matrix(mask.astype(np.uint8), truth, 2).tolist()}
    pos, neg = probability_histograms(prob, truth > 0, bins=HIST_BINS)
    rec["hist_pos"], rec["hist_neg"] = pos.tolist(), neg.tolist()
    if instance_metric == "dsb":
        ap, per_t = dsb_average_precision(truth_instances, instances)
        rec["dsb_map"], rec["dsb_ap_by_threshold"] = float(ap), per_t.tolist()
    elif instance_metric == "em" and (truth == 0).any():
        gt = (truth == 0)[None].astype(np.uint8)
        for suffix, thin in (("", False), ("_thinned", True)):
            s = isbi2012_scores(prob[None], gt, prob_of="membrane", thin=thin)
            rec[f"vrand{suffix}_by_threshold"] = s["v_rand_per_slice"][:, 0].tolist()
            rec[f"vinfo{suffix}_by_threshold"] = s["v_info_per_slice"][:, 0].tolist()
    return rec, instances


def evaluate(
    model: torch.nn.Module,
    dm: SegmentationDataModule,
    cfg: RunConfig,
    split: str = "test",
    keep_predictions: int = 0,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Score every image of ``split``; ``keep_predictions`` images are returned for figures.

    ``channels_last``: run the network in the NHWC layout (the run's measured training choice).
    Set explicitly either way: a model fresh from training is still NHWC, one loaded from its
    checkpoint is not, and a layout taken by chance made a TTA record's speed incomparable
    with its plain twin's. ``benchmarks/bench_inference.py --cases image --layouts nchw,nhwc
    --image-size 512 --window 256`` (U-Net width 0.25, float32, 2-core AVX2 EPYC): at overlap
    0.25, 0.72 s NCHW / 0.68 s NHWC plainly, 6.75 s / 3.66 s with D4 TTA."""
    post = PostprocessConfig.from_dict(cfg.postprocess)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(inference_device(cfg.accelerator), memory_format=layout)
    tuned = tune_methods(model, dm, cfg) if dm.name in METHOD_STUDY else {}
    # The main instances of an instance-aware target: the seeded watershed as tuned on the
    # validation split where there is one (DSB), else ``post`` read for the target.
    main = (tuned.get(SEEDED) or {}).get("params", {})
    seeded_main = cfg.target != "binary" and bool(main) and not post.three_class
    per_image, previews = [], []
    seconds, pixels = 0.0, 0
    for sample in dm.samples(split):
        start = time.perf_counter()
        logits = _logits(model, sample.image, dm, cfg)
        seconds += time.perf_counter() - start
        pixels += sample.mask.size
        fg, seeds = target_maps(logits, cfg.target)
        # The binary target keeps its probabilities (and results) exactly as before.
        prob = probabilities(logits) if cfg.target == "binary" else fg
        own = None
        if seeded_main:
            own = run_method(SEEDED, fg, seeds, **main)
        elif seeds is not None:
            own = instances_from_logits(logits, cfg.target, post)[1]
        truth = sample.instances
        rec, instances = image_record(prob, sample.mask, truth, dm.instance_metric, post, own)
        if tuned:
            rec["methods"] = {
                name: method_scores(truth, run_method(name, fg, seeds, **t["params"]))
                for name, t in tuned.items()
            }
        if "type" in sample.meta:
            rec["type"] = sample.meta["type"]
        per_image.append({"id": sample.id, **rec})
        if len(previews) < keep_predictions:
            previews.append((sample.id, sample.image, sample.mask, prob))
    return {
        "evaluation_version": EVALUATION_VERSION,
        "overall": aggregate(per_image),
        "per_image": per_image,
        "inference_mpix_per_s": pixels / 1e6 / max(seconds, 1e-9),
        "inference_layout": "channels_last" if channels_last else "contiguous",
        "postprocess": {"method": SEEDED, **main} if seeded_main else post.to_dict(),
        "postprocess_methods": tuned,
        "target": cfg.target,
        "tta": cfg.tta,
        "overlap": cfg.overlap,
        "definitions": DEFINITIONS,
        "previews": previews,
    }


def _logits(model, image: np.ndarray, dm: SegmentationDataModule, cfg: RunConfig):
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    window = cfg.inference_window(dm.patch_size)
    return predict_logits(model, x, window=window, overlap=cfg.overlap, tta=cfg.tta)[0]


def method_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The numbers a record keeps per image and method (see DEFINITIONS["methods"])."""
    score, per_t = dsb_average_precision(truth, pred)
    tp, fp, fn = object_counts(truth, pred, 0.5)
    return {
        "map": round(float(score), 6),
        "ap50": round(float(per_t[0]), 6),
        "ap75": round(float(per_t[5]), 6),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "splits": split_count(truth, pred),
        "merges": merge_count(truth, pred),
    }


def tune_methods(
    model: torch.nn.Module, dm: SegmentationDataModule, cfg: RunConfig
) -> dict[str, dict[str, Any]]:
    """Each post-processing method's grid point with the best mean DSB score on the
    validation split (never the test split): {method: {"params", "val_map"}}."""
    images = []
    for sample in dm.samples("val"):
        fg, seeds = target_maps(_logits(model, sample.image, dm, cfg), cfg.target)
        images.append((fg, seeds, sample.instances))
    out = {}
    for name in methods_for(images[0][1] is not None):
        params, value = tune(name, images, lambda t, p: dsb_average_precision(t, p)[0])
        out[name] = {"params": params, "val_map": round(value, 6)}
    return out


def evaluation_version(record: dict[str, Any]) -> int:
    """The evaluation code version that scored a record (1 before versions were written)."""
    return int(record.get("metrics", {}).get("evaluation_version", 1))


def scoring_version(record: dict[str, Any]) -> int:
    """The newest change up to the record's evaluation version that reaches the record (1 if
    none): records with the same scoring version score the same predictions alike."""
    version = evaluation_version(record)
    reaching = (
        v for v, (_, reaches) in VERSION_CHANGES.items() if v <= version and reaches(record)
    )
    return max(reaching, default=1)


def is_stale(record: dict[str, Any]) -> bool:
    """True where a change newer than the record's evaluation would score it differently."""
    version = evaluation_version(record)
    return any(v > version and reaches(record) for v, (_, reaches) in VERSION_CHANGES.items())


def aggregate(
    per_image: list[dict[str, Any]], indices: np.ndarray | None = None
) -> dict[str, float]:
    """Dataset-level scores over ``indices`` (all images by default; repeats allowed, for the
    bootstrap)."""
    chosen = per_image if indices is None else [per_image[i] for i in indices]
    m = pixel_metrics(np.sum([r["confmat"] for r in chosen], axis=0))
    out = {
        k: m[k]
        for k in (
            "iou",
            "dice",
            "accuracy",
            "kappa",
            "precision",
            "recall",
            "specificity",
            "fpr",
            "fnr",
        )
    }
    out["auroc_balanced"] = m["balanced_auroc"]
    pos = np.sum([r["hist_pos"] for r in chosen], axis=0)
    neg = np.sum([r["hist_neg"] for r in chosen], axis=0)
    if pos.sum() and neg.sum():
        out["auroc"] = roc_auc_binned(pos, neg)
    if all("dsb_map" in r for r in chosen):
        out["dsb_map"] = float(np.mean([r["dsb_map"] for r in chosen]))
    for key in ("vrand", "vinfo", "vrand_thinned", "vinfo_thinned"):
        with_em = [r[f"{key}_by_threshold"] for r in chosen if f"{key}_by_threshold" in r]
        if with_em:
            out[key] = float(np.max(np.mean(with_em, axis=0)))
    return {k: float(v) for k, v in out.items()}
