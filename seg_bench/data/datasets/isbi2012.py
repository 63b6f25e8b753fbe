"""ISBI 2012 EM segmentation challenge: neuronal membranes in Drosophila ssTEM (512x512 slices).

    <root>/train-volume.tif   Z,512,512 uint8 (30 slices in the original)
    <root>/train-labels.tif   Z,512,512 uint8: 255 = cell interior, 0 = membrane
    <root>/test-volume.tif    optional; no public labels, never used for scoring

The positive class is the membrane, so ``mask = (label == 0)``; the instances for the EM
metrics are the cells between membranes (4-connected components of ``label == 255``).

Splits: the test labels are not public, so the labelled volume is split into contiguous
blocks of slices: the last 20% is the test set, the 10% before it the validation set, the
rest training, with ``split_gap`` (default 1) unused slices between blocks (24 slices: train
0-14, val 16-17, test 19-23). Blocks, not a random draw, because neighbouring sections are
nearly identical and would leak across a random split; the gap keeps the two sections that
face each other across a block boundary out of both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from seg_bench.data.base import Sample, SegmentationDataModule
from seg_bench.data.io import (
    contiguous_split,
    describe_blocks,
    read_stack,
    require_file,
    require_values,
    unused_slices,
)
from seg_bench.errors import DataError
from seg_bench.paths import missing_data_hint
from seg_bench.registry import DATASETS

HINT = missing_data_hint("isbi2012")


def require_same_stack_shape(
    images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path
) -> None:
    if images.shape != labels.shape:
        raise DataError(
            f"{label_path}: labels are {'x'.join(map(str, labels.shape))} (Z,H,W) but "
            f"{image_path.name} is {'x'.join(map(str, images.shape))}; expected one label page "
            "per image page, same size"
        )


@DATASETS.register("isbi2012", "ISBI 2012 EM neuronal membranes (Drosophila VNC ssTEM, 512x512)")
class ISBI2012(SegmentationDataModule):
    """ISBI 2012 membranes: binary membrane mask, cells between membranes as instances."""

    name = "isbi2012"
    citation = (
        "Arganda-Carreras et al. Crowdsourcing the creation of image segmentation algorithms "
        "for connectomics. Frontiers in Neuroanatomy 9, 2015",
        "10.3389/fnana.2015.00142",
    )
    data_license = "no explicit license; distributed by the ISBI 2012 organisers for research"
    subdir = "isbi2012"  # default folder under $SEG_BENCH_DATA
    num_classes = 2
    in_channels = 1
    positive_class = "membrane"
    positive_label = 0  # in train-labels.tif (255 = cell interior); read by `seg-bench score`
    instance_metric = "em"
    default_patch_size = 256

    def __init__(
        self,
        root=None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_gap: int = 1,
        **kwargs,
    ):
        super().__init__(root=root, **kwargs)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.split_gap = int(split_gap)
        self._samples: dict[str, list[Sample]] | None = None
        self._blocks: dict[str, list[int]] = {}
        self._unused: list[int] = []

    def _load_all(self) -> dict[str, list[Sample]]:
        if self._samples is not None:
            return self._samples
        image_path = require_file(
            self.dir / "train-volume.tif", "the ISBI 2012 training stack (Z,512,512 uint8)", HINT
        )
        label_path = require_file(
            self.dir / "train-labels.tif",
            "the ISBI 2012 label stack (255 = cell, 0 = membrane)",
            HINT,
        )
        images, labels = read_stack(image_path), read_stack(label_path)
        require_same_stack_shape(images, labels, image_path, label_path)
        require_values(labels, {0, 255}, label_path, "0 (membrane) / 255 (cell interior), uint8")
        self._blocks = contiguous_split(
            len(images), self.val_fraction, self.test_fraction, str(image_path), self.split_gap
        )
        self._unused = unused_slices(range(len(images)), self._blocks)
        out: dict[str, list[Sample]] = {}
        for split, zs in self._blocks.items():
            out[split] = []
            for z in zs:
                cells = labels[z] == 255
                out[split].append(
                    Sample(
                        id=f"slice_{z:03d}",
                        image=images[z],
                        mask=(~cells).astype(np.uint8),
                        instances=ndi.label(cells)[0].astype(np.int32),
                        meta={"path": str(image_path), "slice": z},
                    )
                )
        self._samples = out
        return out

    def load_split(self, split: str) -> list[Sample]:
        return self._load_all()[split]

    def split_info(self) -> dict[str, Any]:
        self._load_all()
        return {
            "split": f"{describe_blocks(self._blocks, self.split_gap)} of train-volume.tif "
            "(test labels are not public)",
            "slices": {k: [v[0], v[-1]] for k, v in self._blocks.items()},
            "gap": self.split_gap,
            "unused_slices": self._unused,
            "fractions": {"val": self.val_fraction, "test": self.test_fraction},
        }
