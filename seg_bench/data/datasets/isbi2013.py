"""ISBI 2013 SNEMI3D: dense neuron segmentation of mouse cortex (serial-section SEM).

    <root>/train-input.tif    Z,H,W uint8 (100 x 1024 x 1024 in the original)
    <root>/train-labels.tif   Z,H,W uint16/uint32 neuron ids, 0 = background/boundary
    <root>/test-input.tif     optional; no public labels, never used for scoring

Targets: a pixel is boundary (the positive class) when its id is 0 or any of its four
neighbours in the slice has a different id; the neuron ids are kept as the instances.
Splits: contiguous slice blocks, as for ISBI 2012 (last 20% test, the 10% before it val,
``split_gap`` unused slices between blocks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seg_bench.data.base import Sample, SegmentationDataModule
from seg_bench.data.datasets.isbi2012 import require_same_stack_shape
from seg_bench.data.io import (
    contiguous_split,
    describe_blocks,
    read_stack,
    require_file,
    unused_slices,
)
from seg_bench.errors import DataError
from seg_bench.paths import missing_data_hint
from seg_bench.registry import DATASETS

HINT = missing_data_hint("isbi2013")


def boundaries_from_ids(ids: np.ndarray) -> np.ndarray:
    """uint8 {0,1}: 1 where the id is 0 or a 4-neighbour (within the slice) differs.

    Z,H,W or H,W."""
    b = ids == 0
    for axis in (-2, -1):
        n = ids.shape[axis]
        lo = [slice(None)] * ids.ndim
        hi = [slice(None)] * ids.ndim
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        differ = ids[tuple(lo)] != ids[tuple(hi)]
        b[tuple(lo)] |= differ
        b[tuple(hi)] |= differ
    return b.astype(np.uint8)


def _as_int32_ids(ids: np.ndarray) -> np.ndarray:
    if int(ids.max(initial=0)) <= np.iinfo(np.int32).max:
        return ids.astype(np.int32)
    values, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(ids.shape).astype(np.int32)
    return inverse if values[0] == 0 else inverse + 1  # keep 0 for background only


@DATASETS.register(
    "isbi2013", "ISBI 2013 SNEMI3D neuron boundaries (mouse cortex SEM), ids as instances"
)
class ISBI2013(SegmentationDataModule):
    """SNEMI3D: boundary mask derived from neuron ids; the ids are the instances."""

    name = "isbi2013"
    citation = (
        "Kasthuri et al. Saturated Reconstruction of a Volume of Neocortex. Cell 162, 2015",
        "10.1016/j.cell.2015.06.054",
    )
    data_license = "no explicit license; distributed by the SNEMI3D organisers for research"
    subdir = "isbi2013"  # default folder under $SEG_BENCH_DATA
    num_classes = 2
    in_channels = 1
    positive_class = "boundary"
    positive_label = staticmethod(boundaries_from_ids)  # from the ids; read by `seg-bench score`
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
            self.dir / "train-input.tif", "the SNEMI3D training stack (Z,H,W uint8)", HINT
        )
        label_path = require_file(
            self.dir / "train-labels.tif",
            "the SNEMI3D neuron-id stack (uint16/uint32, 0 = boundary)",
            HINT,
        )
        images, ids = read_stack(image_path), read_stack(label_path)
        require_same_stack_shape(images, ids, image_path, label_path)
        expected = "neuron ids (uint16/uint32 label stack, 0 = background/boundary)"
        if not np.issubdtype(ids.dtype, np.integer):
            raise DataError(f"{label_path}: labels have dtype {ids.dtype}; expected {expected}")
        if ids.min() < 0:
            raise DataError(f"{label_path}: negative label {int(ids.min())}; expected {expected}")
        nonzero = ids[ids > 0]
        if nonzero.size == 0 or nonzero.min() == nonzero.max():
            found = (
                "no ids"
                if nonzero.size == 0
                else f"a single id ({int(nonzero.min())}), i.e. a binary mask"
            )
            raise DataError(f"{label_path}: labels hold {found}; expected {expected}")
        self._blocks = contiguous_split(
            len(images), self.val_fraction, self.test_fraction, str(image_path), self.split_gap
        )
        self._unused = unused_slices(range(len(images)), self._blocks)
        boundary = boundaries_from_ids(ids)
        out: dict[str, list[Sample]] = {}
        for split, zs in self._blocks.items():
            out[split] = [
                Sample(
                    id=f"slice_{z:03d}",
                    image=images[z],
                    mask=boundary[z],
                    instances=_as_int32_ids(ids[z]),
                    meta={"path": str(image_path), "slice": z},
                )
                for z in zs
            ]
        self._samples = out
        return out

    def load_split(self, split: str) -> list[Sample]:
        return self._load_all()[split]

    def split_info(self) -> dict[str, Any]:
        self._load_all()
        return {
            "split": f"{describe_blocks(self._blocks, self.split_gap)} of train-input.tif "
            "(test labels are not public)",
            "slices": {k: [v[0], v[-1]] for k, v in self._blocks.items()},
            "gap": self.split_gap,
            "unused_slices": self._unused,
            "fractions": {"val": self.val_fraction, "test": self.test_fraction},
        }
