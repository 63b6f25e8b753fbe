"""Data pipeline: batches/s each DataModule delivers vs the rate training consumes them.

For each DataModule at the cpu profile (patch 128, batch 8) with the ``paper`` augmentation
preset: synthetic always; dsb2018, isbi2012, ncmir, epfl when their data is there
($SEG_BENCH_DATA, else ../shared/data relative to the working directory; nothing is downloaded
or written). Columns:

* set-up: ``setup("fit")`` (reading/generating and normalising train + val);
* batches/s of the DataModule's own ``train_dataloader()`` with 0 workers (in-process) and with 1
  worker (after the worker has started; its start-up, fork + first batch, is shown apart);
* the consumption rate: training steps/s of the hand-written step (bench_training.py shows
  Lightning at the same speed) at the cpu profile's precision for every core architecture,
  measured in this run on pre-generated batches; the slowest and the fastest are shown;
* headroom = loader batches/s / steps/s (> 1: the loader keeps up even in-process).

``default_num_workers()`` (seg_bench.data.base) is what the DataModule picks when the profile
does not say. Then, to check that choice end to end, the fastest architecture trains on the
synthetic loader (paper augmentation) with 0 and with 1 worker: steps/s, warm-up dropped.

    python benchmarks/bench_data_pipeline.py            # ~2 min on 2 cores
    python benchmarks/bench_data_pipeline.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    Budget,
    add_common_args,
    core_models,
    cores,
    emit,
    intervals,
    machine_line,
    md_table,
    models_arg,
    setup_torch,
    stats,
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

REAL = ("dsb2018", "isbi2012", "ncmir", "epfl")


def data_base() -> str:
    return os.environ.get("SEG_BENCH_DATA", os.path.join(os.getcwd(), "..", "shared", "data"))


def loader_rate(dm, workers: int, batches: int, seed: int) -> dict:
    """Steady batches/s of dm.train_dataloader() with ``workers``; start-up timed apart."""
    import torch

    torch.manual_seed(seed)
    dm.num_workers = workers
    t0 = time.perf_counter()
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)
    startup = time.perf_counter() - t0
    stamps = [time.perf_counter()]
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:  # the epoch ended: a new one (persistent workers stay up)
            it = iter(loader)
            next(it)
        stamps.append(time.perf_counter())
    del it, loader
    s = stats(intervals(stamps))
    total = stamps[-1] - stamps[0]
    return {"startup_s": startup, "batches_per_s": batches / total, "median_batch_s": s["median"]}


def end_to_end(cfg, dm, workers: int, steps: int, warmup: int, precision: str, seed: int) -> dict:
    """Training steps/s of the hand loop fed by the DataModule's own loader."""
    import torch

    dm.num_workers = workers
    model = make_model(cfg, dm, seed=seed)
    loop = HandLoop(cfg, model, precision)
    torch.manual_seed(seed)
    loader = dm.train_dataloader()
    stamps: list[float] = []
    while len(stamps) < warmup + steps + 1:
        for batch in loader:
            stamps.append(time.perf_counter())
            if len(stamps) == warmup + steps + 1:
                break
            loop.step(batch)
    del loader
    s = stats(intervals(stamps)[warmup:])
    return {"steps_per_s": 1 / s["median"], "median_step_s": s["median"], "spread": s["spread"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, budget=150)
    ap.add_argument(
        "--datasets", default=None, help="comma list (default: synthetic + the real ones found)"
    )
    ap.add_argument("--augment", default="paper")
    ap.add_argument("--models", default=None, help=f"consumers (default {','.join(core_models())})")
    ap.add_argument(
        "--batches", type=int, default=None, help="batches timed per loader (default 15, quick 5)"
    )
    return ap.parse_args(argv)


def consumption(models: list[str], dm0, precision: str, quick: bool, seed: int) -> dict:
    """Median training step time (s) of every architecture on the same pre-generated batches."""
    warm, steps = (1, 2) if quick else (2, 4)
    pool = pregenerate(dm0, warm + steps, seed=seed)
    consume = {}
    for name in models:
        cfg = cpu_config(name)
        loop = HandLoop(cfg, make_model(cfg, dm0, seed=seed), precision)
        consume[name] = stats(loop.run(batch_loader(pool))[warm:])["median"]
        print(f"consumer {name}: {1 / consume[name]:.2f} steps/s", flush=True)
    return consume


def measure_dataset(ds: str, args, n_batches: int, budget: Budget) -> dict | str:
    """Set-up time and loader rates of one dataset, or why it was not measured."""
    try:
        cfg = cpu_config("unet", dataset=ds, augment=args.augment)
        t0 = time.perf_counter()
        dm = datamodule(cfg)
        setup = time.perf_counter() - t0
    except Exception as exc:  # missing or incomplete data: say so, create nothing
        return f"{ds} ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"
    r0 = loader_rate(dm, 0, n_batches, args.seed)
    r1 = loader_rate(dm, 1, n_batches, args.seed) if budget.left() > 5 else None
    print(
        f"{ds}: 0 workers {r0['batches_per_s']:.1f} batches/s"
        + (f", 1 worker {r1['batches_per_s']:.1f}" if r1 else ""),
        flush=True,
    )
    return {
        "setup_s": setup,
        "workers0": r0,
        "workers1": r1,
        "patch": dm.patch_size,
        "train_images": len(dm.samples("train")),
    }


def dataset_row(ds: str, entry: dict, consume: dict, slowest: str, fastest: str) -> list[str]:
    r0, r1 = entry["workers0"], entry["workers1"]
    return [
        ds,
        f"{entry['train_images']}",
        f"{entry['setup_s']:.1f}",
        f"{r0['batches_per_s']:.1f}",
        f"{r1['batches_per_s']:.1f} ({r1['startup_s']:.1f} s)" if r1 else "-",
        f"{r0['batches_per_s'] * consume[slowest]:.0f}x",
        f"{r0['batches_per_s'] * consume[fastest]:.0f}x",
    ]


def report(args, cfg0, precision, consume, rows, skipped, e2e, auto_workers) -> list[str]:
    slowest, fastest = max(consume, key=consume.get), min(consume, key=consume.get)
    headers = ["dataset", "train images", "set-up s", "0 workers batch/s"]
    headers += ["1 worker batch/s (start-up)", f"headroom vs {slowest}", f"headroom vs {fastest}"]
    md = [
        f"Batches/s of each DataModule's train loader at the cpu profile (patch "
        f"{cfg0.patch_size}, batch {cfg0.batch_size}, `{args.augment}` augmentation) vs the "
        f"training consumption rate ({precision}): slowest architecture {slowest} "
        f"{1 / consume[slowest]:.2f} steps/s, fastest {fastest} {1 / consume[fastest]:.2f} "
        f"steps/s. `default_num_workers()` on this machine ({cores()} cores): "
        f"**{auto_workers}**. Headroom = loader batches/s (0 workers) / steps/s.",
        "",
        md_table(headers, rows),
    ]
    if skipped:
        md += ["", "Not measured: " + "; ".join(skipped)]
    if e2e:
        a, b = e2e[0], e2e[1]
        md += [
            "",
            f"End to end, {fastest} trained from the synthetic `{args.augment}` loader: 0 workers "
            f"{a['steps_per_s']:.2f} steps/s, 1 worker {b['steps_per_s']:.2f} steps/s "
            f"(1 worker / 0 workers = {b['steps_per_s'] / a['steps_per_s']:.2f}x).",
        ]
    return md


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_torch(args.threads)
    from seg_bench.data.base import default_num_workers

    budget = Budget(args.budget)
    n_batches = args.batches or (5 if args.quick else 15)
    models = models_arg(args.models)
    base = data_base()
    found = list(REAL) if os.path.isdir(base) else []
    names = (
        [d.strip() for d in args.datasets.split(",")] if args.datasets else ["synthetic", *found]
    )
    auto_workers = default_num_workers()
    print(
        f"# data pipeline, augment {args.augment}, data root {os.path.abspath(base)}\n"
        f"# {machine_line()}",
        flush=True,
    )

    # Consumption: step time of every architecture at the cpu profile's precision.
    cfg0 = cpu_config(models[0])
    precision = profile_precision(cfg0)
    consume = consumption(models, datamodule(cfg0), precision, args.quick, args.seed)
    slowest, fastest = max(consume, key=consume.get), min(consume, key=consume.get)

    rows, data, skipped = [], {"consumers_step_s": consume, "default_num_workers": auto_workers}, []
    for ds in names:
        if budget.left() < 10:
            skipped.append(f"{ds} (budget)")
            continue
        entry = measure_dataset(ds, args, n_batches, budget)
        if isinstance(entry, str):
            skipped.append(entry)
            continue
        data[ds] = entry
        rows.append(dataset_row(ds, entry, consume, slowest, fastest))

    # End to end: does a worker help the fastest consumer on this machine?
    e2e = {}
    if budget.left() > 8 * consume[fastest] * 12 or args.quick:
        cfg = cpu_config(fastest, augment=args.augment)
        dm = datamodule(cfg)
        e_steps, e_warm = (4, 2) if args.quick else (12, 3)
        for w in (0, 1):
            e2e[w] = end_to_end(cfg, dm, w, e_steps, e_warm, precision, args.seed)
        data["end_to_end"] = {"model": fastest, **{f"workers{w}": v for w, v in e2e.items()}}

    md = report(args, cfg0, precision, consume, rows, skipped, e2e, auto_workers)
    headline = {"default_num_workers": auto_workers}
    if e2e:
        headline[f"1 worker vs 0 workers ({fastest}, end to end)"] = (
            f"{e2e[1]['steps_per_s'] / e2e[0]['steps_per_s']:.2f}x"
        )
    if "synthetic" in data:
        headline["synthetic loader headroom vs slowest model"] = (
            f"{data['synthetic']['workers0']['batches_per_s'] * consume[slowest]:.0f}x"
        )
    title = "Data pipeline: loader rate vs consumption"
    emit(args, "data_pipeline", title, "\n".join(md), headline, data, budget)


if __name__ == "__main__":
    main()
