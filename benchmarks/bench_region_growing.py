"""Time fast (round-based) region growing against the strict one-pixel-at-a-time reference.

    python benchmarks/bench_region_growing.py                  # 1024 x 1024, 300 blobs
    python benchmarks/bench_region_growing.py --ref-subset 0   # reference on all 300 clicks

The image: 300 discs (radius 12-20 px, intensity 0.6-1.0) on a jittered grid over a
background of 0.1-0.2, plus Gaussian noise (sigma 0.05), one click at each disc centre.

Regions grow independently, so the reference's time is linear in the number of clicks: by
default it runs on the first ``--ref-subset`` clicks and its time is extrapolated to all of
them (printed as such). Agreement is the IoU of fast vs reference on those same clicks (the
fast method is rerun on the subset for that). ``--noise 0.15 --max-area 3000`` gives a
leaking regime, where batching changes the order and the results differ more.
Target: fast < 2 s for 300 clicks.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from seg_bench.labels import flood_fill_labels, label_quality, region_growing_labels

# The strict reference is test code (tests/region_growing_reference.py), not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from region_growing_reference import (  # noqa: E402
    region_growing_reference as _region_growing_reference,
)


def synthetic_blobs(size: int, n: int, noise: float, seed: int):
    """Image, instance labels and (x, y) clicks: ``n`` separated discs on a noisy background."""
    rng = np.random.default_rng(seed)
    grid = int(np.ceil(np.sqrt(n)))
    cell = size / grid
    img = np.full((size, size), rng.uniform(0.1, 0.2))
    inst = np.zeros((size, size), np.int32)
    clicks = []
    for k, c in enumerate(np.sort(rng.permutation(grid * grid)[:n]), start=1):
        i, j = divmod(int(c), grid)
        r = rng.uniform(12, min(20, cell / 2 - 3))
        slack = cell / 2 - r - 2
        cy = (i + 0.5) * cell + rng.uniform(-slack, slack)
        cx = (j + 0.5) * cell + rng.uniform(-slack, slack)
        y0, x0 = int(max(cy - r - 1, 0)), int(max(cx - r - 1, 0))
        yy, xx = np.mgrid[y0 : int(cy + r + 2), x0 : int(cx + r + 2)]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        inst[yy[disc], xx[disc]] = k
        img[yy[disc], xx[disc]] = rng.uniform(0.6, 1.0)
        clicks.append((round(cx), round(cy)))
    return img + rng.normal(0, noise, img.shape), inst, np.array(clicks)


def best_time(fn, repeat: int):
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def mean_object_iou(a: np.ndarray, b: np.ndarray, n: int) -> float:
    ious = []
    for k in range(1, n + 1):
        x, y = a == k, b == k
        union = (x | y).sum()
        ious.append((x & y).sum() / union if union else 1.0)
    return float(np.mean(ious))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--blobs", type=int, default=300)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many fast runs")
    ap.add_argument(
        "--ref-subset", type=int, default=30, help="clicks the reference runs on (0 = all)"
    )
    ap.add_argument("--max-area", type=int, default=10_000)
    args = ap.parse_args()

    img, inst, clicks = synthetic_blobs(args.size, args.blobs, args.noise, args.seed)
    n = len(clicks)
    kw = {"max_area": args.max_area}
    print(f"image {img.shape[0]}x{img.shape[1]}, {n} blobs/clicks, noise sigma {args.noise}")
    warnings.simplefilter("ignore")  # max_area warnings in leaky settings

    t_fast, fast = best_time(lambda: region_growing_labels(img, clicks, **kw), args.repeat)
    q = label_quality(fast, inst)
    print(f"fast region growing, all {n} clicks: {t_fast:.3f} s (best of {args.repeat})")
    print(f"  vs truth: IoU {q['iou']:.4f}, dice {q['dice']:.4f}, kappa {q['kappa']:.4f}")

    m = n if args.ref_subset <= 0 else min(args.ref_subset, n)
    sub = clicks[:m]
    t_ref, ref = best_time(lambda: _region_growing_reference(img, sub, **kw), 1)
    if m == n:
        t_ref_all = t_ref
        print(f"strict reference, all {n} clicks: {t_ref:.3f} s")
    else:
        # fixed cost (grey image, noise estimate) once, growth time scaled by clicks
        t_fixed, _ = best_time(lambda: _region_growing_reference(img, sub[:0], **kw), 1)
        t_ref_all = t_fixed + (t_ref - t_fixed) * n / m
        print(
            f"strict reference, {m} of {n} clicks: {t_ref:.3f} s (fixed part {t_fixed:.3f} s)"
            f" -> EXTRAPOLATED to {n} clicks: {t_ref_all:.2f} s (growth time is linear in"
            " clicks: each region grows on its own)"
        )
    fast_sub = fast if m == n else region_growing_labels(img, sub, **kw)
    agree = label_quality(fast_sub, ref)
    print(
        f"agreement fast vs reference on {m} clicks: IoU {agree['iou']:.4f}, "
        f"mean per-region IoU {mean_object_iou(fast_sub, ref, m):.4f}, "
        f"identical labels: {np.array_equal(fast_sub, ref)}"
    )
    print(
        f"speed-up: {t_ref_all / t_fast:.1f}x; target fast < 2 s: "
        f"{'met' if t_fast < 2 else 'MISSED'}"
    )

    t_ff, ff = best_time(lambda: flood_fill_labels(img, clicks), args.repeat)
    iou_ff = label_quality(ff, inst)["iou"]
    print(f"(flood fill, all {n} clicks: {t_ff:.3f} s, IoU vs truth {iou_ff:.4f})")


if __name__ == "__main__":
    main()
