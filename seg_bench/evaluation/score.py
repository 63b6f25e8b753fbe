"""`seg-bench score`: any tool's output against ground truth, matched by file name.

Predictions and truth are PNG/TIFF masks or label images in two folders (a prediction may
carry a ``_mask`` or ``_instances`` suffix, as ``seg-bench predict`` writes), or Kaggle DSB RLE
CSVs. Semantic scoring binarises both sides (non-zero = foreground); instance scoring also
computes the DSB 2018 mAP of the label images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seg_bench.data.io import read_image
from seg_bench.data.rle import read_rle_csv, rle_decode
from seg_bench.errors import UserError
from seg_bench.metrics import confusion_matrix, dsb_average_precision, pixel_metrics

SUFFIXES = (".png", ".tif", ".tiff")
PRED_TAGS = ("_instances", "_mask", "_labels", "_pred")


def _key(path: Path) -> str:
    stem = path.stem
    for tag in PRED_TAGS:
        if stem.endswith(tag):
            return stem[: -len(tag)]
    return stem


def _folder(path: Path, role: str) -> dict[str, Path]:
    files = {}
    for p in sorted(path.iterdir()):
        if p.suffix.lower() in SUFFIXES and not p.stem.endswith("_prob"):
            key = _key(p)
            # An instance image beats a binary mask of the same name: it can be scored both ways.
            if key not in files or p.stem.endswith("_instances"):
                files[key] = p
    if not files:
        raise UserError(f"--{role} {path} holds no PNG/TIFF masks")
    return files


def _labels_from_csv(path: Path, shapes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    out = {}
    for image_id, rles in read_rle_csv(path).items():
        if image_id not in shapes:
            continue
        labels = np.zeros(shapes[image_id], np.int32)
        for k, rle in enumerate(rles, 1):
            labels[rle_decode(rle, shapes[image_id], where=f"{path} ({image_id})")] = k
        out[image_id] = labels
    return out


def _dsb_layout(path: Path) -> dict[str, np.ndarray] | None:
    """Kaggle layout ``<id>/images/<id>.png`` + ``<id>/masks/*.png`` -> label images, else None."""
    from seg_bench.data.datasets.dsb2018 import instances_from_mask_files

    folders = [d for d in sorted(path.iterdir()) if (d / "masks").is_dir()]
    if not folders:
        return None
    out = {}
    for d in folders:
        image = d / "images" / f"{d.name}.png"
        shape = read_image(image).shape[:2]
        out[d.name] = instances_from_mask_files(sorted((d / "masks").glob("*.png")), shape, image)
    return out


def load_pairs(pred: Path, truth: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    pred, truth = Path(pred), Path(truth)
    for p, role in ((pred, "pred"), (truth, "truth")):
        if not p.exists():
            raise UserError(f"--{role} {p} does not exist")
    if truth.suffix.lower() == ".csv":
        if pred.suffix.lower() == ".csv":
            raise UserError(
                "with CSV truth, --pred must be a folder of label images (their shapes are needed)"
            )
        pred_files = _folder(pred, "pred")
        pred_arrays = {k: read_image(p) for k, p in pred_files.items()}
        truth_arrays = _labels_from_csv(truth, {k: a.shape[:2] for k, a in pred_arrays.items()})
    else:
        truth_arrays = _dsb_layout(truth)
        if truth_arrays is None:
            truth_arrays = {k: read_image(p) for k, p in _folder(truth, "truth").items()}
        if pred.suffix.lower() == ".csv":
            pred_arrays = _labels_from_csv(pred, {k: a.shape[:2] for k, a in truth_arrays.items()})
        else:
            pred_arrays = {k: read_image(p) for k, p in _folder(pred, "pred").items()}
    missing = sorted(set(truth_arrays) - set(pred_arrays))
    if missing:
        raise UserError(
            f"no prediction for {len(missing)} truth image(s), e.g. '{missing[0]}'; names must match"
        )
    pairs = []
    for key in sorted(truth_arrays):
        p, t = pred_arrays[key], truth_arrays[key]
        if p.shape[:2] != t.shape[:2]:
            raise UserError(f"'{key}': prediction is {p.shape[:2]} but truth is {t.shape[:2]}")
        pairs.append((key, p if p.ndim == 2 else p[..., 0], t if t.ndim == 2 else t[..., 0]))
    return pairs


def score(pred: Path, truth: Path, kind: str = "auto") -> dict[str, Any]:
    if kind not in ("auto", "semantic", "instance"):
        raise UserError(f"--kind must be semantic, instance or auto, got '{kind}'")
    pairs = load_pairs(pred, truth)
    if kind == "auto":
        kind = "instance" if any(len(np.unique(t)) > 2 for _, _, t in pairs) else "semantic"
    per_image, pooled = [], np.zeros((2, 2), np.int64)
    for key, p, t in pairs:
        cm = confusion_matrix((p > 0).astype(np.uint8), (t > 0).astype(np.uint8), 2)
        pooled += cm
        row = {"id": key, **{k: pixel_metrics(cm)[k] for k in ("iou", "dice", "accuracy")}}
        if kind == "instance":
            row["dsb_ap"] = float(dsb_average_precision(t, p)[0])
        per_image.append(row)
    m = pixel_metrics(pooled)
    overall = {
        k: float(m[k])
        for k in ("iou", "dice", "accuracy", "kappa", "precision", "recall", "fpr", "fnr")
    }
    if kind == "instance":
        overall["dsb_map"] = float(np.mean([r["dsb_ap"] for r in per_image]))
    return {"kind": kind, "images": len(pairs), "overall": overall, "per_image": per_image}


def format_score(result: dict[str, Any]) -> str:
    lines = [f"{result['images']} images, {result['kind']} scoring"]
    lines += [f"  {k:10s} {v:.4f}" for k, v in result["overall"].items()]
    return "\n".join(lines)
