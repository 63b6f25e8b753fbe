"""`seg-bench score`: any tool's output against ground truth, matched by name or page.

Either side may be a folder of PNG/TIFF masks or label images (a prediction may carry a
``_mask`` or ``_instances`` suffix, as ``seg-bench predict`` writes), a folder in the Kaggle
DSB layout (truth), a Kaggle DSB RLE CSV, or a multi-page TIFF stack (one page per image,
matched by page number, also against the ``<name>_z0000`` files ``predict`` writes per page).

What counts as positive: in a prediction any non-zero pixel; in the truth the dataset's own
convention (``dataset=``, from the DataModule's ``positive_label``: ISBI 2012 membrane = 0,
NCMIR palette index 1, EPFL 255, DSB instance ids), an explicit ``positive=`` value, else any
non-zero pixel. Instance scoring also computes the DSB 2018 mAP of the label images.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from seg_bench.data.io import read_image, read_stack
from seg_bench.data.rle import read_rle_csv, rle_decode
from seg_bench.errors import UserError
from seg_bench.metrics import confusion_matrix, dsb_average_precision, pixel_metrics

SUFFIXES = (".png", ".tif", ".tiff")
STACK_SUFFIXES = (".tif", ".tiff")
PRED_TAGS = ("_instances", "_mask", "_labels", "_pred")
PAGE = re.compile(r"(.*)_(z\d{4})")


@dataclass(frozen=True)
class Positive:
    """How the truth's positive pixels are found, and the words the report uses for it."""

    rule: Callable[[np.ndarray], np.ndarray]
    truth: str  # e.g. "label == 0"
    label_ids: bool  # the truth's non-zero values are instance ids (usable for instance scoring)
    positive_class: str = "foreground"
    dataset: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "class": self.positive_class,
            "truth": self.truth,
            "prediction": "non-zero",
            "dataset": self.dataset,
        }


def positive_rule(dataset: str | None = None, positive: int | None = None) -> Positive:
    """The truth convention: ``positive`` if given, else ``dataset``'s, else non-zero."""
    cls = None
    if dataset is not None:
        from seg_bench.registry import DATASETS

        cls = DATASETS.get(dataset)
    name = getattr(cls, "positive_class", "foreground")
    value = positive if positive is not None else getattr(cls, "positive_label", None)
    if value is None:
        return Positive(lambda t: t != 0, "non-zero", True, name, dataset)
    if callable(value):
        return Positive(value, f"{value.__name__}(label)", False, name, dataset)
    value = int(value)
    return Positive(lambda t: t == value, f"label == {value}", False, name, dataset)


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
        raise UserError(f"--{role} {path}: holds no PNG/TIFF masks")
    return files


def _csv_shapes(path: Path) -> dict[str, tuple[int, int]]:
    """Image sizes from the ``Height,Width`` columns of a CSV (as in stage1_solution.csv)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"Height", "Width"} <= set(reader.fieldnames or []):
            return {}
        try:
            return {r["ImageId"]: (int(r["Height"]), int(r["Width"])) for r in reader}
        except (TypeError, ValueError):
            raise UserError(f"{path}: Height/Width must be whole numbers in every row") from None


def _labels_from_csv(
    path: Path, shapes: dict[str, tuple[int, int]], every: bool = False
) -> dict[str, np.ndarray]:
    """Label images from run-length rows; ``every``: an image without a known size is an error
    (a truth image must be scored, not dropped), else it is left out."""
    out = {}
    for image_id, rles in read_rle_csv(path).items():
        if image_id not in shapes:
            if every:
                raise UserError(
                    f"{path}: no size for image '{image_id}' (no prediction of that name and no "
                    "Height,Width column); predict every truth image, or add those columns"
                )
            continue
        labels = np.zeros(shapes[image_id], np.int32)
        for k, rle in enumerate(rles, 1):
            where = f"{path} ({image_id}, object {k})"
            mask = rle_decode(rle, shapes[image_id], where=where)
            if labels[mask].any():
                raise UserError(
                    f"{where}: overlaps object {int(labels[mask].max())} of the same image; "
                    "a DSB submission gives every pixel to at most one object"
                )
            labels[mask] = k
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


def _dataset_shapes(dataset: str | None, root: str | None) -> dict[str, tuple[int, int]]:
    """Image sizes from a dataset folder in the Kaggle layout (``*/<id>/images/<id>.png``)."""
    if dataset is None:
        return {}
    from seg_bench.data.base import data_root
    from seg_bench.registry import DATASETS

    subdir = getattr(DATASETS.get(dataset), "subdir", None)
    if subdir is None and root is None:
        return {}
    folder = Path(data_root(dataset, root, subdir or ""))
    shapes = {}
    for image in folder.glob("*/*/images/*.png"):
        with Image.open(image) as im:  # the header only: no pixels are decoded
            shapes[image.stem] = (im.height, im.width)
    return shapes


def _read(path: Path, role: str) -> dict[str, np.ndarray] | None:
    """Arrays keyed by image name (folders) or page (``z0000``, stacks); None for a CSV."""
    if not path.exists():
        raise UserError(f"--{role} {path} does not exist; give a folder, a CSV or a TIFF stack")
    if path.is_dir():
        dsb = _dsb_layout(path) if role == "truth" else None
        return (
            dsb if dsb is not None else {k: read_image(p) for k, p in _folder(path, role).items()}
        )
    if path.suffix.lower() == ".csv":
        return None
    if path.suffix.lower() in STACK_SUFFIXES:
        return {f"z{z:04d}": page for z, page in enumerate(read_stack(path))}
    raise UserError(
        f"--{role} {path}: not a folder, a CSV (DSB RLE) or a TIFF stack (.tif, one page per image)"
    )


def _page_keys(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{"vol_z0003": a}`` -> ``{"z0003": a}`` when every key is a page of one stack."""
    found = [PAGE.fullmatch(k) for k in arrays]
    if arrays and all(found) and len({m.group(1) for m in found}) == 1:
        return {m.group(2): a for m, a in zip(found, arrays.values(), strict=True)}
    return arrays


def load_pairs(
    pred: Path, truth: Path, dataset: str | None = None, root: str | None = None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, prediction, truth) for every truth image; names and sizes must match."""
    pred, truth = Path(pred), Path(truth)
    pred_arrays, truth_arrays = _read(pred, "pred"), _read(truth, "truth")
    if truth_arrays is None:
        shapes = {**_dataset_shapes(dataset, root), **_csv_shapes(truth)}
        if pred_arrays is not None:
            shapes.update({k: a.shape[:2] for k, a in pred_arrays.items()})
        elif not shapes:
            raise UserError(
                f"--truth {truth}: CSV against CSV needs the image sizes: a Height,Width column "
                "(as in stage1_solution.csv) or --dataset dsb2018 with its images"
            )
        truth_arrays = _labels_from_csv(truth, shapes, every=True)
    if pred_arrays is None:
        shapes = {**_csv_shapes(pred), **{k: a.shape[:2] for k, a in truth_arrays.items()}}
        pred_arrays = _labels_from_csv(pred, shapes)
    if truth.is_file() and not pred.is_file():
        pred_arrays = _page_keys(pred_arrays)
    if pred.is_file() and not truth.is_file():
        truth_arrays = _page_keys(truth_arrays)
    if not truth_arrays:
        raise UserError(f"--truth {truth}: no image to score (no CSV ImageId with a known size)")
    missing = sorted(set(truth_arrays) - set(pred_arrays))
    if missing:
        raise UserError(
            f"--pred {pred}: no prediction for {len(missing)} truth image(s), e.g. "
            f"'{missing[0]}'; names (or stack pages) must match"
        )
    pairs = []
    for key in sorted(truth_arrays):
        p, t = pred_arrays[key], truth_arrays[key]
        if p.shape[:2] != t.shape[:2]:
            raise UserError(f"'{key}': prediction is {p.shape[:2]} but truth is {t.shape[:2]}")
        pairs.append((key, p if p.ndim == 2 else p[..., 0], t if t.ndim == 2 else t[..., 0]))
    return pairs


def as_instances(pred: np.ndarray) -> np.ndarray:
    """A label image's objects (prediction or truth): its label ids, or the connected
    components of a binary mask (one value besides 0, such as a 0/255 PNG), which would
    otherwise count as one object."""
    values = np.unique(pred)
    return ndi.label(pred != 0)[0] if len(values[values != 0]) <= 1 else pred


def score(
    pred: Path,
    truth: Path,
    kind: str = "auto",
    dataset: str | None = None,
    positive: int | None = None,
    root: str | None = None,
) -> dict[str, Any]:
    """Pixel metrics pooled over all images (and the DSB mAP for instance scoring)."""
    if kind not in ("auto", "semantic", "instance"):
        raise UserError(f"--kind must be semantic, instance or auto, got '{kind}'")
    rule = positive_rule(dataset, positive)
    pairs = load_pairs(pred, truth, dataset, root)
    if kind == "auto":
        multi = any(len(np.unique(t)) > 2 for _, _, t in pairs)
        kind = "instance" if rule.label_ids and multi else "semantic"
    per_image, pooled = [], np.zeros((2, 2), np.int64)
    for key, p, t in pairs:
        truth_mask = rule.rule(t).astype(np.uint8)
        cm = confusion_matrix((p != 0).astype(np.uint8), truth_mask, 2)
        pooled += cm
        row = {"id": key, **{k: pixel_metrics(cm)[k] for k in ("iou", "dice", "accuracy")}}
        if kind == "instance":
            instances = as_instances(t) if rule.label_ids else ndi.label(truth_mask)[0]
            row["dsb_ap"] = float(dsb_average_precision(instances, as_instances(p))[0])
        per_image.append(row)
    m = pixel_metrics(pooled)
    overall = {
        k: float(m[k])
        for k in ("iou", "dice", "accuracy", "kappa", "precision", "recall", "fpr", "fnr")
    }
    if kind == "instance":
        overall["dsb_map"] = float(np.mean([r["dsb_ap"] for r in per_image]))
    return {
        "kind": kind,
        "images": len(pairs),
        "positive": rule.describe(),
        "overall": overall,
        "per_image": per_image,
    }


def format_score(result: dict[str, Any]) -> str:
    pos = result["positive"]
    lines = [
        f"{result['images']} images, {result['kind']} scoring; positive class "
        f"'{pos['class']}': truth {pos['truth']}, prediction {pos['prediction']}"
    ]
    lines += [f"  {k:10s} {v:.4f}" for k, v in result["overall"].items()]
    return "\n".join(lines)
