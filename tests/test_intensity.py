"""Flipping a bright background: 8-bit images against their type's range, wider ones against
their own maximum."""

from __future__ import annotations

import numpy as np
import pytest

from seg_bench.data.intensity import bright_background, invert_if_bright


def _nuclei_on(background: int, nucleus: int, dtype) -> np.ndarray:
    image = np.full((32, 32), background, dtype=dtype)
    image[8:14, 8:14] = image[20:26, 18:24] = nucleus
    return image


@pytest.mark.parametrize(
    "background, nucleus, dtype, bright",
    [
        (3500, 900, np.uint16, True),  # 12-bit brightfield: 3500 of 4095, far below 65535 / 2
        (120, 3000, np.uint16, False),  # 12-bit fluorescence
        (40000, 9000, np.uint16, True),  # full 16-bit range
        (200, 60, np.uint8, True),
        (20, 60, np.uint8, False),  # a dim 8-bit fluorescence image stays as it is
    ],
)
def test_a_bright_background_is_judged_against_the_images_range(background, nucleus, dtype, bright):
    image = _nuclei_on(background, nucleus, dtype)
    assert bright_background(image) is bright
    flipped, inverted = invert_if_bright(image)
    assert inverted is bright and flipped.dtype == image.dtype
    if bright:  # nuclei become bright on dark, within the image's own range
        top = 255 if dtype == np.uint8 else background
        assert flipped[10, 10] == top - nucleus and flipped[0, 0] == top - background
        assert flipped[10, 10] > flipped[0, 0]
    else:
        assert flipped is image


def test_a_float_image_flips_against_its_maximum():
    image = _nuclei_on(0.9, 0.2, np.float32)
    flipped, inverted = invert_if_bright(image)
    assert inverted and flipped[0, 0] == pytest.approx(0.0)
    assert flipped[10, 10] == pytest.approx(0.7)
