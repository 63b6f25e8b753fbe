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

The ``Float*`` photometric transforms and the label-carrying ``SegmentationCompose`` live in
``transforms.py`` (why albumentations' own would clip float images is said there).

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
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any

import albumentations as A
import cv2

from seg_bench.data.augment.piecewise import FastPiecewiseAffine
from seg_bench.data.augment.transforms import (
    FloatBrightnessContrast,
    FloatGamma,
    FloatGaussianBlur,
    FloatGaussNoise,
    SegmentationCompose,
)
from seg_bench.errors import UserError
from seg_bench.registry import AUGMENT_PRESETS

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
                f"augmentation preset '{preset}', step '{s.name}' ({s.cls.__name__}): invalid "
                "arguments"
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


# Registered by name, so RunConfig.validate checks --augment without importing albumentations.
for _name, _steps in PRESETS.items():
    AUGMENT_PRESETS.register(_name, ", ".join(s.name for s in _steps) or "no augmentation")(
        functools.partial(build_augment, _name)
    )

__doc__ = (__doc__ or "").replace("{table}", presets_table())
