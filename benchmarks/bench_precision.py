"""Precision: float32 vs bf16 autocast vs bf16 + channels_last, speed and accuracy.

Per core architecture at the cpu profile (synthetic nuclei, patch 128, batch 8, width 0.25):

* step time of the hand-written training step (:class:`train_loop.HandLoop`; bench_training.py shows
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
    add_models_arg,
    clock_name,
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
            model,
            batch["image"].to(device),
            window=window,
            overlap=overlap,
            precision=None if precision == "32-true" else precision,
        )
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, budget=330, cpu_time=True)
    add_models_arg(ap)
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
    return ap.parse_args(argv)


def time_settings(cfg, dm, pool, settings, probe, slow, args, per_round_s) -> dict:
    """Step times of the settings not ruled out by the probe, in rounds; speed-ups vs fp32."""
    timed = {k: st for k, st in settings.items() if k not in slow}
    round_s = sum(probe[k] for k in timed)
    lo, hi = (2, 3) if args.quick else (3, 8)
    n = steps_for(per_round_s - args.warmup * round_s, round_s, lo, hi)
    batches = pool[: args.warmup + n]
    variants = {
        k: functools.partial(step_times, cfg, dm, batches, st, args.warmup, args.seed)
        for k, st in timed.items()
    }
    per_round = rounds(variants, args.rounds)
    s = {k: stats(flat(v)) for k, v in per_round.items()}
    speed = {k: paired_ratio(per_round["fp32"], v) for k, v in per_round.items()}
    for k in slow:  # one probe step each: enough to rule them out
        s[k] = stats([probe[k]])
        speed[k] = probe["fp32"] / probe[k]
    if "cuda fp32" in per_round:
        for k in GPU_SETTINGS:
            speed[k] = paired_ratio(per_round["cuda fp32"], per_round[k])
    return {"steps": n, "rounds": args.rounds, "stats": s, "speedup_vs_fp32": speed}


def speed_row(name: str, entry: dict, settings: dict) -> list[str]:
    s, speed, slow = entry["stats"], entry["speedup_vs_fp32"], entry["probe_only"]
    print(
        f"{name}: " + ", ".join(f"{k} {1000 * s[k]['median']:.0f} ms" for k in settings),
        flush=True,
    )
    return (
        [name, f"{entry['steps']} x {entry['rounds']}"]
        + [f"{1000 * s[k]['median']:.0f}" + ("*" if k in slow else "") for k in settings]
        + [f"{speed[k]:.2f}x" for k in settings if k not in ("fp32", "cuda fp32")]
    )


def compare_iou(name, settings, seeds, iou_dm, iou_batches, iou_patch) -> tuple[dict, list]:
    """Final IoU per setting and seed, against the noise of such short runs; (entry, row)."""
    icfg = cpu_config(name, patch_size=iou_patch)
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
    beyond, cells = [], []
    for k in settings:
        per_seed = "/".join(f"{x:.2f}" for x in ious[k])
        if k == "fp32":
            cells.append(f"{statistics.mean(ious[k]):.3f} ({per_seed})")
            continue
        d = max((a - b for a, b in zip(ious[k], ref, strict=True)), key=abs)
        flag = ""
        if abs(d) > noise:
            flag = " (!)"
            beyond.append(k)
        cells.append(f"{statistics.mean(ious[k]):.3f} ({per_seed}; {d:+.3f}{flag})")
    row = (
        [name]
        + cells
        + [f"{seed_spread:.3f}" if seed_spread == seed_spread else "n/a", f"{rounding:.3f}"]
        + ["within noise" if not beyond else "beyond noise: " + ", ".join(beyond)]
    )
    print(
        f"{name} IoU: " + ", ".join(f"{k} {statistics.mean(v):.3f}" for k, v in ious.items()),
        flush=True,
    )
    entry = {
        "iou": ious,
        "iou_seed_spread_fp32": seed_spread,
        "iou_rounding_noise": rounding,
        "iou_beyond_noise": beyond,
    }
    return entry, row


def geo_mean(xs: list[float]) -> float:
    xs = [x for x in xs if x == x and x > 0]
    return statistics.geometric_mean(xs) if xs else float("nan")


def recommendation(data: dict, speedups: list[float]) -> tuple[str, float]:
    """What this run's numbers say about bf16 for the cpu profile; and the geo-mean speed-up."""
    gm = geo_mean(speedups)
    worse = [m for m in data if data[m]["speedup_vs_fp32"]["bf16"] < 0.95]
    slower = f"; slower for {', '.join(worse)}" if worse else ""
    iou_moved = [m for m in data if "bf16" in data[m].get("iou_beyond_noise", [])]
    if gm >= 1.10 and not worse:
        rec = f"keep `bf16-mixed` for the cpu profile (geometric-mean speed-up {gm:.2f}x over fp32)"
    elif gm < 1.05:
        rec = (
            "use `precision: 32-true` for the cpu profile on this CPU: bf16 autocast brings no "
            f"speed-up (geometric mean {gm:.2f}x of fp32{slower}) and fp32 is exact"
        )
    else:
        rec = (
            f"bf16 gains little on this CPU (geometric mean {gm:.2f}x of fp32{slower}): "
            "a per-model choice"
        )
    if any("iou" in d for d in data.values()):
        rec += (
            "; final IoU with bf16 within the noise of these short runs for every model"
            if not iou_moved
            else f"; final IoU with bf16 moved beyond the noise for {', '.join(iou_moved)}"
        )
    cl_gm = geo_mean([d["speedup_vs_fp32"]["bf16+cl"] for d in data.values()])
    rec += f". channels_last with bf16: geometric mean {cl_gm:.2f}x of fp32."
    return rec, gm


IOU_TEXT = (
    "Final validation IoU after {epochs} epoch(s) of {steps} steps (patch {patch}, batch "
    "{batch}, same batches and initial weights in every setting): mean over {seeds} seed(s), in "
    "brackets the per-seed values and the largest paired change vs fp32. Noise of such short "
    "runs = the larger of the fp32 seed spread and the rounding noise (paired |bf16 - bf16+cl|: "
    "same precision, other summation order); (!) = a change beyond it."
)


def report(args, info, cfg0, settings, rows, iou_rows, data, iou_text) -> list[str]:
    hdr = (
        ["model", "steps x rounds"]
        + [f"{k} ms" for k in settings]
        + [f"{k} speed-up" for k in settings if k not in ("fp32", "cuda fp32")]
    )
    md = [
        f"Training step time (hand loop, median ms of {clock_name()}, first {args.warmup} steps "
        f"dropped) at the cpu profile: patch {cfg0.patch_size}, batch {cfg0.batch_size}, width "
        f"{cfg0.width}; speed-up = fp32 step time / setting step time (paired per round). "
        f"oneDNN bf16 support on this CPU: {info['onednn_bf16']} (flags: {info['cpu_features']}). "
        f"seg-bench's `precision: auto` resolves to `{profile_precision(cfg0)}` here.",
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
            iou_text,
            "",
            md_table(
                ["model", *settings, "fp32 seed spread", "rounding noise", "verdict"], iou_rows
            ),
        ]
    return md


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_torch(args.threads, args.cpu_time)
    import torch

    budget = Budget(args.budget)
    models = models_arg(args.models, ("unet",) if args.quick else None)
    args.rounds = args.rounds or 2
    epochs = args.epochs or (1 if args.quick else cpu_config(models[0]).max_epochs)
    seeds = args.seeds or (1 if args.quick else 2)
    settings = dict(CPU_SETTINGS)
    if torch.cuda.is_available():
        settings.update(GPU_SETTINGS)
    info = machine_info()
    cfg0 = cpu_config(models[0])
    dm = datamodule(cfg0)
    pool = pregenerate(dm, args.warmup + (3 if args.quick else 8), seed=args.seed)
    print(
        f"# precision, cpu profile patch {cfg0.patch_size}, batch {cfg0.batch_size}, width "
        f"{cfg0.width}, clock: {clock_name()}\n# {machine_line(info)}",
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
        run_iou = not args.no_iou and not slow
        # Budget: timing takes ~ rounds x sum of step times x steps, IoU ~ seeds x the same x
        # iou_steps / 3.5 (patch 64 is about 4x cheaper than 128).
        round_s = sum(probe[k] for k in settings if k not in slow)
        iou_cost = seeds * round_s * iou_steps / 3.5 if run_iou else 0
        per_round_s = max(budget.share(len(models) - i) - iou_cost, 0) / args.rounds
        entry = time_settings(cfg, dm, pool, settings, probe, slow, args, per_round_s)
        entry["probe_only"] = slow
        speed = entry["speedup_vs_fp32"]
        speedups.append(speed["bf16"])
        headline[f"bf16 vs fp32 speed-up {name}"] = f"{speed['bf16']:.2f}x"
        headline[f"bf16+channels_last vs fp32 {name}"] = f"{speed['bf16+cl']:.2f}x"
        rows.append(speed_row(name, entry, settings))
        if slow and not args.no_iou:
            verdict = f"not run: {', '.join(slow)} slower than fp32 here, never chosen"
            iou_rows.append([name, *["-"] * len(settings), "-", "-", verdict])
        elif run_iou and budget.left() < 0.5 * iou_cost:
            iou_rows.append([name, *["-"] * len(settings), "-", "-", "skipped: budget"])
        elif run_iou:
            iou, row = compare_iou(name, settings, seeds, iou_dm, iou_batches, args.iou_patch)
            entry.update(iou)
            iou_rows.append(row)
        data[name] = entry

    iou_text = IOU_TEXT.format(
        epochs=epochs,
        steps=iou_steps // epochs,
        patch=args.iou_patch,
        batch=iou_cfg0.batch_size,
        seeds=seeds,
    )
    md = report(args, info, cfg0, settings, rows, iou_rows, data, iou_text)
    rec, gm = recommendation(data, speedups)
    md += ["", f"Recommendation: {rec}"]
    headline["bf16 vs fp32 speed-up (geo-mean)"] = f"{gm:.2f}x"
    title = "Precision: fp32 vs bf16 vs bf16 + channels_last"
    emit(args, "precision", title, "\n".join(md), headline, data, budget)


if __name__ == "__main__":
    main()
