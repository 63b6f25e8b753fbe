"""Run-length encoding of the Kaggle Data Science Bowl 2018.

An encoding is a space-separated list of ``start length`` pairs. Pixels are numbered from 1,
**top to bottom, then left to right** (column-major: pixel 2 is the one *below* pixel 1).
Runs must be sorted, must not overlap and must stay inside the image (the Kaggle checker
rejects anything else, and so does :func:`rle_decode`).

CSV files have the header ``ImageId,EncodedPixels`` and one row per object; Kaggle solution
files add ``Height,Width,Usage`` columns (``read_rle_rows`` keeps them: the size decodes an
image's runs, and ``Usage`` Ignored marks an image the competition did not score). An image
whose prediction is empty is written as one row with empty ``EncodedPixels``.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from seg_bench.errors import DataError, UserError
from seg_bench.io import new_file_mode

__all__ = [
    "RleRow",
    "rle_encode",
    "rle_decode",
    "rle_encode_labels",
    "read_rle_csv",
    "labels_from_rows",
    "read_rle_rows",
    "scored_ids",
    "write_submission_csv",
]


def _as_2d(x: Any, name: str) -> np.ndarray:
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 2:
        raise UserError(f"{name} must be a 2-D image, got shape {a.shape}")
    return a


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, lengths, values) of the runs of equal values in a 1-D array (starts 0-based)."""
    if flat.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, flat[:0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    return starts, lengths, flat[starts]


def _format(starts: np.ndarray, lengths: np.ndarray) -> str:
    pairs = np.empty(2 * starts.size, dtype=np.int64)
    pairs[0::2] = starts + 1
    pairs[1::2] = lengths
    return " ".join(map(str, pairs.tolist()))


def rle_encode(mask: Any) -> str:
    """Kaggle DSB run-length encoding of a 2-D mask (non-zero = object).

    Parameters
    ----------
    mask : 2-D array
        Non-zero pixels are encoded.

    Returns
    -------
    str
        ``"start length start length ..."`` (1-based, column-major); ``""`` for an empty mask.

    Examples
    --------
    >>> import numpy as np
    >>> rle_encode(np.array([[0, 1], [1, 1]]))  # column-major order: 0, 1, 1, 1
    '2 3'
    """
    m = _as_2d(mask, "mask")
    flat = (m.T.ravel() != 0).astype(np.int8)
    starts, lengths, values = _runs(flat)
    on = values == 1
    return _format(starts[on], lengths[on])


def rle_encode_labels(instance_labels: Any) -> dict[int, str]:
    """Encode every object of an instance label image in one pass.

    Parameters
    ----------
    instance_labels : 2-D integer array, 0 = background

    Returns
    -------
    dict
        label -> encoding, in increasing label order.

    Examples
    --------
    >>> import numpy as np
    >>> rle_encode_labels(np.array([[1, 0], [1, 2]]))
    {1: '1 2', 2: '4 1'}
    """
    lab = _as_2d(instance_labels, "instance_labels")
    if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
        raise UserError(f"instance_labels must be an integer label image, got dtype {lab.dtype}")
    starts, lengths, values = _runs(lab.T.ravel())
    obj = values != 0
    starts, lengths, values = starts[obj], lengths[obj], values[obj]
    order = np.argsort(values, kind="stable")  # runs of one label stay in pixel order
    starts, lengths, values = starts[order], lengths[order], values[order]
    bounds = np.flatnonzero(np.diff(values)) + 1
    out: dict[int, str] = {}
    for s, ln, v in zip(
        np.split(starts, bounds), np.split(lengths, bounds), np.split(values, bounds), strict=True
    ):
        if v.size:
            out[int(v[0])] = _format(s, ln)
    return out


def rle_decode(rle: str, shape: tuple[int, int], where: str = "rle") -> np.ndarray:
    """Decode a Kaggle DSB run-length encoding.

    Parameters
    ----------
    rle : str
        ``"start length ..."``; an empty string is an empty mask.
    shape : (height, width)
    where : str
        How errors name the input (e.g. ``"row 12 of labels.csv"``).

    Returns
    -------
    bool array of ``shape``

    Raises
    ------
    UserError
        Odd number of tokens, a token that is not an integer, a start < 1 or a length < 1,
        runs not sorted or overlapping, a run past the last pixel. The message names the
        offending pair and value.

    Examples
    --------
    >>> rle_decode("2 3", (2, 2)).astype(int).tolist()
    [[0, 1], [1, 1]]
    """
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 2
        or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in shape
        )
    ):
        raise UserError(f"shape must be (height, width) with positive ints, got {shape!r}")
    h, w = int(shape[0]), int(shape[1])
    starts, lengths = _parse(rle, where)
    n = h * w
    if starts.size:
        ends = starts + lengths - 1  # last pixel of each run, 1-based
        k = int(np.argmax(ends > n)) if (ends > n).any() else -1
        if k >= 0:
            raise UserError(
                f"{where}: run {k + 1} (start {starts[k]}, length {lengths[k]}) ends at pixel "
                f"{ends[k]}, past the last pixel {n} of a {h}x{w} image"
            )
    flat = np.zeros(n, dtype=bool)
    for s, ln in zip(starts.tolist(), lengths.tolist(), strict=True):
        flat[s - 1 : s - 1 + ln] = True
    return flat.reshape(w, h).T


def _parse(rle: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate the shape-independent rules; returns 1-based starts and lengths."""
    if not isinstance(rle, str):
        raise UserError(f"{where}: the encoding must be a string, got {type(rle).__name__}")
    tokens = rle.split()
    if len(tokens) % 2:
        raise UserError(
            f"{where}: odd number of tokens ({len(tokens)}); expected 'start length' pairs"
        )
    values = []
    for pos, tok in enumerate(tokens):
        kind = "start" if pos % 2 == 0 else "length"
        try:
            values.append(int(tok))
        except ValueError:
            raise UserError(
                f"{where}: {kind} of pair {pos // 2 + 1} is {tok!r}, not an integer"
            ) from None
        if abs(values[-1]) >= 2**62:  # no image has that many pixels (and int64 would overflow)
            raise UserError(
                f"{where}: {kind} of pair {pos // 2 + 1} is {tok[:30]!r}, far too large"
            )
    arr = np.asarray(values, dtype=np.int64).reshape(-1, 2)
    starts, lengths = arr[:, 0], arr[:, 1]
    for k in range(arr.shape[0]):
        if starts[k] < 1:
            raise UserError(
                f"{where}: pair {k + 1} has start {starts[k]}; pixels are numbered from 1"
            )
        if lengths[k] < 1:
            raise UserError(f"{where}: pair {k + 1} has length {lengths[k]}; lengths must be >= 1")
        if k and starts[k] <= starts[k - 1] + lengths[k - 1] - 1:
            if starts[k] < starts[k - 1]:
                raise UserError(
                    f"{where}: pair {k + 1} starts at {starts[k]}, before pair {k} "
                    f"(start {starts[k - 1]}); runs must be sorted"
                )
            raise UserError(
                f"{where}: pair {k + 1} (start {starts[k]}) overlaps pair {k}, which covers "
                f"pixels {starts[k - 1]}..{starts[k - 1] + lengths[k - 1] - 1}"
            )
    return starts, lengths


@dataclass(frozen=True)
class RleRow:
    """One CSV row: its line number (for messages), its runs ("" for an image without
    objects), the image size where the file gives ``Height,Width``, and ``Usage``."""

    line: int
    rle: str
    shape: tuple[int, int] | None = None
    usage: str = ""


def read_rle_csv(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a Kaggle DSB labels/submission/solution CSV.

    Parameters
    ----------
    path : path to a CSV with at least the columns ``ImageId`` and ``EncodedPixels``
        (extra columns such as ``Height,Width,Usage`` of the solution file are ignored;
        ``read_rle_rows`` reads and checks them).

    Returns
    -------
    dict
        ImageId -> list of encodings in file order. An image listed only with empty
        ``EncodedPixels`` maps to ``[]``.

    Raises
    ------
    DataError
        Missing file or columns, or an encoding that breaks the shape-independent rules
        (the message names the row number and the image).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "s.csv")
    >>> _ = open(p, "w").write("ImageId,EncodedPixels\\na,1 2\\na,5 1\\nb,\\n")
    >>> read_rle_csv(p)
    {'a': ['1 2', '5 1'], 'b': []}
    """
    rows = read_rle_rows(path, sizes=False)
    return {i: [r.rle for r in listed if r.rle] for i, listed in rows.items()}


def read_rle_rows(path: str | os.PathLike, sizes: bool = True) -> dict[str, list[RleRow]]:
    """ImageId -> its rows in file order, each checked: a non-empty ImageId, runs that obey
    the shape-independent rules, and (``sizes``) ``Height,Width`` where present: whole
    numbers >= 1, the same on every row of an image; without ``sizes`` those columns are not
    read. A byte-order mark is allowed. Errors are one DataError line naming file and line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"RLE CSV not found: {path}")
    try:
        return _read_rle_rows(path, sizes)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(
            f"{path}: not a readable CSV ({str(exc)[:200]}); expected UTF-8 text with "
            "ImageId,EncodedPixels"
        ) from None


def _read_rle_rows(path: str, sizes: bool) -> dict[str, list[RleRow]]:
    out: dict[str, list[RleRow]] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        missing = [c for c in ("ImageId", "EncodedPixels") if c not in fields]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {missing}; header is {fields}; "
                "expected ImageId,EncodedPixels[,Height,Width,Usage]"
            )
        for line, row in enumerate(reader, start=2):  # line 1 is the header
            image_id = (row["ImageId"] or "").strip()
            if not image_id:
                raise DataError(f"{path}: line {line} has an empty ImageId")
            rle = (row["EncodedPixels"] or "").strip()
            if rle:
                try:
                    _parse(rle, f"{path}: line {line} (ImageId {image_id})")
                except UserError as exc:
                    raise DataError(str(exc)) from None
            rows = out.setdefault(image_id, [])
            shape = _row_shape(path, line, row) if sizes else None
            sized = next((r for r in rows if r.shape is not None), None)
            if shape is not None and sized is not None and shape != sized.shape:
                raise DataError(
                    f"{path}: line {line} gives image {image_id} the size {shape}, line "
                    f"{sized.line} gave {sized.shape}; expected one Height,Width per image"
                )
            rows.append(RleRow(line, rle, shape, (row.get("Usage") or "").strip()))
    return out


def scored_ids(rows: dict[str, list[RleRow]]) -> set[str]:
    """The images a solution scores: all but those whose rows all say ``Usage`` Ignored (the
    competition's padding images, which Kaggle left out of both leaderboards)."""
    return {i for i, listed in rows.items() if any(r.usage != "Ignored" for r in listed)}


def labels_from_rows(
    rows: list[RleRow], shape: tuple[int, int], source: str | os.PathLike, image_id: str
) -> np.ndarray:
    """One image's label image from its CSV rows: the k-th row with runs is object k (rows
    without runs mark an image without objects). Errors are one DataError naming the CSV
    (``source``), the row's line and the image: a bad run, or an object overlapping an
    earlier one."""
    objects = [r for r in rows if r.rle]
    labels = np.zeros(shape, np.int32)
    for k, row in enumerate(objects, 1):
        at = f"{os.fspath(source)}: line {row.line} ({image_id})"
        try:
            mask = rle_decode(row.rle, shape, where=at)
        except UserError as exc:
            raise DataError(str(exc)) from None
        if labels[mask].any():
            first = objects[int(labels[mask].max()) - 1].line
            raise DataError(
                f"{at}: overlaps the object of line {first}; every pixel belongs to one "
                "object at most"
            )
        labels[mask] = k
    return labels


def _row_shape(path: str, line: int, row: dict) -> tuple[int, int] | None:
    """A row's (Height, Width), None where the CSV has no size columns (or both are empty)."""
    if not (row.get("Height") or "").strip() and not (row.get("Width") or "").strip():
        return None
    try:
        shape = int(row["Height"]), int(row["Width"])
    except (TypeError, ValueError):
        shape = (0, 0)
    if min(shape) < 1:
        raise DataError(
            f"{path}: line {line}: Height,Width {row.get('Height')!r},{row.get('Width')!r}; "
            "expected two whole numbers of pixels, 1 or more"
        )
    return shape


def write_submission_csv(path: str | os.PathLike, predictions: Mapping[str, Any]) -> None:
    """Write a Kaggle DSB submission from instance label images, atomically.

    Parameters
    ----------
    path : output CSV path
    predictions : mapping ImageId -> 2-D integer label image (0 = background)
        One row per object, in increasing label order; an image without objects gets one row
        with empty ``EncodedPixels``.

    Notes
    -----
    The file is written to a temporary file in the same folder and moved into place with
    ``os.replace``, so a crash never leaves a half-written submission.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "sub.csv")
    >>> write_submission_csv(p, {"img1": np.array([[1, 0], [1, 2]])})
    >>> open(p).read().splitlines()
    ['ImageId,EncodedPixels', 'img1,1 2', 'img1,4 1']
    """
    if not isinstance(predictions, Mapping):
        raise UserError(
            "predictions must be a mapping ImageId -> label image, got "
            f"{type(predictions).__name__}"
        )
    rows: list[tuple[str, str]] = []
    for image_id, labels in predictions.items():
        if not isinstance(image_id, str) or not image_id or "," in image_id:
            raise UserError(f"ImageId {image_id!r} must be a non-empty string without commas")
        try:
            encoded = rle_encode_labels(labels)
        except UserError as exc:
            raise UserError(f"predictions[{image_id!r}]: {exc}") from None
        if encoded:
            rows.extend((image_id, rle) for rle in encoded.values())
        else:
            rows.append((image_id, ""))
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=folder)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(("ImageId", "EncodedPixels"))
            writer.writerows(rows)
        os.chmod(tmp, new_file_mode())  # mkstemp creates 0600; the umask decides, as for open()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
