"""Named post-processing methods: a foreground probability (and a seed map) to instances.

Each method is a foreground rule followed by a way of splitting that foreground into objects,
then the shared options ``fill_holes`` (fill each object's own holes after labelling) and
``min_size`` (drop smaller objects, renumber 1..n):

================== =========================================== =============================
name               foreground                                  objects
================== =========================================== =============================
threshold_cc       probability > ``threshold``                 connected components
otsu_bfs           probability > Otsu's threshold              breadth-first region
                                                               labelling (= connected
                                                               components, ``ndi.label``)
hysteresis         > ``low`` and connected to > ``high``       connected components
                   (``apply_hysteresis_threshold``)
kmeans_watershed   the brighter of two k-means clusters of     distance-transform watershed
                   the probabilities                           (``min_distance``)
distance_watershed probability > ``threshold``                 distance-transform watershed
                                                               (``min_distance``): the profile's
seeded_watershed   probability > ``threshold``                 marker watershed on the seed
                                                               map from its plateaus above
                                                               ``seed_threshold`` (and its
                                                               peaks beyond ``grow`` px of them)
================== =========================================== =============================

``seeded_watershed`` needs a seed map: the interior probability of a ``boundary3`` model or
the predicted distance of a ``distance`` model (seg_bench/inference/outputs.py:target_maps).
Each method has a small starting grid (``Method.grid``), searched on the validation split by
``tune``, which grows an axis whose best value sits at its end (``LIMITS``, ``MAX_GROWTH``);
the parameters found are applied unchanged to the test split.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from seg_bench.errors import UserError
from seg_bench.inference.outputs import probabilities, target_maps
from seg_bench.inference.postprocess import (
    PostprocessConfig,
    add_unreached,
    binarize,
    fill_instance_holes,
    label_components,
    postprocess,
    remove_small_instances,
    watershed_split,
)

__all__ = [
    "Method",
    "POSTPROCESSORS",
    "run_method",
    "tune",
    "methods_for",
    "check_target_postprocess",
    "instances_from_logits",
]


# Two k-means clusters whose means are closer than this (in probability) are one population
# split by noise: such a map (e.g. an untrained network's) has no foreground. Without it the
# watershed would chase thousands of noise specks (minutes per image).
MIN_CLUSTER_GAP = 0.1


def _kmeans_foreground(fg: np.ndarray, bins: int = 1024) -> np.ndarray:
    """The pixels of the brighter of two 1-D k-means clusters (Lloyd's iterations from the
    midrange, run on a ``bins``-bin histogram of the values, so the cut is exact to
    1/``bins`` of the range and costs one pass over the pixels); none when the two cluster
    means are less than ``MIN_CLUSTER_GAP`` apart."""
    lo, hi = float(fg.min()), float(fg.max())
    if lo == hi:
        return np.zeros(fg.shape, dtype=bool)
    counts, edges = np.histogram(fg, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    cut, means = (lo + hi) / 2, [lo, hi]
    for _ in range(100):
        dark = centres <= cut
        if not counts[dark].any() or not counts[~dark].any():
            break
        means = [np.average(centres[side], weights=counts[side]) for side in (dark, ~dark)]
        new = float(sum(means) / 2)
        if abs(new - cut) < (hi - lo) / bins / 2:
            break
        cut = new
    if means[1] - means[0] < MIN_CLUSTER_GAP:
        return np.zeros(fg.shape, dtype=bool)
    return fg > cut


# How far a peak of the seed map must rise above the saddle to its neighbours to count as a
# nucleus of its own (``grow``): below it, noise on a flank would make spurious markers.
PEAK_H = 0.05


def _seeded(mask: np.ndarray, seeds: np.ndarray, seed_threshold: float, grow: int = 0):
    """Marker watershed from the seed components. With ``grow`` > 0 a small nucleus whose seed
    stayed under the threshold, touching a seeded one, is not flooded by it: a peak of the seed
    map (an h-maximum, ``PEAK_H``) further than ``grow`` px from every seed is a marker too. The
    flank of a seeded nucleus rises towards its seed, so it has no peak of its own."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    markers = label_components((seeds > seed_threshold) & mask)
    if grow > 0 and markers.any():
        far = mask & (ndi.distance_transform_edt(markers == 0) > grow)
        if far.any():  # else no peak can be far: skip the h-maxima transform
            extra = label_components(far & h_maxima(seeds, PEAK_H).astype(bool))
            markers = np.where(extra > 0, extra + markers.max(), markers)
    instances = watershed(-seeds, markers, mask=mask).astype(np.int32)
    return add_unreached(instances, mask, 1)


def _threshold_cc(fg, seeds, mask):
    return label_components(mask)


def _distance_ws(fg, seeds, mask, min_distance: int = 5):
    return watershed_split(mask, min_distance=min_distance)


def _seeded_ws(fg, seeds, mask, seed_threshold: float = 0.5, grow: int = 0):
    return _seeded(mask, seeds, seed_threshold, grow)


@dataclass(frozen=True)
class Method:
    """A named post-processing method: ``foreground(fg, **p) -> mask`` then
    ``objects(fg, seeds, mask, **p) -> labels``; ``grid`` is what ``tune`` searches."""

    name: str
    foreground: Callable[..., np.ndarray]
    objects: Callable[..., np.ndarray]
    needs_seeds: bool
    grid: dict[str, tuple]
    description: str

    def params(self) -> set[str]:
        return set(self.grid) | {"fill_holes", "min_size"}


def _by_threshold(fg, threshold: float = 0.5):
    return binarize(fg, threshold)


def _by_otsu(fg):
    return binarize(fg, "otsu")


def _by_hysteresis(fg, low: float = 0.3, high: float = 0.7):
    return binarize(fg, hysteresis=(low, high))


def _by_kmeans(fg):
    return _kmeans_foreground(fg)


SIZES = (0, 15, 30)
POSTPROCESSORS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "threshold_cc",
            _by_threshold,
            _threshold_cc,
            False,
            {"threshold": (0.4, 0.5, 0.6), "min_size": SIZES},
            "threshold + connected components",
        ),
        Method(
            "otsu_bfs",
            _by_otsu,
            _threshold_cc,
            False,
            {"min_size": SIZES},
            "Otsu threshold + breadth-first region labelling",
        ),
        Method(
            "hysteresis",
            _by_hysteresis,
            _threshold_cc,
            False,
            {"low": (0.3, 0.4), "high": (0.6, 0.8), "min_size": SIZES},
            "hysteresis thresholds + connected components",
        ),
        Method(
            "kmeans_watershed",
            _by_kmeans,
            _distance_ws,
            False,
            {"min_distance": (3, 5, 8), "min_size": SIZES},
            "k-means (2 clusters) of the probabilities + distance-transform watershed",
        ),
        Method(
            "distance_watershed",
            _by_threshold,
            _distance_ws,
            False,
            {"threshold": (0.4, 0.5, 0.6), "min_distance": (3, 5, 8), "min_size": SIZES},
            "threshold + distance-transform watershed",
        ),
        Method(
            "seeded_watershed",
            _by_threshold,
            _seeded_ws,
            True,
            {
                "threshold": (0.4, 0.5),
                "seed_threshold": (0.5, 0.7, 0.85),
                "grow": (0, 4, 8),  # 0: seeds only, no extra markers
                "min_size": SIZES,
            },
            "threshold + marker watershed from interior seeds (boundary3 / distance)",
        ),
    )
}


def methods_for(has_seeds: bool) -> list[str]:
    """The methods an output can use: all with a seed map, the others without one."""
    return [n for n, m in POSTPROCESSORS.items() if has_seeds or not m.needs_seeds]


def _method(name: str) -> Method:
    if name not in POSTPROCESSORS:
        raise UserError(
            f"unknown post-processing method '{name}'; known: {', '.join(POSTPROCESSORS)}"
        )
    return POSTPROCESSORS[name]


def _split(method: Method, params: dict[str, Any]) -> tuple[dict, dict]:
    unknown = sorted(set(params) - method.params())
    if unknown:
        raise UserError(
            f"post-processing method {method.name}: unknown option(s) {unknown}; "
            f"known: {sorted(method.params())}"
        )
    fg_keys = {"threshold", "low", "high"}
    fg_params = {k: v for k, v in params.items() if k in fg_keys}
    obj_keys = {"min_distance", "seed_threshold", "grow"}
    obj_params = {k: v for k, v in params.items() if k in obj_keys}
    return fg_params, obj_params


def run_method(
    name: str, fg: np.ndarray, seeds: np.ndarray | None = None, **params: Any
) -> np.ndarray:
    """Instances (int32, 1..n) of one image by the method ``name`` with ``params``.

    Parameters
    ----------
    fg : (H, W) float array in [0, 1]
        Foreground probability.
    seeds : (H, W) float array in [0, 1], optional
        Seed map; required by ``seeded_watershed``.
    params : the method's grid keys, ``fill_holes`` (bool) and ``min_size`` (int)

    Examples
    --------
    >>> fg = np.array([[0.9, 0.9, 0.1, 0.8]])
    >>> run_method("threshold_cc", fg, min_size=2).tolist()
    [[1, 1, 0, 0]]
    """
    method = _method(name)
    fg = np.asarray(fg)
    if fg.ndim != 2:
        raise UserError(
            f"post-processing method {name} takes one (H, W) foreground probability, got shape "
            f"{fg.shape}; turn a 3-class output into one with outputs.target_maps first"
        )
    if method.needs_seeds and seeds is None:
        raise UserError(
            f"post-processing method {name} needs a seed map: use a model trained with "
            "--set target=boundary3 or target=distance, or another method"
        )
    fg_params, obj_params = _split(method, params)
    mask = method.foreground(fg, **fg_params)
    instances = method.objects(fg, seeds, mask, **obj_params)
    if params.get("fill_holes", False):
        instances = fill_instance_holes(instances)
    if params.get("min_size", 0):
        instances = remove_small_instances(instances, int(params["min_size"]))
    return instances.astype(np.int32, copy=False)


def grid_points(name: str, grid: dict[str, tuple] | None = None) -> list[dict[str, Any]]:
    """Every parameter combination of a method's grid (or of ``grid``), invalid hysteresis
    pairs (low above high) left out."""
    grid = _method(name).grid if grid is None else grid
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
    grid = {k: tuple(sorted(v)) for k, v in _method(name).grid.items()}
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


# --------------------------------------------------------------------------- per target

SEEDED = "seeded_watershed"


def check_target_postprocess(target: str, post: PostprocessConfig, where: str) -> None:
    """A UserError (naming ``where``: the checkpoint or option) when ``post`` cannot read the
    output of a model trained with ``target``."""
    if post.three_class and target != "boundary3":
        raise UserError(
            f"{where}: postprocess three_class reads a background/interior/boundary output, but "
            f"the model was trained with target {target}; drop three_class, or train with "
            "--set target=boundary3"
        )
    seeded = target != "binary" and not post.three_class
    if seeded and (post.threshold == "otsu" or post.hysteresis is not None):
        raise UserError(
            f"{where}: a model trained with target {target} is cut into instances by a seeded "
            "watershed at a fixed threshold; give postprocess threshold as a number in [0, 1], "
            "without otsu or hysteresis"
        )


def check_method(method: dict[str, Any], target: str, where: str) -> None:
    """A UserError naming ``where`` when the method is unknown, has unknown options, or needs
    a seed map that a model trained with ``target`` does not give."""
    params = dict(method)
    chosen = _method(str(params.pop("method", None)))
    _split(chosen, params)
    if chosen.needs_seeds and target == "binary":
        raise UserError(
            f"{where}: method {chosen.name} needs a seed map, but the model was trained with "
            "target binary; choose another method"
        )


def instances_by_method(
    logits: Any, target: str, method: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """(foreground probability, instances) of one image's K,H,W logits by one named method of
    the study (``{"method": name, **params}``, as a record's ``metrics.postprocess`` holds)."""
    params = dict(method)
    fg, seeds = target_maps(logits, target)
    return fg, run_method(params.pop("method"), fg, seeds, **params)


def instances_from_logits(
    logits: Any, target: str, post: PostprocessConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(foreground probability, instances) of one image's K,H,W logits.

    binary: ``postprocess`` of the probability, as always; boundary3 with ``three_class``:
    ``postprocess`` of the three class probabilities; otherwise the instance-aware targets
    use their seeds (``seeded_watershed`` at ``post``'s threshold, min_size and fill_holes).
    """
    check_target_postprocess(target, post, "postprocess")
    fg, seeds = target_maps(logits, target)
    if seeds is None:
        return fg, postprocess(fg, post)[1]
    if post.three_class:
        return fg, postprocess(probabilities(logits), post)[1]
    params = {"threshold": post.threshold, "min_size": post.min_size, "fill_holes": post.fill_holes}
    return fg, run_method(SEEDED, fg, seeds, **params)
