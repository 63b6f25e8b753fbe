"""Augmentation: presets declared as data (``presets.py``: ``PRESETS``, ``build_augment``), the
float-safe transforms and label-carrying pipeline (``transforms.py``), and a fast piecewise
affine warp (``piecewise.py``)."""

from seg_bench.data.augment.presets import PRESETS, build_augment, override_names, presets_table

__all__ = ["PRESETS", "build_augment", "override_names", "presets_table"]
