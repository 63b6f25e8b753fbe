"""What the network learns from the instance labels: the run's ``target``.

* ``binary``: foreground / background, one logit (or one per class): today's default.
* ``boundary3``: background / interior / boundary, three softmax logits. A boundary pixel is
  an object pixel next to another object or the background (``boundary_targets``), so
  touching nuclei are kept apart by their boundaries, as the leading DSB 2018 solutions
  trained. Loss: class-weighted cross-entropy (boundary up-weighted by
  ``target_options.boundary_weight``) + soft Dice. ``target_options.boundary: touching``
  marks only where objects touch (``touching_boundary_targets``): a small nucleus then keeps
  its rim as interior instead of losing most of itself to the boundary class.
* ``distance``: a foreground logit and, beside it, each object's distance to its own
  boundary divided by the object's largest distance (1 at the centre, 0 outside), regressed
  through a sigmoid; its peaks seed the watershed. Loss: BCE + Dice (foreground) + MSE
  (distance).

Targets are made from ``batch["instances"]`` *after* augmentation (``TargetTransform`` is the
DataModule's ``target_transform``, applied to each item), so warps move instance ids
(nearest-neighbour) and the boundaries and distances are computed on the warped labels: no
interpolated label is ever blurred. ``batch["mask"]`` stays the foreground class mask, which
validation scores for every target.

Which datasets may use which target: ``binary`` works everywhere. ``boundary3`` and
``distance`` need the instances to be objects of the positive class: datasets with instance
labels (dsb2018, synthetic) or whose instances are the connected components of the
foreground (epfl, ncmir, folder: touching objects then share one label, so they are not
taught apart). They are refused for multi-class datasets and for EM membrane datasets
(isbi2012, isbi2013), whose instances are the cells *between* the positive-class membranes.
"""

from __future__ import annotations

__all__ = ["TARGETS", "output_channels", "make_target", "target_transform", "build_loss"]

import functools
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi

from seg_bench.config import TARGET_LOSSES, loss_for_target
from seg_bench.errors import UserError
from seg_bench.inference.outputs import output_channels
from seg_bench.inference.postprocess import boundary_targets
from seg_bench.registry import LOSSES

TARGETS = tuple(TARGET_LOSSES)
DEFAULT_BOUNDARY_WEIGHT = 5.0
DEFAULT_TOUCHING_REACH = 2


def distance_target(instances: np.ndarray) -> np.ndarray:
    """Each object's Euclidean distance to its own boundary, divided by its largest value.

    1 at the object's centre, 1/max at its edge pixels, 0 on the background; touching objects
    each get their own peak (distances are measured per object, not to the background only).

    Examples
    --------
    >>> distance_target(np.ones((5, 5), int))[2].round(2).tolist()
    [0.33, 0.67, 1.0, 0.67, 0.33]
    """
    lab = np.asarray(instances)
    out = np.zeros(lab.shape, dtype=np.float32)
    for k, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:
            continue
        # One pixel of padding so an object touching the crop edge still has a boundary there.
        obj = np.pad(lab[box] == k, 1)
        d = ndi.distance_transform_edt(obj)[1:-1, 1:-1]
        inside = obj[1:-1, 1:-1]
        out[box][inside] = (d[inside] / d.max()).astype(np.float32)
    return out


def touching_boundary_targets(instances: np.ndarray, reach: int = 2) -> np.ndarray:
    """3-class target (0 background, 1 interior, 2 boundary) whose boundary class marks only
    the object pixels within ``reach`` pixels (chessboard distance) of another object.

    An object alone keeps all its pixels as interior; two objects that touch, or lie at most
    ``reach`` pixels apart, get a boundary band along the gap, like the "touching borders"
    channel of leading DSB 2018 solutions. Counts, for every pixel, how many objects' dilations
    cover it: an object pixel covered twice is near another object.

    Examples
    --------
    >>> lab = np.zeros((3, 8), int); lab[:, 1:4] = 1; lab[:, 4:7] = 2
    >>> touching_boundary_targets(lab, reach=1)[1].tolist()
    [0, 1, 1, 2, 2, 1, 1, 0]
    """
    lab = np.asarray(instances)
    footprint = np.ones((2 * reach + 1,) * lab.ndim, dtype=bool)
    covered = np.zeros(lab.shape, dtype=np.uint8)
    for k, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(s.start - reach, 0), s.stop + reach) for s in box)
        covered[grown] += ndi.binary_dilation(lab[grown] == k, footprint)
    out = (lab > 0).astype(np.uint8)
    out[(lab > 0) & (covered >= 2)] = 2
    return out


def make_target(
    target: str, instances: np.ndarray, options: dict[str, Any] | None = None
) -> np.ndarray:
    """The per-pixel target of one (augmented) instance label image; ``options`` are the
    run's ``target_options``."""
    options = options or {}
    if target == "boundary3" and options.get("boundary", "outer") == "touching":
        reach = int(options.get("reach", DEFAULT_TOUCHING_REACH))
        return touching_boundary_targets(instances, reach).astype(np.int64)
    if target == "boundary3":
        return boundary_targets(instances).astype(np.int64)
    if target == "distance":
        return distance_target(instances)
    raise ValueError(f"target {target!r} has no per-pixel target beyond the mask")


class TargetTransform:
    """Adds ``item["target"]`` (boundary3: int64 classes; distance: float32 map) to a batch
    item made from augmented labels. Picklable, so DataLoader workers can run it."""

    def __init__(self, target: str, options: dict[str, Any] | None = None):
        self.target, self.options = target, options

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        instances = item["instances"].numpy()
        item["target"] = torch.from_numpy(make_target(self.target, instances, self.options))
        return item


def target_transform(
    target: str, dm: Any, options: dict[str, Any] | None = None
) -> TargetTransform | None:
    """The transform a DataModule applies for ``target``; a UserError where the dataset's
    instances cannot make it (see the module docstring)."""
    if target == "binary":
        return None
    if dm.num_classes != 2:
        raise UserError(
            f"--set target={target}: {dm.name} has {dm.num_classes} classes; instance targets "
            "need a foreground/background dataset; use --set target=binary"
        )
    if dm.instance_metric == "em":
        raise UserError(
            f"--set target={target}: {dm.name}'s instances are the cells between the "
            f"{dm.positive_class} pixels, not objects of that class; use --set target=binary"
        )
    return TargetTransform(target, options)


# --------------------------------------------------------------------------- losses


def build_loss(target: str, loss: str, options: dict[str, Any] | None = None):
    """The loss function of a run: the LOSSES entry for ``loss`` and ``target``
    (``loss_for_target``), with the target's options bound."""
    fn = LOSSES.get(loss_for_target(target, loss))
    if target == "boundary3":
        weight = float((options or {}).get("boundary_weight", DEFAULT_BOUNDARY_WEIGHT))
        return functools.partial(fn, boundary_weight=weight)
    return fn
