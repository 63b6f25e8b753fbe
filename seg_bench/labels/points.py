"""Click points: checking them against an image, simulating them, reading them from CSV.

A point is ``(x, y)`` = (column, row), in pixels. ``points`` is an ``(N, 2)`` array-like or a
DataFrame with ``x`` and ``y`` columns (e.g. the output of :func:`click_points_from_instances`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from seg_bench.errors import UserError

__all__ = ["click_points_from_instances", "read_points_csv", "read_points_rows", "validate_points"]


def validate_points(
    points: Any,
    shape: tuple[int, ...],
    image_name: str = "image",
    where: Sequence[str] | None = None,
) -> np.ndarray:
    """Check click points against an image shape and round them to pixels.

    Parameters
    ----------
    points : (N, 2) array-like of (x, y), or DataFrame with ``x`` and ``y`` columns
        Click positions; ``None`` or an empty array means no clicks.
    shape : tuple
        Shape of the image, ``(H, W)`` or ``(H, W, C)``.
    image_name : str
        Name used in error messages (e.g. the image's file name).
    where : sequence of str, optional
        Each point's place in its source, named in errors instead of its index (e.g.
        ``"clicks.csv row 7"``, from :func:`read_points_rows`).

    Returns
    -------
    points : (N, 2) int64 ndarray
        ``(x, y)`` rounded to the nearest pixel.

    Raises
    ------
    UserError
        If the points are not an ``(N, 2)`` numeric array, contain NaN, or lie outside the
        image (such points are an error, never silently dropped).

    Examples
    --------
    >>> validate_points([[1.2, 0.0], [3, 2]], (4, 5), "a.png").tolist()
    [[1, 0], [3, 2]]
    """
    arr = _as_xy_array(points, image_name)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)

    def name(i: int) -> str:
        return where[i] if where is not None else f"point {i}"

    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(f"{name(i)} for {image_name} is not finite: {tuple(arr[i])}")
    rounded = np.rint(arr).astype(np.int64)
    h, w = int(shape[0]), int(shape[1])
    outside = (
        (rounded[:, 0] < 0) | (rounded[:, 0] >= w) | (rounded[:, 1] < 0) | (rounded[:, 1] >= h)
    )
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise UserError(
            f"{name(i)} (x={arr[i, 0]:g}, y={arr[i, 1]:g}) lies outside {image_name} "
            f"(width {w}, height {h}); {int(outside.sum())} point(s) outside in all: "
            "fix the click file or the image it is matched to"
        )
    return rounded


def _as_xy_array(points: Any, image_name: str) -> np.ndarray:
    """``points`` as a float64 (N, 2) array (empty for no points); shape errors raised here."""
    if points is None:
        return np.zeros((0, 2))
    if isinstance(points, pd.DataFrame):
        missing = [c for c in ("x", "y") if c not in points.columns]
        if missing:
            raise UserError(
                f"points for {image_name} lack column(s) {missing}; need columns x and y"
            )
        points = points[["x", "y"]].to_numpy()
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UserError(f"points for {image_name} must be numeric (x, y) pairs: {exc}") from None
    if arr.size and (arr.ndim != 2 or arr.shape[1] != 2):
        raise UserError(
            f"points for {image_name} must have shape (N, 2) as (x, y), got {arr.shape}"
        )
    return arr


def click_points_from_instances(
    instances: Any,
    mode: str = "centroid",
    jitter: float = 0.0,
    drop_fraction: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Simulate one click per object of an instance label image.

    Parameters
    ----------
    instances : (H, W) integer array
        Instance labels, 0 = background.
    mode : {'centroid', 'random'}
        ``'centroid'``: the object's centroid rounded to a pixel; where that pixel is not in
        the object (e.g. a C shape), the object's pixel farthest from its edge (maximum of the
        distance transform; first in row-major order on ties). ``'random'``: a uniformly
        random pixel of the object.
    jitter : float
        Standard deviation (pixels) of Gaussian noise added to x and y, to mimic imprecise
        clicks; jittered points are rounded and clipped to the image and may leave the object.
    drop_fraction : float in [0, 1]
        Fraction of objects left without a click (``round(drop_fraction * n_objects)``,
        chosen at random), to mimic missed objects.
    seed : int
        Random seed; the same arguments always give the same points.

    Returns
    -------
    points : DataFrame
        Columns ``x``, ``y`` (int64 pixel coordinates) and ``label`` (the object's id),
        ordered by label.

    Examples
    --------
    >>> inst = np.zeros((5, 5), int); inst[1:4, 1:4] = 7
    >>> click_points_from_instances(inst).values.tolist()
    [[2, 2, 7]]
    """
    inst = _check_click_options(instances, mode, jitter, drop_fraction)
    rng = np.random.default_rng(seed)
    ids = np.unique(inst)
    ids = ids[ids > 0]
    n_drop = int(round(drop_fraction * ids.size))
    if n_drop:
        ids = np.sort(rng.choice(ids, size=ids.size - n_drop, replace=False))
    slices = ndi.find_objects(inst)
    xs, ys = [], []
    for lab in ids.tolist():
        r, c = _click_in(inst[slices[lab - 1]] == lab, mode, rng)
        ys.append(r + slices[lab - 1][0].start)
        xs.append(c + slices[lab - 1][1].start)
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if jitter > 0 and x.size:
        x = np.clip(np.rint(x + rng.normal(0.0, jitter, x.size)), 0, inst.shape[1] - 1)
        y = np.clip(np.rint(y + rng.normal(0.0, jitter, y.size)), 0, inst.shape[0] - 1)
    return pd.DataFrame(
        {"x": x.astype(np.int64), "y": y.astype(np.int64), "label": ids.astype(np.int64)}
    )


def _check_click_options(
    instances: Any, mode: str, jitter: float, drop_fraction: float
) -> np.ndarray:
    """The instance image as int64, after checking it and the click options."""
    inst = np.asarray(instances)
    if inst.ndim != 2 or not (np.issubdtype(inst.dtype, np.integer) or inst.dtype == bool):
        raise UserError(
            f"instances must be a 2-D integer label image, got shape {inst.shape} "
            f"and dtype {inst.dtype}"
        )
    if mode not in ("centroid", "random"):
        raise UserError(f"unknown click mode {mode!r}; choose 'centroid' or 'random'")
    if not (np.isfinite(jitter) and jitter >= 0):
        raise UserError(f"jitter must be a number >= 0 (pixels), got {jitter!r}")
    if not (0.0 <= drop_fraction <= 1.0):
        raise UserError(f"drop_fraction must lie in [0, 1], got {drop_fraction!r}")
    if (inst < 0).any():
        raise UserError("instances contain negative labels; use 0 for background, ids > 0")
    return inst.astype(np.int64)


def _click_in(obj: np.ndarray, mode: str, rng: np.random.Generator) -> tuple[int, int]:
    """(row, col) of the click in the object mask ``obj`` (see click_points_from_instances)."""
    rr, cc = np.nonzero(obj)
    if mode == "centroid":
        r, c = int(np.rint(rr.mean())), int(np.rint(cc.mean()))
        if not obj[r, c]:
            dist = ndi.distance_transform_edt(np.pad(obj, 1))[1:-1, 1:-1]
            r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    else:
        i = int(rng.integers(rr.size))
        r, c = rr[i], cc[i]
    return int(r), int(c)


def read_points_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Image name -> its ``(N, 2)`` points; see :func:`read_points_rows`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "clicks.csv"
    >>> _ = p.write_text("image,x,y\\na.png,3,4\\na.png,5,6\\n")
    >>> read_points_csv(p)["a.png"].tolist()
    [[3.0, 4.0], [5.0, 6.0]]
    """
    return {name: points for name, (points, _) in read_points_rows(path).items()}


def read_points_rows(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Read click points from a CSV file with columns ``image``, ``x``, ``y``.

    Parameters
    ----------
    path : str or path-like
        CSV file; extra columns are ignored. Row numbers in errors count data rows from 1
        (the header is line 1 of the file, data row 1 is line 2).

    Returns
    -------
    points : dict
        Image name -> (``(N, 2)`` float64 array of ``(x, y)`` in file order, each point's
        place as ``"<file> row <r>"``). Check them against each image with
        :func:`validate_points` (``where=`` the places, so its errors name the rows).
    """
    path = os.fspath(path)
    table = _read_table(path)
    out: dict[str, list[tuple[float, float]]] = {}
    rows: dict[str, list[str]] = {}
    for row, (name, xs, ys) in enumerate(
        zip(table["image"], table["x"], table["y"], strict=True), start=1
    ):
        name = name.strip()
        if not name:
            raise UserError(f"points file {path}, row {row}: the image name is empty")
        coords = []
        for col, text in (("x", xs), ("y", ys)):
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not np.isfinite(value):
                raise UserError(f"points file {path}, row {row}: {col}={text!r} is not a number")
            coords.append(value)
        out.setdefault(name, []).append((coords[0], coords[1]))
        rows.setdefault(name, []).append(f"{path} row {row}")
    return {
        name: (np.asarray(pts, dtype=np.float64).reshape(-1, 2), rows[name])
        for name, pts in out.items()
    }


def _read_table(path: str) -> pd.DataFrame:
    """The CSV as strings, with its image, x and y columns checked."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise UserError(f"points file {path} does not exist") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"points file {path} is empty; it needs a header image,x,y") from None
    except (pd.errors.ParserError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise UserError(f"points file {path} is not a readable CSV: {exc}") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("image", "x", "y") if c not in table.columns]
    if missing:
        raise UserError(
            f"points file {path} lacks column(s) {', '.join(missing)}; it needs a header "
            f"with image,x,y (found: {', '.join(table.columns)})"
        )
    return table
