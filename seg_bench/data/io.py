"""Reading images, masks and stacks, with errors that name the file.

Arrays in, arrays out: ``read_image`` gives H,W (grey, palette indices, 16-bit) or H,W,3
(colour, 8 or 16 bits; an alpha channel is dropped), ``read_stack`` gives Z,H,W (one series of
pages, or one series per page). Anything unreadable, truncated, of the wrong shape or with
NaN pixels raises :class:`~seg_bench.errors.DataError` naming the file.

>>> img = read_image("stage1_train/abc/images/abc.png")   # doctest: +SKIP
>>> img.shape, img.dtype                                   # doctest: +SKIP
((256, 320, 3), dtype('uint8'))
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from seg_bench.errors import DataError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")


def _fail(path: Path, problem: str, expected: str) -> DataError:
    return DataError(f"{path}: {problem}; expected {expected}")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_png(path: Path) -> np.ndarray:
    # One read() of the whole file: PIL's many small reads cost more than decoding tiny masks.
    data = path.read_bytes()
    # IHDR: bit depth at byte 24, colour type at 25 (4 grey+alpha, 2 RGB, 6 RGBA).
    if (
        data.startswith(PNG_SIGNATURE)
        and len(data) > 25
        and data[24] == 16
        and data[25] in (2, 4, 6)
    ):
        return _read_png_16bit_colour(path, data)
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:  # its message names the in-memory buffer, not the file
        raise _fail(path, "not an image in a known format", "a PNG or TIFF file") from None
    with im:
        im.load()  # decode now, so a truncated file fails here and not later
        if im.mode == "I;16B":
            return np.array(im).astype(np.uint16)
        # "P" (palette) gives the indices, never the palette colours: NCMIR masks rely on it.
        return np.array(im)


def _read_png_16bit_colour(path: Path, data: bytes) -> np.ndarray:
    """Pillow decodes 16-bit colour PNGs to 8 bits; OpenCV keeps all 16 (in BGR(A) order)."""
    import cv2

    a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise _fail(path, "cannot decode this 16-bit colour PNG", "a complete PNG file")
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., [2, 1, 0, 3][: a.shape[-1]]]
    return a


def _read_tiff_page(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tf:
        if len(tf.pages) != 1:
            raise _fail(
                path, f"has {len(tf.pages)} pages", "a single-page image (one file per 2-D image)"
            )
        page = tf.pages[0]
        a = page.asarray()
        if a.ndim == 3 and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
            a = np.moveaxis(a, 0, -1)  # planar RGB(A) -> H,W,C
        alpha = (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA)
        if (
            a.ndim == 3
            and a.shape[-1] in (2, 4)
            and page.extrasamples[-1:] not in ((x,) for x in alpha)
        ):
            warnings.warn(
                f"{path}: its last of {a.shape[-1]} channels is not marked as alpha but is dropped "
                "as alpha; if it holds data, save each channel as an image of its own",
                stacklevel=2,
            )
        return a


def _drop_alpha(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3 and a.shape[-1] == 4:  # RGBA -> RGB
        return a[..., :3]
    if a.ndim == 3 and a.shape[-1] == 2:  # grey + alpha -> grey
        return a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 1:
        return a[..., 0]
    return a


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One 2-D image: PNG or TIFF, 8- or 16-bit, grey, palette, RGB or RGBA.

    Returns H,W (grey; palette PNGs give their index values) or H,W,3 (colour, alpha
    dropped). Raises DataError naming the file when it is missing, truncated, unreadable or
    not a single 2-D image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected a PNG or TIFF image there")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            a = _read_tiff_page(path)
        else:
            a = _read_png(path)
    except DataError:
        raise
    except Exception as e:  # PIL and tifffile raise many types for broken files
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise _fail(
            path,
            f"cannot read image ({reason})",
            "a complete PNG or TIFF file; re-export or re-download it",
        ) from None
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    _check_finite(path, a)
    a = _drop_alpha(a)
    if a.ndim != 2 and not (a.ndim == 3 and a.shape[-1] == 3):
        raise _fail(path, f"has shape {a.shape}", "one 2-D image (H,W grey or H,W,3/4 colour)")
    return a


def read_stack(path: str | os.PathLike) -> np.ndarray:
    """A multi-page grey TIFF as Z,H,W (a single page gives Z = 1). Read in one go by tifffile."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected a multi-page TIFF stack there")
    try:
        with tifffile.TiffFile(path) as tif:
            # A stack written page by page is one series per page: read them all.
            shapes = sorted({(s.shape, s.axes) for s in tif.series})
            axes = tif.series[0].axes if tif.series else ""
            if len(tif.series) == 1:  # the usual stack: read once, no stacking copy
                a = np.asarray(tif.series[0].asarray())
            elif len(shapes) == 1:
                a, axes = np.stack([np.asarray(s.asarray()) for s in tif.series]), "Q" + axes
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise _fail(
            path, f"cannot read TIFF stack ({reason})", "a complete multi-page TIFF; re-download it"
        ) from None
    if len(shapes) != 1:
        found = ", ".join(str(shape) for shape, _ in shapes)
        problem = f"has pages of different shapes ({found})" if shapes else "has no image pages"
        raise _fail(path, problem, "a stack of pages of one size")
    if a.dtype == bool:  # 1-bit (bilevel) pages
        a = a.astype(np.uint8)
    _check_finite(path, a)
    a, axes = _samples_last(path, a, axes)
    if a.ndim == 2 or (a.ndim == 3 and axes.endswith("S")):  # one page, grey or with samples
        a = a[None]
    if a.ndim == 4 and a.shape[-1] in (2, 4):  # grey+alpha or RGBA pages: keep the grey/colour part
        a = a[..., 0] if a.shape[-1] == 2 else a[..., :3]
    if a.ndim != 3:
        raise _fail(path, f"has shape {a.shape}", "a stack of grey pages (Z,H,W)")
    return a


def _samples_last(path: Path, a: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """Samples (RGB stored plane by plane: axes SYX) moved last, where a page's samples are
    read; a channel axis (C, an ImageJ hyperstack's) is refused unless it holds one channel,
    since its planes are not slices of a volume."""
    if "C" in axes and a.shape[axes.index("C")] > 1:
        raise _fail(
            path,
            f"has {a.shape[axes.index('C')]} channels (axes {axes})",
            "a stack of grey pages (Z,H,W); save the channel to segment on its own",
        )
    if "C" in axes:
        a, axes = a.squeeze(axes.index("C")), axes.replace("C", "")
    if "S" in axes[:-1] and a.ndim == len(axes):
        a, axes = np.moveaxis(a, axes.index("S"), -1), axes.replace("S", "") + "S"
    return a, axes


def _check_finite(path: Path, a: np.ndarray) -> None:
    """One NaN pixel would make the whole normalised image NaN, silently."""
    if a.dtype.kind in "fc" and not np.isfinite(a).all():
        bad = int(a.size - np.isfinite(a).sum())
        raise _fail(path, f"has {bad} NaN or infinite pixels", "finite values; fill them first")


def value_set(a: np.ndarray) -> set[int]:
    """The distinct values of an integer array (fast path for 8-bit)."""
    if a.dtype == np.uint8:
        return {int(v) for v in np.flatnonzero(np.bincount(a.ravel(), minlength=256))}
    return {int(v) for v in np.unique(a)}


def describe_values(values: set[int], limit: int = 6) -> str:
    shown = sorted(values)
    text = ", ".join(str(v) for v in shown[:limit])
    return "{" + text + (", ..." if len(shown) > limit else "") + "}"


def require_values(
    a: np.ndarray, allowed: set[int], path: str | os.PathLike, expected: str
) -> set[int]:
    """Raise DataError naming ``path`` unless every value of ``a`` is in ``allowed``."""
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{path}: labels have dtype {a.dtype}; expected {expected}")
    found = value_set(a)
    if not found <= allowed:
        raise DataError(f"{path}: label values {describe_values(found)}; expected {expected}")
    return found


def require_same_shape(image: np.ndarray, mask: np.ndarray, image_path, mask_path) -> None:
    if image.shape[:2] != mask.shape[:2]:
        raise DataError(
            f"{mask_path}: mask is {mask.shape[0]}x{mask.shape[1]} but its image {image_path} is "
            f"{image.shape[0]}x{image.shape[1]}; expected the same height and width"
        )


def require_file(path: Path, what: str, hint: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected {what}. {hint}")
    return path


def require_dir(path: Path, what: str, hint: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: folder not found; expected {what}. {hint}")
    return path


def contiguous_split(
    slices: int | Sequence[int],
    val_fraction: float,
    test_fraction: float,
    where: str,
    gap: int = 1,
) -> dict[str, list[int]]:
    """The slices of one serial-section volume in contiguous blocks: train | val | test.

    ``slices`` are the slice indices present (``n`` means 0..n-1; any order, e.g. the EPFL
    sample's 0-3, 13, ..., 161-164). The test block is the last ``test_fraction`` of them in
    slice order, the validation block the ``val_fraction`` before it, the rest is training.
    Neighbouring sections are nearly identical, so a random draw would put near-copies of
    training slices in the test set; blocks keep them on one side, and between two blocks
    every slice within ``gap`` slice indices of the later block is left out (unused), so no
    slice of one block lies within ``gap`` of a slice of another. Where the indices already
    jump by more than ``gap`` at a block boundary, nothing is left out.

    >>> contiguous_split(10, 0.2, 0.2, "vol.tif")
    {'train': [0, 1, 2, 3], 'val': [5, 6], 'test': [8, 9]}
    """
    order = sorted(set(range(slices) if isinstance(slices, int) else map(int, slices)))
    n = len(order)
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"{where}: val/test fractions {val_fraction}/{test_fraction} must be in (0, 1) "
            "and sum below 1"
        )
    if gap < 0:
        raise DataError(f"{where}: split gap {gap} is negative; expected 0 or more slices")
    if n < 3:
        raise DataError(
            f"{where}: {n} labelled slices are too few for train/val/test; expected at least 3"
        )
    n_test = max(1, round(test_fraction * n))
    n_val = max(1, round(val_fraction * n))
    while (blocks := _blocks(order, n_val, n_test, gap)) is None:
        if n_val == n_test == 1:
            raise DataError(
                f"{where}: {n} labelled slices are too few for train/val/test blocks with "
                f"gap {gap}; expected at least {3 + 2 * gap} consecutive slices, "
                "or a smaller split_gap"
            )
        # Tiny stacks: shrink the larger held-out block until training keeps a slice.
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return blocks


def contiguous_val_split(
    slices: int | Sequence[int], val_fraction: float, where: str, gap: int = 1
) -> dict[str, list[int]]:
    """Train | val blocks of a volume whose test set ships apart (EPFL's testing stack): val is
    the last ``val_fraction`` of the slices, train the slices more than ``gap`` before it, for
    the reason ``contiguous_split`` gives (a checkpoint chosen on near-copies of its training
    slices is chosen on training data).

    >>> contiguous_val_split(10, 0.2, "vol.tif")
    {'train': [0, 1, 2, 3, 4, 5, 6], 'val': [8, 9]}
    """
    order = sorted(set(range(slices) if isinstance(slices, int) else map(int, slices)))
    if not 0 < val_fraction < 1:
        raise DataError(f"{where}: val fraction {val_fraction} must be in (0, 1)")
    if gap < 0:
        raise DataError(f"{where}: split gap {gap} is negative; expected 0 or more slices")
    for n_val in range(max(1, round(val_fraction * len(order))), 0, -1):
        val = order[-n_val:]
        train = [z for z in order[:-n_val] if z < val[0] - gap]
        if train:
            return {"train": train, "val": val}
    raise DataError(
        f"{where}: {len(order)} labelled slices are too few for train/val blocks with gap {gap}; "
        f"expected at least {2 + gap} consecutive slices, or a smaller split_gap"
    )


def _blocks(order: list[int], n_val: int, n_test: int, gap: int) -> dict[str, list[int]] | None:
    """Test = the last ``n_test`` slices, val = the ``n_val`` before the gap, train = the rest
    before the next gap; None when training would be empty."""
    test = order[-n_test:]
    before_test = [z for z in order[:-n_test] if z < test[0] - gap]
    if len(before_test) <= n_val:
        return None
    val = before_test[-n_val:]
    train = [z for z in before_test[:-n_val] if z < val[0] - gap]
    return {"train": train, "val": val, "test": test} if train else None


def slice_ranges(slices: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-8"``: the first and last index of a block in slice order.

    A block spans its first to last slice even where the indices inside it are not
    consecutive (the EPFL sample), since it is the span that says what lies between blocks.
    """
    return f"{slices[0]}-{slices[-1]}" if len(slices) > 1 else str(slices[0])


def describe_blocks(blocks: dict[str, list[int]], gap: int) -> str:
    """The split rule and slice ranges, for records and leaderboard headers, e.g.
    ``contiguous blocks, gap 1: train 0-14, val 16-17, test 19-23``."""
    spans = ", ".join(f"{k} {slice_ranges(v)}" for k, v in blocks.items())
    return f"contiguous blocks, gap {gap}: {spans}"


def unused_slices(order: Sequence[int], blocks: dict[str, list[int]]) -> list[int]:
    """The slices that fell in a gap between blocks and belong to no split."""
    used = {z for v in blocks.values() for z in v}
    return sorted(int(z) for z in order if int(z) not in used)
