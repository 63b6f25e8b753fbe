"""The label-source step: which labels a run trains and validates on.

``manual`` keeps the dataset's own masks. ``floodfill`` and ``region`` repeat the weak-label
study: one click per object is simulated from the manual instances
(:func:`~seg_bench.labels.points.click_points_from_instances`), grown into labels with that
method, and the agreement with the manual masks is recorded per split. The DataModule applies
a source to the train and val splits only: the test split always keeps the manual ground
truth. Sources are chosen by name from ``seg_bench.registry.LABEL_SOURCES``.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any

import numpy as np

from seg_bench.data.base import Sample, connected_instances
from seg_bench.errors import UserError
from seg_bench.labels._shared import image_and_points
from seg_bench.labels.floodfill import flood_fill_labels
from seg_bench.labels.points import click_points_from_instances
from seg_bench.labels.quality import label_quality
from seg_bench.labels.region import region_growing_labels
from seg_bench.registry import LABEL_SOURCES

__all__ = ["METHODS", "ManualLabels", "WeakLabels", "method_options", "weak_labels"]

METHODS = {"floodfill": flood_fill_labels, "region": region_growing_labels}
CLICK_OPTIONS = ("mode", "jitter", "drop_fraction")  # for click_points_from_instances


def method_options(method: str) -> list[str]:
    """The keyword options of weak-label ``method`` (one of ``METHODS``), e.g. ``threshold``."""
    skip = ("image", "points", "return_used")
    return [p for p in inspect.signature(METHODS[method]).parameters if p not in skip]


def weak_labels(
    image: Any, points: Any, method: str = "floodfill", *, image_name: str = "image", **kw: Any
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Weak labels from click points with the chosen method.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array
        Greyscale or RGB image.
    points : (N, 2) array-like of (x, y), or DataFrame with ``x``, ``y`` columns
        Click points, checked with :func:`validate_points` (outside the image: error).
    method : {'floodfill', 'region'}
        :func:`flood_fill_labels` or :func:`region_growing_labels`.
    image_name : str
        Name used in error messages.
    **kw
        Passed to the method.

    Returns
    -------
    labels : (H, W) int32 ndarray
        As returned by the method (with ``used`` if ``return_used=True``).

    Examples
    --------
    >>> img = np.zeros((9, 9)); img[2:7, 2:7] = 1.0
    >>> int(weak_labels(img, [[4, 4]], "region", threshold=0.5).max())
    1
    """
    if method not in METHODS:
        raise UserError(f"unknown weak-label method {method!r}; choose one of {', '.join(METHODS)}")
    grey, pts = image_and_points(image, points, image_name)
    return METHODS[method](grey, pts, **kw)


class ManualLabels:
    """The dataset's own masks, unchanged."""

    name = "manual"

    def __init__(self, options: dict[str, Any] | None = None, seed: int = 0):
        # Same arguments as every source, so a run builds any of them alike; none apply here.
        self.quality: dict[str, dict[str, float]] = {}  # nothing to compare: no entries

    def __call__(self, samples: list[Sample], split: str, num_classes: int) -> list[Sample]:
        return samples


class WeakLabels:
    """Labels grown by ``method`` from one simulated click per object of the manual instances.

    ``options`` holds click options (``mode``, ``jitter``, ``drop_fraction``) and the method's
    keyword arguments. ``quality[split]`` is the mean :func:`label_quality` over the split's
    images once it has been relabelled.
    """

    def __init__(self, method: str, options: dict[str, Any] | None = None, seed: int = 0):
        self.name, self.seed = method, int(seed)
        self.quality: dict[str, dict[str, float]] = {}
        self.method = METHODS[method]
        options = dict(options or {})
        self.click = {k: options.pop(k) for k in CLICK_OPTIONS if k in options}
        self.method_options = method_options(method)
        unknown = sorted(set(options) - set(self.method_options))
        if unknown:
            raise UserError(
                f"weak_label_options: unknown option(s) {unknown} for --labels {method}; "
                f"known: {', '.join([*CLICK_OPTIONS, *self.method_options])}"
            )
        self.options = options

    def __call__(self, samples: list[Sample], split: str, num_classes: int) -> list[Sample]:
        if num_classes != 2:
            raise UserError(
                f"--labels {self.name} needs a binary dataset, this one has {num_classes} "
                "classes; use --labels manual"
            )
        out, quality = [], []
        for i, s in enumerate(samples):
            weak = self.label(s, seed=self.seed * 100_003 + i)
            quality.append(label_quality(weak, s.mask))
            mask = (weak > 0).astype(np.uint8)
            out.append(Sample(s.id, s.image, mask, weak.astype(np.int32), s.meta))
        self.quality[split] = {k: float(np.mean([q[k] for q in quality])) for k in quality[0]}
        return out

    def label(self, sample: Sample, seed: int) -> np.ndarray:
        """Weak labels of one sample, from clicks simulated with ``seed``."""
        truth = sample.instances
        if truth is None:
            truth = connected_instances(sample.mask)
        points = click_points_from_instances(truth, seed=seed, **self.click)
        image = sample.image
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        kw = dict(self.options)
        if "bright_objects" in self.method_options and "bright_objects" not in kw and len(points):
            # Polarity from the clicks alone: objects brighter than the image's median?
            grey = image.mean(-1) if image.ndim == 3 else image
            kw["bright_objects"] = bool(np.median(grey[points["y"], points["x"]]) > np.median(grey))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # leaks and skipped clicks are expected here
            return weak_labels(
                image, points[["x", "y"]].to_numpy(), self.name, image_name=sample.id, **kw
            )


LABEL_SOURCES.register(ManualLabels.name, ManualLabels.__doc__)(ManualLabels)
for _name, _method in METHODS.items():
    LABEL_SOURCES.register(_name, f"weak labels from one click per object ({_method.__name__})")(
        functools.partial(WeakLabels, _name)
    )
