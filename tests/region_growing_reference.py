"""Strict region growing, one pixel at a time: the definition the fast method is tested against.

Slow (a Python loop per pixel); used by tests/test_weak_labels.py and
benchmarks/bench_region_growing.py only.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

from seg_bench.labels._shared import resolve_overlaps
from seg_bench.labels.region import growing_setup


def region_growing_reference(
    image: Any,
    points: Any,
    threshold: float | None = None,
    *,
    relative: bool = False,
    max_area: int | None = 10_000,
) -> np.ndarray:
    """Same arguments and result convention as :func:`region_growing_labels`.

    Each region keeps its frontier sorted by intensity, so the neighbour closest to the
    running mean is found by bisection; ties go to the lower intensity, then the lower flat
    index.
    """
    grey, pts, threshold, sigma, cap = growing_setup(image, points, threshold, relative, max_area)
    h, w = grey.shape
    vals = grey.ravel().tolist()
    flats, regions = [], []
    for k, (x, y) in enumerate(pts.tolist()):
        member = _grow_one(vals, y * w + x, h, w, threshold, relative, sigma, cap)
        flats.append(np.asarray(member, dtype=np.int64))
        regions.append(np.full(len(member), k, dtype=np.int64))
    if not flats:
        return np.zeros((h, w), dtype=np.int32)
    return resolve_overlaps(np.concatenate(flats), np.concatenate(regions), pts, (h, w))


def _grow_one(vals, seed, h, w, threshold, relative, sigma, cap) -> list[int]:
    """Flat indices of the region grown from ``seed``, in the order they were taken."""
    member = [seed]
    seen = {seed}
    s1, s2, cnt = vals[seed], vals[seed] ** 2, 1
    frontier: list[tuple[float, int]] = []
    p = seed
    while cnt < cap:
        r, c = divmod(p, w)
        for q, ok in ((p - w, r > 0), (p + w, r < h - 1), (p - 1, c > 0), (p + 1, c < w - 1)):
            if ok and q not in seen:
                seen.add(q)
                bisect.insort(frontier, (vals[q], q))
        if not frontier:
            break
        mean = s1 / cnt
        if relative:
            thr = threshold * max(max(s2 / cnt - mean * mean, 0.0) ** 0.5, sigma)
        else:
            thr = threshold
        i = bisect.bisect_left(frontier, (mean, -1))
        if i == len(frontier) or (i > 0 and mean - frontier[i - 1][0] <= frontier[i][0] - mean):
            i -= 1
        v, p = frontier[i]
        if abs(v - mean) > thr:
            break
        del frontier[i]
        member.append(p)
        s1 += v
        s2 += v * v
        cnt += 1
    return member
