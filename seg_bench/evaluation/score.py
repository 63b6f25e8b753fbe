"""`seg-bench score`: any tool's output against ground truth, matched by name or page.

Either side may be a folder of PNG/TIFF masks or label images (a prediction may carry a
``_mask`` or ``_instances`` suffix, as ``seg-bench predict`` writes), a folder in the Kaggle
DSB layout (truth), a Kaggle DSB RLE CSV, or a multi-page TIFF stack (one page per image,
matched by page number, also against the ``<name>_z0000`` files ``predict`` writes per page).

What counts as positive: in a prediction any non-zero pixel; in the truth the dataset's own
convention (``dataset=``, from the DataModule's ``positive_label``: ISBI 2012 membrane = 0,
NCMIR palette index 1, EPFL 255, DSB instance ids), an explicit ``positive=`` value, else any
non-zero pixel. Instance scoring also computes the DSB 2018 mAP of the label images: object
ids given as such (CSV rows, a Kaggle layout, ``_instances`` files) are kept, and only a
binary mask is cut into connected components. A solution CSV sizes its images by its own
``Height,Width`` and leaves out the images whose ``Usage`` is Ignored, as Kaggle scored it; a
submission may list those, but no image the solution lacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from seg_bench.data.io import read_image, read_stack
from seg_bench.data.rle import RleRow, labels_from_rows, read_rle_rows, scored_ids
from seg_bench.errors import UserError
from seg_bench.metrics import confusion_matrix, dsb_average_precision, pixel_metrics

SUFFIXES = (".png", ".tif", ".tiff")
STACK_SUFFIXES = (".tif", ".tiff")
PRED_TAGS = ("_instances", "_mask", "_labels", "_pred")
PAGE = re.compile(r"(.*)_(z\d{4})")
Arrays = dict[str, np.ndarray]  # image name (or page) -> its array


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


def _csv_shapes(rows: dict[str, list[RleRow]]) -> dict[str, tuple[int, int]]:
    """Image sizes from the ``Height,Width`` columns (as in stage1_solution.csv)."""
    return {i: r.shape for i, listed in rows.items() for r in listed if r.shape is not None}


def _labels_from_csv(
    path: Path, rows: dict[str, list[RleRow]], shapes: dict[str, tuple[int, int]], role: str
) -> dict[str, np.ndarray]:
    """Label images (object k = the image's k-th row) of the images in ``shapes``; a truth
    image without a known size is an error (it must be scored, not dropped)."""
    out = {}
    for image_id in sorted(rows.keys() & shapes.keys() if role == "pred" else rows):
        if image_id not in shapes:
            raise UserError(
                f"{path}: no size for image '{image_id}' (no prediction of that name and no "
                "Height,Width column); predict every truth image, or add those columns"
            )
        labels = labels_from_rows(rows[image_id], shapes[image_id], path, image_id)
        out[image_id] = labels
    return out


def _truth_from_csv(truth: Path, pred_arrays, dataset, root) -> tuple[Arrays, set[str]]:
    """The truth CSV's label images, sized by its own Height,Width, else by ``--dataset``'s
    images, else by the prediction's (so a wrongly sized prediction is reported as such); and
    the images it ignores (``Usage`` Ignored)."""
    listed = read_rle_rows(truth)
    rows = {i: listed[i] for i in sorted(scored_ids(listed))}
    shapes = {k: a.shape[:2] for k, a in (pred_arrays or {}).items()}
    if set(rows) - _csv_shapes(rows).keys():  # the dataset's images only where sizes lack
        shapes |= _dataset_shapes(dataset, root)
    shapes |= _csv_shapes(rows)
    if not shapes:
        raise UserError(
            f"--truth {truth}: CSV against CSV needs the image sizes: a Height,Width column "
            "(as in stage1_solution.csv) or --dataset dsb2018 with its images"
        )
    return _labels_from_csv(truth, rows, shapes, "truth"), set(listed) - set(rows)


def _pred_from_csv(pred: Path, truth_arrays: dict[str, np.ndarray], ignored: set[str]):
    """The prediction CSV's label images of the truth images; an image the truth does not
    hold (other than one it ignores) is an error, as Kaggle's checker makes it."""
    rows = read_rle_rows(pred, sizes=False)  # each image is decoded at its truth's size
    if extra := sorted(set(rows) - set(truth_arrays) - ignored):
        raise UserError(
            f"--pred {pred}: {len(extra)} image(s) not in the truth, e.g. '{extra[0]}'; "
            "a submission lists the truth's images only"
        )
    shapes = {k: a.shape[:2] for k, a in truth_arrays.items()}
    return _labels_from_csv(pred, rows, shapes, "pred")


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


def _read(path: Path, role: str) -> tuple[Arrays, dict[str, bool]] | None:
    """Arrays keyed by image name (folders) or page (``z0000``, stacks), and whether each holds
    object ids as given (a Kaggle layout, an ``_instances`` file) rather than a mask; None for
    a CSV."""
    if not path.exists():
        raise UserError(f"--{role} {path} does not exist; give a folder, a CSV or a TIFF stack")
    if path.is_dir():
        dsb = _dsb_layout(path) if role == "truth" else None
        if dsb is not None:
            return dsb, dict.fromkeys(dsb, True)
        files = _folder(path, role)
        arrays = {k: read_image(p) for k, p in files.items()}
        return arrays, {k: p.stem.endswith("_instances") for k, p in files.items()}
    if path.suffix.lower() == ".csv":
        return None
    if path.suffix.lower() in STACK_SUFFIXES:
        pages = {f"z{z:04d}": page for z, page in enumerate(read_stack(path))}
        return pages, dict.fromkeys(pages, False)
    raise UserError(
        f"--{role} {path}: not a folder, a CSV (DSB RLE) or a TIFF stack (.tif, one page per image)"
    )


def _page_keys(arrays: dict[str, Any]) -> dict[str, Any]:
    """``{"vol_z0003": a}`` -> ``{"z0003": a}`` when every key is a page of one stack."""
    found = [PAGE.fullmatch(k) for k in arrays]
    if arrays and all(found) and len({m.group(1) for m in found}) == 1:
        return {m.group(2): a for m, a in zip(found, arrays.values(), strict=True)}
    return arrays


@dataclass(frozen=True)
class Pair:
    """One scored image; ``*_labels``: the array holds object ids as given (a CSV, a Kaggle
    layout, an ``_instances`` file), never to be split into connected components."""

    name: str
    pred: np.ndarray
    truth: np.ndarray
    pred_labels: bool
    truth_labels: bool


def load_pairs(
    pred: Path, truth: Path, dataset: str | None = None, root: str | None = None
) -> list[Pair]:
    """A ``Pair`` for every truth image; names and sizes must match."""
    pred, truth = Path(pred), Path(truth)
    pred_read, truth_read = _read(pred, "pred"), _read(truth, "truth")
    ignored: set[str] = set()
    if truth_read is None:
        arrays, ignored = _truth_from_csv(truth, pred_read[0] if pred_read else None, dataset, root)
        truth_read = arrays, dict.fromkeys(arrays, True)
    if pred_read is None:
        arrays = _pred_from_csv(pred, truth_read[0], ignored)
        pred_read = arrays, dict.fromkeys(arrays, True)
    (pred_arrays, pred_ids), (truth_arrays, truth_ids) = pred_read, truth_read
    if truth.is_file() and not pred.is_file():
        pred_arrays, pred_ids = _page_keys(pred_arrays), _page_keys(pred_ids)
    if pred.is_file() and not truth.is_file():
        truth_arrays, truth_ids = _page_keys(truth_arrays), _page_keys(truth_ids)
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
        p, t = (p if p.ndim == 2 else p[..., 0]), (t if t.ndim == 2 else t[..., 0])
        pairs.append(Pair(key, p, t, pred_ids[key], truth_ids[key]))
    return pairs


def as_instances(image: np.ndarray, labels: bool = False) -> np.ndarray:
    """An image's objects (prediction or truth): its ids where it holds ids as given
    (``labels``: a CSV, a Kaggle layout, an ``_instances`` file) or more than one value, else
    the connected components of the binary mask (one value besides 0, such as a 0/255 PNG),
    which would otherwise count as one object."""
    if labels:
        return image
    values = np.unique(image)
    return ndi.label(image != 0)[0] if len(values[values != 0]) <= 1 else image


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
    if kind == "auto":  # a truth of object ids (e.g. a solution CSV) is scored as instances
        ids = any(x.truth_labels or len(np.unique(x.truth)) > 2 for x in pairs)
        kind = "instance" if rule.label_ids and ids else "semantic"
    per_image, pooled = [], np.zeros((2, 2), np.int64)
    for x in pairs:
        truth_mask = rule.rule(x.truth).astype(np.uint8)
        cm = confusion_matrix((x.pred != 0).astype(np.uint8), truth_mask, 2)
        pooled += cm
        row = {"id": x.name, **{k: pixel_metrics(cm)[k] for k in ("iou", "dice", "accuracy")}}
        if kind == "instance":
            if rule.label_ids:
                truth = as_instances(x.truth, x.truth_labels)
            else:
                truth = ndi.label(truth_mask)[0]
            pred = as_instances(x.pred, x.pred_labels)
            row["dsb_ap"] = float(dsb_average_precision(truth, pred)[0])
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
