"""Precision: float32 vs bf16 autocast vs bf16 + channels_last, speed and accuracy.

Per core architecture at the cpu profile (synthetic nuclei, patch 128, batch 8, width 0.25):

* step time of the hand-written training step (:class:`common.HandLoop`; bench_training.py shows
  Lightning runs at the loop's speed) in each setting, on the same pre-generated batches, the
  settings interleaved in rounds (rotating order) with the first steps of every run dropped;
  on CPU: ``32-true``, ``bf16-mixed``, ``bf16-mixed`` + channels_last; with CUDA also
  ``32-true``, ``16-mixed``, ``bf16-mixed`` on the GPU;
* the final validation IoU of a short run in each setting: the cpu profile's epochs (``--epochs``)
  at a small patch (``--iou-patch``, 64) over the same pre-generated batches, from the same
  initial weights, for ``--seeds`` (2) seeds; validation is seg-bench's (whole 256 px val images,
  sliding window with the training patch, the setting's autocast). For each seed the settings
  differ only in arithmetic, so the paired change |IoU(setting) - IoU(fp32)| is compared with the
  noise of such short runs, taken as the larger of (a) the fp32 seed-to-seed spread and (b) the
  paired |IoU(bf16) - IoU(bf16 + channels_last)|: the same precision, only a different memory
  layout and so a different summation order, i.e. what mere rounding differences do to the
  result. A change beyond both is marked (!).

A CPU setting more than ``SLOWER`` times slower than fp32 in a one-step probe (bf16 on a CPU
without native bf16 instructions, where oneDNN emulates it: ~10-20x on AVX2) is reported from
that probe alone and left out of the rounds and the IoU runs: it would never be chosen, and
timing it properly would spend the whole budget on it.

    python benchmarks/bench_precision.py            # 4 models, ~5 min on 2 cores
    python benchmarks/bench_precision.py --quick    # unet, 1 seed, 1 epoch
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    Budget,
    add_common_args,
    clock_name,
    core_models,
    emit,
    flat,
    machine_info,
    machine_line,
    md_table,
    models_arg,
    paired_ratio,
    rounds,
    setup_torch,
    stats,
    steps_for,
)
from train_loop import (  # noqa: E402
    HandLoop,
    batch_loader,
    cpu_config,
    datamodule,
    make_model,
    pregenerate,
    profile_precision,
)

# name -> (device, Lightning precision, channels_last)
CPU_SETTINGS = {
    "fp32": ("cpu", "32-true", False),
    "bf16": ("cpu", "bf16-mixed", False),
    "bf16+cl": ("cpu", "bf16-mixed", True),
}
SLOWER = 2.0
GPU_SETTINGS = {
    "cuda fp32": ("cuda", "32-true", False),
    "cuda 16-mixed": ("cuda", "16-mixed", False),
    "cuda bf16": ("cuda", "bf16-mixed", False),
}


def step_times(cfg, dm, batches, setting, warmup, seed) -> list[float]:
    device, precision, cl = setting
    model = make_model(cfg, dm, seed=seed, device=device, channels_last=cl)
    return HandLoop(cfg, model, precision, device, cl).run(batch_loader(batches))[warmup:]


def val_iou(model, dm, window: int, overlap: float, device: str, precision: str) -> float:
    """Foreground IoU pooled over the validation images (seg-bench's sliding-window validation)."""
    from seg_bench.inference.outputs import classes_from_logits
    from seg_bench.inference.sliding_window import predict_logits

    inter = union = 0
    for batch in dm.val_dataloader():
        logits = predict_logits(
            model, batch["image"].to(device), window=window, overlap=overlap,
            precision=None if precision == "32-true" else precision,
        )  # fmt: skip
        pred = classes_from_logits(logits).cpu() > 0
        truth = batch["mask"] > 0
        inter += int((pred & truth).sum())
        union += int((pred | truth).sum())
    return inter / union if union else 1.0


def short_run(cfg, dm, batches, setting, seed) -> float:
    device, precision, cl = setting
    model = make_model(cfg, dm, seed=seed, device=device, channels_last=cl)
    loop = HandLoop(cfg, model, precision, device, cl)
    for batch in batches:
        loop.step(batch)
    return val_iou(model, dm, dm.patch_size, cfg.overlap, device, precision)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, budget=330, cpu_time=True)
    ap.add_argument(
        "--models",
        default=None,
        help=f"comma list (default: the cpu profile's bench models {','.join(core_models())}; quick: unet)",
    )
    ap.add_argument("--rounds", type=int, default=None, help="timing rounds (default 2)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of the IoU runs (default: the profile's; quick 1)",
    )
    ap.add_argument(
        "--seeds", type=int, default=None, help="seeds of the IoU runs (default 2, quick 1)"
    )
    ap.add_argument("--iou-patch", type=int, default=64, help="patch size of the IoU runs")
    ap.add_argument("--no-iou", action="store_true", help="step times only")
    args = ap.parse_args(argv)
    setup_torch(args.threads, args.cpu_time)
    import torch

    budget = Budget(args.budget)
    models = models_arg(args.models, ("unet",) if args.quick else None)
    n_rounds = args.rounds or 2
    epochs = args.epochs or (1 if args.quick else cpu_config(models[0]).max_epochs)
    seeds = args.seeds or (1 if args.quick else 2)
    settings = dict(CPU_SETTINGS)
    if torch.cuda.is_available():
        settings.update(GPU_SETTINGS)
    info = machine_info()
    cfg0 = cpu_config(models[0])
    dm = datamodule(cfg0)
    max_steps = 3 if args.quick else 8
    pool = pregenerate(dm, args.warmup + max_steps, seed=args.seed)
    print(
        f"# precision, cpu profile patch {cfg0.patch_size}, batch {cfg0.batch_size}, width {cfg0.width}, clock: {clock_name()}\n# {machine_line(info)}",
        flush=True,
    )

    # IoU runs: small patch, the profile's epoch length, the same batches for every setting.
    iou_cfg0 = cpu_config(models[0], patch_size=args.iou_patch)
    iou_dm = datamodule(iou_cfg0)
    iou_steps = epochs * -(-iou_cfg0.samples_per_epoch // iou_cfg0.batch_size)
    iou_batches = {s: pregenerate(iou_dm, iou_steps, seed=1000 + s) for s in range(seeds)}

    rows, iou_rows, data, headline = [], [], {}, {}
    speedups = []
    for i, name in enumerate(models):
        cfg = cpu_config(name)
        if budget.left() <= 0:
            n_speed = sum(k not in ("fp32", "cuda fp32") for k in settings)
            rows.append([name, "skipped: budget", *["-"] * (len(settings) + n_speed)])
            continue
        probe = {
            k: step_times(cfg, dm, pool[:2], st, 1, args.seed)[-1] for k, st in settings.items()
        }
        slow = [k for k in CPU_SETTINGS if k != "fp32" and probe[k] > SLOWER * probe["fp32"]]
        timed = {k: st for k, st in settings.items() if k not in slow}
        run_iou = not args.no_iou and not slow
        # Budget: timing takes ~ rounds x sum of step times x steps, IoU ~ seeds x the same x
        # iou_steps / 3.5 (patch 64 is about 4x cheaper than 128).
        round_s = sum(probe[k] for k in timed)
        left = budget.share(len(models) - i)
        iou_cost = seeds * round_s * iou_steps / 3.5 if run_iou else 0
        per_round_s = max(left - iou_cost, 0) / n_rounds
        n = steps_for(
            per_round_s - args.warmup * round_s, round_s, 2 if args.quick else 3, max_steps
        )
        batches = pool[: args.warmup + n]
        variants = {
            k: functools.partial(step_times, cfg, dm, batches, st, args.warmup, args.seed)
            for k, st in timed.items()
        }
        per_round = rounds(variants, n_rounds)
        s = {k: stats(flat(v)) for k, v in per_round.items()}
        speed = {k: paired_ratio(per_round["fp32"], v) for k, v in per_round.items()}
        for k in slow:  # one probe step each: enough to rule them out
            s[k] = stats([probe[k]])
            speed[k] = probe["fp32"] / probe[k]
        if "cuda fp32" in per_round:
            for k in GPU_SETTINGS:
                speed[k] = paired_ratio(per_round["cuda fp32"], per_round[k])
        entry = {
            "steps": n,
            "rounds": n_rounds,
            "stats": s,
            "speedup_vs_fp32": speed,
            "probe_only": slow,
        }
        speedups.append(speed["bf16"])
        headline[f"bf16 vs fp32 speed-up {name}"] = f"{speed['bf16']:.2f}x"
        headline[f"bf16+channels_last vs fp32 {name}"] = f"{speed['bf16+cl']:.2f}x"
        rows.append(
            [name, f"{n} x {n_rounds}"]
            + [f"{1000 * s[k]['median']:.0f}" + ("*" if k in slow else "") for k in settings]
            + [f"{speed[k]:.2f}x" for k in settings if k not in ("fp32", "cuda fp32")]
        )
        print(
            f"{name}: " + ", ".join(f"{k} {1000 * s[k]['median']:.0f} ms" for k in settings),
            flush=True,
        )

        if slow and not args.no_iou:
            verdict = f"not run: {', '.join(slow)} slower than fp32 here, never chosen"
            iou_rows.append([name, *["-"] * len(settings), "-", "-", verdict])
        elif run_iou and budget.left() < 0.5 * iou_cost:
            iou_rows.append([name, *["-"] * len(settings), "-", "-", "skipped: budget"])
        elif run_iou:
            icfg = cpu_config(name, patch_size=args.iou_patch)
            ious = {k: [] for k in settings}
            for seed in range(seeds):
                for k, st in settings.items():
                    ious[k].append(short_run(icfg, iou_dm, iou_batches[seed], st, seed))
            ref = ious["fp32"]
            seed_spread = (max(ref) - min(ref)) if seeds > 1 else float("nan")
            rounding = max(
                abs(a - b) for a, b in zip(ious["bf16"], ious["bf16+cl"], strict=True)
            )  # same precision, different summation order
            noise = max(x for x in (seed_spread, rounding) if x == x)
            deltas = {k: [a - b for a, b in zip(v, ref, strict=True)] for k, v in ious.items()}
            entry["iou"] = ious
            entry["iou_seed_spread_fp32"] = seed_spread
            entry["iou_rounding_noise"] = rounding
            beyond = []
            cells = []
            for k in settings:
                per_seed = "/".join(f"{x:.2f}" for x in ious[k])
                if k == "fp32":
                    cells.append(f"{statistics.mean(ious[k]):.3f} ({per_seed})")
                    continue
                d = max(deltas[k], key=abs)
                flag = ""
                if abs(d) > noise:
                    flag = " (!)"
                    beyond.append(k)
                cells.append(f"{statistics.mean(ious[k]):.3f} ({per_seed}; {d:+.3f}{flag})")
            entry["iou_beyond_noise"] = beyond
            iou_rows.append(
                [name]
                + cells
                + [f"{seed_spread:.3f}" if seed_spread == seed_spread else "n/a", f"{rounding:.3f}"]
                + ["within noise" if not beyond else "beyond noise: " + ", ".join(beyond)]
            )
            print(
                f"{name} IoU: "
                + ", ".join(f"{k} {statistics.mean(v):.3f}" for k, v in ious.items()),
                flush=True,
            )
        data[name] = entry

    hdr = (
        ["model", "steps x rounds"]
        + [f"{k} ms" for k in settings]
        + [f"{k} speed-up" for k in settings if k not in ("fp32", "cuda fp32")]
    )
    prof = profile_precision(cfg0)
    md = [
        f"Training step time (hand loop, median ms of {clock_name()}, first {args.warmup} steps dropped) at the cpu "
        f"profile: patch {cfg0.patch_size}, batch {cfg0.batch_size}, width {cfg0.width}; speed-up = "
        f"fp32 step time / setting step time (paired per round). oneDNN bf16 support on this CPU: "
        f"{info['onednn_bf16']} (flags: {info['cpu_features']}). seg-bench's `precision: auto` "
        f"resolves to `{prof}` here.",
        "",
        md_table(hdr, rows),
    ]
    if any(d["probe_only"] for d in data.values()):
        md += [
            "",
            f"\\* one step after one warm-up step, not repeated: more than {SLOWER:g}x slower than "
            "fp32, so never chosen; without native bf16 instructions oneDNN emulates bf16.",
        ]
    if iou_rows:
        md += [
            "",
            f"Final validation IoU after {epochs} epoch(s) of {iou_steps // epochs} steps (patch "
            f"{args.iou_patch}, batch {iou_cfg0.batch_size}, same batches and initial weights in "
            f"every setting): mean over {seeds} seed(s), in brackets the per-seed values and the "
            f"largest paired change vs fp32. Noise of such short runs = the larger of the fp32 "
            f"seed spread and the rounding noise (paired |bf16 - bf16+cl|: same precision, other "
            f"summation order); (!) = a change beyond it.",
            "",
            md_table(
                ["model", *settings, "fp32 seed spread", "rounding noise", "verdict"], iou_rows
            ),
        ]
    # Recommendation, from this run's numbers.
    gm = (
        statistics.geometric_mean([x for x in speedups if x == x and x > 0])
        if speedups
        else float("nan")
    )
    cl_speedups = [d["speedup_vs_fp32"]["bf16+cl"] for d in data.values()]
    cl_gm = (
        statistics.geometric_mean([x for x in cl_speedups if x > 0])
        if cl_speedups
        else float("nan")
    )
    worse = [m for m in data if data[m]["speedup_vs_fp32"]["bf16"] < 0.95]
    iou_moved = [m for m in data if "bf16" in data[m].get("iou_beyond_noise", [])]
    if gm >= 1.10 and not worse:
        rec = f"keep `bf16-mixed` for the cpu profile (geometric-mean speed-up {gm:.2f}x over fp32)"
    elif gm < 1.05:
        rec = (
            f"use `precision: 32-true` for the cpu profile on this CPU: bf16 autocast brings no "
            f"speed-up (geometric mean {gm:.2f}x of fp32"
            + (f"; slower for {', '.join(worse)}" if worse else "")
            + ") and fp32 is exact"
        )
    else:
        rec = (
            f"bf16 gains little on this CPU (geometric mean {gm:.2f}x of fp32"
            + (f"; slower for {', '.join(worse)}" if worse else "")
            + "): a per-model choice"
        )
    if any("iou" in d for d in data.values()):
        rec += (
            "; final IoU with bf16 within the noise of these short runs for every model"
            if not iou_moved
            else f"; final IoU with bf16 moved beyond the noise for {', '.join(iou_moved)}"
        )
    md += [
        "",
        f"Recommendation: {rec}. channels_last with bf16: geometric mean {cl_gm:.2f}x of fp32.",
    ]
    headline["bf16 vs fp32 speed-up (geo-mean)"] = f"{gm:.2f}x"
    emit(
        args,
        "precision",
        "Precision: fp32 vs bf16 vs bf16 + channels_last",
        "\n".join(md),
        headline,
        data,
        budget,
    )


if __name__ == "__main__":
    main()
