"""Weak labels by flood filling from click points up to closed edges.

Steps: threshold the image (objects are the pixels above the threshold when ``bright_objects``,
below it otherwise) and drop specks of either class smaller than ``min_size`` pixels (noise
would otherwise break up the edges); mark the objects' inner boundaries (the object pixels
touching background) and skeletonise them; close gaps by dilating the skeleton with a disk of
``gap_radius`` and skeletonising again, which closes breaks and narrow slots up to
``2 * gap_radius`` pixels wide while keeping the edge one pixel thin; then flood fill
(4-connected) from each point up to those edges. The fill gets back the edge pixels touching it
(of the thinned edges and of the original boundaries), and holes of at most ``hole_area``
pixels inside it are filled.

The click may be inside a bright object or inside a dark region enclosed by bright edges (e.g.
a cell body outlined by its membrane): both are filled up to the edges.

Leaks are discarded with a warning, for every point in the leaking fill. A fill leaks when it
has more than ``max_area`` pixels (edges and filled holes included) or reaches the image border
through background pixels (so a bright object cut by the border is kept, but a dark region
enclosed by edges that meet the border counts as a leak). Several points in one fill split it:
each pixel goes to the nearest point (ties to the lower index).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.morphology import disk, skeletonize
from skimage.segmentation import find_boundaries

from seg_bench.errors import UserError
from seg_bench.labels._shared import (
    CROSS,
    SQUARE,
    check_count,
    check_positive,
    image_and_points,
    labels_and_used,
    resolve_overlaps,
)

__all__ = ["flood_fill_labels"]


def flood_fill_labels(
    image: Any,
    points: Any,
    threshold: float | str | None = "otsu",
    gap_radius: int = 2,
    *,
    bright_objects: bool = True,
    max_area: int | None = None,
    min_size: int = 16,
    snap_radius: int = 2,
    hole_area: int = 64,
    return_used: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Label objects by flood filling from click points up to closed edges (see module doc).

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array
        Greyscale or RGB image (RGB goes to grey with luminance weights).
    points : (N, 2) array-like of (x, y), or DataFrame with ``x``, ``y`` columns
        Click points; point ``k`` (0-based) yields label ``k + 1``.
    threshold : float, 'otsu' or None
        Intensity threshold; ``'otsu'`` or ``None`` picks it with Otsu's method.
    gap_radius : int
        Radius of the disk that closes gaps in the edges; 0 closes nothing. Objects thinner
        than about ``2 * gap_radius + 1`` pixels, or closer than that to each other, merge
        with their edges and cannot be filled on their own.
    bright_objects : bool
        True: objects are brighter than the threshold; False: darker.
    max_area : int or None
        A fill of more pixels than this is a leak.
    min_size : int
        Connected specks (4-connected) of object or background pixels smaller than this are
        flipped to the other class before edges are taken; objects smaller than this vanish.
    snap_radius : int
        A click on an edge pixel moves to the nearest non-edge pixel within this radius
        (ties: a pixel on the same side of the threshold as the click, then the upper-left
        one); with none in reach the click is skipped with a warning.
    hole_area : int
        Holes inside a fill up to this many pixels (noise specks) are filled.
    return_used : bool
        Also return which points produced a label.

    Returns
    -------
    labels : (H, W) int32 ndarray
        0 = background, ``k + 1`` = fill of point ``k``.
    used : (N,) bool ndarray
        Only if ``return_used``: True where label ``k + 1`` is in ``labels``. False for
        skipped clicks, leaks and points that lost all their pixels to other points.

    Examples
    --------
    >>> img = np.zeros((9, 9)); img[2:7, 2:7] = 1.0
    >>> labels = flood_fill_labels(img, [[4, 4]], threshold=0.5, gap_radius=0)
    >>> int((labels == 1).sum())
    25
    """
    grey, pts = image_and_points(image, points)
    check_count(gap_radius, "gap_radius")
    check_count(snap_radius, "snap_radius")
    check_count(min_size, "min_size")
    check_count(hole_area, "hole_area")
    check_positive(max_area, "max_area")
    if len(pts) == 0:
        labels = np.zeros(grey.shape, dtype=np.int32)
    else:
        binary = _drop_specks(_binarise(grey, threshold, bright_objects), min_size)
        labels = _fill_from_clicks(binary, pts, gap_radius, snap_radius, hole_area, max_area)
    return labels_and_used(labels, len(pts), return_used)


def _fill_from_clicks(
    binary: np.ndarray,
    pts: np.ndarray,
    gap_radius: int,
    snap_radius: int,
    hole_area: int,
    max_area: int | None,
) -> np.ndarray:
    """The label image of the fills from ``pts`` in the thresholded image ``binary``."""
    edges = find_boundaries(binary, mode="inner")
    barrier = _closed_edges(edges, gap_radius)
    seeds, active = _snap_clicks(pts, barrier, binary, snap_radius)
    if not active.all():
        warnings.warn(
            f"flood fill: click(s) {np.flatnonzero(~active).tolist()} lie on an edge with no "
            f"free pixel within snap_radius={snap_radius}; skipped",
            UserWarning,
            stacklevel=3,
        )
    fills = _Fills(binary, edges, barrier, hole_area, max_area)
    flats, regions, leaked = fills.from_seeds(seeds, active)
    if leaked:
        warnings.warn(
            f"flood fill: the fill from click(s) {leaked} leaks (reaches the image border "
            "through background or exceeds max_area); discarded. Try a larger gap_radius.",
            UserWarning,
            stacklevel=3,
        )
    if not flats:
        return np.zeros(binary.shape, dtype=np.int32)
    return resolve_overlaps(np.concatenate(flats), np.concatenate(regions), seeds, binary.shape)


def _binarise(grey: np.ndarray, threshold: float | str | None, bright_objects: bool) -> np.ndarray:
    if threshold is None or (isinstance(threshold, str) and threshold == "otsu"):
        t = threshold_otsu(grey) if grey.min() < grey.max() else grey.min()
    elif isinstance(threshold, str):
        raise UserError(f"threshold must be a number, 'otsu' or None, got {threshold!r}")
    else:
        try:
            t = float(threshold)
        except (TypeError, ValueError):
            raise UserError(
                f"threshold must be a number, 'otsu' or None, got {threshold!r}"
            ) from None
    return grey > t if bright_objects else grey < t


def _drop_specks(binary: np.ndarray, min_size: int) -> np.ndarray:
    """Flip 4-connected components of either class smaller than ``min_size`` pixels."""
    if min_size <= 1:
        return binary
    out = binary.copy()
    for cls in (True, False):
        comp, ncomp = ndi.label(binary == cls, structure=CROSS)
        if ncomp:
            small = np.bincount(comp.ravel()) < min_size
            small[0] = False
            out[small[comp]] = not cls
    return out


def _closed_edges(edges: np.ndarray, gap_radius: int) -> np.ndarray:
    """One-pixel-thin edges with gaps up to ``2 * gap_radius`` pixels closed."""
    barrier = skeletonize(edges)
    if gap_radius > 0:
        # Edge padding carries edges that meet the image border on outwards, so thinning
        # does not pull their ends back from the border.
        pad = gap_radius + 2
        thick = ndi.binary_dilation(np.pad(barrier, pad, mode="edge"), structure=disk(gap_radius))
        barrier = skeletonize(thick)[pad:-pad, pad:-pad]
    return barrier


def _snap_clicks(
    pts: np.ndarray, barrier: np.ndarray, binary: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeds (clicks on an edge moved off it) and which clicks are kept (False: no room)."""
    seeds = pts.copy()
    active = np.ones(len(pts), dtype=bool)
    for k in np.flatnonzero(barrier[pts[:, 1], pts[:, 0]]):
        snapped = _snap(int(pts[k, 0]), int(pts[k, 1]), barrier, binary, radius)
        if snapped is None:
            active[k] = False
        else:
            seeds[k] = snapped
    return seeds, active


def _snap(
    x: int, y: int, barrier: np.ndarray, binary: np.ndarray, radius: int
) -> tuple[int, int] | None:
    """Nearest non-barrier pixel within ``radius``; ties: same class as (x, y), then row, col."""
    h, w = barrier.shape
    y0, y1 = max(y - radius, 0), min(y + radius + 1, h)
    x0, x1 = max(x - radius, 0), min(x + radius + 1, w)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d2 = (yy - y) ** 2 + (xx - x) ** 2
    ok = ~barrier[y0:y1, x0:x1] & (d2 <= radius * radius)
    if not ok.any():
        return None
    other_class = binary[y0:y1, x0:x1] != binary[y, x]
    yy, xx, d2, other_class = yy[ok], xx[ok], d2[ok], other_class[ok]
    best = np.lexsort((xx, yy, other_class, d2))[0]
    return int(xx[best]), int(yy[best])


class _Fills:
    """The regions enclosed by the edges, and the fill of each one a click lands in."""

    def __init__(self, binary, edges, barrier, hole_area: int, max_area: int | None):
        self.edges, self.barrier = edges, barrier
        self.hole_area, self.max_area = hole_area, max_area
        self.comp, _ = ndi.label(~barrier, structure=CROSS)
        self.areas = np.bincount(self.comp.ravel())
        self.slices = ndi.find_objects(self.comp)
        # Regions that reach the image border through background pixels are leaks.
        self.border_bg = np.zeros(self.areas.size, dtype=bool)
        for side in (np.s_[0], np.s_[-1], np.s_[:, 0], np.s_[:, -1]):
            self.border_bg[self.comp[side][~binary[side]]] = True
        self.border_bg[0] = False

    def from_seeds(self, seeds: np.ndarray, active: np.ndarray):
        """Flat pixel indices and point ids of every kept fill, and the leaking points."""
        w = self.comp.shape[1]
        seed_comp = self.comp[seeds[:, 1], seeds[:, 0]]
        flats, regions, leaked = [], [], []
        for c in np.unique(seed_comp[active]):
            ks = np.flatnonzero(active & (seed_comp == c))
            too_big = self.max_area is not None and self.areas[c] > self.max_area
            rows_cols = None if self.border_bg[c] or too_big else self.fill(c)
            if rows_cols is None:
                leaked.extend(int(k) for k in ks)
                continue
            flat = rows_cols[0].astype(np.int64) * w + rows_cols[1]
            flats.append(np.tile(flat, ks.size))
            regions.append(np.repeat(ks, flat.size))
        return flats, regions, leaked

    def fill(self, c: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows, cols) of region ``c`` with its edges and small holes; None if too large."""
        h, w = self.comp.shape
        sl = self.slices[c - 1]
        r0, r1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, h)
        c0, c1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, w)
        fill = self.comp[r0:r1, c0:c1] == c
        fill |= ndi.binary_dilation(fill, structure=SQUARE) & (
            self.barrier[r0:r1, c0:c1] | self.edges[r0:r1, c0:c1]
        )
        if self.hole_area > 0:
            holes, nholes = ndi.label(ndi.binary_fill_holes(fill) & ~fill)
            if nholes:
                small = np.bincount(holes.ravel()) <= self.hole_area
                small[0] = False
                fill |= small[holes]
        rr, cc = np.nonzero(fill)
        if self.max_area is not None and rr.size > self.max_area:
            return None
        return rr + r0, cc + c0
