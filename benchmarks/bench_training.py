"""Training throughput: seg-bench's Lightning task vs a hand-written PyTorch loop.

Per core architecture at the cpu profile (synthetic nuclei, patch 128, batch 8, width 0.25,
the profile's precision: bf16 autocast on CPU, 16-mixed on a GPU):

* ``loop``: :class:`train_loop.HandLoop`, the same network (``create_model``), loss, optimizer
  and autocast, nothing else;
* ``lightning``: ``SegmentationTask`` fitted by the Trainer from
  ``seg_bench.training.trainer.build_trainer`` exactly as ``seg-bench train`` builds it
  (progress bar, ``log_every_n_steps=1``, the epoch timer) minus what the comparison excludes:
  no logger, no checkpointing (the ModelCheckpoint is taken off), no validation
  (``limit_val_batches=0``), ``limit_train_batches=N``;
* ``lightning-lean``: the same without the progress bar, to show what it costs.

All three read the same pre-generated batches (drawn once from the synthetic DataModule's own
train loader, ``d4`` augmentation) through the same ``DataLoader(batch_size=None)``. Step times
are start-to-start intervals of consecutive batches (a callback in Lightning, the loop's own
clock otherwise), so framework work between steps counts; the first ``warmup`` steps of every
run are dropped. The variants run in rounds, in rotating order, and the Lightning/loop ratio is
the median over rounds of the within-round ratio of medians, so load drifting on a shared machine
cancels out. Target: lightning >= 0.95 x loop images/s.

Finally one run of each kind goes through cProfile and the self time per step is grouped by
where it is spent (torch kernels, autograd/optimizer Python, Lightning loops and hooks, the
progress bar, ``self.log``, the task/model Python), for the model with the worst ratio (below
target) or else the fastest model, where framework overhead weighs most.

    python benchmarks/bench_training.py            # 4 models, ~4 min on 2 cores
    python benchmarks/bench_training.py --quick    # unet + segnet, few steps
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    Budget,
    add_common_args,
    add_models_arg,
    clock_name,
    emit,
    flat,
    fmt,
    intervals,
    machine_line,
    md_table,
    models_arg,
    now,
    paired_ratio,
    rounds,
    setup_torch,
    stats,
    steps_for,
    sync,
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

TARGET = 0.95


def _thread_cpu_ms() -> dict[int, float]:
    """CPU time (ms) of every Python thread but the main one (Linux /proc; {} elsewhere)."""
    import threading

    out = {}
    for th in threading.enumerate():
        if th is threading.main_thread() or th.native_id is None:
            continue
        try:
            with open(f"/proc/self/task/{th.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])  # utime + stime
            out[th.native_id] = ticks * 1000 / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return out


def _step_clock():
    from lightning.pytorch.callbacks import Callback

    class StepClock(Callback):
        """Time stamps at every train batch start and one at the epoch's end; CPU time of the
        helper threads (the progress bar's refresh thread) over the epoch."""

        def __init__(self, device):
            self.device = device
            self.stamps: list[float] = []
            self.cpu0: dict[int, float] = {}
            self.thread_cpu_ms = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            sync(self.device)
            self.stamps.append(now())
            if len(self.stamps) == 1:
                self.cpu0 = _thread_cpu_ms()

        def on_train_epoch_end(self, trainer, pl_module):
            sync(self.device)
            self.stamps.append(now())
            cpu1 = _thread_cpu_ms()
            self.thread_cpu_ms = sum(cpu1.get(k, v) - v for k, v in self.cpu0.items())

    return StepClock


@contextlib.contextmanager
def _as_terminal(enabled: bool):
    """Make Rich (Lightning's progress bar) render as it would in a terminal, into /dev/null."""
    if not enabled:
        yield
        return
    with (
        mock.patch.dict(os.environ, TTY_COMPATIBLE="1"),
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        yield


def lightning_fit(cfg, dm, batches, device: str, progress: bool, seed: int, run_dir: str) -> dict:
    """One fit of SegmentationTask on ``batches``; returns step times and the fit's wall time."""
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint

    from seg_bench.training.trainer import build_task, build_trainer

    torch.manual_seed(seed)
    task = build_task(cfg, dm)
    clock = _step_clock()(device)
    trainer, _, _ = build_trainer(
        cfg, Path(run_dir), logger=False, callbacks=[clock], progress=progress
    )
    # What this comparison leaves out (see the module docstring): checkpointing, validation.
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, ModelCheckpoint)]
    trainer.limit_val_batches = 0
    trainer.limit_train_batches = len(batches)
    t0 = now()
    with _as_terminal(progress):
        trainer.fit(task, train_dataloaders=batch_loader(batches))
    wall = now() - t0
    steps = intervals(clock.stamps)
    return {
        "steps": steps,
        "wall": wall,
        "thread_cpu_ms_per_step": clock.thread_cpu_ms / max(len(steps), 1),
    }


def loop_run(cfg, dm, batches, device: str, precision: str, seed: int) -> dict:
    model = make_model(cfg, dm, seed=seed, device=device)
    loop = HandLoop(cfg, model, precision, device)
    t0 = now()
    steps = loop.run(batch_loader(batches))
    return {"steps": steps, "wall": now() - t0}


# --------------------------------------------------------------------------------------------
# profile


CATEGORIES = (
    ("progress bar", ("tqdm", "/rich/", "callbacks/progress")),
    ("self.log / metrics", ("logger_connector", "torchmetrics", "lightning_utilities")),
    ("Lightning loops, hooks, strategy", ("lightning/pytorch", "lightning/fabric")),
    ("autograd + optimizer (Python)", ("torch/optim", "torch/autograd", "torch/amp")),
    ("task, model, loss (Python)", ("seg_bench",)),
    ("torch nn Python wrappers", ("torch/nn",)),
    ("data loading (Python)", ("torch/utils/data",)),
)


def categorize(stats_obj: pstats.Stats) -> dict[str, float]:
    """Self time (s) by category. Built-ins (C++ kernels, autograd engine) are 'torch kernels'."""
    out: dict[str, float] = {}
    for (filename, _line, _func), (_cc, _nc, tottime, _ct, _callers) in stats_obj.stats.items():
        name = filename.replace(os.sep, "/")
        if filename == "~" or filename.startswith("<built-in") or filename.startswith("{"):
            cat = "torch kernels + C++ (incl. autograd engine)"
        else:
            cat = next((c for c, keys in CATEGORIES if any(k in name for k in keys)), None)
            if cat is None:
                cat = "torch other Python" if "/torch/" in name else "other Python"
        out[cat] = out.get(cat, 0.0) + tottime
    return out


def profile_pair(cfg, dm, batches, device, precision, seed, run_dir) -> dict:
    results = {}
    for kind in ("loop", "lightning"):
        prof = cProfile.Profile(time.thread_time)  # main-thread CPU: robust to machine load
        if kind == "loop":
            loop = HandLoop(cfg, make_model(cfg, dm, seed=seed, device=device), precision, device)
            prof.runcall(loop.run, batch_loader(batches))
        else:
            # The Trainer's own set-up is part of the profile; subtract it with a 0-step estimate
            # would need another fit, so report per step over the whole fit and say so.
            prof.runcall(lightning_fit, cfg, dm, batches, device, True, seed, run_dir)
        st = pstats.Stats(prof)
        cats = categorize(st)
        top = sorted(
            (
                (tt, f"{os.path.basename(fn)}:{ln} {func}")
                for (fn, ln, func), (_cc, _nc, tt, _ct, _cl) in st.stats.items()
                if "lightning" in fn or "tqdm" in fn or "/rich/" in fn
            ),
            reverse=True,
        )[:8]
        results[kind] = {"categories": cats, "total": sum(cats.values()), "top_lightning": top}
    return results


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, budget=300, cpu_time=True)
    add_models_arg(ap)
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--rounds", type=int, default=None, help="A/B rounds (default 3, quick 2)")
    ap.add_argument(
        "--warmup", type=int, default=None, help="steps dropped per run (default 3, quick 2)"
    )
    steps_help = "measured steps per run (default: fit the budget, 6-20)"
    ap.add_argument("--steps", type=int, default=None, help=steps_help)
    ap.add_argument("--no-profile", action="store_true")
    return ap.parse_args(argv)


def compare(cfg, dm, batches, args, warmup: int, n_rounds: int, run_dir: str) -> dict:
    """Loop, Lightning and lean Lightning in rotating rounds: per-round steady step times, the
    fixed cost of each run beyond its steps, the progress bar thread's CPU time per step."""
    dev, seed = args.device, args.seed
    variants = {
        "loop": functools.partial(loop_run, cfg, dm, batches, dev, args.precision, seed),
        "lightning": functools.partial(lightning_fit, cfg, dm, batches, dev, True, seed, run_dir),
        "lightning-lean": functools.partial(
            lightning_fit, cfg, dm, batches, dev, False, seed, run_dir
        ),
    }
    fixed: dict[str, list[float]] = {k: [] for k in variants}
    bar_cpu: list[float] = []

    def steady(key):
        def run():
            res = variants[key]()
            # Fixed cost of a run: its time beyond its steps (Trainer set-up, teardown).
            fixed[key].append(res["wall"] - sum(res["steps"]))
            if key == "lightning":
                bar_cpu.append(res["thread_cpu_ms_per_step"])
            return res["steps"][warmup:]

        return run

    per_round = rounds({k: steady(k) for k in variants}, n_rounds)
    return {"per_round": per_round, "fixed": fixed, "bar_cpu": bar_cpu}


def summarise(name: str, cfg, runs: dict, n: int, warmup: int, n_rounds: int) -> tuple:
    """The model's record entry and its table row."""
    per_round, fixed, bar_cpu = runs["per_round"], runs["fixed"], runs["bar_cpu"]
    s = {k: stats(flat(v)) for k, v in per_round.items()}
    ratio = paired_ratio(per_round["loop"], per_round["lightning"])
    ratio_lean = paired_ratio(per_round["loop"], per_round["lightning-lean"])
    ips = {k: cfg.batch_size / s[k]["median"] for k in s}
    extra_fixed = stats(fixed["lightning"])["median"] - stats(fixed["loop"])["median"]
    entry = {
        "steps_measured": n,
        "warmup": warmup,
        "rounds": n_rounds,
        "stats": s,
        "images_per_s": ips,
        "ratio": ratio,
        "ratio_lean": ratio_lean,
        "fixed_s": fixed,
        "bar_thread_cpu_ms_per_step": bar_cpu,
    }
    row = [
        name,
        f"{n} x {n_rounds}",
        f"{1000 * s['loop']['median']:.0f} ({100 * s['loop']['spread']:.0f}%)",
        f"{1000 * s['lightning']['median']:.0f} ({100 * s['lightning']['spread']:.0f}%)",
        f"{1000 * s['lightning-lean']['median']:.0f}",
        fmt(ips["loop"], 1),
        fmt(ips["lightning"], 1),
        f"**{ratio:.3f}**",
        f"{ratio_lean:.3f}",
        "met" if ratio >= TARGET else "**missed**",
        f"{extra_fixed:.2f}",
        f"{stats(bar_cpu)['median']:.1f}",
    ]
    print(
        f"{name}: loop {ips['loop']:.1f} img/s, lightning {ips['lightning']:.1f} img/s, "
        f"ratio {ratio:.3f}",
        flush=True,
    )
    return entry, row


def profile_section(data: dict, dm, pool, args, warmup: int, run_root: str) -> list[str]:
    """cProfile split of one loop run and one Lightning run; adds ``data["_profile"]``."""
    worst = min(data, key=lambda k: data[k]["ratio"])
    below = data[worst]["ratio"] < TARGET
    target_model = worst if below else min(data, key=lambda k: data[k]["stats"]["loop"]["median"])
    cfg = cpu_config(target_model, accelerator="cpu", devices=1, max_epochs=1)
    batches = pool[: warmup + data[target_model]["steps_measured"]]
    prof = profile_pair(
        cfg,
        dm,
        batches,
        args.device,
        args.precision,
        args.seed,
        os.path.join(run_root, "profile"),
    )
    loop_cats, light_cats = prof["loop"]["categories"], prof["lightning"]["categories"]
    cats = sorted(set(loop_cats) | set(light_cats), key=lambda c: -light_cats.get(c, 0.0))
    steps = len(batches)
    prow = []
    for c, a, b in [(c, loop_cats.get(c, 0.0), light_cats.get(c, 0.0)) for c in cats] + [
        ("**total**", prof["loop"]["total"], prof["lightning"]["total"])
    ]:
        a, b = 1000 * a / steps, 1000 * b / steps
        prow.append([c, f"{a:.1f}", f"{b:.1f}", f"{b - a:+.1f}"])
    why = "worst ratio, below target" if below else "fastest model: overhead weighs most"
    data["_profile"] = {
        "model": target_model,
        "steps": steps,
        **{k: {"categories": v["categories"], "total": v["total"]} for k, v in prof.items()},
    }
    top = prof["lightning"]["top_lightning"][:5]
    return [
        "",
        f"Where the time goes ({target_model}, {why}): " + PROFILE_TEXT.format(steps=steps),
        "",
        md_table(["where", "loop ms/step", "Lightning ms/step", "difference"], prow),
        "",
        "Largest Lightning/tqdm self times: "
        + "; ".join(f"{label} {1000 * t / steps:.2f} ms/step" for t, label in top),
    ]


HEADERS = ["model", "steps x rounds", "loop ms/step (IQR%)", "Lightning ms/step (IQR%)"]
HEADERS += ["lean ms/step", "loop img/s", "Lightning img/s", "Lightning/loop", "lean/loop"]
HEADERS += [f"target {TARGET}", "extra fixed s/fit", "bar thread CPU ms/step"]
METHOD = (
    "ratio = median over rounds of the paired loop/Lightning step-time ratio (images/s ratio). "
    "`Lightning` = seg-bench's Trainer with its Rich progress bar rendering as in a terminal "
    "(into /dev/null); `lean` = the same Trainer without the progress bar. `extra fixed s/fit` "
    "= Trainer set-up + teardown beyond the loop's, per fit; `bar thread CPU` = CPU time of the "
    "progress bar's refresh thread (/proc, robust to machine load)."
)
PROFILE_TEXT = (
    "cProfile self time (main-thread CPU time, so unaffected by other processes) in ms per step "
    "over one run of {steps} steps each (warm-up included; the Lightning column also holds the "
    "Trainer's set-up and teardown, spread over the steps; cProfile inflates Python-heavy "
    "parts, so compare columns, not absolute values)."
)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_torch(args.threads, args.cpu_time)

    budget = Budget(args.budget)
    models = models_arg(args.models, ("unet",) if args.quick else None)
    n_rounds = args.rounds or (2 if args.quick else 3)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 3)
    accelerator = "gpu" if args.device.startswith("cuda") else "cpu"

    cfg0 = cpu_config(models[0], accelerator=accelerator, devices=1, max_epochs=1)
    args.precision = profile_precision(cfg0)
    dm = datamodule(cfg0)
    max_steps = args.steps or (3 if args.quick else 20)
    pool = pregenerate(dm, warmup + max_steps, seed=args.seed)
    setting = (
        f"patch {cfg0.patch_size}, batch {cfg0.batch_size}, width {cfg0.width}, "
        f"{args.precision}, {args.device}; clock: {clock_name()}"
    )
    print(
        f"# training throughput, cpu profile: patch {cfg0.patch_size}, batch {cfg0.batch_size}, "
        f"width {cfg0.width}, precision {args.precision}, device {args.device}, "
        f"clock: {clock_name()}\n# {machine_line()}",
        flush=True,
    )

    rows, data, headline = [], {}, {}
    run_root = tempfile.mkdtemp(prefix="seg-bench-train-")
    reserve = 0.0 if args.no_profile else 0.15 * budget.seconds  # for the profile at the end
    where = "" if args.device == "cpu" else f" ({args.device})"
    for i, name in enumerate(models):
        cfg = cpu_config(name, accelerator=accelerator, devices=1, max_epochs=1)
        # Size the run from one probe step so every model fits its share of the budget.
        probe = loop_run(cfg, dm, pool[:2], args.device, args.precision, args.seed)["steps"][-1]
        per_run = (budget.left() - reserve) / (len(models) - i) / (3 * n_rounds)
        n = args.steps or steps_for(
            per_run - warmup * probe, probe, 3 if args.quick else 6, max_steps
        )
        runs = compare(
            cfg, dm, pool[: warmup + n], args, warmup, n_rounds, os.path.join(run_root, name)
        )
        data[name], row = summarise(name, cfg, runs, n, warmup, n_rounds)
        data[name]["probe_step_s"] = probe
        headline[f"Lightning/loop {name}{where}"] = f"{data[name]['ratio']:.3f}"
        rows.append(row)

    md = [
        f"Steady-state training throughput at the cpu profile ({setting}); median step time, "
        f"first {warmup} steps of each run dropped; " + METHOD,
        "",
        md_table(HEADERS, rows),
    ]
    if not args.no_profile and data and args.device.startswith("cuda"):
        # Kernels run asynchronously and the main thread's CPU time lands wherever it next
        # synchronises (seen on an H200: hooks "costing" seconds per 13 ms step), so the split
        # would mislead; the lean column already separates the progress bar.
        md += ["", "No cProfile split on CUDA: main-thread CPU time does not follow GPU work."]
    elif not args.no_profile and data:
        md += profile_section(data, dm, pool, args, warmup, run_root)

    shutil.rmtree(run_root, ignore_errors=True)  # the Trainers' default_root_dir: nothing to keep
    title = f"Training throughput: Lightning vs hand-written loop{where}"
    emit(args, "training", title, "\n".join(md), headline, data, budget)


if __name__ == "__main__":
    main()
