"""Fast piecewise affine warp on a regular grid (imgaug / skimage semantics, no Delaunay lookup).

The warp places a rectilinear grid of control points on the output image, moves each point by a
normal jitter, and maps every output pixel into the input image with the affine transform of the
grid triangle it lies in: ``out(p) = in(T(p))`` with ``T(src) = dst``. That is exactly what
``skimage.transform.warp(img, PiecewiseAffineTransform.from_estimate(src, dst))`` computes (and
what albumentations 1.x / imgaug did). Because the grid is rectilinear, the cell and triangle of
a pixel follow from two 1-D searches, so the dense map costs a few array operations instead of a
Delaunay point location per pixel; one ``cv2.remap`` then does the resampling.

Each grid cell is split along one of its diagonals. Delaunay (what skimage uses) leaves that choice
to qhull because the four corners are cocircular; here it is explicit (``anti_diagonal``), by
default a checkerboard, and :func:`grid_diagonals` reads qhull's choice back for comparisons.

Note: albumentations 2.x's ``A.PiecewiseAffine`` is not this warp: it interpolates the jittered
points by inverse-distance weighting (no triangles; not the identity even with zero jitter) and
uses a jitter std of ``scale * min(H, W) / 3``. ``FastPiecewiseAffine`` keeps the documented
(imgaug) meaning of ``scale``: the std is ``scale * H`` for rows and ``scale * W`` for columns.

Example:
    >>> import numpy as np
    >>> src = regular_grid((64, 64), 4, 4)
    >>> map_x, map_y = piecewise_affine_maps((64, 64), src, src)  # identity
    >>> bool(np.allclose(map_x, np.arange(64)[None, :]))
    True
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.core.pydantic import NonNegativeFloatRangeType
from albumentations.core.transforms_interface import BaseTransformInitSchema
from albumentations.core.type_definitions import Targets
from pydantic import field_validator

__all__ = [
    "FastPiecewiseAffine",
    "checkerboard_diagonals",
    "grid_diagonals",
    "nearest_index",
    "piecewise_affine_maps",
    "regular_grid",
    "remap_image",
    "remap_labels",
    "take_labels",
]


def regular_grid(shape: tuple[int, ...], nb_rows: int, nb_cols: int) -> np.ndarray:
    """``(nb_rows, nb_cols, 2)`` float64 xy points evenly spaced over the pixel centres,
    corners included."""
    h, w = int(shape[0]), int(shape[1])
    if nb_rows < 2 or nb_cols < 2:
        raise ValueError(f"nb_rows and nb_cols must be at least 2, got {nb_rows} and {nb_cols}")
    xx, yy = np.meshgrid(np.linspace(0, w - 1, nb_cols), np.linspace(0, h - 1, nb_rows))
    return np.stack([xx, yy], axis=-1)


def checkerboard_diagonals(nb_rows: int, nb_cols: int) -> np.ndarray:
    """The default split: alternate the diagonal from cell to cell (no preferred direction)."""
    i, j = np.indices((nb_rows - 1, nb_cols - 1))
    return (i + j) % 2 == 0


def _grid_axes(src_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = src_points[0, :, 0], src_points[:, 0, 1]
    if not (
        np.allclose(src_points[..., 0], xs[None, :])
        and np.allclose(src_points[..., 1], ys[:, None])
    ):
        raise ValueError("src_points must form a rectilinear grid: src_points[i, j] = (x_j, y_i)")
    if np.any(np.diff(xs) <= 0) or np.any(np.diff(ys) <= 0):
        raise ValueError("src_points must increase strictly along columns (x) and rows (y)")
    return xs, ys


def _cell_bounds(axis: np.ndarray, n: int) -> np.ndarray:
    """First pixel centre (of 0..n-1) of each cell along one axis; the last entry ends the grid."""
    bounds = np.searchsorted(np.arange(n), axis, side="left")
    bounds[-1] = np.searchsorted(np.arange(n), axis[-1], side="right")
    return bounds


def piecewise_affine_maps(
    shape: tuple[int, ...],
    src_points: np.ndarray,
    dst_points: np.ndarray,
    anti_diagonal: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense ``cv2.remap`` maps of the piecewise affine transform, ``T(src_points) = dst_points``.

    Parameters
    ----------
    shape : (H, W, ...) of the output image.
    src_points : (R, C, 2) xy control points on the output image; a rectilinear grid
        (``src_points[i, j] = (x_j, y_i)``, increasing), e.g. :func:`regular_grid`.
    dst_points : (R, C, 2) xy positions in the input image that those points sample.
    anti_diagonal : (R-1, C-1) bool, optional. True splits a cell along its top-right to
        bottom-left diagonal, False along top-left to bottom-right. Default: checkerboard.

    Returns
    -------
    map_x, map_y : float32 (H, W). ``out[y, x] = in[map_y[y, x], map_x[y, x]]``. Pixels outside
        the grid (only when it does not span the image) get -1, as in skimage: ``remap_labels``
        fills them, ``remap_image`` gives them the edge value.

    In cell coordinates (u, v) in [0, 1]^2 the triangle-wise linear interpolant of the corner
    values d00, d01, d10, d11 is the bilinear one with ``u * v`` replaced by ``min(u, v)`` (split
    along the main diagonal) or ``max(u + v - 1, 0)`` (anti-diagonal):
    ``T = d00 + u (d01 - d00) + v (d10 - d00) + w (d00 - d01 - d10 + d11)``.
    """
    src = np.asarray(src_points, dtype=np.float64)
    dst = np.asarray(dst_points, dtype=np.float64)
    if src.ndim != 3 or src.shape[-1] != 2 or min(src.shape[:2]) < 2:
        raise ValueError(f"src_points must have shape (rows>=2, cols>=2, 2), got {src.shape}")
    if dst.shape != src.shape:
        raise ValueError(
            f"dst_points must have the shape of src_points {src.shape}, got {dst.shape}"
        )
    rows, cols = src.shape[:2]
    if anti_diagonal is None:
        anti_diagonal = checkerboard_diagonals(rows, cols)
    anti_diagonal = np.asarray(anti_diagonal, dtype=bool)
    if anti_diagonal.shape != (rows - 1, cols - 1):
        raise ValueError(
            f"anti_diagonal must have shape {(rows - 1, cols - 1)}, got {anti_diagonal.shape}"
        )
    xs, ys = _grid_axes(src)
    h, w = int(shape[0]), int(shape[1])

    d00 = dst[:-1, :-1]
    du = dst[:-1, 1:] - d00
    dv = dst[1:, :-1] - d00
    twist = dst[1:, 1:] - dst[:-1, 1:] - dv  # d11 - d01 - d10 + d00
    d00, du, dv, twist = (a.astype(np.float32) for a in (d00, du, dv, twist))
    bx, by = _cell_bounds(xs, w), _cell_bounds(ys, h)
    px, py = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    maps = np.full((2, h, w), -1.0, dtype=np.float32)  # outside the grid: -1, like skimage
    for i in range(rows - 1):
        y0, y1 = by[i], by[i + 1]
        v = ((py[y0:y1] - ys[i]) / (ys[i + 1] - ys[i])).astype(np.float32)[:, None]
        for j in range(cols - 1):
            x0, x1 = bx[j], bx[j + 1]
            u = ((px[x0:x1] - xs[j]) / (xs[j + 1] - xs[j])).astype(np.float32)[None, :]
            wgt = np.maximum(u + v - 1, 0) if anti_diagonal[i, j] else np.minimum(u, v)
            for k in range(2):
                block = maps[k, y0:y1, x0:x1]
                np.add(d00[i, j, k] + u * du[i, j, k], v * dv[i, j, k], out=block)
                block += wgt * twist[i, j, k]
    return maps[0], maps[1]


def grid_diagonals(simplices: np.ndarray, nb_rows: int, nb_cols: int) -> np.ndarray:
    """Which diagonal splits each cell in a triangulation of an ``nb_rows x nb_cols`` grid.

    ``simplices`` holds vertex indices ``i * nb_cols + j`` (e.g. ``Delaunay(points).simplices``,
    skimage's ``PiecewiseAffineTransform._tesselation.simplices``). Returns the
    ``anti_diagonal`` array for :func:`piecewise_affine_maps`.
    """
    out = np.zeros((nb_rows - 1, nb_cols - 1), dtype=bool)
    seen = np.zeros_like(out)
    for tri in np.asarray(simplices):
        r, c = np.divmod(np.asarray(tri), nb_cols)
        r0, c0 = r.min(), c.min()
        corners = set(zip((r - r0).tolist(), (c - c0).tolist(), strict=True))
        if r.max() - r0 != 1 or c.max() - c0 != 1 or len(corners) != 3:
            raise ValueError(f"triangle {tri.tolist()} does not lie in one cell of the grid")
        out[r0, c0] = not {(0, 0), (1, 1)} <= corners
        seen[r0, c0] = True
    if not seen.all():
        raise ValueError("the triangulation does not cover every grid cell")
    return out


def remap_image(
    img: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, interpolation: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """Resample an H,W or H,W,C image (any C) with ``cv2.remap``; shape and dtype are kept."""
    if img.ndim == 2 or img.shape[2] <= 4:
        out = cv2.remap(img, map_x, map_y, interpolation, borderMode=cv2.BORDER_REPLICATE)
        return out.reshape(img.shape)
    chunks = [
        remap_image(img[..., k : k + 4], map_x, map_y, interpolation)
        for k in range(0, img.shape[2], 4)
    ]
    return np.concatenate(chunks, axis=2)


def nearest_index(map_x: np.ndarray, map_y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Flat index of the input pixel nearest to each map position; -1 where it is outside."""
    h, w = int(shape[0]), int(shape[1])
    ix = np.rint(map_x).astype(np.intp)
    iy = np.rint(map_y).astype(np.intp)
    index = iy * w + ix
    outside = (ix < 0) | (ix >= w) | (iy < 0) | (iy >= h)
    if outside.any():
        index[outside] = -1
    return index


def take_labels(labels: np.ndarray, index: np.ndarray, fill: int = 0) -> np.ndarray:
    """Labels (H,W or H,W,C) at a :func:`nearest_index`: exact for any dtype, int32 ids included."""
    flat = labels.reshape(-1, *labels.shape[2:])
    out = np.take(flat, index, axis=0, mode="clip")
    if index.min() < 0:
        out[index < 0] = fill
    return out


def remap_labels(
    labels: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, fill: int = 0
) -> np.ndarray:
    """Nearest-neighbour resampling of a label image by indexing (no interpolation of ids)."""
    return take_labels(labels, nearest_index(map_x, map_y, labels.shape), fill)


class FastPiecewiseAffine(A.DualTransform):
    """Piecewise affine distortion on a jittered regular grid; image, mask and mask-like targets.

    Parameters
    ----------
    scale : std of the control-point jitter as a fraction of the image height (rows) and width
        (columns), sampled uniformly from the range per image; a float ``s`` means ``(0, s)``.
    nb_rows, nb_cols : number of rows / columns of control points (>= 2), spanning the image
        corner to corner; an int or an inclusive range sampled per image.
    absolute_scale : ``scale`` is in pixels instead.
    interpolation : cv2 flag for images; masks always use nearest neighbour (labels are kept).
    p : probability of applying the transform.

    Jittered points are clipped to the image, so no pixel is read from outside it.
    """

    _targets = (Targets.IMAGE, Targets.MASK)

    class InitSchema(BaseTransformInitSchema):
        scale: NonNegativeFloatRangeType
        nb_rows: tuple[int, int] | int
        nb_cols: tuple[int, int] | int
        absolute_scale: bool
        interpolation: int

        @field_validator("nb_rows", "nb_cols")
        @classmethod
        def _at_least_two(cls, value: tuple[int, int] | int) -> tuple[int, int]:
            lo, hi = (value, value) if isinstance(value, int) else value
            if not 2 <= lo <= hi:
                raise ValueError(f"needs 2 <= min <= max, got {value}")
            return (lo, hi)

    def __init__(
        self,
        scale: tuple[float, float] | float = (0.03, 0.05),
        nb_rows: tuple[int, int] | int = 4,
        nb_cols: tuple[int, int] | int = 4,
        absolute_scale: bool = False,
        interpolation: int = cv2.INTER_LINEAR,
        p: float = 0.5,
    ):
        super().__init__(p=p)
        self.scale = scale
        self.nb_rows = nb_rows
        self.nb_cols = nb_cols
        self.absolute_scale = absolute_scale
        self.interpolation = interpolation

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        h, w = params["shape"][:2]
        rows = self.py_random.randint(*self.nb_rows)
        cols = self.py_random.randint(*self.nb_cols)
        scale = self.py_random.uniform(*self.scale)
        src = regular_grid((h, w), rows, cols)
        jitter = self.random_generator.normal(0.0, scale, size=src.shape)
        if not self.absolute_scale:
            jitter *= (w, h)
        dst = np.clip(src + jitter, 0, (w - 1, h - 1))
        map_x, map_y = piecewise_affine_maps((h, w), src, dst)
        return {"map_x": map_x, "map_y": map_y, "index": nearest_index(map_x, map_y, (h, w))}

    def apply(
        self, img: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, **params: Any
    ) -> np.ndarray:
        return remap_image(img, map_x, map_y, self.interpolation)

    def apply_to_mask(self, mask: np.ndarray, index: np.ndarray, **params: Any) -> np.ndarray:
        return take_labels(mask, index)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "nb_rows", "nb_cols", "absolute_scale", "interpolation")
