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

import numpy as np
from scipy import ndimage as ndi

from seg_bench.data.base import Sample
from seg_bench.data.io import require_values
from seg_bench.data.volume import VolumeDataModule
from seg_bench.registry import DATASETS


@DATASETS.register("isbi2012", "ISBI 2012 EM neuronal membranes (Drosophila VNC ssTEM, 512x512)")
class ISBI2012(VolumeDataModule):
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
    blocks_of = "train-volume.tif (test labels are not public)"

    def read_splits(self) -> dict[str, list[Sample]]:
        images, labels, image_path, label_path = self.read_stack_pair(
            "train-volume.tif",
            "the ISBI 2012 training stack (Z,512,512 uint8)",
            "train-labels.tif",
            "the ISBI 2012 label stack (255 = cell, 0 = membrane)",
        )
        require_values(labels, {0, 255}, label_path, "0 (membrane) / 255 (cell interior), uint8")

        def membrane_and_cells(z: int) -> tuple[np.ndarray, np.ndarray]:
            cells = labels[z] == 255
            return (~cells).astype(np.uint8), ndi.label(cells)[0].astype(np.int32)

        return self.slice_samples(images, image_path, membrane_and_cells)
