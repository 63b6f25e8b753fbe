"""Labels: weak labels grown from click points, and the label-source step of a run.

Where each piece lives:

* :mod:`~seg_bench.labels.points`: click points: :func:`validate_points` (check them against an
  image), :func:`click_points_from_instances` (simulate one click per object) and
  :func:`read_points_csv` (read them from a CSV with columns image, x, y);
* :mod:`~seg_bench.labels.floodfill`: :func:`flood_fill_labels`, fill from each click up to
  closed edges;
* :mod:`~seg_bench.labels.region`: :func:`region_growing_labels`, grow a region from each click
  by intensity similarity;
* :mod:`~seg_bench.labels.quality`: :func:`label_quality`, IoU, Dice and kappa of weak labels
  against manual masks;
* :mod:`~seg_bench.labels.source`: :func:`weak_labels` (either method, by name) and the label
  sources a run chooses with ``--labels`` (``manual``, ``floodfill``, ``region``; registered in
  ``seg_bench.registry.LABEL_SOURCES``), which the DataModule applies to its train and val
  splits;
* ``_shared``: image checks and overlap resolution the methods share.

Conventions used throughout:

* A point is ``(x, y)`` = (column, row), in pixels. ``points`` is an ``(N, 2)`` array-like or
  a DataFrame with ``x`` and ``y`` columns.
* A returned label image is ``int32``, 0 = background, label ``k`` grown from point ``k``
  (1-based, in input order). A point that yields nothing leaves its label absent.
* Images are 2-D greyscale, or ``(H, W, 3)`` RGB converted to grey with luminance weights
  (0.2125 R + 0.7154 G + 0.0721 B, as ``skimage.color.rgb2gray``); ``(H, W, 1)`` is taken as
  grey. Other channel counts (e.g. RGBA) are rejected: drop the extra channels first.
* Overlaps: where the regions of two points claim the same pixel, the point nearest to the
  pixel (Euclidean) wins, ties going to the lower point index.
* No points gives an all-zero label image.
"""

from seg_bench.labels.floodfill import flood_fill_labels
from seg_bench.labels.points import (
    click_points_from_instances,
    read_points_csv,
    read_points_rows,
    validate_points,
)
from seg_bench.labels.quality import label_quality
from seg_bench.labels.region import region_growing_labels
from seg_bench.labels.source import ManualLabels, WeakLabels, weak_labels

__all__ = [
    "ManualLabels",
    "WeakLabels",
    "click_points_from_instances",
    "flood_fill_labels",
    "label_quality",
    "read_points_csv",
    "read_points_rows",
    "region_growing_labels",
    "validate_points",
    "weak_labels",
]
