"""Scaling: step time vs patch size, epoch time vs dataset size, 2-process CPU DDP vs 1 process.

* patch size: training step time (hand loop, the cpu profile's precision, batch 8, width 0.25)
  at patch 64, 128 and 256 per architecture, with ms per megapixel to show whether cost grows
  linearly with the pixels;
* dataset size: ``seg_bench.training.trainer.train`` (the real Lightning path, no progress bar)
  for one epoch of the synthetic cpu profile with n_train 8, 16 and 32 images, both with the
  profile's fixed ``samples_per_epoch`` and with the data-driven epoch (``samples_per_epoch``
  unset: enough patches to cover every training pixel once, so it grows with the dataset).
  Columns: set-up (generating + normalising the images), training time of the epoch
  (seg-bench's EpochTimer, no validation), the validation pass and the whole call;
* DDP: ``python -m seg_bench.cli train ... --accelerator cpu --devices 2 --strategy ddp`` vs
  ``--devices 1``, same config (the DataModule splits each epoch's patches between the processes,
  so the total work is the same), each a subprocess timed end to end; the pure training time is
  read from the run's ``last.ckpt`` (EpochTimer state, rank 0). Lightning gives each DDP process
  cores / processes torch threads.

    python benchmarks/bench_scaling.py            # ~4 min on 2 cores
    python benchmarks/bench_scaling.py --quick    # unet only, small, 1 epoch DDP
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    Budget,
    add_common_args,
    core_models,
    emit,
    machine_line,
    md_table,
    models_arg,
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


def patch_scaling(models, patches, budget, warmup, max_steps, seed, quick) -> tuple[list, dict]:
    rows, data = [], {}
    jobs = [(m, p) for m in models for p in patches]
    pools: dict[int, tuple] = {}
    for i, (name, patch) in enumerate(jobs):
        if patch not in pools:
            cfg = cpu_config(models[0], patch_size=patch)
            dm = datamodule(cfg)
            pools[patch] = (dm, pregenerate(dm, warmup + max_steps, seed=seed))
        dm, pool = pools[patch]
        cfg = cpu_config(name, patch_size=patch)
        precision = profile_precision(cfg)
        model = make_model(cfg, dm, seed=seed)
        loop = HandLoop(cfg, model, precision)
        times = loop.run(batch_loader(pool[: warmup + 1]))
        probe = times[-1]
        share = budget.share(len(jobs) - i)
        n = steps_for(share - probe * (warmup + 1), probe, 2, max_steps)
        times = loop.run(batch_loader(pool[:n]))  # already warm: every step counts
        med = stats(times)["median"]
        pixels = cfg.batch_size * patch * patch
        data.setdefault(name, {})[patch] = {
            "step_s": med,
            "steps": n,
            "us_per_px": 1e6 * med / pixels,
        }
        print(f"{name} patch {patch}: {1000 * med:.0f} ms/step", flush=True)
    base = patches[len(patches) // 2] if len(patches) > 1 else patches[0]
    for name in models:
        d = data.get(name, {})
        cells = []
        for p in patches:
            if p in d:
                cells.append(f"{1000 * d[p]['step_s']:.0f} ({d[p]['us_per_px']:.1f})")
            else:
                cells.append("-")
        rel = [
            f"{d[p]['step_s'] / d[base]['step_s']:.2f}" if p in d and base in d else "-"
            for p in patches
        ]
        rows.append([name, *cells, " / ".join(rel)])
    return rows, data


def _phase_timer():
    from lightning.pytorch.callbacks import Callback

    class PhaseTimer(Callback):
        """Training time proper (epoch start to the first validation or the epoch's end) and the
        validation time. seg-bench's EpochTimer stops at on_train_epoch_end, which Lightning calls
        after the end-of-epoch validation, so its figure includes validation."""

        def __init__(self):
            self.train_s = self.val_s = 0.0
            self._t = None

        def on_train_epoch_start(self, trainer, pl_module):
            self._t = time.perf_counter()

        def on_validation_start(self, trainer, pl_module):
            if self._t is not None and not trainer.sanity_checking:
                self.train_s += time.perf_counter() - self._t
                self._t = None
            self._v = time.perf_counter()

        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.val_s += time.perf_counter() - self._v

        def on_train_epoch_end(self, trainer, pl_module):
            if self._t is not None:
                self.train_s += time.perf_counter() - self._t
                self._t = None

    return PhaseTimer()


def epoch_scaling(model, sizes, seed, budget, quick) -> tuple[list, dict]:
    from seg_bench.training.trainer import build_datamodule, train

    rows, data = [], {}
    for mode in ("profile", "coverage"):
        for n in sizes:
            if budget.left() < 10:
                rows.append([mode, n, "-", "-", "-", "-", "-", "-", "-", "skipped: budget"])
                continue
            cfg0 = cpu_config(model)
            over = dict(
                dataset_options=dict(cfg0.dataset_options, n_train=n), max_epochs=1, seed=seed
            )
            if quick:
                over.update(patch_size=64, samples_per_epoch=32)
            cfg = cpu_config(model, **over)
            if mode == "coverage":
                cfg.samples_per_epoch = None  # resolve_config drops None overrides
            run_dir = tempfile.mkdtemp(prefix="seg-bench-scale-")
            try:
                t0 = time.perf_counter()
                dm = build_datamodule(cfg)
                dm.setup("fit")
                setup = time.perf_counter() - t0
                patches = dm.epoch_length()
                timer = _phase_timer()
                t0 = time.perf_counter()
                res = train(cfg, Path(run_dir), logger=False, callbacks=[timer], progress=False)
                total = time.perf_counter() - t0
            finally:
                shutil.rmtree(run_dir, ignore_errors=True)
            steps = -(-patches // cfg.batch_size)
            data[f"{mode}-{n}"] = {
                "setup_s": setup,
                "patches": patches,
                "steps": steps,
                "train_s": timer.train_s,
                "val_s": timer.val_s,
                "epoch_timer_s": res.train_time_s,
                "total_s": total,
            }
            rows.append(
                [
                    mode,
                    n,
                    patches,
                    f"{setup:.1f}",
                    f"{timer.train_s:.1f}",
                    f"{1000 * timer.train_s / steps:.0f}",
                    f"{timer.val_s:.1f}",
                    f"{res.train_time_s:.1f}",
                    f"{total:.1f}",
                ]
            )
            print(
                f"epoch {mode} n_train {n}: {patches} patches, train {timer.train_s:.1f} s, "
                f"val {timer.val_s:.1f} s, total {total:.1f} s",
                flush=True,
            )
    return rows, data


def ddp_run(
    model: str, devices: int, epochs: int, seed: int, timeout: float, extra: list[str]
) -> dict:
    import torch

    run_dir = tempfile.mkdtemp(prefix=f"seg-bench-ddp{devices}-")
    cmd = [
        sys.executable,
        "-m",
        "seg_bench.cli",
        "train",
        "--dataset",
        "synthetic",
        "--model",
        model,
        "--profile",
        "cpu",
        "--epochs",
        str(epochs),
        "--seed",
        str(seed),
        "--accelerator",
        "cpu",
        "--devices",
        str(devices),
        "--logger",
        "none",
        "--run-dir",
        run_dir,
        *extra,
    ]
    if devices > 1:
        cmd += ["--strategy", "ddp"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("OMP_NUM_THREADS", None)  # let Lightning split the cores between the processes
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=os.getcwd()
        )
        wall = time.perf_counter() - t0
        out = {"cmd": " ".join(cmd[1:]), "wall_s": wall, "rc": proc.returncode}
        if proc.returncode != 0:
            out["error"] = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])[:400]
            return out
        ckpt = Path(run_dir) / "checkpoints" / "last.ckpt"
        if ckpt.exists():
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            for key, value in state.get("callbacks", {}).items():
                if "EpochTimer" in key:
                    out["train_s"] = float(value.get("seconds", 0.0))
        test = [line for line in proc.stdout.splitlines() if line.startswith("test:")]
        out["test"] = test[-1][5:].strip() if test else ""
        out["test_evaluations"] = len(test)  # one per process that ran the test evaluation
        return out
    except subprocess.TimeoutExpired:
        return {
            "cmd": " ".join(cmd[1:]),
            "wall_s": time.perf_counter() - t0,
            "error": f"timeout after {timeout:.0f} s",
        }
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, budget=240)
    ap.add_argument(
        "--models",
        default=None,
        help="patch-scaling models (default: the cpu profile's bench models; quick: unet)",
    )
    ap.add_argument("--patches", default="64,128,256")
    ap.add_argument("--sizes", default="8,16,32", help="synthetic n_train values")
    ap.add_argument("--epoch-model", default="unet")
    ap.add_argument("--ddp-model", default="unet")
    ap.add_argument("--ddp-epochs", type=int, default=None, help="default 2, quick 1")
    ap.add_argument("--no-ddp", action="store_true")
    return ap.parse_args(argv)


EPOCH_HEADERS = ["epoch", "n_train", "patches", "set-up s", "train s", "ms/step", "val s"]
EPOCH_HEADERS += ["EpochTimer s", "total s"]
DDP_HEADERS = ["processes", "wall s", "epochs s (EpochTimer)", "test evaluations"]
DDP_HEADERS += ["test scores / error"]
DDP_TEXT = (
    "as a subprocess, 2 processes vs 1 on the same total work. Wall = the whole command "
    "(imports, data, process start-up, training, validation, test evaluation); epochs s = "
    "seg-bench's EpochTimer from last.ckpt (rank 0; training + validation, see above); test "
    "evaluations = processes that printed a test result. Each DDP process takes half of "
    "each epoch's patches, and the gradients of its batch are averaged with the other's: "
    "DDP takes half the optimizer steps of the 1-process run, at twice the batch, so its "
    "test scores after the same epochs match a 1-process run at that batch, not the first "
    "row (a short run like this one is far from converged)."
)


def scaling_report(args, cfg0, patches: list[int], prow: list, erow: list) -> list[str]:
    precision = profile_precision(cfg0)
    return [
        f"Training step time (hand loop, ms; in brackets µs per pixel of the batch) vs patch "
        f"size, batch {cfg0.batch_size}, width {cfg0.width}, {precision}; last column: step "
        f"time relative to patch {patches[len(patches) // 2]}. Pixels grow 4x per step of the "
        f"patch size.",
        "",
        md_table(["model", *[f"patch {p}" for p in patches], "relative"], prow),
        "",
        f"One epoch of `seg_bench.training.trainer.train` ({args.epoch_model}, cpu profile, no "
        f"progress bar) vs synthetic training-set size. `profile`: the profile's "
        f"samples_per_epoch ({cfg0.samples_per_epoch}); `coverage`: samples_per_epoch unset "
        f"(patches to cover every training pixel once)"
        + (", quick: patch 64, 32 samples" if args.quick else "")
        + ". Train s = epoch start to validation start; val s = the validation pass (4 whole "
        "images, sliding window); EpochTimer s = seg-bench's own train-time figure (it stops at "
        "on_train_epoch_end, after validation, so it includes it); total = the whole train() "
        "call.",
        "",
        md_table(EPOCH_HEADERS, erow),
    ]


def ddp_runs(args, budget: Budget, epochs: int) -> tuple[list[tuple[str, dict]], dict]:
    """1 process, 2 DDP processes and, time allowing, 1 process at DDP's effective batch:
    (table label, result) pairs and the results by record key."""
    extra = (
        ["--set", "dataset_options={n_train: 8, n_val: 2, n_test: 4, image_size: 256}"]
        if args.quick
        else []
    )
    r1 = ddp_run(args.ddp_model, 1, epochs, args.seed, max(budget.left() * 0.55, 90), extra)
    print(f"ddp 1 process: {r1}", flush=True)
    r2 = ddp_run(args.ddp_model, 2, epochs, args.seed, max(budget.left(), 90), extra)
    print(f"ddp 2 processes: {r2}", flush=True)
    runs = [("1", r1), ("2 (ddp)", r2)]
    data = {"1": r1, "2": r2}
    # DDP averages the gradients of two batches of 8: half the optimizer steps of batch 16.
    # One process at batch 16 takes the same steps, so its test scores are DDP's reference.
    if budget.left() > 1.2 * r1["wall_s"]:
        batch = 2 * cpu_config(args.ddp_model).batch_size
        r16 = ddp_run(
            args.ddp_model,
            1,
            epochs,
            args.seed,
            max(budget.left(), 90),
            [*extra, "--set", f"batch_size={batch}"],
        )
        print(f"ddp reference, 1 process batch {batch}: {r16}", flush=True)
        runs.append((f"1, batch {batch} (DDP's effective batch)", r16))
        data[f"1 batch {batch}"] = r16
    return runs, data


def ddp_report(args, runs, epochs: int, headline: dict) -> list[str]:
    """The DDP table and speed-ups; adds the headline figures."""
    drows = [
        [
            n,
            f"{r['wall_s']:.1f}",
            f"{r['train_s']:.1f}" if "train_s" in r else "-",
            str(r.get("test_evaluations", "-")),
            (r.get("test") or "")[:60] or r.get("error", "-"),
        ]
        for n, r in runs
    ]
    quick = ", 8 training images" if args.quick else ""
    md = [
        "",
        f"CPU DDP: `seg-bench train` ({args.ddp_model}, cpu profile, {epochs} epoch(s){quick}) "
        + DDP_TEXT,
        "",
        md_table(DDP_HEADERS, drows),
    ]
    r1, r2 = runs[0][1], runs[1][1]
    if "train_s" in r1 and "train_s" in r2:
        sp_train = r1["train_s"] / r2["train_s"]
        sp_wall = r1["wall_s"] / r2["wall_s"]
        md += [
            "",
            f"Speed-up of 2 processes over 1: epochs {sp_train:.2f}x, "
            f"whole command {sp_wall:.2f}x.",
        ]
        if r2.get("test_evaluations", 0) > 1:
            md += [
                "",
                f"Note: under DDP the test set was evaluated {r2['test_evaluations']} times (once "
                "per process): `seg-bench train` runs `evaluate` on every rank after `fit`.",
            ]
        headline["DDP 2 vs 1 process (epochs, EpochTimer)"] = f"{sp_train:.2f}x"
        headline["DDP 2 vs 1 process (whole command)"] = f"{sp_wall:.2f}x"
    elif "error" in r2:
        headline["DDP 2 vs 1 process"] = f"failed: {r2['error'][:80]}"
    return md


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_torch(args.threads)

    budget = Budget(args.budget)
    models = models_arg(args.models, ("unet",) if args.quick else core_models())
    patches = [int(p) for p in args.patches.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        patches = [p for p in patches if p <= 128]
        sizes = sizes[:2]
    ddp_epochs = args.ddp_epochs or (1 if args.quick else 2)
    cfg0 = cpu_config(models[0])
    print(
        f"# scaling, cpu profile (batch {cfg0.batch_size}, width {cfg0.width}, "
        f"{profile_precision(cfg0)})\n# {machine_line()}",
        flush=True,
    )

    # Budget split: patch sizes 35 %, epochs 25 %, DDP the rest.
    sub = Budget(0.35 * budget.seconds if budget.seconds > 0 else 0)
    prow, pdata = patch_scaling(
        models, patches, sub, 1, 3 if args.quick else 5, args.seed, args.quick
    )
    sub = Budget(0.25 * budget.seconds if budget.seconds > 0 else 0)
    erow, edata = epoch_scaling(args.epoch_model, sizes, args.seed, sub, args.quick)

    md = scaling_report(args, cfg0, patches, prow, erow)
    data = {"patch": pdata, "epoch": edata}
    headline = {}
    if not args.no_ddp:
        runs, data["ddp"] = ddp_runs(args, budget, ddp_epochs)
        md += ddp_report(args, runs, ddp_epochs, headline)
    if len(patches) >= 2 and pdata:
        first = models[0]
        d = pdata.get(first, {})
        if patches[0] in d and patches[-1] in d:
            headline[f"step time patch {patches[-1]} / {patches[0]} ({first})"] = (
                f"{d[patches[-1]]['step_s'] / d[patches[0]]['step_s']:.1f}x"
            )
    title = "Scaling: patch size, dataset size, DDP"
    emit(args, "scaling", title, "\n".join(md), headline, data, budget)


if __name__ == "__main__":
    main()
