"""What the pixels of an image go through before the network sees them, beyond reading:
flipping a bright background (DSB 2018's brightfield and H&E), shared by the dataset that does
it in training and by `predict`, which must do the same."""

from __future__ import annotations

import math

import numpy as np


def intensity_top(image: np.ndarray) -> float:
    """The top of an image's intensity range: 255 for 8 bits; for wider types the top of the
    bit depth its values reach (4095 for a 12-bit camera's image stored in uint16, against
    which 65535 would never count it as bright; 1 for floats within [0, 1]). Rounded up to a
    bit depth, so a dim image is not judged against its own brightest pixel."""
    if image.dtype.itemsize == 1 and np.issubdtype(image.dtype, np.integer):
        return float(np.iinfo(image.dtype).max)
    return float(2 ** math.ceil(math.log2(max(float(image.max()), 0.0) + 1)) - 1)


def bright_background(grey: np.ndarray) -> bool:
    """True when the median (background) intensity is above half the range: brightfield and H&E."""
    return float(np.median(grey)) > intensity_top(grey) / 2


def invert_if_bright(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """The image with its intensities flipped where its background is bright, so that nuclei
    are bright on dark as in fluorescence; (image, whether it was flipped)."""
    grey = image if image.ndim == 2 else np.round(image.mean(axis=-1)).astype(image.dtype)
    if not bright_background(grey):
        return image, False
    top = intensity_top(image)
    # Mirrored within [bottom, top], which the dtype holds: top - image alone overflows a
    # signed type for negative pixels (int16: 32767 - (-100) wraps to -32669).
    if image.min() >= 0:
        bottom = 0.0
    else:
        bottom = -top - 1 if np.issubdtype(image.dtype, np.integer) else -top
    flipped = (bottom + top) - image.astype(np.float64)
    return flipped.astype(image.dtype), True
