"""``seg-bench data check NAME --root DIR``: load every split, validate it, summarise it.

>>> summary = check_dataset("isbi2012", root="data/isbi2012")   # doctest: +SKIP
>>> print(format_summary(summary))                              # doctest: +SKIP
"""

from __future__ import annotations

import io
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from seg_bench.data.base import SPLITS, Sample, SegmentationDataModule

# Registration side effects (harmless once seg_bench.data imports them itself).
from seg_bench.data.datasets import dsb2018, epfl, folder, isbi2012, isbi2013, ncmir  # noqa: F401
from seg_bench.data.options import create_datamodule
from seg_bench.errors import DataError, UserError


@dataclass
class SplitSummary:
    images: int
    sizes: dict[str, int]  # "HxW" -> number of images
    dtypes: list[str]
    channels: list[int]
    foreground: float  # pixel-weighted fraction of non-background pixels
    foreground_min: float  # per image
    foreground_max: float
    class_fractions: dict[int, float]  # class id -> pixel fraction
    instances_total: int
    instances_mean: float
    instances_min: int
    instances_max: int
    pixels: int = 0
    types: dict[str, int] = field(default_factory=dict)  # imaging type -> images (DSB 2018)


@dataclass
class Summary:
    dataset: str
    root: str
    num_classes: int
    in_channels: int
    positive_class: str
    instance_metric: str | None
    splits: dict[str, SplitSummary]
    split_info: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> SplitSummary:
        """All splits together."""
        return _total(list(self.splits.values()))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _where(dm: SegmentationDataModule, s: Sample) -> str:
    return str(s.meta.get("path", f"{dm.name}:{s.id}")) + (
        f" (slice {s.meta['slice']})" if "slice" in s.meta else ""
    )


def _validate(dm: SegmentationDataModule, s: Sample) -> None:
    where = _where(dm, s)
    if s.mask is None:
        raise DataError(
            f"{where}: sample {s.id} has no labels; expected a mask for every train/val/test image"
        )
    img = np.asarray(s.image)
    channels = 1 if img.ndim == 2 else img.shape[-1]
    if img.ndim not in (2, 3) or channels != dm.in_channels:
        raise DataError(
            f"{where}: image of shape {img.shape}; expected "
            f"H,W{'' if dm.in_channels == 1 else f',{dm.in_channels}'} ({dm.in_channels} "
            "channel(s))"
        )
    if s.mask.shape != img.shape[:2]:
        raise DataError(
            f"{where}: mask is {s.mask.shape} but image is {img.shape[:2]}; expected the same "
            "height and width"
        )
    if (
        not np.issubdtype(s.mask.dtype, np.integer)
        or s.mask.min() < 0
        or s.mask.max() >= dm.num_classes
    ):
        raise DataError(
            f"{where}: mask values {int(s.mask.min())}..{int(s.mask.max())}; expected class ids "
            f"0..{dm.num_classes - 1}"
        )
    if s.instances is not None and s.instances.shape != s.mask.shape:
        raise DataError(
            f"{where}: instances are {s.instances.shape} but mask is {s.mask.shape}; expected the "
            "same shape"
        )


def _count_instances(s: Sample) -> int:
    if s.instances is None:
        return int(ndi.label(s.mask > 0)[1])
    inst = s.instances
    return int(np.unique(inst[inst > 0]).size)


def summarise_split(dm: SegmentationDataModule, samples: list[Sample]) -> SplitSummary:
    sizes: Counter[str] = Counter()
    class_pixels = np.zeros(dm.num_classes, dtype=np.int64)
    fg_each, n_inst = [], []
    dtypes, channels = set(), set()
    types: Counter[str] = Counter()
    for s in samples:
        if "type" in s.meta:
            types[s.meta["type"]] += 1
        _validate(dm, s)
        h, w = s.mask.shape
        sizes[f"{h}x{w}"] += 1
        dtypes.add(str(np.asarray(s.image).dtype))
        channels.add(1 if s.image.ndim == 2 else int(s.image.shape[-1]))
        counts = np.bincount(s.mask.ravel().astype(np.int64), minlength=dm.num_classes)
        class_pixels += counts
        fg_each.append(1 - counts[0] / s.mask.size)
        n_inst.append(_count_instances(s))
    total = int(class_pixels.sum())
    return SplitSummary(
        images=len(samples),
        sizes=dict(sizes.most_common()),
        dtypes=sorted(dtypes),
        channels=sorted(channels),
        foreground=float(1 - class_pixels[0] / total),
        foreground_min=float(min(fg_each)),
        foreground_max=float(max(fg_each)),
        class_fractions={k: float(v / total) for k, v in enumerate(class_pixels)},
        instances_total=int(sum(n_inst)),
        instances_mean=float(np.mean(n_inst)),
        instances_min=int(min(n_inst)),
        instances_max=int(max(n_inst)),
        pixels=total,
        types=dict(sorted(types.items())),
    )


def check_datamodule(dm: SegmentationDataModule) -> Summary:
    """Load and validate every split of ``dm``; DataError naming the file on the first problem."""
    splits, seen = {}, {}
    for split in SPLITS:
        samples = dm.load_split(split)
        if not samples:
            raise DataError(
                f"{getattr(dm, 'dir', dm.root)}: the {split} split is empty; expected at least one "
                "labelled image"
            )
        for s in samples:
            if s.id in seen:
                raise DataError(
                    f"{_where(dm, s)}: sample {s.id} is in both {seen[s.id]} and {split}; expected "
                    "disjoint splits"
                )
            seen[s.id] = split
        splits[split] = summarise_split(dm, samples)
    return Summary(
        dataset=dm.name,
        root=str(getattr(dm, "dir", dm.root)),
        num_classes=dm.num_classes,
        in_channels=dm.in_channels,
        positive_class=dm.positive_class,
        instance_metric=dm.instance_metric,
        splits=splits,
        split_info=dm.split_info(),
    )


def check_dataset(name: str, root=None, **options: Any) -> Summary:
    """Build dataset ``name`` (``root`` else ``$SEG_BENCH_DATA/<subdir>``) and check every split."""
    return check_datamodule(create_datamodule(name, root=root, **options))


def _total(parts: list[SplitSummary]) -> SplitSummary:
    pixels = sum(p.pixels for p in parts)
    images = sum(p.images for p in parts)
    sizes: Counter[str] = Counter()
    for p in parts:
        sizes.update(p.sizes)
    classes = {
        k: sum(p.class_fractions[k] * p.pixels for p in parts) / pixels
        for k in parts[0].class_fractions
    }
    return SplitSummary(
        images=images,
        sizes=dict(sizes.most_common()),
        dtypes=sorted({d for p in parts for d in p.dtypes}),
        channels=sorted({c for p in parts for c in p.channels}),
        foreground=1 - classes[0],
        foreground_min=min(p.foreground_min for p in parts),
        foreground_max=max(p.foreground_max for p in parts),
        class_fractions=classes,
        instances_total=sum(p.instances_total for p in parts),
        instances_mean=sum(p.instances_mean * p.images for p in parts) / images,
        instances_min=min(p.instances_min for p in parts),
        instances_max=max(p.instances_max for p in parts),
        pixels=pixels,
        types=dict(sorted(sum((Counter(p.types) for p in parts), Counter()).items())),
    )


def _sizes(sizes: dict[str, int], limit: int = 3) -> str:
    shown = [f"{k} x{v}" for k, v in list(sizes.items())[:limit]]
    return ", ".join(shown) + (f", +{len(sizes) - limit} more" if len(sizes) > limit else "")


def format_summary(summary: Summary) -> str:
    """A plain-text table (rendered by rich, without colour)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    title = (
        f"{summary.dataset}: {summary.root} | positive class: {summary.positive_class} | "
        f"classes: {summary.num_classes} | channels: {summary.in_channels}"
    )
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for col in (
        "split",
        "images",
        "sizes (HxW x count)",
        "dtype",
        "foreground % (min-max)",
        "instances total",
        "per image mean (min-max)",
    ):
        table.add_column(
            col, justify="left" if col in ("split", "sizes (HxW x count)", "dtype") else "right"
        )
    rows = dict(summary.splits)
    rows["all"] = _total(list(summary.splits.values()))
    for split, s in rows.items():
        table.add_row(
            split,
            str(s.images),
            _sizes(s.sizes),
            "/".join(s.dtypes) + f" x{'/'.join(map(str, s.channels))}ch",
            f"{100 * s.foreground:.1f} ({100 * s.foreground_min:.1f}-{100 * s.foreground_max:.1f})",
            str(s.instances_total),
            f"{s.instances_mean:.1f} ({s.instances_min}-{s.instances_max})",
        )
    out = io.StringIO()
    Console(file=out, width=140, color_system=None, force_terminal=False).print(table)
    info = summary.split_info.get("split")
    text = "\n".join(line.rstrip() for line in out.getvalue().splitlines()).strip("\n")
    return text + (f"\nsplit: {info}" if info else "") + _type_lines(rows)


def _type_lines(rows: dict[str, SplitSummary]) -> str:
    """Images per imaging type and split, where the dataset types its images (DSB 2018)."""
    if not any(s.types for s in rows.values()):
        return ""
    lines = [
        f"  {split}: " + ", ".join(f"{t} {n}" for t, n in s.types.items())
        for split, s in rows.items()
    ]
    return "\nimage types:\n" + "\n".join(lines)


def check_main(name: str, root=None, **options: Any) -> int:
    """CLI body: print the summary and return 0, or print a one-line error and return 1."""
    try:
        summary = check_dataset(name, root, **options)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0
