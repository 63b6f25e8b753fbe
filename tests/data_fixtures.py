"""Tiny datasets in each real layout, written into tmp_path (pytest fixtures + their writers).

Use the fixtures by importing them into a test module (``from data_fixtures import dsb_root``)
and the ``write_*`` functions to build variants (broken files, other sizes).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

REAL_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


# --- helpers --------------------------------------------------------------------------------
def png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def stack(path: Path, array: np.ndarray, **kwargs) -> Path:
    """A grey multi-page TIFF (minisblack, so 3- or 4-page stacks are not taken for RGB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, photometric="minisblack", **kwargs)
    return path


def palette_png(path: Path, indices: np.ndarray) -> Path:
    """A mode-P PNG whose palette maps index 1 to (1,1,1), like the CDeep3M masks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(indices.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 1, 1, 1] + [0, 0, 0] * 254)
    im.save(path)
    return path


def rle_encode(mask: np.ndarray) -> str:
    """Kaggle RLE: 1-based, column-major ``start length`` pairs."""
    flat = np.concatenate([[0], mask.T.ravel().astype(np.int8), [0]])
    runs = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs[1::2] -= runs[0::2]
    return " ".join(map(str, runs))


def nuclei(shape: tuple[int, int], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` disjoint rectangular nuclei (bool masks) in a grid of cells."""
    h, w = shape
    out = []
    for k in range(n):
        cy, cx = divmod(k, 3)
        y0, x0 = 2 + cy * (h // 3), 2 + cx * (w // 3)
        dy, dx = rng.integers(3, h // 3 - 3), rng.integers(3, w // 3 - 3)
        m = np.zeros(shape, bool)
        m[y0 : y0 + dy, x0 : x0 + dx] = True
        out.append(m)
    return out


def voronoi_ids(shape: tuple[int, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    """Voronoi cell ids 1..n (uint32) over a Z,H,W or H,W grid; in 3-D the seeds of each slice
    are independent."""
    seeds = rng.uniform(0, 1, (n, len(shape))) * np.array(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(
        np.float32
    )
    d = ((grid[..., None, :] - seeds.astype(np.float32)) ** 2).sum(-1)
    return (d.argmin(-1) + 1).astype(np.uint32)


# --- writers (one per layout) ---------------------------------------------------------------
def write_dsb(root: Path, n_images: int = 5, seed: int = 0, grey_bright: int = 1) -> dict[str, int]:
    """stage1_train/<id>/images/<id>.png (RGBA, varied sizes) + masks/*.png (0/255, disjoint).

    The first ``grey_bright`` images are brightfield-like (bright background, dark nuclei).
    Returns id -> number of nuclei.
    """
    rng = np.random.default_rng(seed)
    counts = {}
    for i in range(n_images):
        image_id = f"{i:02d}" + "ab" * 31
        shape = (48 + 8 * (i % 2), 60 + 4 * i)
        n = 1 + i % 4
        masks = nuclei(shape, n, rng)
        bright = i < grey_bright
        grey = np.full(shape, 220 if bright else 20, np.uint8)
        for m in masks:
            grey[m] = 60 if bright else 200
        rgba = np.dstack([grey, grey, grey, np.full(shape, 255, np.uint8)])
        folder = root / "stage1_train" / image_id
        png(folder / "images" / f"{image_id}.png", rgba, "RGBA")
        for k, m in enumerate(masks):
            png(folder / "masks" / f"m{k:02d}.png", (m * 255).astype(np.uint8), "L")
        counts[image_id] = n
    return counts


def write_dsb_test(
    root: Path, n_images: int = 2, seed: int = 1, with_shape: bool = True, ignored: int = 0
) -> dict[str, list[np.ndarray]]:
    """stage1_test/<id>/images/<id>.png and stage1_solution.csv (RLE); the last ``ignored``
    images' rows say Usage Ignored. Returns id -> masks."""
    rng = np.random.default_rng(seed)
    out = {}
    rows = []
    for i in range(n_images):
        image_id = f"t{i}" + "cd" * 31
        shape = (40, 52)
        masks = nuclei(shape, 2 + i, rng)
        grey = np.full(shape, 10, np.uint8)
        for m in masks:
            grey[m] = 180
        png(
            root / "stage1_test" / image_id / "images" / f"{image_id}.png",
            np.dstack([grey] * 3),
            "RGB",
        )
        for m in masks:
            row = [image_id, rle_encode(m)]
            usage = "Ignored" if i >= n_images - ignored else "Public"
            rows.append(row + ([str(shape[0]), str(shape[1]), usage] if with_shape else []))
        out[image_id] = masks
    with open(root / "stage1_solution.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["ImageId", "EncodedPixels"] + (["Height", "Width", "Usage"] if with_shape else [])
        )
        w.writerows(rows)
    return out


def write_isbi2012(
    root: Path, z: int = 10, size: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """train-volume.tif, train-labels.tif (255 = cell, 0 = membrane), test-volume.tif."""
    rng = np.random.default_rng(seed)
    labels = np.full((z, size, size), 255, np.uint8)
    for k in range(z):
        step = 12 + k % 4
        labels[k, ::step, :] = 0  # membranes: a grid, so cells are the squares between lines
        labels[k, :, ::step] = 0
    volume = np.where(labels == 0, 40, 180).astype(np.uint8) + rng.integers(
        0, 20, labels.shape, dtype=np.uint8
    )
    root.mkdir(parents=True, exist_ok=True)
    stack(root / "train-volume.tif", volume)
    stack(root / "train-labels.tif", labels)
    stack(root / "test-volume.tif", volume[:3])
    return volume, labels


def write_snemi(
    root: Path, z: int = 6, size: int = 128, seed: int = 0, dtype=np.uint32
) -> tuple[np.ndarray, np.ndarray]:
    """train-input.tif (uint8), train-labels.tif (neuron ids), test-input.tif; Voronoi ids."""
    rng = np.random.default_rng(seed)
    ids = np.stack([voronoi_ids((size, size), 12, rng) + 100 * k for k in range(z)]).astype(dtype)
    ids[:, :, :2] = 0  # a strip of unlabelled (id 0) pixels
    image = rng.integers(0, 255, ids.shape, dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    stack(root / "train-input.tif", image)
    stack(root / "train-labels.tif", ids)
    stack(root / "test-input.tif", image[:2])
    return image, ids


def write_ncmir(
    root: Path, numbers=range(10, 16), validation=(), testset=(81,), size: int = 64, seed: int = 0
) -> None:
    """CDeep3M layout: training|validation/images/images.NNN.png + labels/mitos_3D.NNN.png
    (palette PNG)."""
    rng = np.random.default_rng(seed)
    for folder, nums in (("training", numbers), ("validation", validation)):
        for n in nums:
            mask = np.zeros((size, size), np.uint8)
            y, x = rng.integers(0, size - 16, 2)
            mask[y : y + 12, x : x + 14] = 1
            image = np.where(mask, 60, 170).astype(np.uint8)
            png(root / folder / "images" / f"images.{n:03d}.png", image, "L")
            palette_png(root / folder / "labels" / f"mitos_3D.{n:03d}.png", mask)
    for n in testset:
        png(
            root / "testset" / f"images.{n:03d}.png",
            rng.integers(0, 255, (size, size), dtype=np.uint8),
            "L",
        )


def write_epfl(root: Path, z: int = 8, size=(48, 64), testing: bool = True, seed: int = 0) -> None:
    """training.tif, training_groundtruth.tif (0/255) [+ testing.tif, testing_groundtruth.tif]."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = [("training.tif", "training_groundtruth.tif")] + (
        [("testing.tif", "testing_groundtruth.tif")] if testing else []
    )
    for image_name, label_name in names:
        gt = np.zeros((z, *size), np.uint8)
        for k in range(z):
            y, x = rng.integers(0, size[0] - 12), rng.integers(0, size[1] - 12)
            gt[k, y : y + 10, x : x + 8] = 255
        stack(root / image_name, np.where(gt, 70, 160).astype(np.uint8))
        stack(root / label_name, gt, compression="zlib")


def write_folder(
    root: Path,
    n: int = 6,
    num_classes: int = 2,
    instances: bool = False,
    bits: int = 8,
    seed: int = 0,
) -> None:
    """images/<stem>.png|.tif, masks/<stem>.* (nonzero or class ids), optional instances/."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        stem = f"img{i:02d}"
        ids = np.zeros((40, 50), np.int32)
        ids[5:15, 5:20], ids[20:35, 25:45] = 1, 2
        mask = (ids > 0).astype(np.uint8) * (255 if num_classes == 2 else 1)
        if num_classes > 2:
            mask[ids == 2] = num_classes - 1
        dtype = np.uint16 if bits == 16 else np.uint8
        image = (rng.integers(0, 50, ids.shape) + 100 * (ids > 0)).astype(dtype) * (
            200 if bits == 16 else 1
        )
        if i % 2:  # mix PNG and TIFF
            png(root / "images" / f"{stem}.png", image)
            png(root / "masks" / f"{stem}.png", mask)
        else:
            (root / "images").mkdir(parents=True, exist_ok=True)
            (root / "masks").mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / "images" / f"{stem}.tif", image)
            tifffile.imwrite(root / "masks" / f"{stem}.tif", mask)
        if instances:
            png(root / "instances" / f"{stem}.png", ids.astype(np.uint16))


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def dsb_root(tmp_path: Path) -> Path:
    write_dsb(tmp_path / "dsb2018")
    return tmp_path / "dsb2018"


@pytest.fixture
def isbi2012_root(tmp_path: Path) -> Path:
    write_isbi2012(tmp_path / "isbi2012")
    return tmp_path / "isbi2012"


@pytest.fixture
def isbi2013_root(tmp_path: Path) -> Path:
    write_snemi(tmp_path / "isbi2013")
    return tmp_path / "isbi2013"


@pytest.fixture
def ncmir_root(tmp_path: Path) -> Path:
    write_ncmir(tmp_path / "ncmir_mito")
    return tmp_path / "ncmir_mito"


@pytest.fixture
def epfl_root(tmp_path: Path) -> Path:
    write_epfl(tmp_path / "epfl_mito")
    return tmp_path / "epfl_mito"


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    write_folder(tmp_path / "folder")
    return tmp_path / "folder"
