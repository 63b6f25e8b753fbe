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
seg_bench/inference/tuning.py; the parameters found are applied unchanged to the test split.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
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


# Tuning asks for one seed map's peaks at every grid point with grow > 0, and the h-maxima
# transform is most of a seeded watershed's time: the peaks of the latest maps are kept, keyed
# by a digest of the map's bytes (so a changed map is never served stale peaks).
PEAK_CACHE_BYTES = 64 * 2**20
_peak_cache: OrderedDict[bytes, np.ndarray] = OrderedDict()


def seed_peaks(seeds: np.ndarray) -> np.ndarray:
    """The seed map's h-maxima (``PEAK_H``) as a read-only bool array."""
    from skimage.morphology import h_maxima

    seeds = np.ascontiguousarray(seeds)
    key = hashlib.blake2b(seeds.tobytes(), digest_size=20).digest()
    key += repr((seeds.shape, seeds.dtype.str)).encode()
    if key in _peak_cache:
        _peak_cache.move_to_end(key)
        return _peak_cache[key]
    peaks = h_maxima(seeds, PEAK_H).astype(bool)
    peaks.flags.writeable = False
    _peak_cache[key] = peaks
    while sum(p.nbytes for p in _peak_cache.values()) > PEAK_CACHE_BYTES:
        _peak_cache.popitem(last=False)
    return peaks


def clear_seed_peaks() -> None:
    """Forget the kept peaks (a benchmark times the transform cold)."""
    _peak_cache.clear()


def _seeded(mask: np.ndarray, seeds: np.ndarray, seed_threshold: float, grow: int = 0):
    """Marker watershed from the seed components. With ``grow`` > 0 a small nucleus whose seed
    stayed under the threshold, touching a seeded one, is not flooded by it: a peak of the seed
    map (an h-maximum, ``PEAK_H``) further than ``grow`` px from every seed is a marker too. The
    flank of a seeded nucleus rises towards its seed, so it has no peak of its own."""
    from skimage.segmentation import watershed

    markers = label_components((seeds > seed_threshold) & mask)
    if grow > 0 and markers.any():
        far = mask & (ndi.distance_transform_edt(markers == 0) > grow)
        if far.any():  # else no peak can be far: skip the h-maxima transform
            extra = label_components(far & seed_peaks(seeds))
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


def method_named(name: str) -> Method:
    """The method called ``name``; a UserError listing the known ones otherwise."""
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
    method = method_named(name)
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
    chosen = method_named(str(params.pop("method", None)))
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
