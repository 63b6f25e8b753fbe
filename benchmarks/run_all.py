"""Run every benchmark and write benchmarks/RESULTS.md: the one place for every speed claim.

Each benchmark runs as a subprocess with its share of the time budget (``--budget``; the scripts
size themselves to it) and a hard limit (its budget x 1.5 + 60 s; a benchmark that runs over is
stopped and reported, the others still run). The training benchmarks hand back their markdown
and headline numbers as JSON (``--json``); the older ones (inference, piecewise affine, DSB
metric, region growing, AUROC memory) print text, which goes in verbatim.

RESULTS.md gets a header (date, machine, versions, the exact command, machine load before and
after), a "Headline ratios" section, then one section per benchmark. It is written atomically
(a temporary file renamed over it), so an interrupted run leaves the previous one intact.

    python benchmarks/run_all.py                      # `make perf`: < 20 min on 2 cores
    python benchmarks/run_all.py --quick --out /tmp/RESULTS.md
    python benchmarks/run_all.py --only training,precision
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import machine_info, md_table  # noqa: E402

from seg_bench.io import atomic_write  # noqa: E402

# name, script, budget share (seconds of the default total), flags (full run), flags (--quick),
# kind.
# kind "json": the script sizes itself to --budget and writes its section with --json;
# "text": a fixed-size run whose stdout goes in verbatim.
INFERENCE = "--image-size 1024 --window 256 --slices 100 --volume-size 512".split()
REGION_QUICK = "--size 512 --blobs 80 --ref-subset 10 --repeat 1".split()
BENCHMARKS = [
    ("training", "bench_training.py", 190, [], ["--quick"], "json"),
    ("precision", "bench_precision.py", 240, [], ["--quick"], "json"),
    ("data_pipeline", "bench_data_pipeline.py", 90, [], ["--quick"], "json"),
    ("compile", "bench_compile.py", 180, [], ["--quick"], "json"),
    ("scaling", "bench_scaling.py", 150, [], ["--quick"], "json"),
    # A 1024 px image (whole pass, windows of 256 at three overlaps, with and without TTA) and a
    # 100 x 512 px volume: the sizes the peak-memory figures are quoted for.
    ("inference", "bench_inference.py", 200, INFERENCE, ["--quick", "--no-tta"], "text"),
    ("piecewise_affine", "bench_piecewise_affine.py", 30, ["--quick"], ["--quick"], "text"),
    ("dsb_metric", "bench_dsb_metric.py", 20, [], ["--quick"], "text"),
    ("postprocess", "bench_postprocess.py", 20, [], ["--quick"], "text"),
    ("region_growing", "bench_region_growing.py", 20, [], REGION_QUICK, "text"),
    ("auroc_memory", "bench_auroc_memory.py", 10, ["--quick"], ["--quick"], "text"),
]
CPU_TIME_AWARE = ("training", "precision")  # scripts that accept --cpu-time
TITLES = {
    "inference": "Sliding-window inference (bench_inference.py)",
    "piecewise_affine": "Piecewise-affine augmentation (bench_piecewise_affine.py)",
    "dsb_metric": "DSB 2018 metric (bench_dsb_metric.py)",
    "postprocess": "Post-processing methods, 1000 px, 300 nuclei (bench_postprocess.py)",
    "region_growing": "Region growing for weak labels (bench_region_growing.py)",
    "auroc_memory": "Streaming AUROC memory (bench_auroc_memory.py)",
}
DEFAULT_BUDGET = sum(
    b[2] for b in BENCHMARKS
)  # 1005 s (16.75 min): ~3.25 of the 20 min left for start-ups and overruns


def run_one(name, script, budget, flags, kind, workdir) -> dict:
    json_path = os.path.join(workdir, f"{name}.json")
    cmd = [sys.executable, os.path.join(HERE, script), *flags]
    if kind == "json":
        cmd += ["--budget", f"{budget:.0f}"]
    if kind == "json" or name == "inference":
        cmd += ["--json", json_path]
    limit = budget * 1.5 + 60
    t0 = time.perf_counter()
    print(
        f"[run_all] {name}: {' '.join(shlex.quote(c) for c in cmd[1:])} "
        f"(budget {budget:.0f} s, limit {limit:.0f} s)",
        flush=True,
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=os.getcwd())
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = "timeout"
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    elapsed = time.perf_counter() - t0
    res = {
        "name": name,
        "cmd": cmd,
        "rc": rc,
        "elapsed_s": elapsed,
        "budget_s": budget,
        "stdout": stdout,
        "stderr": stderr,
    }
    if kind == "json" and os.path.exists(json_path) and rc == 0:
        with open(json_path) as f:
            res["json"] = json.load(f)
    print(f"[run_all] {name}: rc {rc}, {elapsed:.0f} s", flush=True)
    return res


def section(res: dict, kind: str) -> str:
    name = res["name"]
    title = res.get("json", {}).get("title") or TITLES.get(name, name)
    cmd = " ".join(
        shlex.quote(os.path.relpath(c) if c.endswith(".py") else c) for c in res["cmd"][1:]
    )
    lines = [
        f"## {title}",
        "",
        f"`python {cmd}` — {res['elapsed_s']:.0f} s (budget {res['budget_s']:.0f} s)",
        "",
    ]
    if res["rc"] != 0:
        err = (res["stderr"] or "").strip().splitlines()[-8:]
        why = "stopped at the time limit" if res["rc"] == "timeout" else f"exit {res['rc']}"
        lines += [f"**Failed ({why}).**", ""]
        if err:
            lines += ["```", *err, "```", ""]
    if "json" in res:
        lines += [res["json"]["markdown"], ""]
    elif res["stdout"].strip():
        text = res["stdout"].rstrip()
        lines += ["```", text, "```", ""]
    return "\n".join(lines)


def headline_table(results: list[dict]) -> str:
    rows = []
    for res in results:
        for key, value in (res.get("json") or {}).get("headline", {}).items():
            rows.append([key, value, res["name"]])
    inf = next((r for r in results if r["name"] == "inference"), None)
    if inf and inf["rc"] == 0:
        path = next((c for c in inf["cmd"] if c.endswith(".json")), None)
        if path and os.path.exists(path):
            with open(path) as f:
                cases = json.load(f)
            for c in cases:
                if c["kind"] == "image" and not c["tta"] and c["window"] and c["overlap"] == 0.25:
                    rows.append(
                        [
                            f"inference {c['size']} px image, window {c['window']}, overlap 0.25",
                            f"{c['mpix_per_s']:.2f} MP/s",
                            "inference",
                        ]
                    )
    if not rows:
        return "(no headline numbers: see the sections below)"
    return md_table(["claim", "value", "benchmark"], rows, "llr")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="every benchmark's quick mode (a few minutes)"
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET,
        help=f"total seconds (default {DEFAULT_BUDGET}), shared in proportion",
    )
    ap.add_argument("--only", default=None, help="comma list of benchmark names")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="training and precision benchmarks time main-thread CPU with 1 torch thread "
        "(for busy/shared machines: ratios hold, absolute speeds are single-core)",
    )
    return ap.parse_args(argv)


def chosen_benchmarks(only: str | None) -> list[tuple]:
    """BENCHMARKS (plus the training comparison on the GPU, where there is one), or ``only``."""
    import torch

    benchmarks = list(BENCHMARKS)
    if torch.cuda.is_available():  # bench_precision adds its GPU rows itself
        gpu = (
            "training_gpu",
            "bench_training.py",
            90,
            ["--device", "cuda", "--no-profile"],
            ["--quick", "--device", "cuda", "--no-profile"],
            "json",
        )
        benchmarks.insert(1, gpu)
    return [b for b in benchmarks if not only or b[0] in only.split(",")]


def run_benchmarks(chosen: list[tuple], args: argparse.Namespace) -> list[dict]:
    """Each benchmark in turn, its budget share scaled to ``--budget``; results with sections."""
    scale = args.budget / DEFAULT_BUDGET
    results = []
    with tempfile.TemporaryDirectory(prefix="seg-bench-perf-") as workdir:
        for name, script, share, full, quick, kind in chosen:
            flags = list(quick if args.quick else full)
            if args.cpu_time and name in CPU_TIME_AWARE:
                flags.append("--cpu-time")
            res = run_one(name, script, share * scale, flags, kind, workdir)
            res["section"] = section(res, kind)
            results.append(res)
    return results


def run_table(args: argparse.Namespace, info: dict, total: float, failed: list[str]) -> str:
    """The table of when, how and on what this run measured."""
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), *sys.argv])
    load_after = round(os.getloadavg()[0], 2)
    busy = (
        " — **busy machine: other processes competed, wall timings are noisy**"
        if max(info["load_avg_1m"] or 0, load_after) > info["cores"] + 0.5
        else ""
    )
    machine = f"{info['cpu']}; {info['cores']} cores available ({info['logical_cpus']} logical)"
    features = (
        f"torch capability {info['torch_cpu_capability']}; "
        f"oneDNN bf16: {info['onednn_bf16']}; {info['cpu_features']}"
    )
    versions = (
        f"python {info['python']}, torch {info['torch']}, lightning {info['lightning']}, "
        f"numpy {info['numpy']}"
    )
    cpu_clock = "main-thread CPU time, 1 torch thread (training, precision)"
    rows = [
        ["date", info["date"]],
        ["mode", "quick (CI-sized, numbers are rough)" if args.quick else "full"],
        ["command", f"`{command}`"],
        ["total time", f"{total / 60:.1f} min (budget {args.budget / 60:.1f} min)"],
        ["machine", f"{machine}; GPU: {info['gpu']}"],
        ["CPU features", features],
        ["versions", versions],
        ["torch threads", str(info["torch_threads"])],
        ["load average (1 min)", f"{info['load_avg_1m']} before, {load_after} after" + busy],
        ["clock", cpu_clock if args.cpu_time else "wall time"],
        ["failed", ", ".join(failed) if failed else "none"],
    ]
    return md_table(["", ""], rows, "ll")


INTRO = (
    "Written by `benchmarks/run_all.py` (`make perf`); do not edit by hand. Every number below "
    "was measured in this run, on this machine; ratios compare variants measured side by side "
    "in the same run."
)
METHOD = (
    "Timing method (training benchmarks): steady state only (first steps of each run dropped), "
    "median of per-step times, variants interleaved in rotating order and ratios taken within a "
    "round. Each benchmark's command and own run time are given under its heading."
)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    chosen = chosen_benchmarks(args.only)
    t_start = time.perf_counter()
    info = machine_info()
    results = run_benchmarks(chosen, args)
    headline = headline_table(results)
    total = time.perf_counter() - t_start
    failed = [r["name"] for r in results if r["rc"] != 0]
    header = ["# seg-bench performance results", "", INTRO, ""]
    header += [run_table(args, info, total, failed), "", METHOD, ""]
    header += ["## Headline ratios", "", headline, ""]
    body = [r["section"] for r in results]
    with atomic_write(Path(args.out)) as f:
        f.write("\n".join(header + body).rstrip() + "\n")
    print(
        f"[run_all] wrote {args.out} in {total / 60:.1f} min; "
        f"failed: {', '.join(failed) or 'none'}",
        flush=True,
    )
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
