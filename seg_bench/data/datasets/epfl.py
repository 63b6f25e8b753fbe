"""EPFL CVLab hippocampus mitochondria (Lucchi et al. 2012), read as the CVLab TIFF stacks.

    <root>/training.tif               Z,768,1024 uint8 (165 slices in the original)
    <root>/training_groundtruth.tif   Z,768,1024 uint8: 255 = mitochondrion, 0 = background
    <root>/testing.tif                optional pair (165 slices in the original), the official test
    <root>/testing_groundtruth.tif
    <root>/training_slices.csv        optional ``page,original_slice`` (names the samples)

Splits: official test = the testing stacks; val = the last 15% of the training slices as one
block, ``split_gap`` slice indices after the training block (see ``contiguous_val_split``). When
the testing stacks are absent (as in the shared sample), the training slices are split into
contiguous blocks of original slice index (70/15/15, test last) with ``split_gap`` slice
indices between blocks (see ``contiguous_split``), and a warning says so; ``split_info``
records which, with the blocks' slice ranges. Instances: connected components.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from seg_bench.data.base import Sample
from seg_bench.data.io import require_values
from seg_bench.data.volume import HeldOutVolumeDataModule
from seg_bench.errors import DataError
from seg_bench.registry import DATASETS

log = logging.getLogger(__name__)
LABEL_FORM = "0 (background) / 255 (mitochondrion), uint8"
ORIGINAL_SLICES = 165  # pages of the CVLab training.tif


def _slice_numbers(csv_path: Path, n: int) -> list[int]:
    """Each page's slice index in the original stack (the page itself without the CSV)."""
    if not csv_path.is_file():
        if n != ORIGINAL_SLICES:  # a subset: pages next to each other may be far apart
            log.warning(
                "epfl: %s not found and training.tif has %d pages, not the original %d: the "
                "split and sample names use page numbers, not the original slice indices",
                csv_path,
                n,
                ORIGINAL_SLICES,
            )
        return list(range(n))
    numbers = {}
    with open(csv_path, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                numbers[int(row["page"])] = int(row["original_slice"])
            except (KeyError, TypeError, ValueError):
                raise DataError(
                    f"{csv_path}: line {line} is not 'page,original_slice' integers; "
                    "expected header page,original_slice"
                ) from None
    if sorted(numbers) != list(range(n)):
        raise DataError(
            f"{csv_path}: lists pages {sorted(numbers)[:5]}...; expected one row for each of "
            f"the {n} pages of training.tif"
        )
    if len(set(numbers.values())) != n:
        raise DataError(
            f"{csv_path}: an original_slice appears twice; expected one page per slice index"
        )
    return [numbers[z] for z in range(n)]


@DATASETS.register("epfl", "EPFL CVLab hippocampus mitochondria (Lucchi, FIB-SEM 768x1024)")
class EPFL(HeldOutVolumeDataModule):
    """EPFL mitochondria: official testing stack as test, a contiguous block of validation."""

    name = "epfl"
    citation = (
        "Lucchi et al. Supervoxel-based segmentation of mitochondria in EM image stacks with "
        "learned shape features. IEEE TMI 31, 2012",
        "10.1109/TMI.2011.2171705",
    )
    data_license = "no explicit license; offered by EPFL CVLab for research"
    subdir = "epfl_mito"  # default folder under $SEG_BENCH_DATA
    num_classes = 2
    in_channels = 1
    positive_class = "mitochondrion"
    positive_label = 255  # in training_groundtruth.tif; read by `seg-bench score`
    instance_metric = None
    default_patch_size = 256
    blocks_of = "the training slices (testing stacks absent)"
    held_out_split = "official testing stack"

    def _pair(self, image_name: str, label_name: str) -> tuple[np.ndarray, np.ndarray, Path]:
        images, labels, image_path, label_path = self.read_stack_pair(
            image_name,
            f"the EPFL {image_name} stack (Z,768,1024 uint8)",
            label_name,
            f"the EPFL ground truth stack ({LABEL_FORM})",
        )
        require_values(labels, {0, 255}, label_path, LABEL_FORM)
        return images, (labels > 0).astype(np.uint8), image_path

    def read_splits(self) -> dict[str, list[Sample]]:
        test_files = [self.dir / "testing.tif", self.dir / "testing_groundtruth.tif"]
        present = [p.is_file() for p in test_files]
        if any(present) and not all(present):
            have, lack = (
                (test_files[0], test_files[1]) if present[0] else (test_files[1], test_files[0])
            )
            raise DataError(
                f"{lack}: file not found but {have.name} is there; "
                "expected both testing stacks or neither"
            )
        self.has_test_set = all(present)
        images, masks, image_path = self._pair("training.tif", "training_groundtruth.tif")
        numbers = _slice_numbers(self.dir / "training_slices.csv", len(images))
        if not self.has_test_set:
            log.warning(
                "epfl: %s not found; the test split is the last %.0f%% of the training slices "
                "(contiguous blocks) instead of the official testing stack",
                test_files[0],
                100 * self.test_fraction,
            )
        ids = [f"training_{n:03d}" for n in numbers]
        page = {i: z for z, i in enumerate(ids)}
        split = self.split_training(dict(zip(ids, numbers, strict=True)), str(image_path), "slices")
        out = {
            k: [
                Sample(
                    i,
                    images[page[i]],
                    masks[page[i]],
                    None,
                    {"path": str(image_path), "page": page[i]},
                )
                for i in v
            ]
            for k, v in split.items()
        }
        if self.has_test_set:
            timages, tmasks, tpath = self._pair("testing.tif", "testing_groundtruth.tif")
            out["test"] = [
                Sample(
                    f"testing_{z:03d}", timages[z], tmasks[z], None, {"path": str(tpath), "page": z}
                )
                for z in range(len(timages))
            ]
        return out
