"""`seg-bench` command line. User errors print one line and exit 2; nothing else is hidden."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from seg_bench.errors import UserError

RUNS_DIR = Path(os.environ.get("SEG_BENCH_RUNS", "runs"))


def _parse_set(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run options (override the profile)")
    g.add_argument("--profile", help="smoke | cpu | paper (default: cpu without a GPU, paper with one)")
    g.add_argument("--root", help="dataset folder (default: $SEG_BENCH_DATA/<dataset>)")
    g.add_argument("--epochs", dest="max_epochs", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--optimizer", help="sgd | adagrad | adam | adamw")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--schedule", help="cosine | plateau")
    g.add_argument("--loss", help="bce | dice | bce_dice | focal | unet_weighted")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--patch-size", type=int)
    g.add_argument("--width", type=float, help="channel multiplier (1.0 = the published network)")
    g.add_argument("--augment", help="none | d4 | paper | heavy")
    g.add_argument("--labels", help="manual | floodfill | region (train on weak labels)")
    g.add_argument("--precision", help="auto | 32 | bf16-mixed | 16-mixed")
    g.add_argument("--accelerator")
    g.add_argument("--devices")
    g.add_argument("--num-nodes", type=int)
    g.add_argument("--strategy", help="auto | ddp | ...")
    g.add_argument("--tta", action="store_true", default=None, help="test-time augmentation (D4)")
    g.add_argument("--logger", help="wandb | csv | tensorboard | none")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any RunConfig field")


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = [
        "root", "max_epochs", "lr", "optimizer", "weight_decay", "schedule", "loss", "batch_size",
        "patch_size", "width", "augment", "labels", "precision", "accelerator", "devices",
        "num_nodes", "strategy", "tta", "logger",
    ]  # fmt: skip
    out = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    if "devices" in out and str(out["devices"]).isdigit():
        out["devices"] = int(out["devices"])
    out.update(_parse_set(args.set))
    return out


def cmd_models(args) -> int:
    from seg_bench.models import MODELS, _import_builtins

    _import_builtins()
    for name in MODELS.names():
        print(f"{name:24s} {MODELS.describe(name)}")
    for fam in MODELS.families():
        print(f"{fam.prefix + '<...>':24s} {fam.description}")
        print(f"{'':24s} e.g. {', '.join(fam.examples)}")
    return 0


def cmd_datasets(args) -> int:
    from seg_bench.data import DATASETS

    for name in DATASETS.names():
        print(f"{name:12s} {DATASETS.describe(name)}")
    return 0


def cmd_train(args) -> int:
    from seg_bench.bench import run_dir_for
    from seg_bench.config import resolve_config
    from seg_bench.evaluate import evaluate
    from seg_bench.train import train

    cfg = resolve_config(args.dataset, args.model, args.profile, seed=args.seed, **run_overrides(args))
    run_dir = Path(args.run_dir) if args.run_dir else run_dir_for(RUNS_DIR, cfg)
    result = train(cfg, run_dir)
    scores = evaluate(result.task.model, result.datamodule, cfg)["overall"]
    print(f"best checkpoint: {result.best_checkpoint}")
    print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return 0


def cmd_bench(args) -> int:
    from seg_bench.bench import bench

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    bench(
        args.dataset,
        models=models,
        profile=args.profile,
        seeds=args.seeds,
        results_dir=Path(args.results_dir) if args.results_dir else RUNS_DIR / "results",
        runs_dir=RUNS_DIR,
        leaderboard_dir=Path(args.leaderboard_dir),
        force=args.force,
        overrides=run_overrides(args),
        trials=args.trials,
    )
    return 0


def cmd_leaderboard(args) -> int:
    from seg_bench.report import write_leaderboard

    results = Path(args.results_dir) if args.results_dir else RUNS_DIR / "results"
    print(write_leaderboard(args.dataset, results, Path(args.leaderboard_dir)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seg-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("models", help="list registered architectures").set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list registered datasets").set_defaults(func=cmd_datasets)

    p = sub.add_parser("train", help="one training run, then test")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--model", default="unet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", help="default: runs/<dataset>/<model>__seed<k>__<profile>")
    add_run_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("bench", help="the protocol: train seeds, test, leaderboard")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--models", help="comma-separated (default: the dataset's benchmark list)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--trials", type=int, default=0, help="search N trials per model first")
    p.add_argument("--results-dir", help="default: runs/results")
    p.add_argument("--leaderboard-dir", default="leaderboards")
    p.add_argument("--force", action="store_true", help="rerun finished (model, seed) pairs")
    add_run_options(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("leaderboard", help="rebuild a leaderboard from result records")
    p.add_argument("--dataset", required=True)
    p.add_argument("--results-dir")
    p.add_argument("--leaderboard-dir", default="leaderboards")
    p.set_defaults(func=cmd_leaderboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"seg-bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seg-bench: interrupted; finished results are saved, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
