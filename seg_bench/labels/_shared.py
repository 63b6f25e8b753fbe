"""Helpers shared by the weak-label methods: checked inputs, painting regions into labels and
the ``(labels, used)`` result."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from seg_bench.errors import UserError
from seg_bench.labels.points import validate_points

LUMA = np.array([0.2125, 0.7154, 0.0721])  # as skimage.color.rgb2gray
CROSS = ndi.generate_binary_structure(2, 1)  # 4-connectivity
SQUARE = ndi.generate_binary_structure(2, 2)  # 8-connectivity


def as_grey(image: Any, name: str = "image") -> np.ndarray:
    """Return a float64 2-D copy of ``image``; RGB goes to grey with luminance weights."""
    image = np.asarray(image)
    if image.dtype == object or not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise UserError(f"{name} must be a numeric array, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[-1] == 3:
        grey = image.astype(np.float64) @ LUMA
    elif image.ndim == 2:
        grey = image.astype(np.float64)
    elif image.ndim == 3:
        raise UserError(
            f"{name} has {image.shape[-1]} channels (shape {image.shape}); weak labels need a "
            "greyscale (H, W) or RGB (H, W, 3) image: drop alpha or extra channels first"
        )
    else:
        raise UserError(
            f"{name} must be a 2-D greyscale or (H, W, 3) RGB image, got shape {image.shape}"
        )
    if grey.size == 0:
        raise UserError(f"{name} is empty (shape {image.shape})")
    if not np.isfinite(grey).all():
        raise UserError(f"{name} contains NaN or infinite values; fill or mask them first")
    return grey


def check_count(value: Any, name: str, minimum: int = 0) -> None:
    """``value`` must be an integer >= ``minimum``."""
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise UserError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_positive(value: Any, name: str, allow_none: bool = True) -> None:
    """``value`` must be a positive integer (bools are not), or None where allowed."""
    if value is None and allow_none:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise UserError(f"{name} must be a positive integer or None, got {value!r}")


def resolve_overlaps(
    flat: np.ndarray, region: np.ndarray, seeds_xy: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """Paint (pixel, region) pairs into a label image: nearest seed wins, ties to lower index."""
    labels = np.zeros(shape, dtype=np.int32)
    if flat.size == 0:
        return labels
    flat = np.asarray(flat, dtype=np.int64)
    region = np.asarray(region, dtype=np.int64)
    rows, cols = np.divmod(flat, shape[1])
    d2 = (rows - seeds_xy[region, 1]) ** 2 + (cols - seeds_xy[region, 0]) ** 2
    order = np.lexsort((region, d2, flat))
    flat_s = flat[order]
    first = np.ones(flat_s.size, dtype=bool)
    first[1:] = flat_s[1:] != flat_s[:-1]
    labels.ravel()[flat_s[first]] = (region[order][first] + 1).astype(np.int32)
    return labels


def image_and_points(
    image: Any, points: Any, image_name: str = "image"
) -> tuple[np.ndarray, np.ndarray]:
    """A weak-label method's checked inputs: the grey float64 image (:func:`as_grey`) and the
    (N, 2) integer (x, y) points inside it (:func:`validate_points`)."""
    grey = as_grey(image, image_name)
    return grey, validate_points(points, grey.shape, image_name)


def labels_and_used(
    labels: np.ndarray, n_points: int, return_used: bool
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A weak-label method's result: ``labels``, and with ``return_used`` also the (N,) bool
    array saying whether label ``k + 1`` occurs in them."""
    if not return_used:
        return labels
    present = np.zeros(n_points + 1, dtype=bool)
    present[np.unique(labels)] = True
    return labels, present[1:]
