"""What the pixels of an image go through before the network sees them, beyond reading:
flipping a bright background (DSB 2018's brightfield and H&E), shared by the dataset that does
it in training and by `predict`, which must do the same."""

from __future__ import annotations

import numpy as np


def bright_background(grey: np.ndarray) -> bool:
    """True when the median (background) intensity is above half the range: brightfield and H&E."""
    top = np.iinfo(grey.dtype).max if np.issubdtype(grey.dtype, np.integer) else float(grey.max())
    return float(np.median(grey)) > top / 2


def invert_if_bright(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """The image with its intensities flipped where its background is bright, so that nuclei
    are bright on dark as in fluorescence; (image, whether it was flipped)."""
    grey = image if image.ndim == 2 else np.round(image.mean(axis=-1)).astype(image.dtype)
    if not bright_background(grey):
        return image, False
    integer = np.issubdtype(image.dtype, np.integer)
    top = np.iinfo(image.dtype).max if integer else image.max()
    return (top - image).astype(image.dtype), True
