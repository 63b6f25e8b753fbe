"""Sliding-window inference benchmark: throughput and peak host memory of
``seg_bench.inference.sliding_window``.

Cases (each in its own subprocess, so every peak RSS is that case's alone):

* image: one S x S image (1024, ``--quick`` 384): a single pass over the whole image, then the
  sliding window (``--window``, 256 / 128 quick) at overlap 0, 0.25 and 0.5; each with and
  without D4 TTA.
* volume: a Z x S x S stack (100 x 512, ``--quick`` 8 x 256) through ``predict_volume``, single
  pass per slice and sliding window at overlap 0.25.

Model: ``create_model("unet", width=0.25)`` (random weights, eval mode), or ``--model tiny`` for a
small plain conv net. Columns:

    tiles   model inputs per image/slice (x8 with TTA)
    work    pixels pushed through the model / image pixels (tile overlap and TTA cost)
    MP/s    image megapixels per second of wall time
    x1      throughput relative to the single pass without TTA
    peak    peak RSS of the worker process (MiB; ru_maxrss), imports and model included
    +peak   growth of the peak RSS during the timed call: the memory inference itself needed,
            output array included (the input is allocated before the baseline)

``--layouts nchw,nhwc`` runs the image cases in both memory layouts (NHWC = channels_last, the
layout a run trains in where ``precision: auto`` measured it faster), x1 against NCHW's single
pass.

Usage: python benchmarks/bench_inference.py [--quick] [--cases image,volume] [--no-tta]
       [--layouts nchw,nhwc]
       [--slices N] [--device cuda] [--precision bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing


def _maxrss_mib() -> float:
    # Linux reports KiB, macOS bytes.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _build_model(name: str, width: float):
    import torch.nn as nn

    if name == "unet":
        try:
            from seg_bench.models import create_model

            return create_model("unet", in_channels=1, classes=1, width=width), f"unet(w={width})"
        except Exception as exc:  # the U-Net not there yet: fall back, say so
            print(f"# unet unavailable ({exc}); using the tiny conv net", file=sys.stderr)

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

    model = nn.Sequential(
        *block(1, 16),
        *block(16, 16),
        nn.MaxPool2d(2),
        *block(16, 32),
        *block(32, 32),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        *block(32, 16),
        nn.Conv2d(16, 1, 1),
    )
    return model, "tiny-conv"


def run_case(case: dict) -> dict:
    """Worker: one case, in this process. Returns the measurements."""
    import numpy as np
    import torch

    from seg_bench.inference.sliding_window import predict_logits, predict_volume, tile_positions

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    model, model_name = _build_model(case["model"], case["width"])
    device = torch.device(case["device"])
    model = model.to(device).eval()
    if case.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    window, overlap, tta = case["window"], case["overlap"], case["tta"]
    kw = dict(window=window, overlap=overlap, tta=tta, batch_size=case["batch_size"])
    if case["precision"]:
        kw["precision"] = case["precision"]
    # Warm up (library init, kernel selection) on a small input, not counted.
    predict_logits(model, torch.zeros(1, 1, 64, 64), window=None)

    s = case["size"]
    if case["kind"] == "image":
        data = torch.rand(1, 1, s, s, generator=torch.Generator().manual_seed(0))
        pixels = s * s
    else:
        data = np.random.default_rng(0).random((case["slices"], s, s), dtype=np.float32)
        pixels = case["slices"] * s * s
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = _maxrss_mib()
    t0 = time.perf_counter()
    if case["kind"] == "image":
        out = predict_logits(model, data, **kw)
    else:
        out = predict_volume(model, data, **kw)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = _maxrss_mib()
    assert tuple(out.shape[-2:]) == (s, s)

    if window is None:
        tiles, tile_px = 1, s * s
    else:
        tiles, tile_px = len(tile_positions((s, s), window, overlap)), window * window
    n_tf = 8 if tta else 1
    return {
        "model": model_name,
        "seconds": seconds,
        "mpix_per_s": pixels / 1e6 / seconds,
        "tiles": tiles * n_tf,
        "work": tiles * tile_px * n_tf / (s * s),
        "peak_mib": peak,
        "delta_mib": peak - base,
        "gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20
        if device.type == "cuda"
        else None,
    }


def _layout_cases(common: dict, args, image: int, window: int) -> list[dict]:
    """The image cases in one memory layout."""
    out = []
    if "image" in args.cases:
        for tta in (False,) if args.no_tta else (False, True):
            out.append(dict(kind="image", size=image, window=None, overlap=0.0, tta=tta, **common))
            for ov in (0.0, 0.25, 0.5):
                out.append(
                    dict(kind="image", size=image, window=window, overlap=ov, tta=tta, **common)
                )
    return out


def cases(args) -> list[dict]:
    quick = args.quick
    image = args.image_size or (384 if quick else 1024)
    window = args.window or (128 if quick else 256)
    slices = args.slices or (8 if quick else 100)
    vol = args.volume_size or (256 if quick else 512)
    common = dict(
        model=args.model,
        width=args.width,
        device=args.device,
        batch_size=args.batch_size,
        threads=args.threads,
        precision=args.precision,
    )
    out = []
    layouts = [layout == "nhwc" for layout in args.layouts.split(",")]
    for channels_last in layouts:
        out += _layout_cases(dict(common, channels_last=channels_last), args, image, window)
    if "volume" in args.cases:
        common["channels_last"] = layouts[0]
        for win in (None, window):
            out.append(
                dict(
                    kind="volume",
                    size=vol,
                    slices=slices,
                    window=win,
                    overlap=0.25,
                    tta=False,
                    **common,
                )
            )
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="384 px image, 8 x 256 px volume, window 128"
    )
    p.add_argument("--cases", default="image,volume", help="comma list of: image, volume")
    p.add_argument("--model", default="unet", choices=["unet", "tiny"])
    p.add_argument("--width", type=float, default=0.25, help="U-Net width multiplier")
    p.add_argument("--window", type=int, default=None, help="tile size (default 256, quick 128)")
    p.add_argument("--image-size", type=int, default=None, help="image side (1024, quick 384)")
    p.add_argument("--slices", type=int, default=None, help="volume depth (100, quick 8)")
    p.add_argument("--volume-size", type=int, default=None, help="slice side (512, quick 256)")
    p.add_argument("--no-tta", action="store_true", help="skip the TTA cases")
    p.add_argument(
        "--layouts",
        default="nchw",
        help="comma list of nchw, nhwc (channels_last): image cases run in each, x1 against "
        "the first layout's single pass",
    )
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default=None, help="e.g. bf16 (autocast)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        print(json.dumps(run_case(json.loads(args.worker))))
        return

    args.cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    results = []
    head = (
        f"{'case':<7} {'layout':<6} {'size':>11} {'window':>6} {'ovl':>4} {'tta':>3} "
        f"{'tiles':>5} {'work':>5} "
        f"{'time s':>7} {'MP/s':>7} {'x1':>5} {'peak':>6} {'+peak':>6}"
    )
    gpu = args.device.startswith("cuda")
    if gpu:
        head += f" {'gpu MiB':>7}"
    print(head)
    print("-" * len(head))
    baseline = {}
    for case in cases(args):
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(case)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"case {case} failed")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res.update(case)
        results.append(res)
        key = (case["kind"], case["size"])
        if case["window"] is None and not case["tta"] and key not in baseline:
            baseline[key] = res["mpix_per_s"]
        size = f"{case['size']}x{case['size']}"
        if case["kind"] == "volume":
            size = f"{case['slices']}x{size}"
        ovl = "-" if case["window"] is None else f"{case['overlap']:.2f}"
        rel = res["mpix_per_s"] / baseline[key] if key in baseline else float("nan")
        layout = "nhwc" if case["channels_last"] else "nchw"
        line = (
            f"{case['kind']:<7} {layout:<6} {size:>11} {str(case['window'] or 'whole'):>6} "
            f"{ovl:>4} "
            f"{'yes' if case['tta'] else 'no':>3} {res['tiles']:>5} {res['work']:>5.2f} "
            f"{res['seconds']:>7.2f} {res['mpix_per_s']:>7.3f} {rel:>5.2f} "
            f"{res['peak_mib']:>6.0f} {res['delta_mib']:>6.0f}"
        )
        if gpu:
            line += f" {res['gpu_peak_mib']:>7.0f}"
        print(line, flush=True)
    threads = args.threads or "default"
    print(
        f"\nmodel {results[0]['model'] if results else args.model}, device {args.device}, "
        f"batch_size {args.batch_size}, precision {args.precision or 'fp32'}, threads {threads}; "
        "volume overlap 0.25, logits blended (see seg_bench.inference.sliding_window)"
    )
    if args.json:
        from pathlib import Path

        from seg_bench.io import write_json

        write_json(Path(args.json), results)


if __name__ == "__main__":
    main()
