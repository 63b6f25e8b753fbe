"""Image and stack reading: formats, bit depths, alpha, palettes, and errors naming the file."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from data_fixtures import palette_png, png

from seg_bench.data.io import read_image, read_stack, require_values
from seg_bench.errors import DataError


def test_png_grey_8_and_16_bit(tmp_path):
    a8 = np.arange(12, dtype=np.uint8).reshape(3, 4)
    a16 = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    assert (read_image(png(tmp_path / "a.png", a8)) == a8).all()
    out = read_image(png(tmp_path / "b.png", a16))
    assert out.dtype == np.uint16 and (out == a16).all()


def test_rgba_png_drops_alpha(tmp_path):
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 7, 255
    out = read_image(png(tmp_path / "c.png", rgba, "RGBA"))
    assert out.shape == (5, 6, 3) and (out[..., 0] == 7).all()


def test_grey_alpha_png_gives_grey(tmp_path):
    la = np.dstack([np.full((4, 4), 9, np.uint8), np.full((4, 4), 255, np.uint8)])
    out = read_image(png(tmp_path / "la.png", la, "LA"))
    assert out.shape == (4, 4) and (out == 9).all()


def test_palette_png_gives_indices_not_colours(tmp_path):
    idx = np.zeros((8, 8), np.uint8)
    idx[2:5, 2:5] = 1
    out = read_image(palette_png(tmp_path / "p.png", idx))
    assert set(np.unique(out)) == {0, 1} and out.sum() == 9


def test_tiff_single_page_grey_and_rgb(tmp_path):
    grey = np.arange(20, dtype=np.uint16).reshape(4, 5)
    tifffile.imwrite(tmp_path / "g.tif", grey)
    assert (read_image(tmp_path / "g.tif") == grey).all()
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 2] = 3
    tifffile.imwrite(tmp_path / "c.tiff", rgb)  # contiguous RGB
    out = read_image(tmp_path / "c.tiff")
    assert out.shape == (4, 5, 3) and (out[..., 2] == 3).all()
    planar = np.moveaxis(rgb, -1, 0)  # separate planes, stored as S,H,W
    tifffile.imwrite(tmp_path / "p.tif", planar, photometric="rgb", planarconfig="separate")
    assert (read_image(tmp_path / "p.tif") == rgb).all()


def test_a_fourth_or_second_tiff_channel_not_marked_alpha_is_dropped_with_a_warning(tmp_path):
    # Two-channel fluorescence lost its second channel without a word.
    two = np.zeros((2, 8, 8), np.uint8)
    tifffile.imwrite(tmp_path / "c2.tif", two, photometric="minisblack", planarconfig="separate")
    with pytest.warns(UserWarning, match=r"c2\.tif: its last of 2 channels is not marked"):
        assert read_image(tmp_path / "c2.tif").shape == (8, 8)
    rgba = np.zeros((8, 8, 4), np.uint8)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "rgba.tif").shape == (8, 8, 3)  # alpha: no warning


def test_multipage_tiff_is_not_an_image_but_is_a_stack(tmp_path):
    stack = np.zeros((3, 4, 5), np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    with pytest.raises(DataError, match=r"s\.tif.*3 pages"):
        read_image(tmp_path / "s.tif")
    assert read_stack(tmp_path / "s.tif").shape == (3, 4, 5)
    tifffile.imwrite(tmp_path / "one.tif", stack[0])
    assert read_stack(tmp_path / "one.tif").shape == (1, 4, 5)


def test_a_bilevel_stack_reads_as_0_1_and_one_colour_page_is_not_taken_for_a_stack(tmp_path):
    bits = np.zeros((3, 8, 8), bool)
    bits[:, 2:5, 2:5] = True
    tifffile.imwrite(tmp_path / "bits.tif", bits)
    got = read_stack(tmp_path / "bits.tif")
    assert got.dtype == np.uint8 and (got == bits).all()
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 9, 3), np.uint8), photometric="rgb")
    with pytest.raises(DataError, match=r"rgb\.tif: has shape \(1, 8, 9, 3\)"):
        read_stack(tmp_path / "rgb.tif")  # it was read as 8 pages of 9 x 3


def test_planar_colour_and_channel_hyperstacks_are_not_taken_for_slices(tmp_path):
    # RGB stored plane by plane (axes SYX) was read as a stack of 3 grey slices.
    planes = np.zeros((3, 8, 9), np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", planes, photometric="rgb", planarconfig="separate")
    with pytest.raises(DataError, match=r"planar\.tif: has shape \(1, 8, 9, 3\)"):
        read_stack(tmp_path / "planar.tif")
    # An ImageJ hyperstack of 2 channels: its planes are no slices of a volume.
    zc = np.zeros((5, 2, 8, 9), np.uint8)
    tifffile.imwrite(tmp_path / "zc.tif", zc, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(DataError, match=r"zc\.tif: has 2 channels \(axes ZCYX\)"):
        read_stack(tmp_path / "zc.tif")
    one = np.arange(5 * 8 * 9, dtype=np.uint8).reshape(5, 1, 8, 9)
    tifffile.imwrite(tmp_path / "z1.tif", one, imagej=True, metadata={"axes": "ZCYX"})
    assert (read_stack(tmp_path / "z1.tif") == one[:, 0]).all()


def test_16_bit_colour_pngs_keep_all_16_bits_in_rgb_order(tmp_path):
    # Pillow decodes them to 8 bits (max 255); cv2 writes BGR(A), so the file holds RGB(A).
    import cv2

    rgb = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 1000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb[..., ::-1])
    out = read_image(tmp_path / "rgb16.png")
    assert out.dtype == np.uint16 and (out == rgb).all()
    rgba = np.dstack([rgb, np.full((4, 5), 65535, np.uint16)])
    cv2.imwrite(str(tmp_path / "rgba16.png"), rgba[..., [2, 1, 0, 3]])
    assert (read_image(tmp_path / "rgba16.png") == rgb).all()  # alpha dropped


def test_a_stack_written_page_by_page_reads_every_page(tmp_path):
    # One series per page: only the first was read, a "stack" of 1 slice.
    stack = np.arange(5 * 6 * 7, dtype=np.uint16).reshape(5, 6, 7)
    for page in stack:
        tifffile.imwrite(tmp_path / "pages.tif", page, append=True)
    assert (read_stack(tmp_path / "pages.tif") == stack).all()
    tifffile.imwrite(tmp_path / "mixed.tif", stack[0], append=True)
    tifffile.imwrite(tmp_path / "mixed.tif", stack[0, :3], append=True)
    with pytest.raises(DataError, match=r"mixed\.tif: has pages of different shapes"):
        read_stack(tmp_path / "mixed.tif")


def test_nan_pixels_are_refused_naming_the_file_and_the_count(tmp_path):
    # One NaN pixel made the whole normalised image NaN, silently.
    a = np.ones((2, 8, 8), np.float32)
    a[0, 1, 1], a[1, 2, 2] = np.nan, np.inf
    tifffile.imwrite(tmp_path / "nan.tif", a)
    with pytest.raises(DataError, match=r"nan\.tif: has 2 NaN or infinite pixels"):
        read_stack(tmp_path / "nan.tif")
    tifffile.imwrite(tmp_path / "one.tif", a[0])
    with pytest.raises(DataError, match=r"one\.tif: has 1 NaN or infinite pixels"):
        read_image(tmp_path / "one.tif")


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_truncated_file_names_the_file(tmp_path, suffix):
    p = tmp_path / f"broken{suffix}"
    data = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    png(p, data) if suffix == ".png" else tifffile.imwrite(p, data)
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    reader = read_image if suffix == ".png" else read_stack
    with pytest.raises(DataError, match=rf"broken\{suffix}: cannot read"):
        reader(p)


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"x\.png: not an image in a known format"):
        read_image(tmp_path / "x.png")
    with pytest.raises(DataError, match=r"nope\.png: file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(DataError, match=r"nope\.tif: file not found"):
        read_stack(tmp_path / "nope.tif")


def test_require_values_message():
    with pytest.raises(DataError, match=r"m\.png: label values \{0, 1\}; expected 0 / 255"):
        require_values(np.array([0, 1], np.uint8), {0, 255}, "m.png", "0 / 255")
    assert require_values(np.array([0, 255], np.uint8), {0, 255}, "m.png", "x") == {0, 255}
