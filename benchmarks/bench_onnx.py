"""Benchmark: ONNX Runtime against PyTorch on the CPU, one whole-image forward pass.

For each of the cpu-profile models (unet, resunet, segnet, tiramisu56 at width 0.25 and
smp-unet-resnet18, whose width is fixed) the network is exported with ``seg-bench export``'s
ONNX path (verified to 1e-4) and both engines predict the same 1024 x 1024 image. Each
(model, engine) runs in a fresh process so its peak resident memory is its own; speed is the
median of ``--repeats`` timed passes after one warm-up, in megapixels per second. The ratio is
ORT / PyTorch from the same run.

    python benchmarks/bench_onnx.py            # 1024 x 1024, 3 repeats
    python benchmarks/bench_onnx.py --quick    # 256 x 256, 1 repeat
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from seg_bench.hardware import hardware, hardware_label
from seg_bench.inference import export as ex
from seg_bench.models import create_model

MODELS = [
    ("unet", 0.25),
    ("resunet", 0.25),
    ("segnet", 0.25),
    ("tiramisu56", 0.25),
    ("smp-unet-resnet18", 1.0),
]


def _measure(engine: str, name: str, width: float, onnx: str, size: int, repeats: int, q):
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((1, 1, size, size)).astype(np.float32)
    if engine == "torch":
        net = create_model(name, in_channels=1, classes=1, width=width).eval()

        def run():
            with torch.inference_mode():
                net(torch.from_numpy(x))
    else:
        from seg_bench.inference.onnx_engine import session_runner

        runner = session_runner(Path(onnx))

        def run():
            runner(x)

    run()  # warm-up: allocator, ORT graph optimisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    q.put((size * size / 1e6 / statistics.median(times), peak_rss_mib()))


def peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM). ru_maxrss would not do: Linux carries the parent's
    peak over fork and exec, so every child would report the exporting parent's."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(engine, name, width, onnx, size, repeats) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_measure, args=(engine, name, width, onnx, size, repeats, q))
    p.start()
    result = q.get()
    p.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--size", type=int)
    ap.add_argument("--repeats", type=int)
    args = ap.parse_args()
    size = args.size or (256 if args.quick else 1024)
    repeats = args.repeats or (1 if args.quick else 3)
    machine = hardware_label(hardware())
    print(
        f"Machine: {machine}; torch {torch.__version__}, threads {torch.get_num_threads()}; "
        f"image {size} x {size}, median of {repeats}\n"
    )
    print(
        "| model | params | max abs diff p | PyTorch MP/s | ORT MP/s | ORT / PyTorch "
        "| PyTorch peak RSS MiB | ORT peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, width in MODELS:
            net = create_model(name, in_channels=1, classes=1, width=width).eval()
            geo = ex.geometry(net)
            meta = {"hparams": {"model": name, "width": width}, "geometry": geo}
            onnx = Path(tmp) / f"{name}.onnx"
            result = ex.export_onnx(net, onnx, ex.example_inputs(1, geo), meta)
            if result.error:
                print(f"| {name} | - | {result.error} | | | | | |")
                continue
            params = sum(p.numel() for p in net.parameters()) / 1e6
            t_speed, t_mem = measure("torch", name, width, str(onnx), size, repeats)
            o_speed, o_mem = measure("onnxruntime", name, width, str(onnx), size, repeats)
            print(
                f"| {name} (width {width}) | {params:.2f} M | {result.max_abs_diff:.1e} "
                f"| {t_speed:.2f} | {o_speed:.2f} | {o_speed / t_speed:.2f} | {t_mem:.0f} "
                f"| {o_mem:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
