"""Operations on instance label images that every post-processing method shares: connected
components, foreground the watershed did not reach, filling each object's holes, and dropping
small objects with renumbering (seg_bench/inference/postprocess.py re-exports them)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from seg_bench.errors import UserError


def neighbourhood(ndim: int, connectivity: int) -> np.ndarray:
    """scipy's structuring element of ``connectivity`` (1: faces only) in ``ndim`` dimensions."""
    if connectivity > ndim:
        raise UserError(
            f"connectivity must be between 1 and {ndim} for {ndim}-D input, got {connectivity}"
        )
    return ndi.generate_binary_structure(ndim, connectivity)


def fill_instance_holes(instances: np.ndarray) -> np.ndarray:
    """Each object's own holes filled with its label: background that one object encloses,
    not the gap a ring of touching objects encloses (filling the mask before labelling made
    that gap foreground, and the watershed then merged the ring or shared the gap out).

    Examples
    --------
    >>> import numpy as np
    >>> ring = np.ones((3, 3), int); ring[1, 1] = 0
    >>> fill_instance_holes(ring)[1, 1], fill_instance_holes(np.array([[1, 0, 2]]))[0, 1]
    (np.int64(1), np.int64(0))
    """
    out = np.array(instances, copy=True)
    for k, box in enumerate(ndi.find_objects(out), start=1):
        if box is None:
            continue
        own = out[box] == k
        hole = ndi.binary_fill_holes(own) & ~own & (out[box] == 0)
        out[box][hole] = k
    return out


def label_components(mask: Any, connectivity: int = 1) -> np.ndarray:
    """Connected components of a mask as int32 labels 1..n (0 = background).

    Examples
    --------
    >>> import numpy as np
    >>> label_components(np.array([[1, 0, 1]])).tolist()
    [[1, 0, 2]]
    """
    m = np.asarray(mask, dtype=bool)
    labels, _ = ndi.label(m, structure=neighbourhood(m.ndim, connectivity))
    return labels.astype(np.int32)


def add_unreached(instances: np.ndarray, mask: np.ndarray, connectivity: int) -> np.ndarray:
    """Foreground components the watershed did not reach (no marker) become new instances."""
    left = mask & (instances == 0)
    if left.any():
        extra = label_components(left, connectivity)
        instances = instances.copy()
        instances[left] = extra[left] + instances.max()
    return instances


def remove_small_instances(instances: Any, min_size: int) -> np.ndarray:
    """Drop instances with fewer than ``min_size`` pixels and renumber the rest 1..n.

    Labels keep their relative order. Returns int32.

    Examples
    --------
    >>> import numpy as np
    >>> remove_small_instances(np.array([[4, 4, 4, 0, 9]]), min_size=2).tolist()
    [[1, 1, 1, 0, 0]]
    """
    lab = np.asarray(instances)
    if not np.issubdtype(lab.dtype, np.integer) or (lab.size and lab.min() < 0):
        raise UserError("instances must be a non-negative integer label image")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise UserError(f"min_size must be an int >= 0, got {min_size!r}")
    if lab.size and int(lab.max()) < 4 * lab.size:  # compact labels: a bincount, no sort
        sizes, inverse, background = np.bincount(lab.ravel()), lab.ravel(), 0
    else:
        ids, inverse, sizes = np.unique(lab.ravel(), return_inverse=True, return_counts=True)
        background = ids == 0
    keep = sizes >= min_size
    keep[background] = False
    new_ids = np.zeros(sizes.size, dtype=np.int32)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new_ids[inverse].reshape(lab.shape)
