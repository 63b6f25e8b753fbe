"""From network probabilities to a binary mask and instance labels.

One entry point, ``postprocess(prob, config) -> (mask, instances)``, driven by a
:class:`PostprocessConfig` dataclass whose ``to_dict()`` goes into result records, so every
reported score says exactly how its instances were made. The steps, in order:

1. foreground: ``prob > threshold`` (a float, or ``"otsu"``), or hysteresis
   (``low``/``high``: pixels > low connected to pixels > high);
2. instances: connected components, or a distance-transform marker watershed that splits
   touching objects (markers from ``peak_local_max`` with ``min_distance``, or from h-maxima
   of height ``h``), or, for a 3-class output (background / interior / boundary), the
   connected interiors grown into the boundary by a watershed on the boundary probability;
3. ``fill_holes``: fill each object's own holes (not a gap that touching objects enclose);
4. ``min_size``: instances smaller than this many pixels are removed and labels renumbered
   1..n; the returned mask is ``instances > 0``.

Works on 2-D images and on 3-D volumes (connectivity 1 = faces only). The named methods
that the benchmark compares are built from these steps in seg_bench/inference/instances.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from seg_bench.errors import UserError
from seg_bench.inference.objects import (
    add_unreached,
    fill_instance_holes,
    label_components,
    neighbourhood,
    remove_small_instances,
)
from seg_bench.metrics.inputs import check_label_image, to_numpy

__all__ = [
    "PostprocessConfig",
    "postprocess",
    "binarize",
    "fill_instance_holes",
    "label_components",
    "watershed_split",
    "three_class_instances",
    "remove_small_instances",
    "add_unreached",
    "boundary_targets",
]

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


@dataclass(frozen=True)
class PostprocessConfig:
    """How probabilities become a mask and instances (see the module docstring).

    Attributes
    ----------
    threshold : float in [0, 1] or "otsu"
        Foreground where ``prob > threshold``. Ignored when ``hysteresis`` is set.
    hysteresis : (low, high) or None
        Hysteresis thresholds, 0 <= low <= high <= 1.
    fill_holes : bool
        Fill each object's own holes (after labelling, so the gap a ring of touching objects
        encloses stays background).
    min_size : int
        Remove instances with fewer pixels than this (0 keeps all).
    watershed : bool
        Split touching objects with a distance-transform marker watershed.
    min_distance : int
        Minimum distance in pixels between watershed markers (``peak_local_max``).
    h : float or None
        If set, markers are the h-maxima of the distance transform with this height (in
        pixels) instead of ``peak_local_max``.
    three_class : bool
        ``prob`` is a (3, ...) array of background / interior / boundary probabilities; the
        foreground is ``1 - prob[0] > threshold``.
    connectivity : int
        Neighbourhood for connected components: 1 = 4-connected in 2-D (6 in 3-D), up to
        ``ndim`` = 8-connected in 2-D.

    Examples
    --------
    >>> PostprocessConfig(threshold="otsu", min_size=20).to_dict()["threshold"]
    'otsu'
    """

    threshold: float | str = 0.5
    hysteresis: tuple[float, float] | None = None
    fill_holes: bool = False
    min_size: int = 0
    watershed: bool = False
    min_distance: int = 5
    h: float | None = None
    three_class: bool = False
    connectivity: int = 1

    def __post_init__(self) -> None:
        t = self.threshold
        if not (t == "otsu" if isinstance(t, str) else _is_number(t) and 0.0 <= t <= 1.0):
            raise UserError(f"threshold must be a float in [0, 1] or 'otsu', got {t!r}")
        if not isinstance(t, str):
            object.__setattr__(self, "threshold", float(t))  # 1 from YAML is the float 1.0
        if self.hysteresis is not None:
            hy = self.hysteresis
            pair = isinstance(hy, (tuple, list)) and len(hy) == 2 and all(map(_is_number, hy))
            if not (pair and 0.0 <= hy[0] <= hy[1] <= 1.0):
                raise UserError(
                    f"hysteresis must be (low, high) with 0 <= low <= high <= 1, got {hy!r}"
                )
            object.__setattr__(self, "hysteresis", (float(hy[0]), float(hy[1])))
        for name in ("fill_holes", "watershed", "three_class"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _check_int("min_size", self.min_size, 0)
        _check_int("min_distance", self.min_distance, 1)
        if self.h is not None and not (_is_number(self.h) and self.h > 0):
            raise UserError(f"h must be a number > 0 or None, got {self.h!r}")
        if self.watershed and self.three_class:
            raise UserError(
                "watershed and three_class are alternative ways to split objects; set only one"
            )
        _check_int("connectivity", self.connectivity, 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready: hysteresis as a list) for result records."""
        d = dataclasses.asdict(self)
        if d["hysteresis"] is not None:
            d["hysteresis"] = list(d["hysteresis"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PostprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown postprocess option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{name} must be an int >= {minimum}, got {value!r}")


def _as_prob(prob: Any, name: str = "prob") -> np.ndarray:
    p = to_numpy(prob, name)
    if not np.issubdtype(p.dtype, np.floating):
        raise UserError(f"{name} must be floating-point probabilities, got dtype {p.dtype}")
    if p.size == 0:
        raise UserError(f"{name} is empty")
    if not (p.min() >= 0.0 and p.max() <= 1.0):
        raise UserError(
            f"{name} must lie in [0, 1] (got min {np.nanmin(p)}, max {np.nanmax(p)}); "
            "apply a sigmoid/softmax first"
        )
    return p


def binarize(
    prob: Any, threshold: float | str = 0.5, hysteresis: tuple[float, float] | None = None
) -> np.ndarray:
    """Foreground mask: ``prob > threshold`` (float or "otsu"), or hysteresis (low, high).

    Parameters
    ----------
    prob : float array in [0, 1]
    threshold : float or "otsu"
    hysteresis : (low, high), optional
        When given, pixels > low that are connected to a pixel > high
        (``skimage.filters.apply_hysteresis_threshold``); ``threshold`` is ignored.

    Returns
    -------
    bool array, same shape

    Examples
    --------
    >>> import numpy as np
    >>> binarize(np.array([0.2, 0.5, 0.7])).tolist()
    [False, False, True]
    """
    from skimage.filters import apply_hysteresis_threshold, threshold_otsu

    p = _as_prob(prob)
    if hysteresis is not None:
        low, high = PostprocessConfig(hysteresis=hysteresis).hysteresis  # validates
        return apply_hysteresis_threshold(p, low, high)
    if threshold == "otsu":
        if p.min() == p.max():
            return np.zeros(p.shape, dtype=bool)
        threshold = float(threshold_otsu(p))
    else:
        PostprocessConfig(threshold=threshold)  # validates
    return p > threshold


def ridge_markers(distance: np.ndarray, peaks: np.ndarray, m: np.ndarray, full) -> np.ndarray:
    """The peaks joined along the plateaus of the distance transform they lie on: an elongated
    nucleus has a flat ridge, on which peak_local_max picks a peak every ``min_distance``
    pixels, and each peak became a marker of its own (a 10 x 70 bar split into 8-21 objects).
    Plateau pixels (equal to their neighbourhood's maximum) that touch a peak join its marker;
    two nuclei meet at a saddle, below their maxima, so they keep a marker each."""
    plateau = (distance >= ndi.maximum_filter(distance, footprint=full)) & m
    joined, _ = ndi.label(plateau | peaks, structure=full)
    return np.isin(joined, np.unique(joined[peaks])) & (joined > 0)


def watershed_split(
    mask: Any, min_distance: int = 5, h: float | None = None, connectivity: int = 1
) -> np.ndarray:
    """Split touching objects: watershed of the negated distance transform from its maxima.

    Parameters
    ----------
    mask : bool array
    min_distance : int
        Minimum distance between markers (``skimage.feature.peak_local_max``).
    h : float, optional
        Use the h-maxima of the distance transform (``skimage.morphology.h_maxima``) as
        markers instead: maxima that rise at least ``h`` pixels above their surroundings.
    connectivity : int
        For the components and the watershed neighbourhood.

    Returns
    -------
    int32 labels; every foreground pixel gets a label (components without a marker keep one).

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:20, :36]
    >>> two = ((yy - 10) ** 2 + (xx - 10) ** 2 < 64) | ((yy - 10) ** 2 + (xx - 24) ** 2 < 64)
    >>> int(watershed_split(two, min_distance=4).max())
    2
    """
    from skimage.feature import peak_local_max
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return np.zeros(m.shape, dtype=np.int32)
    distance = ndi.distance_transform_edt(m)
    full = ndi.generate_binary_structure(m.ndim, m.ndim)
    if h is not None:
        peaks = h_maxima(distance, h).astype(bool) & m
    else:
        components = label_components(m, connectivity)
        coords = peak_local_max(
            distance, min_distance=min_distance, labels=components, exclude_border=False
        )
        peaks = np.zeros(m.shape, dtype=bool)
        peaks[tuple(coords.T)] = True
        peaks = ridge_markers(distance, peaks, m, full)
    markers, _ = ndi.label(peaks, structure=full)
    instances = watershed(-distance, markers, mask=m, connectivity=connectivity)
    return add_unreached(instances.astype(np.int32), m, connectivity)


def three_class_instances(
    prob3: Any,
    threshold: float | str = 0.5,
    hysteresis: tuple[float, float] | None = None,
    fill: bool = False,
    connectivity: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Instances from background / interior / boundary probabilities.

    The foreground is ``1 - prob3[0]`` binarised (threshold, "otsu" or hysteresis); seeds
    are the connected pixels whose most likely class is interior; seeds grow over the
    foreground by a watershed on the boundary probability. Foreground components without a
    seed become instances of their own.

    Parameters
    ----------
    prob3 : (3, ...) float array in [0, 1]
        Channel 0 background, 1 interior, 2 boundary (as from ``boundary_targets`` training).

    Returns
    -------
    mask : bool array, instances : int32 array (spatial shape)

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((9, 9), int); lab[1:5, 1:5] = 1; lab[5:8, 5:8] = 2
    >>> onehot = np.eye(3)[boundary_targets(lab)].transpose(2, 0, 1)
    >>> int(three_class_instances(onehot)[1].max())
    2
    """
    from skimage.segmentation import watershed

    p = _as_prob(prob3, "prob")
    if p.ndim < 3 or p.shape[0] != 3:
        raise UserError(
            f"three-class prob must have shape (3, H, W) or (3, D, H, W), got {p.shape}"
        )
    fg = binarize(1.0 - p[0], threshold=threshold, hysteresis=hysteresis)
    seeds = (np.argmax(p, axis=0) == INTERIOR) & fg
    markers = label_components(seeds, connectivity)
    instances = watershed(p[2], markers, mask=fg, connectivity=connectivity).astype(np.int32)
    instances = add_unreached(instances, fg, connectivity)
    if fill:
        instances = fill_instance_holes(instances)
    return instances > 0, instances


def boundary_targets(instance_labels: Any, connectivity: int = 1) -> np.ndarray:
    """3-class training target from instance labels: 0 background, 1 interior, 2 boundary.

    A boundary pixel is an object pixel with a neighbour (``connectivity``; 1 = 4-connected in
    2-D) of another label, background included (``find_boundaries(mode="inner")``), so
    touching objects are separated by two boundary pixels.

    Parameters
    ----------
    instance_labels : integer array (2-D or 3-D), 0 = background

    Returns
    -------
    uint8 array, same shape

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((5, 5), int); lab[1:4, 1:4] = 3
    >>> boundary_targets(lab)[2].tolist()
    [0, 2, 1, 2, 0]
    """
    from skimage.segmentation import find_boundaries

    lab = check_label_image(instance_labels, "instance_labels")
    neighbourhood(lab.ndim, connectivity)  # validates
    out = np.zeros(lab.shape, dtype=np.uint8)
    out[lab > 0] = INTERIOR
    out[find_boundaries(lab, connectivity=connectivity, mode="inner") & (lab > 0)] = BOUNDARY
    return out


def postprocess(
    prob: Any, config: PostprocessConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities to (mask, instances) following ``config`` (see the module docstring).

    Parameters
    ----------
    prob : float array in [0, 1]
        Foreground probability (H, W) or (D, H, W); with ``config.three_class``, (3, H, W)
        or (3, D, H, W) background / interior / boundary probabilities.
    config : PostprocessConfig, optional
        Defaults to ``PostprocessConfig()`` (threshold 0.5, connected components).

    Returns
    -------
    mask : bool array
        Foreground after all steps (``instances > 0``).
    instances : int32 array
        Labels 1..n, 0 = background.

    Examples
    --------
    >>> import numpy as np
    >>> prob = np.array([[0.9, 0.8, 0.1, 0.7]])
    >>> mask, inst = postprocess(prob, PostprocessConfig(min_size=2))
    >>> inst.tolist()
    [[1, 1, 0, 0]]
    """
    config = PostprocessConfig() if config is None else config
    if not isinstance(config, PostprocessConfig):
        raise UserError(f"config must be a PostprocessConfig, got {type(config).__name__}")
    if config.three_class:
        _, instances = three_class_instances(
            prob, config.threshold, config.hysteresis, config.fill_holes, config.connectivity
        )
    else:
        p = _as_prob(prob)
        neighbourhood(p.ndim, config.connectivity)
        fg = binarize(p, config.threshold, config.hysteresis)
        if config.watershed:
            instances = watershed_split(fg, config.min_distance, config.h, config.connectivity)
        else:
            instances = label_components(fg, config.connectivity)
        if config.fill_holes:
            instances = fill_instance_holes(instances)
    if config.min_size > 0:
        instances = remove_small_instances(instances, config.min_size)
    instances = instances.astype(np.int32, copy=False)
    return instances > 0, instances
