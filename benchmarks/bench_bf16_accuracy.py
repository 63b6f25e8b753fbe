"""bf16 accuracy: final validation IoU of bf16 vs float32 training for the cpu-profile models.

For each model and seed, two short runs on synthetic nuclei start from the same initial weights
and see the same pre-generated batches (the cpu profile's width, batch and learning rate, a
small patch): one in float32, one in bf16-mixed + channels_last (the setting ``precision: auto``
picks where bf16 pays). Validation is seg-bench's (whole validation images, sliding window,
the run's own autocast). bf16 is *within the seed spread* when |mean IoU(bf16) - mean
IoU(fp32)| is at most the fp32 runs' seed range (max - min): the change bf16 makes is then no
larger than what another seed makes. Only models found within it are listed in
``seg_bench.training.precision.BF16_PROVEN``, the models ``auto`` may train in bf16; a test keeps
that list in step with the committed result file.

    python benchmarks/bench_bf16_accuracy.py           # 5 models, 3 seeds, 256 steps
    python benchmarks/bench_bf16_accuracy.py --quick   # 2 seeds, 24 steps (minutes on 2 cores)
    python benchmarks/bench_bf16_accuracy.py --quick --out benchmarks/bf16_accuracy_quick.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_precision import CPU_SETTINGS, short_run  # noqa: E402
from common import (  # noqa: E402
    Budget,
    add_common_args,
    core_models,
    emit,
    machine_info,
    machine_line,
    md_table,
    models_arg,
    setup_torch,
)
from train_loop import (
    cpu_config,  # noqa: E402
    datamodule,  # noqa: E402
    pregenerate,  # noqa: E402
)

from seg_bench.io import atomic_write, write_json  # noqa: E402

SETTINGS = {"fp32": CPU_SETTINGS["fp32"], "bf16": CPU_SETTINGS["bf16+cl"]}


def verdict(fp32: list[float], bf16: list[float]) -> dict:
    """Mean change of IoU with bf16 against the seed range of float32."""
    spread = max(fp32) - min(fp32)
    change = statistics.mean(bf16) - statistics.mean(fp32)
    return {
        "fp32": fp32,
        "bf16": bf16,
        "seed_spread_fp32": spread,
        "change": change,
        "paired": [b - a for a, b in zip(fp32, bf16, strict=True)],
        "within_spread": abs(change) <= spread,
    }


def run_model(model: str, seeds: int, steps: int, patch: int, state: Path | None) -> dict:
    """Both settings for each seed; with ``state``, each run's IoU is kept there as JSON and a
    rerun (after a kill) trains only the runs that have none."""
    cfg = cpu_config(model, patch_size=patch)
    dm = datamodule(cfg)
    ious: dict[str, list[float]] = {k: [] for k in SETTINGS}
    for seed in range(seeds):
        batches = None
        for name, setting in SETTINGS.items():
            path = (
                state / f"{model}__p{patch}__s{steps}__seed{seed}__{name}.json" if state else None
            )
            if path and path.exists():
                ious[name].append(json.loads(path.read_text())["val_iou"])
                continue
            batches = batches or pregenerate(dm, steps, seed=1000 + seed)
            ious[name].append(short_run(cfg, dm, batches, setting, seed))
            if path:
                write_json(
                    path,
                    {
                        "model": model,
                        "seed": seed,
                        "setting": name,
                        "steps": steps,
                        "patch": patch,
                        "val_iou": ious[name][-1],
                    },
                )
    return verdict(ious["fp32"], ious["bf16"])


def render(results: dict[str, dict], seeds: int, steps: int, patch: int, info: dict) -> str:
    rows = []
    for model, r in results.items():
        if "skipped" in r:
            rows.append([model, "-", "-", "-", "-", r["skipped"]])
            continue
        per_seed = {k: "/".join(f"{x:.3f}" for x in r[k]) for k in ("fp32", "bf16")}
        rows.append(
            [
                model,
                f"{statistics.mean(r['fp32']):.3f} ({per_seed['fp32']})",
                f"{statistics.mean(r['bf16']):.3f} ({per_seed['bf16']})",
                f"{r['change']:+.3f}",
                f"{r['seed_spread_fp32']:.3f}",
                "within" if r["within_spread"] else "BEYOND: keep out of BF16_PROVEN",
            ]
        )
    head = ["Model", "IoU fp32", "IoU bf16+cl", "change", "fp32 seed range", "bf16 verdict"]
    return "\n".join(
        [
            "# bf16 vs float32: final validation IoU",
            "",
            f"Machine: {machine_line(info)}; CPU features {info['cpu_features']}.",
            f"Synthetic nuclei, cpu-profile models (width, batch, lr), patch {patch}, "
            f"{steps} optimizer steps, {seeds} seeds; same initial weights and batches per seed.",
            "",
            md_table(head, rows, "lrrrrl"),
            "",
            "A model is *within* when |change of the mean IoU| <= the fp32 seed range.",
        ]
    )


def write_text(path: str, text: str) -> None:
    with atomic_write(Path(path)) as f:
        f.write(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, budget=0)
    ap.add_argument("--models", default=None, help=f"default: {','.join(core_models())}")
    ap.add_argument("--seeds", type=int, default=None, help="default 3 (quick: 2)")
    ap.add_argument("--steps", type=int, default=None, help="default 256 (quick: 24)")
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--out", default=None, help="also write the markdown here")
    ap.add_argument("--state", default=None, help="folder keeping each run's IoU (resumable)")
    args = ap.parse_args(argv)
    setup_torch(args.threads)
    budget = Budget(args.budget)
    models = models_arg(args.models)
    seeds = args.seeds or (2 if args.quick else 3)
    steps = args.steps or (24 if args.quick else 256)
    info = machine_info()
    results: dict[str, dict] = {}
    for model in models:
        if budget.left() <= 0:
            results[model] = {"skipped": "budget"}
            continue
        results[model] = run_model(
            model, seeds, steps, args.patch, Path(args.state) if args.state else None
        )
        r = results[model]
        print(f"{model}: change {r['change']:+.3f}, spread {r['seed_spread_fp32']:.3f}", flush=True)
    md = render(results, seeds, steps, args.patch, info)
    if args.out:
        write_text(args.out, md + "\n")
    beyond = [m for m, r in results.items() if r.get("within_spread") is False]
    headline = {"bf16 beyond the fp32 seed spread": ", ".join(beyond) or "none"}
    emit(args, "bf16_accuracy", "bf16 vs float32 accuracy", md, headline, results, budget)


if __name__ == "__main__":
    main()
