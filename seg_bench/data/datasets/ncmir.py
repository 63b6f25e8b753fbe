"""NCMIR mitochondria (the CDeep3M ``mito_testsample``), read in the CDeep3M layout.

    <root>/training/images/images.NNN.png     EM slice, grey uint8
    <root>/training/labels/mitos_3D.NNN.png   palette PNG: index 1 = mitochondrion, 0 = background
    <root>/validation/images|labels/...       optional, same naming
    <root>/testset/images.NNN.png             unlabelled; never used for scoring

Image and label are paired by the number NNN. Labels are read as palette indices
(``np.array(Image.open(p))``); never ``convert('L')``, whose palette colour for index 1 is
(1,1,1) and so looks black. Values outside {0, 1} (a 0/255 greyscale mask, for example) stop
with an error naming the file, and so does an all-zero mask unless ``allow_empty_masks``.

Splits: with ``validation/`` present, test = validation/ (the held-out slices) and val = a
seeded 15% of training/; without it, training/ is split 70/15/15 into contiguous blocks of
slice number NNN (test last), ``split_gap`` slice numbers apart (see ``contiguous_split``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from seg_bench.data.base import Sample, SegmentationDataModule, seeded_split
from seg_bench.data.io import (
    contiguous_split,
    describe_blocks,
    read_image,
    require_dir,
    require_same_shape,
    require_values,
    unused_slices,
)
from seg_bench.errors import DataError
from seg_bench.paths import missing_data_hint
from seg_bench.registry import DATASETS

HINT = missing_data_hint("ncmir") + " Expected: the CDeep3M layout."
IMAGE_RE = re.compile(r"^images\.(\d+)\.png$")
LABEL_RE = re.compile(r"^mitos_3D\.(\d+)\.png$")
LABEL_FORM = (
    "a palette (mode P) PNG of indices 0 = background, 1 = mitochondrion "
    "(a 0/255 greyscale mask must be re-saved as 0/1 indices)"
)


def _numbered(folder: Path, pattern: re.Pattern, form: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        m = pattern.match(p.name)
        if m is None:
            if p.suffix.lower() in (".png", ".tif", ".tiff"):
                raise DataError(f"{p}: unexpected file name; expected {form} (NNN = slice number)")
            continue
        out[m.group(1)] = p
    return out


def pair_folder(folder: Path) -> list[tuple[str, Path, Path]]:
    """[(NNN, image, label)] for ``folder``/images and ``folder``/labels, paired by NNN."""
    images_dir = require_dir(folder / "images", "images.NNN.png EM slices", HINT)
    labels_dir = require_dir(folder / "labels", "mitos_3D.NNN.png label slices", HINT)
    images = _numbered(images_dir, IMAGE_RE, "images.NNN.png")
    labels = _numbered(labels_dir, LABEL_RE, "mitos_3D.NNN.png")
    for n, p in images.items():
        if n not in labels:
            raise DataError(
                f"{p}: image without label; expected {labels_dir / f'mitos_3D.{n}.png'}"
            )
    for n, p in labels.items():
        if n not in images:
            raise DataError(f"{p}: label without image; expected {images_dir / f'images.{n}.png'}")
    if not images:
        raise DataError(
            f"{images_dir}: no images.NNN.png slices; expected the CDeep3M layout. {HINT}"
        )
    return [(n, images[n], labels[n]) for n in sorted(images, key=int)]


@DATASETS.register("ncmir", "NCMIR mitochondria (CDeep3M mito sample, SBEM 1024x1024 slices)")
class NCMIR(SegmentationDataModule):
    """NCMIR mitochondria from palette-PNG labels (index 1 = mitochondrion)."""

    name = "ncmir"
    citation = (
        "Haberl et al. CDeep3M - plug-and-play cloud-based deep learning for image "
        "segmentation. Nature Methods 15, 2018",
        "10.1038/s41592-018-0106-z",
    )
    data_license = (
        "CDeep3M license (c) 2018 The Regents of the University of California: educational, "
        "research and non-profit use only; commercial use needs permission from UCSD"
    )
    subdir = "ncmir_mito"  # default folder under $SEG_BENCH_DATA
    num_classes = 2
    in_channels = 1
    positive_class = "mitochondrion"
    positive_label = 1  # palette index in mitos_3D.NNN.png; read by `seg-bench score`
    instance_metric = None
    default_patch_size = 256

    def __init__(
        self,
        root=None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        allow_empty_masks: bool = False,
        split_gap: int = 1,
        **kwargs,
    ):
        super().__init__(root=root, **kwargs)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)
        self.split_gap = int(split_gap)
        self._blocks: dict[str, list[int]] = {}
        self._unused: list[int] = []
        self.allow_empty_masks = bool(allow_empty_masks)
        self._layout: dict[str, list[tuple[str, Path, Path]]] | None = None
        self._has_validation = False
        self._cache: dict[str, Sample] = {}

    def layout(self) -> dict[str, list[tuple[str, Path, Path]]]:
        if self._layout is not None:
            return self._layout
        if not self.dir.is_dir():
            raise DataError(
                f"{self.dir}: folder not found; expected training/images/images.NNN.png and "
                f"training/labels/mitos_3D.NNN.png. {HINT}"
            )
        training = pair_folder(self.dir / "training")
        self._has_validation = (self.dir / "validation").is_dir()
        if self._has_validation:
            fractions = {"train": 1 - self.val_fraction, "val": self.val_fraction}
        else:
            fractions = {
                "train": 1 - self.val_fraction - self.test_fraction,
                "val": self.val_fraction,
                "test": self.test_fraction,
            }
        if len(training) < len(fractions):
            raise DataError(
                f"{self.dir / 'training'}: {len(training)} labelled slices are too few for "
                f"{'/'.join(fractions)}; expected at least {len(fractions)}"
            )
        by_id = {f"training/{n}": (f"training/{n}", img, lab) for n, img, lab in training}
        if self._has_validation:
            split = seeded_split(sorted(by_id), fractions, self.split_seed)
        else:  # slices of one volume: contiguous blocks by slice number, never a random draw
            number = {int(n): f"training/{n}" for n, _, _ in training}
            where = str(self.dir / "training")
            self._blocks = contiguous_split(
                list(number), self.val_fraction, self.test_fraction, where, self.split_gap
            )
            self._unused = unused_slices(list(number), self._blocks)
            split = {k: [number[z] for z in v] for k, v in self._blocks.items()}
        out = {k: [by_id[i] for i in v] for k, v in split.items()}
        if self._has_validation:
            out["test"] = [
                (f"validation/{n}", img, lab)
                for n, img, lab in pair_folder(self.dir / "validation")
            ]
        self._layout = out
        return out

    def split_info(self) -> dict[str, Any]:
        lay = self.layout()
        info: dict[str, Any] = {"counts": {k: len(v) for k, v in lay.items()}}
        if self._has_validation:
            info["split"] = "test = validation/; seeded val from training/"
            info["split_seed"] = self.split_seed
            info["fractions"] = {"val": self.val_fraction}
            return info
        info["split"] = f"{describe_blocks(self._blocks, self.split_gap)} of training/"
        info["slices"] = {k: [v[0], v[-1]] for k, v in self._blocks.items()}
        info["gap"] = self.split_gap
        info["unused_slices"] = self._unused
        info["fractions"] = {"val": self.val_fraction, "test": self.test_fraction}
        return info

    def _load(self, sample_id: str, image_path: Path, label_path: Path) -> Sample:
        if sample_id not in self._cache:
            image = read_image(image_path)
            label = read_image(label_path)  # palette PNGs give their indices
            if label.ndim != 2:
                raise DataError(
                    f"{label_path}: label has shape {label.shape}; expected {LABEL_FORM}"
                )
            require_same_shape(image, label, image_path, label_path)
            found = require_values(label, {0, 1}, label_path, LABEL_FORM)
            if 1 not in found and not self.allow_empty_masks:
                raise DataError(
                    f"{label_path}: no mitochondrion pixel (all 0); expected {LABEL_FORM}; an "
                    "all-black mask often comes from convert('L') + threshold; pass "
                    "allow_empty_masks=True if the slice is truly empty"
                )
            self._cache[sample_id] = Sample(
                sample_id, image, label.astype(np.uint8), None, {"path": str(image_path)}
            )
        return self._cache[sample_id]

    def load_split(self, split: str) -> list[Sample]:
        return [self._load(*entry) for entry in self.layout()[split]]
