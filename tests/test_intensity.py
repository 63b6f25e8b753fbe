"""Flipping a bright background: 8-bit images against their type's range, wider ones against
the bit depth their values reach."""

from __future__ import annotations

import numpy as np
import pytest

from seg_bench.data.intensity import bright_background, intensity_top, invert_if_bright


def _nuclei_on(background, nucleus, dtype) -> np.ndarray:
    image = np.full((32, 32), background, dtype=dtype)
    image[8:14, 8:14] = image[20:26, 18:24] = nucleus
    return image


@pytest.mark.parametrize(
    "background, nucleus, dtype, top, bright",
    [
        (3500, 900, np.uint16, 4095, True),  # 12-bit brightfield, far below 65535 / 2
        (120, 3000, np.uint16, 4095, False),  # 12-bit fluorescence
        (100, 180, np.uint16, 255, False),  # dim fluorescence on a camera offset
        (40000, 9000, np.uint16, 65535, True),  # the full 16-bit range
        (200, 60, np.uint8, 255, True),
        (20, 60, np.uint8, 255, False),  # a dim 8-bit fluorescence image stays as it is
    ],
)
def test_a_bright_background_is_judged_against_the_bit_depth_of_the_image(
    background, nucleus, dtype, top, bright
):
    image = _nuclei_on(background, nucleus, dtype)
    assert intensity_top(image) == top and bright_background(image) is bright
    flipped, inverted = invert_if_bright(image)
    assert inverted is bright and flipped.dtype == image.dtype
    if bright:  # nuclei become bright on dark, within that range
        assert flipped[10, 10] == top - nucleus and flipped[0, 0] == top - background
    else:
        assert flipped is image


def test_one_hot_pixel_does_not_decide_for_a_dim_image():
    image = _nuclei_on(100, 180, np.uint16)
    image[0, 0] = 300  # within the same 9-bit depth: still not bright
    assert intensity_top(image) == 511 and not bright_background(image)


def test_a_float_image_flips_against_1():
    flipped, inverted = invert_if_bright(_nuclei_on(0.9, 0.2, np.float32))
    assert inverted and flipped[0, 0] == pytest.approx(0.1)
    assert flipped[10, 10] == pytest.approx(0.8)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.float32])
def test_signed_image_with_negative_pixels_flips_without_wrapping(dtype):
    """A bright background with some pixels below zero: flipped within [-top - 1, top] for
    integers (the range the bit depth spans), [-top, top] for floats, so the order of every
    pair of pixels reverses and nothing wraps."""
    top = 127 if dtype == np.int8 else 4095
    image = _nuclei_on(top - 10, -top + 5, dtype)
    image[0, 1] = -top  # a dark speck, negative
    flipped, inverted = invert_if_bright(image)
    assert inverted and flipped.dtype == image.dtype
    shift = -1 if dtype != np.float32 else 0
    expected = shift - image.astype(np.float64)
    np.testing.assert_array_equal(flipped.astype(np.float64), expected)
    assert flipped[10, 10] > flipped[0, 0]  # the nucleus is now the bright one
