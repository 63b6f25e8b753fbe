"""Datasets whose labelled images are the slices of one serial-section volume (EM stacks).

Neighbouring sections are nearly identical, so the held-out slices are contiguous blocks of
slice index with ``split_gap`` unused slices between blocks, never a random draw (see
``contiguous_split``). :class:`VolumeDataModule` holds that split, the cache of what was read
and the ``split_info`` record; :class:`HeldOutVolumeDataModule` adds the case of a dataset
that may ship its own labelled test set. A dataset file keeps only its file names, label
conventions and value checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seg_bench.data.base import Sample, SegmentationDataModule
from seg_bench.data.io import (
    contiguous_split,
    contiguous_val_split,
    describe_blocks,
    read_stack,
    require_file,
    unused_slices,
)
from seg_bench.data.options import check_split_gap
from seg_bench.errors import DataError
from seg_bench.paths import missing_data_hint

# What a dataset makes of slice z of its stacks: (mask, instances or None).
SliceTargets = Callable[[int], tuple[np.ndarray, np.ndarray | None]]


def require_same_stack_shape(
    images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path
) -> None:
    if images.shape != labels.shape:
        raise DataError(
            f"{label_path}: labels are {'x'.join(map(str, labels.shape))} (Z,H,W) but "
            f"{image_path.name} is {'x'.join(map(str, images.shape))}; expected one label page "
            "per image page, same size"
        )


class VolumeDataModule(SegmentationDataModule):
    """Slices of one volume split into contiguous train | val | test blocks.

    Subclasses implement ``read_splits`` (split -> its entries, read once and cached) and set
    ``blocks_of``, what ``split_info`` says the blocks were cut from.
    """

    blocks_of = "the volume"

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
        self.split_gap = check_split_gap(self.name, split_gap)
        self._splits: dict[str, list] | None = None
        self._blocks: dict[str, list[int]] = {}
        self._unused: list[int] = []

    def read_splits(self) -> dict[str, list]:
        raise NotImplementedError

    def splits(self) -> dict[str, list]:
        """``read_splits``, read once: every split is cut in the same pass over the files."""
        if self._splits is None:
            self._splits = self.read_splits()
        return self._splits

    def load_split(self, split: str) -> list[Sample]:
        return self.splits()[split]

    def read_stack_pair(
        self, image_name: str, image_form: str, label_name: str, label_form: str
    ) -> tuple[np.ndarray, np.ndarray, Path, Path]:
        """The image and label stacks under the dataset folder, checked to be one label page
        per image page; the forms describe each file in the 'not found' error."""
        hint = missing_data_hint(self.name)
        image_path = require_file(self.dir / image_name, image_form, hint)
        label_path = require_file(self.dir / label_name, label_form, hint)
        images, labels = read_stack(image_path), read_stack(label_path)
        require_same_stack_shape(images, labels, image_path, label_path)
        return images, labels, image_path, label_path

    def block_split(self, slices: int | Sequence[int], where: str) -> dict[str, list[int]]:
        """Contiguous blocks of the slice indices (``n`` means 0..n-1), kept for split_info."""
        self._blocks = contiguous_split(
            slices, self.val_fraction, self.test_fraction, where, self.split_gap
        )
        order = range(slices) if isinstance(slices, int) else slices
        self._unused = unused_slices(order, self._blocks)
        return self._blocks

    def slice_samples(
        self, images: np.ndarray, image_path: Path, targets: SliceTargets
    ) -> dict[str, list[Sample]]:
        """The pages of a stack cut into blocks, as samples ``slice_<z>``."""
        out: dict[str, list[Sample]] = {}
        for split, zs in self.block_split(len(images), str(image_path)).items():
            out[split] = []
            for z in zs:
                mask, instances = targets(z)
                meta = {"path": str(image_path), "slice": z}
                out[split].append(Sample(f"slice_{z:03d}", images[z], mask, instances, meta))
        return out

    def block_info(self) -> dict[str, Any]:
        return {
            "split": f"{describe_blocks(self._blocks, self.split_gap)} of {self.blocks_of}",
            "slices": {k: [v[0], v[-1]] for k, v in self._blocks.items()},
            "gap": self.split_gap,
            "unused_slices": self._unused,
            "fractions": {"val": self.val_fraction, "test": self.test_fraction},
        }

    def split_info(self) -> dict[str, Any]:
        self.splits()
        return self.block_info()


class HeldOutVolumeDataModule(VolumeDataModule):
    """A volume whose dataset may ship its own labelled test set (``read_splits`` sets
    ``has_test_set``): with it, test is that set, val the last ``val_fraction`` block of the
    training slices and train the slices before it (``split_gap`` apart); without it, the
    training slices are cut into train | val | test blocks."""

    held_out_split = "official test set"

    def __init__(
        self,
        root=None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_gap: int = 1,
        **kwargs,
    ):
        super().__init__(root, val_fraction, test_fraction, split_gap, **kwargs)
        self.has_test_set = False
        self._test_slices: list[int] | None = None

    def split_training(
        self, slices: dict[str, int], where: str, unit: str = "labelled slices"
    ) -> dict[str, list[str]]:
        """The ids of the training slices in each split; ``slices`` maps id -> slice index."""
        names = ("train", "val") if self.has_test_set else ("train", "val", "test")
        if len(slices) < len(names):
            raise DataError(
                f"{where}: {len(slices)} {unit} are too few for {'/'.join(names)}; "
                f"expected at least {len(names)}"
            )
        by_index: dict[int, str] = {}
        for i, z in slices.items():
            if z in by_index:  # images.10.png and images.010.png: one slice, named twice
                raise DataError(
                    f"{where}: {by_index[z]} and {i} are both slice {z}; remove one of them"
                )
            by_index[z] = i
        if self.has_test_set:
            self._blocks = contiguous_val_split(
                list(slices.values()), self.val_fraction, where, self.split_gap
            )
            self._unused = unused_slices(list(slices.values()), self._blocks)
        else:
            self.block_split(list(slices.values()), where)
        return {k: [by_index[z] for z in v] for k, v in self._blocks.items()}

    def check_test_apart(self, test: list[int], where: str) -> None:
        """A shipped test set cut from the training volume (NCMIR's validation/): none of its
        slice numbers may lie within ``split_gap`` of a training or validation slice."""
        for z in sorted(test):
            for split, zs in self._blocks.items():
                if near := [u for u in zs if abs(u - z) <= self.split_gap]:
                    raise DataError(
                        f"{where}: test slice {z} lies within split_gap {self.split_gap} of "
                        f"{split} slice {near[0]}, so the test set neighbours what the model "
                        "trains on; keep only slices further away, or remove the folder to "
                        "cut the test block from the training slices"
                    )
        self._test_slices = [min(test), max(test)] if test else None

    def split_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"counts": {k: len(v) for k, v in self.splits().items()}}
        if not self.has_test_set:
            return {**info, **self.block_info()}
        blocks = describe_blocks(self._blocks, self.split_gap)
        out = {
            **info,
            **self.block_info(),
            "split": f"{self.held_out_split}; {blocks} of the training slices",
            "fractions": {"val": self.val_fraction},
        }
        if self._test_slices:  # a test set numbered in the training volume's slices
            out["slices"] = {**out["slices"], "test": self._test_slices}
        return out
