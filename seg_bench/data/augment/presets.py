"""Augmentation presets, declared as data: one place to change (``PRESETS``).

A preset is a tuple of steps; a step names a transform class and its arguments. Geometric steps
move image, mask and instances together (labels by nearest neighbour, never blended; the border
is filled with 0 = background); photometric steps touch the image only. Images are float32,
percentile-normalised (~[0, 1], may exceed it) with any number of channels.

``build_augment(preset, **overrides)`` builds the ``A.Compose``. Override names are flat:

==================  =====================================================================
``p_<step>``        probability of a step, e.g. ``p_elastic=0.5``
``<step>_<arg>``    any constructor argument of the step's class, e.g. ``elastic_alpha=500``,
                    ``piecewise_scale=(0.02, 0.04)``, ``affine_rotate=(-30, 30)``
==================  =====================================================================

Only steps of the chosen preset can be overridden; anything else is a ``UserError`` that lists
the valid names. The steps of every preset (generated from ``PRESETS``):

{table}

Why the ``Float*`` photometric transforms and not albumentations' own: in albumentations 2.0.8
``GaussianBlur``, ``GaussNoise``, ``RandomBrightnessContrast`` (and friends) clip float images
to [0, 1], which would hide bright outliers during training only (validation images are never
clipped, see ``base.normalize_percentile``); ``RandomGamma`` returns NaN for negative values and
``Downscale`` quantises floats to 1/255. Ours are the same operations without that.

The pipeline is a ``SegmentationCompose``: it reseeds from torch once per process (so
``seed_everything`` applies and DataLoader workers differ), and carries int32 instance ids through
OpenCV as uint16 / float32 so they are resampled exactly like the mask and come back unchanged.

Example:
    >>> import numpy as np
    >>> aug = build_augment("paper", elastic_alpha=500, p_noise=0.5)
    >>> out = aug(image=np.zeros((64, 64, 1), np.float32), mask=np.zeros((64, 64), np.uint8),
    ...           instances=np.zeros((64, 64), np.int32))
    >>> out["image"].shape, out["instances"].dtype
    ((64, 64, 1), dtype('int32'))
"""

from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import dataclass, field
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.core.pydantic import NonNegativeFloatRangeType
from albumentations.core.transforms_interface import BaseTransformInitSchema

from seg_bench.data.augment.piecewise import FastPiecewiseAffine
from seg_bench.errors import UserError

# --- photometric transforms for float images (no clipping, any number of channels) -----------


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
    """``img * (1 + c) + b`` with ``c ~ U(-contrast, contrast)``, ``b ~ U(-brightness, brightness)``."""

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
    """Gamma curve ``sign(x) |x|^g``, ``g`` drawn from the range (defined for negative values too)."""

    class InitSchema(BaseTransformInitSchema):
        gamma: tuple[float, float]

    def __init__(self, gamma: tuple[float, float] = (0.8, 1.25), p: float = 0.5):
        super().__init__(p=p)
        self.gamma = gamma

    def get_params(self) -> dict[str, Any]:
        return {"gamma": self.py_random.uniform(*self.gamma)}

    def apply(self, img: np.ndarray, gamma: float, **params: Any) -> np.ndarray:
        return (np.sign(img) * np.abs(img) ** np.float32(gamma)).astype(img.dtype, copy=False)


# --- the presets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    cls: type
    args: dict[str, Any] = field(default_factory=dict)


def step(name: str, cls: type, **args: Any) -> Step:
    return Step(name, cls, args)


# Labels by nearest neighbour, and what comes in from outside the image is background.
_GEOMETRIC = dict(
    mask_interpolation=cv2.INTER_NEAREST, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0
)

PRESETS: dict[str, tuple[Step, ...]] = {
    "none": (),
    "d4": (step("d4", A.D4, p=1.0),),
    "paper": (
        step("d4", A.D4, p=1.0),
        step("elastic", A.ElasticTransform, alpha=300, sigma=10, p=0.3, **_GEOMETRIC),
        step("piecewise", FastPiecewiseAffine, scale=(0.01, 0.03), nb_rows=4, nb_cols=4, p=0.3),
        step(
            "affine",
            A.Affine,
            scale=(0.9, 1.1),
            translate_percent=(-0.05, 0.05),
            rotate=(-15, 15),
            shear=(-5, 5),
            p=0.5,
            **_GEOMETRIC,
        ),
        step("blur", FloatGaussianBlur, sigma=(0.1, 1.0), p=0.2),
        step("noise", FloatGaussNoise, std=(0.01, 0.05), p=0.3),
        step("intensity", FloatBrightnessContrast, brightness=0.1, contrast=0.1, p=0.3),
    ),
    "heavy": (
        step("d4", A.D4, p=1.0),
        step("elastic", A.ElasticTransform, alpha=1000, sigma=15, p=0.5, **_GEOMETRIC),
        step("grid", A.GridDistortion, num_steps=5, distort_limit=0.3, p=0.3, **_GEOMETRIC),
        step(
            "piecewise",
            FastPiecewiseAffine,
            scale=(0.02, 0.05),
            nb_rows=(4, 6),
            nb_cols=(4, 6),
            p=0.5,
        ),
        step(
            "affine",
            A.Affine,
            scale=(0.75, 1.33),
            translate_percent=(-0.1, 0.1),
            rotate=(-45, 45),
            shear=(-10, 10),
            p=0.7,
            **_GEOMETRIC,
        ),
        step("blur", FloatGaussianBlur, sigma=(0.1, 2.0), p=0.3),
        step("noise", FloatGaussNoise, std=(0.01, 0.1), p=0.5),
        step("intensity", FloatBrightnessContrast, brightness=0.2, contrast=0.2, p=0.5),
        step("gamma", FloatGamma, gamma=(0.7, 1.5), p=0.3),
    ),
}


# --- building ----------------------------------------------------------------------------------


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
    ``base_seed + worker_id`` in a DataLoader worker.

    Instances: carried through the transforms by :func:`labels_for_cv2` and returned with their
    original dtype and ids.
    """

    _seeded_pid: int | None = None

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


def _init_args(cls: type) -> list[str]:
    return [
        n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "p", "strict")
    ]


def override_names(preset: str) -> dict[str, tuple[str, str]]:
    """Every override name valid for ``preset`` -> (step, argument)."""
    names: dict[str, tuple[str, str]] = {}
    for s in _preset(preset):
        names[f"p_{s.name}"] = (s.name, "p")
        names.update({f"{s.name}_{arg}": (s.name, arg) for arg in _init_args(s.cls)})
    return names


def _preset(name: str) -> tuple[Step, ...]:
    if name not in PRESETS:
        raise UserError(f"unknown augmentation preset '{name}'. Known: {', '.join(PRESETS)}")
    return PRESETS[name]


def _valid_names_text(preset: str) -> str:
    steps = _preset(preset)
    if not steps:
        return "none (this preset has no steps)"
    parts = [", ".join(f"p_{s.name}" for s in steps)]
    parts += [f"{s.name}_{{{', '.join(_init_args(s.cls))}}}" for s in steps if _init_args(s.cls)]
    return "; ".join(parts)


def build_augment(preset: str = "d4", **overrides: Any) -> A.Compose | None:
    """The augmentation pipeline of ``preset`` with ``overrides`` applied; None for ``"none"``.

    Call it as ``aug(image=float32 HxWxC, mask=uint8 HxW, instances=int32 HxW)``; the
    ``instances`` target is transformed like a mask.
    """
    steps = _preset(preset)
    valid = override_names(preset)
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        hints = [
            f"{u} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(u, valid, 1)) else u
            for u in unknown
        ]
        raise UserError(
            f"unknown augmentation override(s) for preset '{preset}': {', '.join(hints)}. "
            f"Valid: {_valid_names_text(preset)}"
        )
    if not steps:
        return None
    transforms = []
    for s in steps:
        args = dict(s.args)
        for key, (step_name, arg) in valid.items():
            if step_name == s.name and key in overrides:
                value = overrides[key]
                args[arg] = tuple(value) if isinstance(value, list) else value
        try:
            transforms.append(s.cls(**args, strict=True))
        except (ValueError, TypeError) as e:
            given = ", ".join(
                f"{k}={overrides[k]!r}"
                for k, (n, _) in valid.items()
                if n == s.name and k in overrides
            )
            detail = " ".join(str(e).split()).split(" For further information")[0]
            raise UserError(
                f"augmentation preset '{preset}', step '{s.name}' ({s.cls.__name__}): invalid arguments"
                f"{' ' + given if given else ''}: {detail}"
            ) from e
    return SegmentationCompose(transforms, additional_targets={"instances": "mask"})


def presets_table() -> str:
    """A plain-text table of every preset's steps and arguments."""
    lines = []
    for name, steps in PRESETS.items():
        lines.append(f"``{name}``")
        if not steps:
            lines.append("    (no augmentation)")
        for s in steps:
            args = ", ".join(f"{k}={v}" for k, v in s.args.items() if k not in _GEOMETRIC)
            lines.append(f"    {s.name:<10} {s.cls.__name__:<24} {args}")
    return "\n".join(lines)


__doc__ = (__doc__ or "").replace("{table}", presets_table())
