"""Kaggle Data Science Bowl 2018 nuclei (BBBC038v1), read in the Kaggle layout.

    <root>/stage1_train/<id>/images/<id>.png   RGBA (alpha ignored) or grey, any size
    <root>/stage1_train/<id>/masks/*.png       one 0/255 PNG per nucleus, none overlapping
    <root>/stage1_test/<id>/images/<id>.png    optional, with
    <root>/stage1_solution.csv                 ImageId,EncodedPixels[,Height,Width,Usage] (RLE;
                                               images whose Usage is Ignored are not tested)

Targets: semantic mask {0, 1} = union of the nucleus masks; instance image where the k-th mask
file (sorted by name) has value k. Splits: when ``stage1_test/`` and ``stage1_solution.csv``
are both present, test = the official stage-1 test set and stage1_train is split seeded into
train/val; otherwise stage1_train is split seeded into train/val/test (70/15/15 by default).
The seeded split is stratified by imaging type (fluorescence, histology, brightfield), each
type's count in every split within one image of its share: types from ``<root>/image_types.csv``
(ImageId,type), or, without the file (a fresh download), from ``image_type`` on the pixels.
Every sample's ``meta["type"]`` is its imaging type: from ``image_types.csv`` where the file
lists the image, otherwise (the official test set, or no file) from ``image_type``, a rule on
the pixels that agrees with ``image_types.csv`` on all 155 shared training images.
The split seed is its own option (``split_seed``), so training seeds never move the split.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from seg_bench.data.base import Sample, SegmentationDataModule, seeded_split
from seg_bench.data.intensity import bright_background, invert_if_bright
from seg_bench.data.io import read_image, require_dir, require_same_shape
from seg_bench.data.options import check_fractions
from seg_bench.data.rle import RleRow, labels_from_rows, read_rle_rows, scored_ids
from seg_bench.errors import DataError
from seg_bench.io import write_json
from seg_bench.paths import cache_dir, missing_data_hint
from seg_bench.registry import DATASETS

HINT = missing_data_hint("dsb2018") + " Expected: the Kaggle layout."
TYPES_CSV = "image_types.csv"  # ImageId,type[,...]: the strata of the seeded split
IMAGE_TYPES = ("fluorescence", "histology", "brightfield")
# Mean HSV saturation above which an image counts as stained (histology). On the 155 shared
# training images: 0.000 for every grey image, 0.094 to 0.519 for the H&E tiles.
COLOUR_SATURATION = 0.05
# Names the pixel rule in the type cache: change it whenever image_type decides otherwise.
TYPE_RULE = f"saturation>{COLOUR_SATURATION}, else median>top/2: v1"
log = logging.getLogger(__name__)


def read_image_types(csv_path: Path, ids: list[str]) -> dict[str, str] | None:
    """ImageId -> imaging type from ``image_types.csv``, for the stratified split; None (and a
    warning) when the file is absent. Rows for images not in ``ids`` are ignored."""
    if not csv_path.is_file():
        log.warning(
            "dsb2018: %s not found; the split is stratified by the type the pixels give "
            "(image_type)",
            csv_path,
        )
        return None
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"ImageId", "type"} <= set(reader.fieldnames):
            raise DataError(
                f"{csv_path}: header {reader.fieldnames}; expected ImageId,type[,...] "
                "(or delete the file for an unstratified split)"
            )
        types = {row["ImageId"]: (row["type"] or "").strip() for row in reader}
    odd = sorted((i, t) for i, t in types.items() if t and t not in IMAGE_TYPES)
    if odd:
        raise DataError(
            f"{csv_path}: image {odd[0][0]} has type '{odd[0][1]}'; expected one of "
            f"{', '.join(IMAGE_TYPES)} (or delete the file to type images by their pixels)"
        )
    missing = [i for i in ids if not types.get(i)]
    if missing:
        raise DataError(
            f"{csv_path}: no type for image {missing[0]} ({len(missing)} of {len(ids)} missing); "
            "expected one ImageId,type row per stage1_train folder "
            "(or delete the file for an unstratified split)"
        )
    return {i: types[i] for i in ids}


def instances_from_mask_files(
    files: list[Path], shape: tuple[int, int], image_path: Path
) -> np.ndarray:
    """One label image from DSB's one-PNG-per-nucleus masks (mask k -> label k)."""
    inst = np.zeros(shape, dtype=np.int32)
    for k, p in enumerate(files, start=1):
        m = read_image(p)
        if m.ndim != 2:
            raise DataError(
                f"{p}: mask has shape {m.shape}; expected a single-channel 0/255 PNG (one nucleus)"
            )
        require_same_shape(np.empty(shape, bool), m, image_path, p)
        # Work inside the nucleus' bounding box: a full-image pass per mask is the slow part.
        rows, cols = np.flatnonzero(m.max(axis=1)), np.flatnonzero(m.max(axis=0))
        if rows.size == 0:
            raise DataError(
                f"{p}: mask holds no nucleus pixel; "
                "expected 255 on exactly one nucleus, 0 elsewhere"
            )
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        crop = m[box]
        fg = crop > 0
        if not (crop[fg] == 255).all():
            found = sorted({0, *np.unique(crop).tolist()})[:6]
            raise DataError(f"{p}: mask values {found}; expected 0 (background) / 255 (nucleus)")
        target = inst[box]
        taken = target[fg]
        if taken.any():
            other = files[int(taken[taken > 0][0]) - 1]
            raise DataError(
                f"{p}: overlaps mask {other.name} ({int((taken > 0).sum())} pixels); "
                "expected non-overlapping nucleus masks"
            )
        target[fg] = k
    return inst


def image_type(image: np.ndarray) -> str:
    """Imaging type from the pixels: *histology* when coloured (mean HSV saturation above
    ``COLOUR_SATURATION``: stained pink/purple tissue), else *brightfield* when the background
    (median grey) is bright (``bright_background``), else *fluorescence* (dark background).

    Examples
    --------
    >>> image_type(np.zeros((4, 4), np.uint8)), image_type(np.full((4, 4), 220, np.uint8))
    ('fluorescence', 'brightfield')
    """
    image = np.asarray(image)
    if image.ndim == 3:
        rgb = image[..., :3].astype(np.float32)
        high, low = rgb.max(axis=-1), rgb.min(axis=-1)
        saturation = float(np.mean((high - low) / np.maximum(high, 1e-6)))
        if saturation > COLOUR_SATURATION:
            return "histology"
        image = np.round(rgb.mean(axis=-1)).astype(image.dtype)
    return "brightfield" if bright_background(image) else "fluorescence"


def types_from_pixels(images: dict[str, Path]) -> dict[str, str]:
    """``image_type`` of each image file, cached in the user's cache folder by the file's path,
    size and modification time: without ``image_types.csv`` every start would read all
    training images again (13 s for 670 on 2 cores). An unusable cache is only recomputed."""
    path = cache_dir() / "dsb2018_types.json"
    try:
        stored = json.loads(path.read_text())
        cached = stored["types"] if stored.get("rule") == TYPE_RULE else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        cached = {}
    out, keys = {}, {}
    for image_id, image_path in images.items():
        stat = image_path.stat()
        keys[image_id] = f"{image_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        kind = cached.get(keys[image_id])
        out[image_id] = kind if kind in IMAGE_TYPES else image_type(read_image(image_path))
    fresh = {keys[i]: out[i] for i in out}
    if any(cached.get(k) != t for k, t in fresh.items()):
        with contextlib.suppress(OSError):  # a read-only home costs the seconds, no more
            write_json(path, {"rule": TYPE_RULE, "types": cached | fresh})
    return out


@DATASETS.register(
    "dsb2018", "Kaggle Data Science Bowl 2018 nuclei (BBBC038v1): fluorescence, brightfield, H&E"
)
class DSB2018(SegmentationDataModule):
    """DSB 2018 stage 1 nuclei; instance masks from one PNG per nucleus."""

    name = "dsb2018"
    citation = (
        "Caicedo et al. Nucleus segmentation across imaging experiments: the 2018 Data Science "
        "Bowl. Nature Methods 16, 2019",
        "10.1038/s41592-019-0612-7",
    )
    data_license = "CC0 1.0 (BBBC038v1, public domain)"
    research_only = False
    subdir = "dsb2018"  # default folder under $SEG_BENCH_DATA
    num_classes = 2
    in_channels = 3
    positive_class = "nucleus"
    positive_label = None  # label images hold instance ids: any non-zero pixel is a nucleus
    instance_metric = "dsb"
    default_patch_size = 256

    def __init__(
        self,
        root=None,
        grey: bool = False,
        invert_bright: bool = False,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        **kwargs,
    ):
        super().__init__(root=root, **kwargs)
        self.grey = bool(grey)
        self.invert_bright = bool(invert_bright)
        self.in_channels = 1 if self.grey else 3
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)
        check_fractions(self.name, self.val_fraction, self.test_fraction)
        self._layout: dict[str, list[tuple[str, Path]]] | None = None
        self._solution: dict[str, list[RleRow]] = {}  # ImageId -> its rows, scored images
        self._cache: dict[str, Sample] = {}
        self._official = False
        self._ignored: list[str] = []  # official test images whose Usage is Ignored
        self._types: dict[str, str] = {}  # ImageId -> type of stage1_train, set by layout
        self._types_from = TYPES_CSV

    # --- layout and splits (file names; pixels only to type images without the CSV) -------
    def _scan(self, folder: Path, with_masks: bool) -> list[tuple[str, Path]]:
        require_dir(
            folder,
            "one sub-folder per image: <id>/images/<id>.png"
            + (" and <id>/masks/*.png" if with_masks else ""),
            HINT,
        )
        entries = []
        for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            image = d / "images" / f"{d.name}.png"
            masks = d / "masks"
            has_masks = masks.is_dir() and any(masks.glob("*.png"))
            if not image.is_file():
                what = "its masks/ have no image" if has_masks else "no image"
                raise DataError(
                    f"{image}: file not found ({what}); expected {d.name}/images/{d.name}.png"
                )
            if with_masks and not has_masks:
                raise DataError(
                    f"{masks}: no mask PNGs for image {image.name}; "
                    "expected one 0/255 PNG per nucleus"
                )
            entries.append((d.name, d))
        if not entries:
            raise DataError(f"{folder}: no image folders; expected <id>/images/<id>.png. {HINT}")
        return entries

    def _read_solution(self, csv_path: Path, test_ids: set[str]) -> set[str]:
        """Keep the solution's nuclei of the images it scores, and return those ids: images
        whose rows all say ``Usage`` Ignored are left out of the test split (``_ignored``), as
        Kaggle left them out of its leaderboards (and as ``seg-bench score`` does)."""
        listed = read_rle_rows(csv_path)
        scored = scored_ids(listed)
        unknown = sorted(scored - test_ids)
        if unknown:
            raise DataError(
                f"{csv_path}: ImageId {unknown[0]} has no folder in stage1_test/; "
                f"expected stage1_test/{unknown[0]}/images/{unknown[0]}.png"
            )
        missing = sorted(test_ids - set(listed))
        if missing:
            raise DataError(
                f"{self.dir / 'stage1_test' / missing[0]}: no rows in {csv_path.name}; "
                "expected RLE rows for every stage1_test image"
            )
        if not scored:
            raise DataError(
                f"{csv_path}: every image's Usage is Ignored, so the official test set has "
                "nothing to score; expected Public or Private rows (or move the file away)"
            )
        self._ignored = sorted(set(listed) - scored)
        self._solution = {i: listed[i] for i in scored}
        return scored

    def layout(self) -> dict[str, list[tuple[str, Path]]]:
        """split -> [(id, folder)], decided from file names alone."""
        if self._layout is not None:
            return self._layout
        if not self.dir.is_dir():
            raise DataError(
                f"{self.dir}: folder not found; expected the DSB 2018 layout "
                f"stage1_train/<id>/images/<id>.png. {HINT}"
            )
        train = self._scan(self.dir / "stage1_train", with_masks=True)
        test_dir, solution = self.dir / "stage1_test", self.dir / "stage1_solution.csv"
        official = test_dir.is_dir() and solution.is_file()
        if test_dir.is_dir() != solution.is_file():  # else the test split would change quietly
            have, lack = (test_dir, solution) if test_dir.is_dir() else (solution, test_dir)
            raise DataError(
                f"{lack}: not found, but {have.name} is there; the official stage-1 test set "
                f"needs both (or move {have.name} away to split a test set from stage1_train)"
            )
        fractions = {"train": 1 - self.val_fraction, "val": self.val_fraction}
        if not official:
            fractions = {
                "train": 1 - self.val_fraction - self.test_fraction,
                "val": self.val_fraction,
                "test": self.test_fraction,
            }
        if len(train) < len(fractions):
            raise DataError(
                f"{self.dir / 'stage1_train'}: {len(train)} image folders are too few for "
                f"{'/'.join(fractions)}; expected at least {len(fractions)}"
            )
        folders = dict(train)
        listed = read_image_types(self.dir / TYPES_CSV, sorted(folders))
        if listed is None:  # a fresh download: the rule that agrees with the file
            listed = types_from_pixels({i: self._image_path(f) for i, f in train})
            self._types_from = "the pixels, image_type"
        self._types = listed
        split = seeded_split(sorted(folders), fractions, self.split_seed, self._types)
        out = {k: [(i, folders[i]) for i in v] for k, v in split.items()}
        if official:
            folders = self._scan(test_dir, with_masks=False)
            scored = self._read_solution(solution, {i for i, _ in folders})
            out["test"] = [(i, f) for i, f in folders if i in scored]
        self._official = official
        self._layout = out
        return out

    def split_info(self) -> dict[str, Any]:
        lay = self.layout()
        seeded = f"seeded, stratified by image type ({self._types_from})"
        info: dict[str, Any] = {
            "split": seeded
            if not self._official
            else f"official stage1_test{self._ignored_note()}; {seeded} train/val from "
            "stage1_train",
            "split_seed": self.split_seed,
            "counts": {k: len(v) for k, v in lay.items()},
            "grey": self.grey,
            "invert_bright": self.invert_bright,
        }
        info["fractions"] = (
            {"val": self.val_fraction}
            if self._official
            else {"val": self.val_fraction, "test": self.test_fraction}
        )
        if self._ignored:  # a record tested before they were left out may be re-tested
            info["ignored_test"] = self._ignored
        # Images of each type per split (the splits drawn from stage1_train only).
        seeded_splits = {k: v for k, v in lay.items() if k != "test" or not self._official}
        info["strata"] = {
            t: {k: sum(self._types[i] == t for i, _ in v) for k, v in seeded_splits.items()}
            for t in sorted(set(self._types.values()))
        }
        return info

    def _ignored_note(self) -> str:
        if not self._ignored:
            return ""
        n = len(self._ignored)
        return f" ({n} image(s) whose Usage is Ignored left out, as Kaggle scored)"

    # --- pixels --------------------------------------------------------------------------------
    def _image(self, image_path: Path) -> tuple[np.ndarray, bool]:
        image = read_image(image_path)
        if self.grey and image.ndim == 3:
            image = np.round(image.mean(axis=-1)).astype(image.dtype)
        elif not self.grey and image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        return invert_if_bright(image) if self.invert_bright else (image, False)

    def input_options(self) -> dict[str, Any]:
        return {"invert_bright": self.invert_bright}

    def _instances_from_masks(
        self, folder: Path, image: np.ndarray, image_path: Path
    ) -> np.ndarray:
        return instances_from_mask_files(
            sorted((folder / "masks").glob("*.png")), image.shape[:2], image_path
        )

    def _instances_from_rle(self, image_id: str, image: np.ndarray) -> np.ndarray:
        csv_path = self.dir / "stage1_solution.csv"
        rows = self._solution[image_id]
        sized = next((r for r in rows if r.shape is not None), None)
        if sized is not None and sized.shape != image.shape[:2]:
            raise DataError(
                f"{csv_path}: line {sized.line} says {sized.shape[0]}x{sized.shape[1]} but "
                f"image {image_id} is {image.shape[0]}x{image.shape[1]}; expected matching "
                "Height,Width"
            )
        return labels_from_rows(rows, image.shape[:2], csv_path, image_id)

    @staticmethod
    def _image_path(folder: Path) -> Path:
        return folder / "images" / f"{folder.name}.png"

    def _load(self, image_id: str, folder: Path, official_test: bool) -> Sample:
        if image_id in self._cache:
            return self._cache[image_id]
        image_path = self._image_path(folder)
        image, inverted = self._image(image_path)
        listed = self._types.get(image_id)
        kind = listed or image_type(read_image(image_path) if (self.grey or inverted) else image)
        if official_test:
            inst = self._instances_from_rle(image_id, image)
        else:
            inst = self._instances_from_masks(folder, image, image_path)
        sample = Sample(
            id=image_id,
            image=image,
            mask=(inst > 0).astype(np.uint8),
            instances=inst,
            meta={
                "path": str(image_path),
                "inverted": inverted,
                "type": kind,
                "type_from": TYPES_CSV if listed else "pixels",
            },
        )
        self._cache[image_id] = sample
        return sample

    def load_split(self, split: str) -> list[Sample]:
        entries = self.layout()[split]
        official_test = split == "test" and self._official
        return [self._load(i, d, official_test) for i, d in entries]
