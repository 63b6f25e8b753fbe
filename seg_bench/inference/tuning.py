"""The search of a post-processing method's parameters on validation images.

``tune`` scores every point of the method's grid (``Method.grid``, seg_bench/inference/
instances.py) by the mean of a score over the images, and grows an axis whose best value sits
at its end (``LIMITS``, ``MAX_GROWTH``), so that a parameter is not left at an edge the grid
drew by chance.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from seg_bench.inference.instances import method_named, run_method
from seg_bench.inference.postprocess import remove_small_instances

__all__ = ["grid_points", "grown_grid", "tune"]


def grid_points(name: str, grid: dict[str, tuple] | None = None) -> list[dict[str, Any]]:
    """Every parameter combination of a method's grid (or of ``grid``), invalid hysteresis
    pairs (low above high) left out."""
    grid = method_named(name).grid if grid is None else grid
    points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    return [p for p in points if p.get("low", 0) <= p.get("high", 1)]


# How far ``tune`` may grow a grid past a binding edge: probabilities stay inside (0, 1), and
# a few rounds are enough for parameters whose best value lies near the shipped grid.
LIMITS = {
    "threshold": (0.05, 0.95),
    "low": (0.05, 0.95),
    "high": (0.05, 0.95),
    "seed_threshold": (0.05, 0.95),
    "min_distance": (1, 64),
    "grow": (0, 64),
    "min_size": (0, 500),
}
MAX_GROWTH = 4


def _step_beyond(axis: tuple, value: Any, key: str) -> Any | None:
    """One step (the spacing of the axis' two end values) past ``value`` where it is an end of
    the sorted ``axis``, clipped to ``LIMITS``; None when it is inside or at the limit."""
    if len(axis) < 2 or value not in (axis[0], axis[-1]):
        return None
    lo, hi = LIMITS[key]
    if value == axis[-1]:
        new = min(value + (axis[-1] - axis[-2]), hi)
    else:
        new = max(value - (axis[1] - axis[0]), lo)
    new = round(new, 6) if isinstance(new, float) else new
    return None if new in axis else new


def grown_grid(grid: dict[str, tuple], best: dict[str, Any]) -> dict[str, tuple]:
    """``grid`` with one more value on every axis whose best value is at its end."""
    out = {}
    for key, axis in grid.items():
        new = _step_beyond(axis, best[key], key)
        out[key] = axis if new is None else tuple(sorted((*axis, new)))
    return out


def _score_points(name, points, images, score, scores: dict) -> None:
    """Adds the mean score of every new point to ``scores`` (keyed by sorted items). Instances
    are computed once per foreground setting; only ``min_size`` varies after, since removing
    small objects is the last step."""
    groups: dict[tuple, list[int]] = {}
    for p in points:
        if tuple(sorted(p.items())) not in scores:
            base = tuple(sorted((k, v) for k, v in p.items() if k != "min_size"))
            groups.setdefault(base, []).append(p.get("min_size", 0))
    for base, sizes in groups.items():
        raw = [run_method(name, fg, seeds, **dict(base)) for fg, seeds, _ in images]
        for size in sorted(sizes):
            preds = [remove_small_instances(r, size) if size else r for r in raw]
            value = np.mean([score(t, p) for p, (_, _, t) in zip(preds, images, strict=True)])
            scores[tuple(sorted((*base, ("min_size", size))))] = float(value)


def tune(
    name: str,
    images: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]],
    score: Callable[[np.ndarray, np.ndarray], float],
) -> tuple[dict[str, Any], float]:
    """The parameters of method ``name`` with the best mean ``score(truth, pred)`` over
    ``images`` = [(fg, seeds, truth instances)] (validation images only); (params, score).

    The search starts on the method's grid; while the best point sits at the end of an axis,
    that axis grows by one step (up to ``MAX_GROWTH`` rounds, inside ``LIMITS``), so a
    parameter is not left at an edge the grid drew by chance. Among equal scores the point
    scored first is kept."""
    grid = {k: tuple(sorted(v)) for k, v in method_named(name).grid.items()}
    scores: dict[tuple, float] = {}
    for _ in range(MAX_GROWTH + 1):
        _score_points(name, grid_points(name, grid), images, score, scores)
        key = max(scores, key=scores.__getitem__)
        best = dict(key)
        grown = grown_grid(grid, best)
        if grown == grid:
            break
        grid = grown
    return best, scores[key]
