"""The contract every dataset follows, and the DataModule that turns samples into batches.

A dataset only says how to read its files: ``load_split(split) -> list[Sample]``. Everything
after that (normalisation, random patches, foreground-biased sampling, augmentation, whole-image
validation, batching) lives here once.

Where the training labels come from is not the dataset's business: a *label source* (see
:class:`LabelSource`; ``seg_bench.labels.source`` holds the ones a run chooses with ``--labels``)
may replace the train and val labels when those splits are built. Test labels are always the
dataset's own.

Batch contract (a dict):
    image      float32 B,C,H,W  (percentile-normalised, ~[0, 1])
    mask       int64   B,H,W    class ids, 0 = background (binary datasets: {0, 1})
    instances  int32   B,H,W    instance ids, 0 = background (connected components of the
                                foreground where the dataset has no instance labels)
    id         list[str]
    target     B,H,W            only with an instance-aware training target: made from the
                                augmented ``instances`` by the DataModule's ``target_transform``
                                (seg_bench/training/targets.py), so no warp blurs it
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from scipy import ndimage as ndi
from torch.utils.data import DataLoader, Dataset, Sampler

from seg_bench.data.splits import split_counts, stratified_counts
from seg_bench.errors import DataError, UserError

SPLITS = ("train", "val", "test")


@dataclass
class Sample:
    id: str
    image: np.ndarray  # H,W or H,W,C; uint8, uint16 or float
    mask: np.ndarray | None  # H,W class ids (uint8); None where the split has no labels
    instances: np.ndarray | None = None  # H,W int32, 0 = background
    meta: dict[str, Any] = field(default_factory=dict)


class LabelSource(Protocol):
    """Turns a split's samples into the samples to learn from (e.g. with weak labels).

    ``name`` is recorded as the run's ``labels``; ``quality`` maps a split to how its new labels
    agree with the dataset's own (recorded as ``weak_label_quality``).
    """

    name: str
    quality: dict[str, dict[str, float]]

    def __call__(self, samples: list[Sample], split: str, num_classes: int) -> list[Sample]: ...


def data_root(name: str, root: str | os.PathLike | None, subdir: str) -> str:
    """Where a dataset lives: ``--root``, else ``<seg_bench.paths.data_dir()>/<subdir>``."""
    from seg_bench.paths import dataset_dir

    return os.fspath(dataset_dir(subdir, root))


def normalize_percentile(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Scale each channel so its ``low``/``high`` percentiles map to 0/1 (csbdeep convention).

    Works the same for 8-bit, 16-bit and float microscopy; no clipping, so bright outliers
    stay visible to the network.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    lo = np.percentile(image, low, axis=(0, 1), keepdims=True)
    hi = np.percentile(image, high, axis=(0, 1), keepdims=True)
    return (image - lo) / np.maximum(hi - lo, 1e-6)


def as_int32_ids(ids: np.ndarray) -> np.ndarray:
    """Instance ids as int32, renumbered 1..n (0 stays background) where an id is too large
    for int32: a plain cast would wrap 3,000,000,000 to a negative id."""
    if int(ids.max(initial=0)) <= np.iinfo(np.int32).max:
        return ids.astype(np.int32)
    values, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(ids.shape).astype(np.int32)
    return inverse if values[0] == 0 else inverse + 1


def connected_instances(mask: np.ndarray) -> np.ndarray:
    labels, _ = ndi.label(mask > 0)
    return labels.astype(np.int32)


def seeded_split(
    ids: list[str],
    fractions: dict[str, float],
    seed: int,
    strata: dict[str, str] | None = None,
) -> dict[str, list[str]]:
    """Split ``ids`` reproducibly; every split with a positive fraction gets at least one id.

    With ``strata`` (id -> group, e.g. DSB image type) the split is stratified: each group is
    shared out so that its count in every split is within one image of the group's share of
    that split (see ``stratified_counts``); the split sizes are the same as without it.
    """
    names = [k for k, v in fractions.items() if v > 0]
    if len(ids) < len(names):
        raise DataError(
            f"{len(ids)} labelled images are too few for the splits {names}: "
            f"need at least {len(names)}"
        )
    counts = split_counts(len(ids), {k: fractions[k] for k in names})
    rng = np.random.default_rng(seed)
    if strata is None:
        order = [ids[i] for i in rng.permutation(len(ids))]
        out, start = {}, 0
        for k in names:
            out[k] = sorted(order[start : start + counts[k]])
            start += counts[k]
        return out
    groups = {
        g: sorted(i for i in ids if strata[i] == g) for g in sorted(set(strata[i] for i in ids))
    }
    table = stratified_counts({g: len(v) for g, v in groups.items()}, counts)
    out = {k: [] for k in names}
    for g, members in groups.items():
        order = [members[i] for i in rng.permutation(len(members))]
        start = 0
        for k in names:
            out[k] += order[start : start + table[g][k]]
            start += table[g][k]
    return {k: sorted(v) for k, v in out.items()}


class _PreparedSample:
    """A sample with its normalised float image, ready for cropping."""

    def __init__(self, s: Sample):
        if s.mask is None:
            raise DataError(
                f"sample {s.id} has no labels and cannot be used for training or scoring"
            )
        self.id = s.id
        self.meta = s.meta  # e.g. the DSB imaging type, for scores per type
        self.image = normalize_percentile(s.image)
        self.mask = s.mask.astype(np.uint8)
        if self.image.shape[:2] != self.mask.shape:
            raise DataError(
                f"{s.id}: image is {self.image.shape[:2]} but mask is {self.mask.shape}; "
                "they must match"
            )
        inst = s.instances if s.instances is not None else connected_instances(self.mask)
        self.instances = inst.astype(np.int32)
        self.foreground = np.flatnonzero(self.mask.ravel() > 0)


def _to_batch_item(image, mask, instances, sample_id) -> dict[str, Any]:
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)),
        "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)),
        "instances": torch.from_numpy(np.ascontiguousarray(instances, dtype=np.int32)),
        "id": sample_id,
    }


class PatchSeeds(Sampler[int]):
    """The seed of every patch of an epoch, drawn from (run seed, epoch, rank): the patches and
    their augmentation follow from the epoch alone, so a resumed run (Lightning calls
    ``set_epoch`` with the restored epoch) draws what the uninterrupted run would have, whatever
    the workers or the global RNG did before."""

    def __init__(self, length: int, seed: int, rank: int = 0):
        self.length, self.seed, self.rank, self.epoch = length, seed, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        return iter(rng.integers(0, 2**62, self.length).tolist())

    def __len__(self) -> int:
        return self.length


class RandomPatchDataset(Dataset):
    """Random patches, augmented; optionally centred on foreground. The index is the patch's
    seed (``PatchSeeds``), which fixes its position and its augmentation.

    ``target_transform(item) -> item`` runs on each item after augmentation."""

    def __init__(
        self,
        samples,
        patch_size: int,
        length: int,
        augment=None,
        foreground_bias: float = 0.0,
        target_transform=None,
    ):
        self.samples = samples
        self.patch = patch_size
        self.length = length
        self.augment = augment
        self.foreground_bias = foreground_bias
        self.target_transform = target_transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng(index)
        s = self.samples[rng.integers(len(self.samples))]
        h, w = s.mask.shape
        p = self.patch
        if s.foreground.size and rng.random() < self.foreground_bias:
            cy, cx = divmod(int(s.foreground[rng.integers(s.foreground.size)]), w)
            y = int(np.clip(cy - p // 2, 0, h - p))
            x = int(np.clip(cx - p // 2, 0, w - p))
        else:
            y, x = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
        image = s.image[y : y + p, x : x + p]
        mask = s.mask[y : y + p, x : x + p]
        inst = s.instances[y : y + p, x : x + p]
        if self.augment is not None:
            # SegmentationCompose.reseed, an albumentations Compose's set_random_seed, else none.
            seed = int(rng.integers(2**62))
            reseed = getattr(self.augment, "reseed", getattr(self.augment, "set_random_seed", None))
            if reseed is not None:
                reseed(seed)
            out = self.augment(image=image, mask=mask, instances=inst)
            image, mask, inst = out["image"], out["mask"], out["instances"]
        item = _to_batch_item(image, mask, inst, s.id)
        return item if self.target_transform is None else self.target_transform(item)


class WholeImageDataset(Dataset):
    def __init__(self, samples, target_transform=None):
        self.samples = samples
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        item = _to_batch_item(s.image, s.mask, s.instances, s.id)
        return item if self.target_transform is None else self.target_transform(item)


def default_num_workers() -> int:
    """Leave one core to the training process; 0 (in-process) on a 1-2 core machine where
    worker start-up and IPC cost more than they give."""
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    return 0 if cores <= 2 else min(8, cores - 1)


class SegmentationDataModule(L.LightningDataModule):
    """Base class: subclasses set the class attributes and implement ``load_split``."""

    name = "base"
    num_classes = 2  # including background
    in_channels = 1
    positive_class = "foreground"
    # Which instance-level metric applies: "dsb" (nuclei mAP), "em" (Rand/VI), or None.
    instance_metric: str | None = None
    default_patch_size = 256
    # Folder under $SEG_BENCH_DATA read when no --root is given; None for generated datasets.
    subdir: str | None = None
    # Travel with exported models (inference/model_card.py): (text, DOI), license, and whether
    # the data's terms forbid commercial use (then so do weights trained on it).
    citation: tuple[str, str] | None = None
    data_license = "unknown: see the dataset's own terms"
    research_only = True

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        patch_size: int | None = None,
        batch_size: int = 4,
        num_workers: int | None = None,
        augment: str = "d4",
        augment_params: dict | None = None,
        samples_per_epoch: int | None = None,
        foreground_bias: float = 0.0,
        seed: int = 0,
        label_source: LabelSource | None = None,
    ):
        super().__init__()
        self.root = root
        # Resolved once here so every loader, error message and result record names the
        # same folder, whether it came from --root or from $SEG_BENCH_DATA.
        self.dir = Path(data_root(self.name, root, self.subdir)) if self.subdir else None
        self.patch_size = int(patch_size or self.default_patch_size)
        self.batch_size = int(batch_size)
        self.num_workers = default_num_workers() if num_workers is None else int(num_workers)
        self.augment_name = augment
        self.augment_params = augment_params or {}
        self.samples_per_epoch = samples_per_epoch
        self.foreground_bias = float(foreground_bias)
        self.seed = int(seed)
        # Option values are checked by RunConfig.validate; only checks that need the data
        # (patch size vs the smallest image) are made here.
        self.label_source = label_source  # None: the dataset's own (manual) labels
        # Adds the training target to each item after augmentation (set by the trainer for
        # instance-aware targets, seg_bench/training/targets.py); None: the mask is the target.
        self.target_transform = None
        self._prepared: dict[str, list[_PreparedSample]] = {}

    # --- what a dataset implements -------------------------------------------------------
    def load_split(self, split: str) -> list[Sample]:
        raise NotImplementedError

    def input_options(self) -> dict[str, Any]:
        """What this dataset does to an image before normalising it, beyond matching channels
        (kept with the checkpoint, so that `predict` does it too)."""
        return {}

    def split_info(self) -> dict[str, Any]:
        """How the splits were made, for the result record."""
        return {}

    # --- shared machinery ----------------------------------------------------------------
    def samples(self, split: str) -> list[_PreparedSample]:
        if split not in self._prepared:
            raw = self.load_split(split)
            if not raw:
                raise DataError(f"{self.name}: the {split} split is empty")
            if self.label_source is not None and split != "test":
                # The label-source study trains and validates on other labels, but always
                # tests on the manual ground truth.
                raw = self.label_source(raw, split, self.num_classes)
            self._prepared[split] = [_PreparedSample(s) for s in raw]
        return self._prepared[split]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            train = self.samples("train")
            smallest = min(min(s.mask.shape) for s in train)
            if self.patch_size > smallest:
                raise UserError(
                    f"--patch-size {self.patch_size} is larger than the smallest {self.name} "
                    f"training image side ({smallest}px); use --patch-size {smallest} or less"
                )
            self.samples("val")
        if stage in (None, "test"):
            self.samples("test")
        if stage == "validate":
            self.samples("val")

    def build_augment(self):
        from seg_bench.data.augment.presets import build_augment

        return build_augment(self.augment_name, **self.augment_params)

    def epoch_length(self) -> int:
        if self.samples_per_epoch:
            return int(self.samples_per_epoch)
        # Enough patches to cover every training pixel about once per epoch.
        area = sum(s.mask.size for s in self.samples("train"))
        return max(self.batch_size, math.ceil(area / self.patch_size**2))

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def train_dataloader(self) -> DataLoader:
        # Every process draws its own random patches (its rank is in the seeds), so an epoch is
        # split by length.
        world, rank = self._world()
        length = math.ceil(self.epoch_length() / world)
        ds = RandomPatchDataset(
            self.samples("train"),
            self.patch_size,
            length,
            self.build_augment(),
            self.foreground_bias,
            self.target_transform,
        )
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=PatchSeeds(length, self.seed, rank),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def _whole(self, split: str) -> DataLoader:
        ds = WholeImageDataset(self.samples(split), self.target_transform)
        world, rank = self._world()
        # Each image is scored exactly once across processes (Lightning's default sampler
        # would pad uneven shards with repeats and bias the metrics).
        sampler = (
            UnrepeatedDistributedSampler(ds, num_replicas=world, rank=rank, shuffle=False)
            if world > 1
            else None
        )
        return DataLoader(ds, batch_size=1, num_workers=0, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._whole("val")

    def test_dataloader(self) -> DataLoader:
        return self._whole("test")

    def describe(self) -> dict[str, Any]:
        source = self.label_source
        return {
            "dataset": self.name,
            "root": None if self.dir is None else os.fspath(self.dir),
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "patch_size": self.patch_size,
            "augment": self.augment_name,
            "labels": "manual" if source is None else source.name,
            "weak_label_quality": {} if source is None else source.quality,
            "splits": {k: [s.id for s in v] for k, v in self._prepared.items()},
            **self.split_info(),
        }
