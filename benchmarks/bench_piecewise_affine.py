"""Piecewise affine augmentation: albumentations vs scikit-image vs seg_bench's FastPiecewiseAffine.

Timing: one (image float32 HxWx3, mask uint8, instances int32) sample through each, median of
several calls in this one run, 4x4 grid:
  * ``A.PiecewiseAffine``   albumentations (2.x builds its map point by point in Python)
  * ``skimage``             ``PiecewiseAffineTransform`` + ``warp`` (what albumentations 1.x ran)
  * ``FastPiecewiseAffine`` ours: closed-form map on the grid + one ``cv2.remap`` per target

Agreement, for the SAME control-point displacements:
  * ours vs skimage, cells split like skimage's Delaunay (``grid_diagonals``): the maps and the
    warped smooth image / label image should agree to interpolation error;
  * ours with its default checkerboard split vs skimage: how much the diagonal choice matters;
  * ours vs albumentations 2.x's map, driven with the same displacements: albumentations 2.x
    interpolates the points by inverse-distance weighting instead of by triangles, so this is
    expected to disagree; its zero-displacement map shows it is not even the identity.

Run: ``python benchmarks/bench_piecewise_affine.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import albumentations as A
import cv2
import numpy as np
import skimage
from albumentations.augmentations.geometric import functional as fgeometric
from skimage.transform import PiecewiseAffineTransform, warp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common, which adds the repo
from common import median_time  # noqa: E402

from seg_bench.data.augment.piecewise import (  # noqa: E402
    FastPiecewiseAffine,
    grid_diagonals,
    piecewise_affine_maps,
    regular_grid,
    remap_image,
    remap_labels,
)

GRID = 4
SCALE = 0.04  # jitter std as a fraction of the image side


def smooth_image(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) * (256.0 / size)
    planes = [np.sin(xx / 9 + k) * np.cos(yy / 7 - k) * 0.5 + 0.5 for k in range(3)]
    return np.stack(planes, axis=-1).astype(np.float32)


def disc_labels(size: int, n: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    labels = np.zeros((size, size), np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.integers(0, size, 2)
        r = rng.integers(size // 40 + 2, size // 12 + 3)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return labels


def skimage_transform(src: np.ndarray, dst: np.ndarray) -> PiecewiseAffineTransform:
    if hasattr(PiecewiseAffineTransform, "from_estimate"):
        return PiecewiseAffineTransform.from_estimate(src.reshape(-1, 2), dst.reshape(-1, 2))
    tform = PiecewiseAffineTransform()
    tform.estimate(src.reshape(-1, 2), dst.reshape(-1, 2))
    return tform


def skimage_sample(image, mask, instances, seed):
    size = image.shape[0]
    src, dst = displacements(size, seed)
    tform = skimage_transform(src, dst)
    return (
        warp(image, tform, order=1, mode="edge", preserve_range=True).astype(np.float32),
        warp(mask, tform, order=0, mode="edge", preserve_range=True).astype(np.uint8),
        warp(instances, tform, order=0, mode="edge", preserve_range=True).astype(np.int32),
    )


def displacements(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    src = regular_grid((size, size), GRID, GRID)
    jitter = np.random.default_rng(seed).normal(0, SCALE * size, src.shape)
    return src, np.clip(src + jitter, 0, size - 1)


class _GivenJitter:
    """Stands in for the generator albumentations draws its jitter from: returns ours."""

    def __init__(self, dxy: np.ndarray):
        self.dxy = dxy

    def normal(self, loc, scale, size):
        assert tuple(size) == self.dxy.shape
        return self.dxy[..., ::-1].copy()  # albumentations reads [..., 0] as y, [..., 1] as x


def albumentations_maps(size: int, dxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return fgeometric.create_piecewise_affine_maps(
        (size, size), (GRID, GRID), 1.0, True, _GivenJitter(dxy)
    )


def timing(size: int, repeats_slow: int, repeats_fast: int) -> None:
    image, instances = smooth_image(size), disc_labels(size)
    mask = (instances > 0).astype(np.uint8)
    targets = {"instances": "mask"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "This augmenter is very slow"
        albu = A.Compose(
            [A.PiecewiseAffine(scale=SCALE, nb_rows=GRID, nb_cols=GRID, p=1)],
            additional_targets=targets,
            seed=0,
        )
    ours = A.Compose(
        [FastPiecewiseAffine(scale=(SCALE, SCALE), nb_rows=GRID, nb_cols=GRID, p=1)],
        additional_targets=targets,
        seed=0,
    )
    seeds = iter(range(10**6))
    t_albu = median_time(
        lambda: albu(image=image, mask=mask, instances=instances), repeats_slow, warmup=0
    )
    t_sk = median_time(
        lambda: skimage_sample(image, mask, instances, next(seeds)), repeats_slow, warmup=0
    )
    t_ours = median_time(lambda: ours(image=image, mask=mask, instances=instances), repeats_fast)
    print(
        f"{size:>4}x{size:<4} {t_albu * 1e3:>12.1f} {t_sk * 1e3:>10.1f} {t_ours * 1e3:>10.2f}"
        f" {t_albu / t_ours:>10.0f}x {t_sk / t_ours:>10.0f}x"
    )


def agreement(size: int, trials: int, albu_trials: int) -> None:
    image, labels = smooth_image(size), disc_labels(size)
    rows = []
    for seed in range(trials):
        src, dst = displacements(size, 100 + seed)
        tform = skimage_transform(src, dst)
        ref_img = warp(image, tform, order=1, mode="edge", preserve_range=True).astype(np.float32)
        ref_lab = warp(labels, tform, order=0, mode="edge", preserve_range=True).astype(np.int32)
        yy, xx = np.mgrid[0:size, 0:size]
        ref_xy = tform(np.stack([xx.ravel(), yy.ravel()], 1)).reshape(size, size, 2)
        matched = piecewise_affine_maps(
            (size, size), src, dst, grid_diagonals(tform._tesselation.simplices, GRID, GRID)
        )
        default = piecewise_affine_maps((size, size), src, dst)
        row = [np.abs(np.stack(matched, -1) - ref_xy).max()]
        for mx, my in (matched, default):
            row.append(np.abs(remap_image(image, mx, my) - ref_img).mean())
            row.append((remap_labels(labels, mx, my) == ref_lab).mean())
        rows.append(row)
    r = np.mean(rows, axis=0)
    print(
        f"  {size}x{size}, {trials} random displacement sets (std {SCALE} x side), "
        "ours vs skimage:\n"
        f"    same cell diagonals as skimage : map max |diff| {r[0]:.1e} px, "
        f"image mean |diff| {r[1]:.1e}, labels equal {r[2]:.2%}\n"
        f"    our default (checkerboard)     : image mean |diff| {r[3]:.1e}, "
        f"labels equal {r[4]:.2%}"
    )
    if albu_trials == 0:
        return
    src = regular_grid((size, size), GRID, GRID)
    mx, my = albumentations_maps(size, np.zeros_like(src))
    yy, xx = np.mgrid[0:size, 0:size]
    off = np.hypot(mx - xx, my - yy)
    print(
        f"    albumentations {A.__version__}, zero displacement: map moves pixels by "
        f"{off.mean():.1f} px on average, {off.max():.1f} px at most (identity would be 0)"
    )
    for seed in range(albu_trials):
        src, dst = displacements(size, 100 + seed)
        tform = skimage_transform(src, dst)
        ref_img = warp(image, tform, order=1, mode="edge", preserve_range=True).astype(np.float32)
        ref_lab = warp(labels, tform, order=0, mode="edge", preserve_range=True).astype(np.int32)
        ax, ay = albumentations_maps(size, dst - src)
        ours = piecewise_affine_maps(
            (size, size), src, dst, grid_diagonals(tform._tesselation.simplices, GRID, GRID)
        )
        a_img = remap_image(image, ax, ay)
        equal = (remap_labels(labels, ax, ay) == remap_labels(labels, *ours)).mean()
        print(
            f"    albumentations vs ours, same displacements #{seed}: "
            f"map mean |diff| {np.hypot(ax - ours[0], ay - ours[1]).mean():.1f} px, "
            f"image mean |diff| {np.abs(a_img - remap_image(image, *ours)).mean():.1e}, "
            f"labels equal {equal:.2%}"
            f" (albumentations vs skimage: image {np.abs(a_img - ref_img).mean():.1e}, "
            f"labels {(remap_labels(labels, ax, ay) == ref_lab).mean():.2%})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats and trials (about a third of the time)"
    )
    args = parser.parse_args()
    slow, fast, trials, albu_trials = (1, 5, 2, 1) if args.quick else (3, 20, 5, 2)
    cv2.setNumThreads(1)  # like a DataLoader worker; also fairer on a shared machine
    print(
        f"albumentations {A.__version__}, scikit-image {skimage.__version__}, "
        f"opencv {cv2.__version__}, numpy {np.__version__}; cv2 threads 1, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"grid {GRID}x{GRID}, jitter std {SCALE} x side; median ms per sample "
        f"(image float32 x3 + mask + int32 instances); A.PiecewiseAffine and skimage "
        f"{slow} calls, ours {fast} (after a warm-up call)"
    )
    print(
        f"{'size':<9} {'A.Piecewise':>12} {'skimage':>10} {'ours':>10} {'vs A.':>11} "
        f"{'vs skimage':>11}"
    )
    for size in (256, 512):
        timing(size, slow, fast)
    print("agreement (same control points and displacements):")
    for size in (256, 512):
        agreement(size, trials, albu_trials if size == 256 or not args.quick else 0)


if __name__ == "__main__":
    main()
