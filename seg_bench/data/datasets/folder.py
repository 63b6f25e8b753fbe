"""Any dataset as two (or three) folders of matching file names.

    <root>/images/<stem>.png|.tif|.tiff     grey or colour (RGBA -> RGB), 8- or 16-bit
    <root>/masks/<stem>.png|.tif|.tiff      binary: nonzero = foreground (default), or
                                            class ids 0..num_classes-1 with ``num_classes``
    <root>/instances/<stem>.*               optional instance label images (0 = background)

Every image needs a mask with the same stem and size, and every mask an image. Split: seeded
70/15/15 (``val_fraction``, ``test_fraction``, ``split_seed``), recorded in ``split_info``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seg_bench.data.base import Sample, SegmentationDataModule, as_int32_ids, seeded_split
from seg_bench.data.io import IMAGE_SUFFIXES, read_image, require_dir, require_same_shape
from seg_bench.data.options import check_fractions
from seg_bench.errors import DataError, UserError
from seg_bench.registry import DATASETS

HINT = "Pass --root to a folder holding images/ and masks/ with matching file names."


def _by_stem(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if p.stem in out:
            raise DataError(
                f"{p}: same name as {out[p.stem].name}; expected one file per stem in "
                f"{folder.name}/"
            )
        out[p.stem] = p
    return out


@DATASETS.register(
    "folder", "Your own data: images/ and masks/ (and optional instances/) with matching names"
)
class FolderDataset(SegmentationDataModule):
    """images/ + masks/ [+ instances/] with matching stems; nonzero mask = foreground by default."""

    name = "folder"
    subdir = "folder"  # default folder under $SEG_BENCH_DATA
    num_classes = 2
    positive_class = "foreground"
    instance_metric = None
    default_patch_size = 256

    def __init__(
        self,
        root=None,
        num_classes: int = 2,
        in_channels: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        **kwargs,
    ):
        super().__init__(root=root, **kwargs)
        if int(num_classes) < 2:
            raise UserError(
                "folder: num_classes must be at least 2 (background + one class), got "
                f"{num_classes}"
            )
        self.num_classes = int(num_classes)
        self._in_channels = None if in_channels is None else int(in_channels)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        check_fractions(self.name, self.val_fraction, self.test_fraction)
        self.split_seed = int(split_seed)
        self._layout: dict[str, list[str]] | None = None
        self._files: dict[str, dict[str, Path]] = {}
        self._cache: dict[str, Sample] = {}

    @property
    def in_channels(self) -> int:  # type: ignore[override]
        """From the option, else from the first image (1 grey, 3 colour); read once and cached."""
        if self._in_channels is None:
            stems = sorted(self._scan()["images"])
            first = self._load(stems[0]).image
            self._in_channels = 1 if first.ndim == 2 else first.shape[-1]
        return self._in_channels

    def _scan(self) -> dict[str, dict[str, Path]]:
        if self._files:
            return self._files
        if not self.dir.is_dir():
            raise DataError(
                f"{self.dir}: folder not found; expected images/ and masks/ with matching file "
                f"names. {HINT}"
            )
        images = _by_stem(require_dir(self.dir / "images", "images/<name>.png|.tif", HINT))
        masks = _by_stem(
            require_dir(self.dir / "masks", "masks/<name>.png|.tif with the names of images/", HINT)
        )
        inst_dir = self.dir / "instances"
        instances = _by_stem(inst_dir) if inst_dir.is_dir() else {}
        for stem, p in images.items():
            if stem not in masks:
                raise DataError(
                    f"{p}: image without mask; expected {self.dir / 'masks' / stem}.png (or .tif)"
                )
            if instances and stem not in instances:
                raise DataError(
                    f"{p}: image without instance labels; expected {inst_dir / stem}.png (or "
                    ".tif), as instances/ exists"
                )
        for stem, p in masks.items():
            if stem not in images:
                raise DataError(
                    f"{p}: mask without image; expected {self.dir / 'images' / stem}.png (or .tif)"
                )
        for stem, p in instances.items():
            if stem not in images:
                raise DataError(
                    f"{p}: instance labels without image; expected "
                    f"{self.dir / 'images' / stem}.png (or .tif)"
                )
        if not images:
            raise DataError(
                f"{self.dir / 'images'}: no PNG or TIFF images; expected images/<name>.png with "
                f"masks/<name>.png. {HINT}"
            )
        self._files = {"images": images, "masks": masks, "instances": instances}
        return self._files

    def layout(self) -> dict[str, list[str]]:
        if self._layout is None:
            stems = sorted(self._scan()["images"])
            fractions = {
                "train": 1 - self.val_fraction - self.test_fraction,
                "val": self.val_fraction,
                "test": self.test_fraction,
            }
            if len(stems) < 3:
                raise DataError(
                    f"{self.dir / 'images'}: {len(stems)} labelled images are too few for "
                    "train/val/test; expected at least 3"
                )
            self._layout = seeded_split(stems, fractions, self.split_seed)
        return self._layout

    def split_info(self) -> dict[str, Any]:
        return {
            "split": "seeded",
            "split_seed": self.split_seed,
            "counts": {k: len(v) for k, v in self.layout().items()},
            "fractions": {"val": self.val_fraction, "test": self.test_fraction},
        }

    def _load(self, stem: str) -> Sample:
        if stem in self._cache:
            return self._cache[stem]
        files = self._scan()
        image_path, mask_path = files["images"][stem], files["masks"][stem]
        image, mask = read_image(image_path), read_image(mask_path)
        if mask.ndim != 2:
            raise DataError(
                f"{mask_path}: mask has shape {mask.shape}; expected a single-channel mask image"
            )
        require_same_shape(image, mask, image_path, mask_path)
        if self.num_classes == 2:
            mask = (mask > 0).astype(np.uint8)
        else:
            top = int(mask.max())
            if (
                not np.issubdtype(mask.dtype, np.integer)
                or mask.min() < 0
                or top >= self.num_classes
            ):
                raise DataError(
                    f"{mask_path}: mask holds class id {top}; expected class ids "
                    f"0..{self.num_classes - 1} (num_classes={self.num_classes})"
                )
            mask = mask.astype(np.uint8)
        instances = None
        if stem in files["instances"]:
            inst_path = files["instances"][stem]
            inst = read_image(inst_path)
            if inst.ndim != 2 or not np.issubdtype(inst.dtype, np.integer):
                raise DataError(
                    f"{inst_path}: instance labels of shape {inst.shape}, dtype {inst.dtype}; "
                    "expected a single-channel integer label image"
                )
            require_same_shape(image, inst, image_path, inst_path)
            instances = as_int32_ids(inst)
        self._cache[stem] = Sample(stem, image, mask, instances, {"path": str(image_path)})
        return self._cache[stem]

    def load_split(self, split: str) -> list[Sample]:
        samples = [self._load(stem) for stem in self.layout()[split]]
        expected = self.in_channels
        for s in samples:
            channels = 1 if s.image.ndim == 2 else s.image.shape[-1]
            if channels != expected:
                raise DataError(
                    f"{s.meta['path']}: has {channels} channel(s); expected {expected} like the "
                    "other images"
                )
        return samples
