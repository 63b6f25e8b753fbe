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

import numpy as np

from seg_bench.data.base import Sample, as_int32_ids
from seg_bench.data.volume import VolumeDataModule
from seg_bench.errors import DataError
from seg_bench.registry import DATASETS


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


@DATASETS.register(
    "isbi2013", "ISBI 2013 SNEMI3D neuron boundaries (mouse cortex SEM), ids as instances"
)
class ISBI2013(VolumeDataModule):
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
    blocks_of = "train-input.tif (test labels are not public)"

    def read_splits(self) -> dict[str, list[Sample]]:
        images, ids, image_path, label_path = self.read_stack_pair(
            "train-input.tif",
            "the SNEMI3D training stack (Z,H,W uint8)",
            "train-labels.tif",
            "the SNEMI3D neuron-id stack (uint16/uint32, 0 = boundary)",
        )
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
        boundary = boundaries_from_ids(ids)
        return self.slice_samples(images, image_path, lambda z: (boundary[z], as_int32_ids(ids[z])))
