"""Benchmark: every named post-processing method on a 1000 x 1000 image with 300 nuclei.

The image is seeded: 300 discs (radius 6 to 14 px, many touching), a foreground probability
made from them (blurred, with noise, in [0, 1]) and the seed map a ``distance`` network would
give (each nucleus' normalised distance to its own boundary, blurred). Every method of
``seg_bench.inference.instances.POSTPROCESSORS`` runs with its default parameters (plus
``min_size`` 15), and the seeded watershed once more with ``grow`` 8 (any grow > 0 adds an
h-maxima transform of the seed map; 8 stands for them); the median wall time over ``--repeat``
runs, each with the seed map's peaks computed afresh, is printed beside the objects found and
the DSB score against the discs, and checked against the 0.5 s target. Then the seeded
watershed is tuned on four crops twice, keeping each seed map's peaks between grid points and
recomputing them, to show what keeping them saves.

    python benchmarks/bench_postprocess.py                 # 1000 x 1000, 300 nuclei, 5 runs
    python benchmarks/bench_postprocess.py --quick         # 1 run
    python benchmarks/bench_postprocess.py --out benchmarks/RESULTS_postprocess.md
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone

import numpy as np
from scipy import ndimage as ndi

from seg_bench.hardware import hardware, hardware_label
from seg_bench.inference import instances
from seg_bench.inference.instances import POSTPROCESSORS, clear_seed_peaks, run_method
from seg_bench.inference.tuning import tune
from seg_bench.io import atomic_write
from seg_bench.metrics.instance import dsb_average_precision
from seg_bench.training.targets import distance_target

TARGET_S = 0.5


def nuclei(size: int, n: int, seed: int) -> np.ndarray:
    """``n`` discs at seeded random places (later ones cover earlier ones where they meet)."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(6, 14)
        y0, y1 = max(0, int(cy - r)), min(size, int(cy + r) + 1)
        x0, x1 = max(0, int(cx - r)), min(size, int(cx + r) + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        lab[y0:y1, x0:x1][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    # Objects cut into pieces by later discs keep their largest piece's label only.
    return lab


def network_like(lab: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    fg = ndi.gaussian_filter((lab > 0).astype(np.float32), 1.5)
    fg = np.clip(0.05 + 0.9 * fg + rng.normal(0, 0.05, fg.shape), 0, 1).astype(np.float32)
    seeds = np.clip(ndi.gaussian_filter(distance_target(lab), 1.0), 0, 1).astype(np.float32)
    return fg, seeds


def run(size: int, n: int, repeat: int, seed: int) -> list[dict]:
    lab = nuclei(size, n, seed)
    fg, seeds = network_like(lab, seed)
    rows = []
    small_fg, small_seeds = fg[:64, :64], seeds[:64, :64]
    # The seeded watershed also with the largest grow of its grid: its most costly setting.
    variants = [(name, {}) for name in POSTPROCESSORS] + [("seeded_watershed", {"grow": 8})]
    for name, params in variants:
        run_method(name, small_fg, small_seeds)  # imports and first-call set-up, untimed
        times = []
        for _ in range(repeat):
            clear_seed_peaks()  # a new image's peaks: timed cold, as in prediction
            t0 = time.perf_counter()
            out = run_method(name, fg, seeds, min_size=15, **params)
            times.append(time.perf_counter() - t0)
        rows.append(
            {
                "method": name + "".join(f" ({k} {v})" for k, v in params.items()),
                "median_s": float(np.median(times)),
                "objects": int(out.max()),
                "map": dsb_average_precision(lab, out)[0],
            }
        )
    return rows


def tune_timing(size: int, n: int, seed: int, crops: int = 4) -> dict:
    """Seconds to tune the seeded watershed on ``crops`` 256 x 256 crops of the image, with
    the seed maps' peaks kept between grid points and recomputed at each (``PEAK_CACHE_BYTES``
    0), and whether both found the same parameters."""
    lab = nuclei(size, n, seed)
    fg, seeds = network_like(lab, seed)
    step = (size - 256) // max(crops - 1, 1)
    boxes = [np.s_[i * step : i * step + 256, i * step : i * step + 256] for i in range(crops)]
    images = [(fg[b], seeds[b], lab[b]) for b in boxes]

    def score(truth, pred):
        return dsb_average_precision(truth, pred)[0]

    kept_bytes, seconds, found = instances.PEAK_CACHE_BYTES, [], []
    try:
        for limit in (kept_bytes, 0):
            instances.PEAK_CACHE_BYTES = limit
            clear_seed_peaks()
            t0 = time.perf_counter()
            found.append(tune("seeded_watershed", images, score))
            seconds.append(time.perf_counter() - t0)
    finally:
        instances.PEAK_CACHE_BYTES = kept_bytes
    return {
        "crops": crops,
        "kept_s": seconds[0],
        "again_s": seconds[1],
        "same": found[0] == found[1],
    }


def report(rows: list[dict], tuning: dict, size: int, n: int, repeat: int, command: str) -> str:
    label = hardware_label(hardware())
    lines = [
        "# Post-processing speed (benchmarks/bench_postprocess.py)",
        "",
        f"- machine: {label}",
        f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- command: `{command}`",
        f"- image: {size} x {size} px, {n} seeded nuclei (radius 6-14 px, many touching); "
        f"median of {repeat} run(s) per method; target < {TARGET_S} s",
        "",
        "| method | median time (s) | < 0.5 s | objects found | mAP vs the discs |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ok = "yes" if r["median_s"] < TARGET_S else "**no**"
        lines.append(
            f"| {r['method']} | {r['median_s']:.3f} | {ok} | {r['objects']} | {r['map']:.3f} |"
        )
    lines += [
        "",
        f"Tuning the seeded watershed (its grid, grown where best at an end) on {tuning['crops']} "
        f"256 x 256 crops: {tuning['kept_s']:.1f} s with each seed map's h-maxima kept between "
        f"grid points, {tuning['again_s']:.1f} s recomputing them "
        f"({tuning['again_s'] / tuning['kept_s']:.1f}x); same parameters found: "
        f"{'yes' if tuning['same'] else '**no**'}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--nuclei", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="one run per method")
    ap.add_argument("--out", help="also write the table to this Markdown file (atomically)")
    args = ap.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    rows = run(args.size, args.nuclei, repeat, args.seed)
    tuning = tune_timing(args.size, args.nuclei, args.seed)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/bench_postprocess.py", *given])
    text = report(rows, tuning, args.size, args.nuclei, repeat, command)
    print(text, end="")
    if args.out:
        with atomic_write(args.out) as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
