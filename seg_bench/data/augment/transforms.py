"""The transforms albumentations lacks for float microscopy, and the pipeline that carries labels.

Why the ``Float*`` photometric transforms and not albumentations' own: in albumentations 2.0.8
``GaussianBlur``, ``GaussNoise``, ``RandomBrightnessContrast`` (and friends) clip float images
to [0, 1], which would hide bright outliers during training only (validation images are never
clipped, see ``data.base.normalize_percentile``); ``RandomGamma`` returns NaN for negative
values and ``Downscale`` quantises floats to 1/255. Ours are the same operations without that.

The pipeline is a ``SegmentationCompose``: it reseeds from torch once per process (so
``seed_everything`` applies and DataLoader workers differ), and carries int32 instance ids
through OpenCV as uint16 / float32 so they are resampled exactly like the mask and come back
unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.core.pydantic import NonNegativeFloatRangeType
from albumentations.core.transforms_interface import BaseTransformInitSchema


class FloatGaussianBlur(A.ImageOnlyTransform):
    """Gaussian blur with ``sigma`` (pixels) drawn uniformly from the range."""

    class InitSchema(BaseTransformInitSchema):
        sigma: NonNegativeFloatRangeType

    def __init__(self, sigma: tuple[float, float] | float = (0.1, 1.0), p: float = 0.5):
        super().__init__(p=p)
        self.sigma = sigma

    def get_params(self) -> dict[str, Any]:
        return {"sigma": self.py_random.uniform(*self.sigma)}

    def apply(self, img: np.ndarray, sigma: float, **params: Any) -> np.ndarray:
        if sigma <= 0:
            return img
        return cv2.GaussianBlur(
            img, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101
        ).reshape(img.shape)


class FloatGaussNoise(A.ImageOnlyTransform):
    """Add zero-mean Gaussian noise, independent per pixel and channel; ``std`` in image units."""

    class InitSchema(BaseTransformInitSchema):
        std: NonNegativeFloatRangeType

    def __init__(self, std: tuple[float, float] | float = (0.01, 0.05), p: float = 0.5):
        super().__init__(p=p)
        self.std = std

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        std = self.py_random.uniform(*self.std)
        return {
            "noise": self.random_generator.normal(0.0, std, size=params["shape"]).astype(np.float32)
        }

    def apply(self, img: np.ndarray, noise: np.ndarray, **params: Any) -> np.ndarray:
        return (img + noise).astype(img.dtype, copy=False)


class FloatBrightnessContrast(A.ImageOnlyTransform):
    """``img * (1 + c) + b``, ``c ~ U(-contrast, contrast)``, ``b ~ U(-brightness, brightness)``."""

    class InitSchema(BaseTransformInitSchema):
        brightness: float
        contrast: float

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1, p: float = 0.5):
        super().__init__(p=p)
        self.brightness = brightness
        self.contrast = contrast

    def get_params(self) -> dict[str, Any]:
        return {
            "alpha": 1.0 + self.py_random.uniform(-self.contrast, self.contrast),
            "beta": self.py_random.uniform(-self.brightness, self.brightness),
        }

    def apply(self, img: np.ndarray, alpha: float, beta: float, **params: Any) -> np.ndarray:
        return (img * np.float32(alpha) + np.float32(beta)).astype(img.dtype, copy=False)


class FloatGamma(A.ImageOnlyTransform):
    """Gamma curve ``sign(x) |x|^g``, ``g`` drawn from the range (defined for negatives too)."""

    class InitSchema(BaseTransformInitSchema):
        gamma: tuple[float, float]

    def __init__(self, gamma: tuple[float, float] = (0.8, 1.25), p: float = 0.5):
        super().__init__(p=p)
        self.gamma = gamma

    def get_params(self) -> dict[str, Any]:
        return {"gamma": self.py_random.uniform(*self.gamma)}

    def apply(self, img: np.ndarray, gamma: float, **params: Any) -> np.ndarray:
        return (np.sign(img) * np.abs(img) ** np.float32(gamma)).astype(img.dtype, copy=False)


def labels_for_cv2(labels: np.ndarray) -> tuple[np.ndarray, Any]:
    """Instance ids as an array that cv2 resamples exactly like the uint8 mask, and the way back.

    OpenCV's nearest-neighbour ``warpAffine`` rounds differently for signed integers than for
    uint8/uint16/float32 (OpenCV 5.0: ~0.1 % of pixels of an int32 label image land one pixel off
    the uint8 mask), so int32 ids go through as uint16: directly when they are in [0, 65535],
    otherwise renumbered 1..n (0 stays background) via a lookup table, float32 past 65535 ids.
    """
    if labels.dtype in (np.uint8, np.uint16):
        return labels, None
    if labels.size == 0 or (labels.min() >= 0 and labels.max() < 2**16):
        return labels.astype(np.uint16), lambda out: out.astype(labels.dtype)
    ids = np.unique(labels[labels != 0])
    if len(ids) >= 2**24:
        raise ValueError(
            f"{len(ids)} distinct instance ids are more than augmentation can carry (2**24 - 1)"
        )
    compact = np.where(labels != 0, np.searchsorted(ids, labels) + 1, 0)
    lut = np.concatenate([np.zeros(1, labels.dtype), ids])
    dtype = np.uint16 if len(ids) < 2**16 else np.float32
    return compact.astype(dtype), lambda out: lut[np.rint(out).astype(np.intp)]


class SegmentationCompose(A.Compose):
    """``A.Compose`` for (image, mask, instances) samples.

    Seeding: albumentations 2.x draws from its own generators, seeded from OS entropy unless
    ``seed`` is given, so ``seed_everything`` does not reach it and forked DataLoader workers
    would all inherit the same state (identical augmentations in every worker). On its first call
    in a process this reseeds from ``torch.initial_seed()``: the run's seed in the main process,
    ``base_seed + worker_id`` in a DataLoader worker. Training patches go further: each is
    reseeded from its own seed (``reseed``), so a resumed run augments as the first one did.

    Instances: carried through the transforms by :func:`labels_for_cv2` and returned with their
    original dtype and ids.
    """

    _seeded_pid: int | None = None

    def reseed(self, seed: int) -> None:
        """Draw from ``seed`` on (a training patch's own seed: data/base.py PatchSeeds)."""
        self._seeded_pid = os.getpid()
        self.set_random_seed(seed)

    def __call__(self, *args: Any, **data: Any) -> dict[str, Any]:
        if self._seeded_pid != os.getpid():
            self._seeded_pid = os.getpid()
            self.set_random_seed(torch.initial_seed() % 2**63)
        restore = None
        if data.get("instances") is not None:
            data["instances"], restore = labels_for_cv2(np.asarray(data["instances"]))
        out = super().__call__(*args, **data)
        if restore is not None:
            out["instances"] = restore(out["instances"])
        return out
