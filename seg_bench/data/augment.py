"""Augmentation presets (albumentations). Placeholder: none and d4; full presets come next."""

from __future__ import annotations

import albumentations as A

from seg_bench.errors import UserError

PRESETS = ("none", "d4")


def build_augment(preset: str = "d4", **params) -> A.Compose | None:
    if preset == "none":
        return None
    if preset == "d4":
        return A.Compose([A.D4(p=1.0)], additional_targets={"instances": "mask"})
    raise UserError(f"unknown augmentation preset '{preset}'. Known: {', '.join(PRESETS)}")
