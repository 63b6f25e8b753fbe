"""Generated microscopy-like data: the embedded default that needs no download.

``nuclei``: fluorescence-like images of ellipsoidal nuclei of varied size and shape, some
touching, on an uneven background, blurred, with Poisson-Gaussian noise; optionally inverted
(brightfield-like). ``membrane``: EM-like Voronoi cells whose boundaries are the positive class.
Every image is a pure function of (seed, split, index), so runs are reproducible anywhere.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import ellipse

from seg_bench.data.base import Sample, SegmentationDataModule
from seg_bench.errors import UserError
from seg_bench.registry import DATASETS

_SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}


def _smooth_field(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    field = ndi.gaussian_filter(rng.normal(size=(size, size)), sigma=size / 6, mode="wrap")
    field -= field.min()
    return scale * field / max(field.max(), 1e-9)


def nuclei_image(
    rng: np.random.Generator,
    size: int = 256,
    n_objects: tuple[int, int] = (8, 24),
    invert: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """One nuclei image (uint8) and its instance labels (int32, 0 = background)."""
    labels = np.zeros((size, size), np.int32)
    n = int(rng.integers(*n_objects))
    for k in range(1, n + 1):
        r = rng.uniform(size / 40, size / 14)
        ry, rx = r * rng.uniform(0.6, 1.0), r * rng.uniform(0.8, 1.4)
        cy, cx = rng.uniform(0, size, 2)
        rr, cc = ellipse(cy, cx, ry, rx, (size, size), rotation=rng.uniform(0, np.pi))
        # Nuclei may touch; where they overlap the later one sits on top, as in a 2-D projection.
        labels[rr, cc] = k
    intensity = np.zeros((size, size), np.float32)
    for k, brightness in enumerate(rng.uniform(0.5, 1.0, n + 1)):
        if k:
            intensity[labels == k] = brightness
    # Texture inside nuclei, uneven illumination, optical blur, then shot and read noise.
    intensity *= 1 + 0.15 * ndi.gaussian_filter(rng.normal(size=(size, size)), 2)
    image = ndi.gaussian_filter(intensity, sigma=1.2) + _smooth_field(rng, size, 0.25)
    image = rng.poisson(np.clip(image, 0, None) * 60) / 60 + rng.normal(0, 0.04, image.shape)
    if invert:
        image = image.max() - image
    image = np.clip(image / max(np.percentile(image, 99.9), 1e-6), 0, 1)
    return (image * 255).astype(np.uint8), labels


def membrane_image(
    rng: np.random.Generator,
    size: int = 256,
    n_cells: tuple[int, int] = (30, 60),
    thickness: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An EM-like image (uint8), membrane mask ({0,1}) and cell ids (int32)."""
    n = int(rng.integers(*n_cells))
    seeds = rng.uniform(0, size, (n, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    # Nearest-seed (Voronoi) cells, with smoothly warped coordinates so membranes curve.
    warp = 6 * ndi.gaussian_filter(rng.normal(size=(2, size, size)), (0, 12, 12)) * size / 32
    py, px = yy + warp[0], xx + warp[1]
    d = (py[None] - seeds[:, 0, None, None]) ** 2 + (px[None] - seeds[:, 1, None, None]) ** 2
    cells = d.argmin(0).astype(np.int32) + 1
    edges = np.zeros_like(cells, bool)
    edges[:-1] |= cells[:-1] != cells[1:]
    edges[:, :-1] |= cells[:, :-1] != cells[:, 1:]
    membrane = ndi.binary_dilation(edges, iterations=max(thickness // 2, 1))
    cells[membrane] = 0
    image = 0.75 + 0.1 * ndi.gaussian_filter(rng.normal(size=(size, size)), 3) * 3
    image -= 0.5 * ndi.gaussian_filter(membrane.astype(np.float32), 0.8)
    # Dark organelle-like blobs inside cells are the distractors that make EM hard.
    for _ in range(int(rng.integers(5, 15))):
        rr, cc = ellipse(*rng.uniform(0, size, 2), *rng.uniform(2, 6, 2), (size, size))
        image[rr, cc] -= 0.25
    image = image + rng.normal(0, 0.06, image.shape)
    image = np.clip(image, 0, 1)
    return (image * 255).astype(np.uint8), membrane.astype(np.uint8), cells


@DATASETS.register(
    "synthetic", "generated nuclei (or EM membranes) with instance labels; no download"
)
class SyntheticDataModule(SegmentationDataModule):
    name = "synthetic"
    positive_class = "nucleus"
    instance_metric = "dsb"
    default_patch_size = 128

    def __init__(
        self,
        variant: str = "nuclei",
        image_size: int = 256,
        n_train: int = 48,
        n_val: int = 8,
        n_test: int = 16,
        invert_fraction: float = 0.0,
        data_seed: int = 2018,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if variant not in ("nuclei", "membrane"):
            raise UserError(f"synthetic variant must be 'nuclei' or 'membrane', got '{variant}'")
        if min(n_train, n_val, n_test) < 1:
            raise UserError("synthetic n_train, n_val and n_test must each be at least 1")
        self.variant = variant
        self.image_size = int(image_size)
        self.counts = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
        self.invert_fraction = float(invert_fraction)
        # The data seed is fixed apart from the training seed: every seed of a bench sees the
        # same images, so seeds measure training variance, not data variance.
        self.data_seed = int(data_seed)
        if variant == "membrane":
            self.positive_class, self.instance_metric = "membrane", "em"

    def load_split(self, split: str) -> list[Sample]:
        out = []
        for i in range(self.counts[split]):
            rng = np.random.default_rng([self.data_seed, _SPLIT_STREAM[split], i])
            if self.variant == "nuclei":
                invert = rng.random() < self.invert_fraction
                image, labels = nuclei_image(rng, self.image_size, invert=invert)
                mask = (labels > 0).astype(np.uint8)
            else:
                image, mask, labels = membrane_image(rng, self.image_size)
            out.append(Sample(f"{split}-{i:04d}", image, mask, labels))
        return out

    def split_info(self) -> dict:
        return {
            "split": "generated",
            "variant": self.variant,
            "data_seed": self.data_seed,
            "counts": self.counts,
            "image_size": self.image_size,
        }
