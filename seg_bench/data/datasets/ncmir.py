"""NCMIR mitochondria (the CDeep3M ``mito_testsample``), read in the CDeep3M layout.

    <root>/training/images/images.NNN.png     EM slice, grey uint8
    <root>/training/labels/mitos_3D.NNN.png   palette PNG: index 1 = mitochondrion, 0 = background
    <root>/validation/images|labels/...       optional, same naming
    <root>/testset/images.NNN.png             unlabelled; never used for scoring

Image and label are paired by the number NNN. Labels are read as palette indices
(``np.array(Image.open(p))``); never ``convert('L')``, whose palette colour for index 1 is
(1,1,1) and so looks black. Values outside {0, 1} (a 0/255 greyscale mask, for example) stop
with an error naming the file, and so does an all-zero mask unless ``allow_empty_masks``.

Splits: with ``validation/`` present, test = validation/ (the held-out slices) and val = the
last 15% of training/ as one block, ``split_gap`` slice numbers after the rest (validation/
numbers the same volume's sections, so a slice within ``split_gap`` of a training or val
slice is refused); without it,
training/ is split 70/15/15 into contiguous blocks of slice number NNN (test last),
``split_gap`` slice numbers apart (see ``contiguous_split``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from seg_bench.data.base import Sample
from seg_bench.data.io import read_image, require_dir, require_same_shape, require_values
from seg_bench.data.volume import HeldOutVolumeDataModule
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
class NCMIR(HeldOutVolumeDataModule):
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
    blocks_of = "training/"
    held_out_split = "test = validation/"

    def __init__(self, root=None, allow_empty_masks: bool = False, **kwargs):
        super().__init__(root=root, **kwargs)
        self.allow_empty_masks = bool(allow_empty_masks)
        self._cache: dict[str, Sample] = {}

    def layout(self) -> dict[str, list[tuple[str, Path, Path]]]:
        """Split -> (id, image, label) of its slices; the files are read when first used."""
        return self.splits()

    def read_splits(self) -> dict[str, list[tuple[str, Path, Path]]]:
        if not self.dir.is_dir():
            raise DataError(
                f"{self.dir}: folder not found; expected training/images/images.NNN.png and "
                f"training/labels/mitos_3D.NNN.png. {HINT}"
            )
        training = pair_folder(self.dir / "training")
        self.has_test_set = (self.dir / "validation").is_dir()
        by_id = {f"training/{n}": (f"training/{n}", img, lab) for n, img, lab in training}
        slices = {i: int(i.removeprefix("training/")) for i in sorted(by_id)}
        split = self.split_training(slices, str(self.dir / "training"))
        out = {k: [by_id[i] for i in v] for k, v in split.items()}
        if self.has_test_set:
            test = pair_folder(self.dir / "validation")
            # validation/ holds later sections of the same volume: they must stay clear of it.
            self.check_test_apart([int(n) for n, _, _ in test], str(self.dir / "validation"))
            out["test"] = [(f"validation/{n}", img, lab) for n, img, lab in test]
        return out

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
