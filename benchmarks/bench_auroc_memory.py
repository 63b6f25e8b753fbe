"""Benchmark: streaming binned AUROC over a large volume in constant memory.

Generates a synthetic (slices x size x size) probability volume slice by slice (blocky
foreground, noisy sigmoid probabilities), feeds every slice to
``seg_bench.metrics.streaming.BinnedROC`` and never holds more than one slice. Reports

* the peak resident memory of the process (``resource.getrusage``: the whole process,
  including the torch import) before and after streaming, and the peak of numpy
  allocations during streaming (``tracemalloc``), against the size of the volume and the
  memory an exact AUROC over the whole volume would need;
* the binned AUROC against the exact (threshold-free) AUROC on a random subsample of
  voxels drawn while streaming, both on the same subsample (pure binning error) and
  full-volume binned vs subsample exact (binning + sampling error).

Seeded: the same arguments give the same volume and numbers.

    python benchmarks/bench_auroc_memory.py            # 100 x 1024 x 1024
    python benchmarks/bench_auroc_memory.py --quick    # 10 x 256 x 256
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import torch

from seg_bench.metrics.roc import probability_histograms, roc_auc_binned, roc_auc_exact
from seg_bench.metrics.streaming import BinnedROC


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_slice(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocky foreground (~30 %) and probabilities = sigmoid(signal + noise), float32."""
    cells = max(1, size // 32)
    coarse = rng.random((cells, cells), dtype=np.float32) < 0.3
    target = np.repeat(np.repeat(coarse, size // cells, axis=0), size // cells, axis=1)
    logits = rng.standard_normal((size, size), dtype=np.float32)
    logits += np.where(target, np.float32(1.6), np.float32(-0.4))
    probs = 1.0 / (1.0 + np.exp(-logits))
    return probs, target


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--bins", type=int, default=10_000)
    ap.add_argument(
        "--subsample",
        type=int,
        default=2_000_000,
        help="voxels drawn (uniformly, per slice) for the exact AUROC",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="10 x 256 x 256, 100k subsample")
    args = ap.parse_args(argv)
    if args.quick:
        args.slices, args.size, args.subsample = 10, 256, 100_000
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    n_voxels = args.slices * args.size * args.size
    per_slice = max(1, args.subsample // args.slices)

    metric = BinnedROC(bins=args.bins)
    warm_p, warm_t = make_slice(np.random.default_rng(12345), 64)
    BinnedROC(bins=args.bins).update(torch.from_numpy(warm_p), torch.from_numpy(warm_t))
    rss_before = peak_rss_mib()
    tracemalloc.start()
    sample_p, sample_t = [], []
    t0 = time.perf_counter()
    for _ in range(args.slices):
        probs, target = make_slice(rng, args.size)
        metric.update(torch.from_numpy(probs), torch.from_numpy(target))
        idx = rng.integers(0, probs.size, per_slice)
        sample_p.append(probs.ravel()[idx])
        sample_t.append(target.ravel()[idx])
        del probs, target
    elapsed = time.perf_counter() - t0
    _, numpy_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = peak_rss_mib()
    result = metric.compute()

    sample_p = np.concatenate(sample_p)
    sample_t = np.concatenate(sample_t)
    exact_sub = roc_auc_exact(sample_p, sample_t)
    binned_sub = roc_auc_binned(*probability_histograms(sample_p, sample_t, bins=args.bins))

    volume_mib = n_voxels * (4 + 1) / 2**20  # float32 probabilities + bool targets
    # argsort indices (8 B) + sorted scores (4 B) + sorted targets (1 B) on top of the data
    exact_mib = n_voxels * (4 + 1 + 8 + 4 + 1) / 2**20
    state_kib = (metric.hist_pos.numel() + metric.hist_neg.numel()) * 8 / 1024

    print(
        f"volume: {args.slices} x {args.size} x {args.size} = {n_voxels:,} voxels "
        f"({volume_mib:,.0f} MiB as float32 + bool), streamed slice by slice, "
        f"{args.bins} bins, seed {args.seed}"
    )
    print(f"time: {elapsed:.2f} s ({n_voxels / elapsed / 1e6:.1f} M voxels/s incl. generation)")
    print(f"metric state: {state_kib:.0f} KiB (two int64 histograms), independent of volume size")
    print(
        f"peak RSS: {rss_before:,.0f} MiB before streaming (imports, torch), "
        f"{rss_after:,.0f} MiB after -> growth {rss_after - rss_before:,.0f} MiB"
    )
    print(
        f"peak numpy allocations while streaming (tracemalloc): {numpy_peak / 2**20:,.1f} MiB "
        f"(one slice + the {sample_p.size:,}-voxel subsample)"
    )
    print(
        f"an exact AUROC over the whole volume would hold ~{exact_mib:,.0f} MiB "
        f"(scores, targets, sort indices and sorted copies)"
    )
    print(f"binned AUROC, whole volume:       {result['auroc']:.6f}")
    print(f"exact AUROC, {sample_p.size:,}-voxel subsample: {exact_sub:.6f}")
    print(
        f"binned AUROC, same subsample:     {binned_sub:.6f}  "
        f"-> binning error {abs(binned_sub - exact_sub):.2e} (target <= 1e-3)"
    )
    print(
        f"whole-volume binned vs subsample exact: {abs(result['auroc'] - exact_sub):.2e} "
        f"(binning + sampling error)"
    )


if __name__ == "__main__":
    main()
