"""Benchmark: vectorised Kaggle DSB 2018 score vs a per-object-pair reference.

Generates label images of random disks (truth) and a perturbed prediction (jittered centres
and radii, missed objects, split objects, false positives, arbitrary label values), then

* times ``seg_bench.metrics.instance.dsb_map`` on all images;
* times a straightforward reference (a loop over every true x predicted object pair with
  boolean masks; the per-object masks are computed once per image, which makes the reference
  faster than the naive version) on the first ``--ref-images`` images only, and extrapolates
  its time linearly to all images;
* prints the speed-up and the largest absolute difference of the per-image scores on the
  images both scored.

Everything is seeded; the same arguments give the same images and scores.

    python benchmarks/bench_dsb_metric.py            # 1,000 images 256x256, ~50 objects
    python benchmarks/bench_dsb_metric.py --quick    # small smoke run
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction

import numpy as np

from seg_bench.metrics.instance import dsb_map


def _paint_disk(img: np.ndarray, cy: float, cx: float, r: float, value: int) -> None:
    h, w = img.shape
    y0, y1 = max(0, int(cy - r)), min(h, int(cy + r) + 1)
    x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    img[y0:y1, x0:x1][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value


def make_pair(rng: np.random.Generator, size: int, n_objects: int) -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros((size, size), np.int32)
    pred = np.zeros((size, size), np.int32)
    next_pred = 1
    for k in range(1, n_objects + 1):
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(4, 11)
        _paint_disk(truth, cy, cx, r, k)
        u = rng.random()
        if u < 0.08:  # missed
            continue
        dy, dx = rng.normal(0, 0.7, 2)
        r2 = max(1.5, r + rng.normal(0, 0.6))
        _paint_disk(pred, cy + dy, cx + dx, r2, next_pred)
        if u > 0.94:  # split: the right half gets its own label
            half = pred[:, int(cx) :]
            half[half == next_pred] = next_pred + 1
            next_pred += 1
        next_pred += 1
    for _ in range(rng.poisson(3)):  # false positives
        _paint_disk(pred, *rng.uniform(0, size, 2), rng.uniform(2, 6), next_pred)
        next_pred += 1
    # arbitrary, non-consecutive label values on both sides
    t_map = np.concatenate(([0], rng.permutation(10 * n_objects)[: truth.max()] + 1))
    p_map = np.concatenate(([0], rng.choice(10**6, next_pred, replace=False) + 1))
    return t_map[truth], p_map[pred]


def reference_average_precision(truth: np.ndarray, pred: np.ndarray) -> float:
    """Per-object-pair loop with boolean masks and exact IoU > t comparisons."""
    t_ids = [v for v in np.unique(truth) if v != 0]
    p_ids = [v for v in np.unique(pred) if v != 0]
    if not t_ids and not p_ids:
        return 1.0
    t_masks = [truth == a for a in t_ids]
    p_masks = [pred == b for b in p_ids]
    ious = []
    for ma in t_masks:
        for mb in p_masks:
            inter = int(np.logical_and(ma, mb).sum())
            if inter:
                ious.append(Fraction(inter, int(np.logical_or(ma, mb).sum())))
    scores = []
    for percent in range(50, 100, 5):
        tp = sum(iou > Fraction(percent, 100) for iou in ious)
        scores.append(tp / (len(t_ids) + len(p_ids) - tp))
    return float(np.mean(scores))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--objects", type=int, default=50)
    ap.add_argument("--ref-images", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="50 images 128x128, 20 objects, 5 ref")
    args = ap.parse_args(argv)
    if args.quick:
        args.images, args.size, args.objects, args.ref_images = 50, 128, 20, 5
    args.ref_images = min(args.ref_images, args.images)

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    pairs = [make_pair(rng, args.size, args.objects) for _ in range(args.images)]
    t_gen = time.perf_counter() - t0
    n_true = np.mean([len(np.unique(t)) - 1 for t, _ in pairs])
    n_pred = np.mean([len(np.unique(p)) - 1 for _, p in pairs])
    print(
        f"generated {args.images} image pairs {args.size}x{args.size} in {t_gen:.1f} s "
        f"(mean {n_true:.1f} true / {n_pred:.1f} predicted objects per image, seed {args.seed})"
    )

    dsb_map(pairs[:2])  # warm-up
    t0 = time.perf_counter()
    result = dsb_map(pairs)
    t_fast = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref_scores = [reference_average_precision(t, p) for t, p in pairs[: args.ref_images]]
    t_ref_subset = time.perf_counter() - t0
    t_ref = t_ref_subset / args.ref_images * args.images

    diff = np.abs(result["per_image"][: args.ref_images] - np.asarray(ref_scores)).max()
    speedup = t_ref / t_fast
    print(
        f"vectorised dsb_map:    {t_fast:8.2f} s for {args.images} images "
        f"({1000 * t_fast / args.images:.2f} ms/image)"
    )
    print(
        f"per-pair reference:    {t_ref_subset:8.2f} s for {args.ref_images} images "
        f"({1000 * t_ref_subset / args.ref_images:.1f} ms/image), "
        f"extrapolated to {args.images} images: {t_ref:.1f} s"
    )
    print(
        f"speed-up:              {speedup:8.1f}x  (target >= 50x: "
        f"{'met' if speedup >= 50 else 'NOT met'})"
    )
    print(
        f"max |score difference| on the {args.ref_images} images scored by both: {diff:.3g} "
        f"(target <= 1e-9: {'met' if diff <= 1e-9 else 'NOT met'})"
    )
    print(f"DSB score of the synthetic predictions: {result['score']:.4f}")


if __name__ == "__main__":
    main()
