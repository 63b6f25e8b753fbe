"""`seg-bench` command line. User errors print one line and exit 2 (see seg_bench/console.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from seg_bench.console import Parser, bounded, check_outputs, debug, one_line_warnings
from seg_bench.errors import UserError
from seg_bench.paths import runs_dir
from seg_bench.plugins import load_plugins

RUNS_DIR = runs_dir()
PLUGIN_HELP = "import this module or .py file first (repeatable; also $SEG_BENCH_PLUGINS)"


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
    g.add_argument(
        "--profile", help="smoke | cpu | paper (default: cpu without a GPU, paper with one)"
    )
    g.add_argument("--root", help="dataset folder (default: $SEG_BENCH_DATA/<dataset>)")
    g.add_argument(
        "--config",
        dest="config_file",
        help="a profile file of your own (YAML, as seg_bench/profiles/*.yaml)",
    )
    g.add_argument("--epochs", dest="max_epochs", type=bounded(int, 1))
    g.add_argument("--lr", type=float)  # RunConfig.validate: "--lr must be positive"
    g.add_argument("--optimizer", help="sgd | adagrad | adam | adamw")
    g.add_argument("--weight-decay", type=bounded(float, 0))
    g.add_argument("--schedule", help="cosine | plateau")
    g.add_argument("--loss", help="bce | dice | bce_dice | focal | unet_weighted")
    g.add_argument("--batch-size", type=bounded(int, 1))
    g.add_argument("--patch-size", type=bounded(int, 16))
    g.add_argument(
        "--width",
        type=bounded(float, 0, strict=True),
        help="channel multiplier (1.0 = the published network)",
    )
    g.add_argument("--augment", help="none | d4 | paper | heavy")
    g.add_argument("--labels", help="manual | floodfill | region (train on weak labels)")
    g.add_argument("--precision", help="auto | 32 | bf16-mixed | 16-mixed")
    g.add_argument("--accelerator")
    g.add_argument("--devices")
    g.add_argument("--num-nodes", type=bounded(int, 1))
    g.add_argument("--strategy", help="auto | ddp | ...")
    g.add_argument("--tta", action="store_true", default=None, help="test-time augmentation (D4)")
    g.add_argument(
        "--logger",
        help="auto (W&B, offline without WANDB_API_KEY) | wandb | csv | tensorboard | none",
    )
    g.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any RunConfig field"
    )


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = [
        "root", "config_file", "max_epochs", "lr", "optimizer", "weight_decay", "schedule", "loss",
        "batch_size", "patch_size", "width", "augment", "labels", "precision", "accelerator",
        "devices", "num_nodes", "strategy", "tta", "logger",
    ]  # fmt: skip
    if args.root is not None and not Path(args.root).is_dir():
        raise UserError(f"--root {args.root}: folder not found; give the dataset's folder")
    out = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    if "devices" in out and str(out["devices"]).isdigit():
        out["devices"] = int(out["devices"])
    out.update(_parse_set(args.set))
    return out


def add_tracking_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tracking (--logger picks the kind; see seg_bench/tracking.py)")
    g.add_argument("--project", help="W&B project (default: $WANDB_PROJECT or seg-bench-<dataset>)")
    g.add_argument(
        "--log-model", action="store_true", help="log the best checkpoint as a W&B artifact"
    )


def cmd_models(args) -> int:
    from seg_bench.registry import MODELS

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
    from seg_bench.config import resolve_config
    from seg_bench.protocol.bench import run_one
    from seg_bench.protocol.records import record_path_for

    cfg = resolve_config(
        args.dataset, args.model, args.profile, seed=args.seed, **run_overrides(args)
    )
    results = Path(args.results_dir) if args.results_dir else RUNS_DIR / "results"
    run_dir = Path(args.run_dir) if args.run_dir else None
    record = run_one(
        cfg, results, RUNS_DIR, force=args.force, run_dir=run_dir, command="train",
        progress=True, project=args.project, log_model=args.log_model,
    )  # fmt: skip
    if record is None:  # under DDP only rank 0 tests and reports
        return 0
    print(f"best checkpoint: {record['checkpoint']}")
    print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"]["overall"].items()))
    print(f"result record: {record_path_for(results, cfg)}")
    return 0


def _leaderboard_dir(args, results: Path) -> Path:
    """--leaderboard-dir, else beside the records: never the checkout's committed tables."""
    return Path(args.leaderboard_dir) if args.leaderboard_dir else results / "leaderboards"


def cmd_bench(args) -> int:
    from seg_bench.protocol.bench import bench

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    results = Path(args.results_dir) if args.results_dir else RUNS_DIR / "results"
    bench(
        args.dataset,
        models=models,
        profile=args.profile,
        seeds=args.seeds,
        results_dir=results,
        runs_dir=RUNS_DIR,
        leaderboard_dir=_leaderboard_dir(args, results),
        force=args.force,
        overrides=run_overrides(args),
        trials=args.trials,
        log_model=args.log_model,
        project=args.project,
    )
    return 0


def cmd_search(args) -> int:
    from seg_bench import search

    overrides = run_overrides(args)
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.trials is None and not args.show:
        raise UserError(
            "--trials N is required (the number of finished trials the study should hold); "
            "--show alone prints an existing study"
        )
    if args.trials is None:
        study, url = search.load(
            args.dataset, args.model, args.profile, args.storage, args.study, RUNS_DIR
        )
        print(search.show(study, search.mask_url(url)))
        return 0
    result = search.run_search(
        args.dataset, args.model, args.trials, args.profile, storage=args.storage,
        study_name=args.study, timeout=args.timeout, space=args.space, pruner=args.pruner,
        overrides=overrides, runs_dir=RUNS_DIR, heartbeat_s=args.heartbeat, project=args.project,
        log_model=args.log_model,
    )  # fmt: skip
    print(
        search.show(result.study, result.storage)
        if args.show
        else search.trials_table(result.study)
    )
    print(search.describe_best(result))
    return 0


def cmd_leaderboard(args) -> int:
    from seg_bench.protocol.report import write_leaderboard

    results = Path(args.results_dir) if args.results_dir else RUNS_DIR / "results"
    out = _leaderboard_dir(args, results)
    print(
        write_leaderboard(
            args.dataset, results, out, by=args.by, profile=args.profile, force=args.force
        )
    )
    return 0


def cmd_data(args) -> int:
    if args.action == "download":
        from seg_bench.data.download import download

        print(f"{args.name}: ready in {download(args.name, args.root, force=args.force)}")
        return 0
    from seg_bench.data.check import check_dataset, format_summary

    print(format_summary(check_dataset(args.name, args.root)))
    return 0


def cmd_predict(args) -> int:
    from seg_bench.inference.predict import predict_path

    done = predict_path(
        args.checkpoint, args.input, args.output, tta=args.tta, instances=args.instances,
        overlap=args.overlap, dsb_csv=args.dsb_csv, device=args.device, stack=args.stack,
    )  # fmt: skip
    for path in done.files:
        print(f"wrote {path}")
    print(f"predicted {len(done.names)} image(s); {len(done.files)} file(s) in {args.output}")
    return 0


def cmd_score(args) -> int:
    import json

    from seg_bench.evaluation.score import format_score, score

    result = score(
        Path(args.pred), Path(args.truth), kind=args.kind, dataset=args.dataset,
        positive=args.positive, root=args.root,
    )  # fmt: skip
    print(json.dumps(result, indent=1) if args.json else format_score(result))
    return 0


def cmd_weak_labels(args) -> int:
    import numpy as np
    import tifffile

    from seg_bench.data.io import read_image
    from seg_bench.io import atomic_write
    from seg_bench.labels import read_points_csv, weak_labels

    points = read_points_csv(args.points)
    images = Path(args.images)
    out = Path(args.output)
    options = _parse_set(args.set)
    if args.threshold is not None:
        options["threshold"] = args.threshold
    for name, pts in sorted(points.items()):
        candidates = [images / name, *sorted(images.glob(f"{Path(name).stem}.*"))]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise UserError(f"{args.points}: image '{name}' is not in {images}")
        labels = weak_labels(read_image(path), pts, args.method, image_name=name, **options)
        with atomic_write(out / f"{Path(name).stem}.tif", "wb") as f:
            tifffile.imwrite(f, labels.astype(np.uint16 if labels.max() < 2**16 else np.uint32))
        print(f"{name}: {int(labels.max())} objects from {len(pts)} points")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="seg-bench", description=__doc__)
    parser.add_argument(
        "--plugin", dest="plugins", action="append", default=[], metavar="MODULE_OR_FILE",
        help=PLUGIN_HELP,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("models", help="list registered architectures").set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list registered datasets").set_defaults(func=cmd_datasets)
    add_training_commands(sub)
    add_file_commands(sub)
    for command in sub.choices.values():  # --plugin may also follow the command
        command.add_argument(
            "--plugin", dest="command_plugins", action="append", default=argparse.SUPPRESS,
            metavar="MODULE_OR_FILE", help=PLUGIN_HELP,
        )  # fmt: skip
    return parser


def add_training_commands(sub: Any) -> None:
    """train, bench, search: the commands that train and take the run options."""
    p = sub.add_parser("train", help="one training run, then test")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--model", default="unet")
    p.add_argument("--seed", type=bounded(int, 0), default=0)
    p.add_argument(
        "--run-dir", help="default: runs/<dataset>/<model>__seed<k>__<profile>__<config key>"
    )
    p.add_argument("--results-dir", help="where the result record goes (default: runs/results)")
    p.add_argument(
        "--force", action="store_true", help="replace what the run folder holds (says what)"
    )
    add_run_options(p)
    add_tracking_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("bench", help="the protocol: train seeds, test, leaderboard")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--models", help="comma-separated (default: the dataset's benchmark list)")
    p.add_argument("--seeds", type=int, default=1)  # bench says "--seeds must be at least 1"
    p.add_argument(
        "--trials", type=bounded(int, 0), default=0, help="search N trials per model first"
    )
    p.add_argument("--results-dir", help="default: runs/results")
    p.add_argument("--leaderboard-dir", help="default: <results-dir>/leaderboards")
    p.add_argument(
        "--force",
        action="store_true",
        help="rerun finished (model, seed) pairs; may replace committed leaderboards",
    )
    add_run_options(p)
    add_tracking_options(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "search", help="Optuna search; rerun to resume, share --storage across workers"
    )
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--model", default="unet")
    p.add_argument(
        "--trials",
        type=bounded(int, 1),
        help="run until the study holds N finished trials (rerun = resume)",
    )
    p.add_argument(
        "--storage",
        help="database URL, e.g. postgresql://USER:PASS@HOST/DB "
        "(default: SQLite runs/search/<study>.db)",
    )
    p.add_argument("--study", help="study name (default: <dataset>-<model>-<profile>)")
    p.add_argument(
        "--timeout", type=bounded(float, 0, strict=True), help="start no new trial after S seconds"
    )
    p.add_argument(
        "--space",
        default="optimizer,lr",
        help="comma-separated: optimizer,lr,weight_decay,batch_size,loss",
    )
    p.add_argument("--pruner", default="median", help="median | hyperband | none")
    p.add_argument(
        "--seed", type=bounded(int, 0), help="sampler and training seed (default: the profile's)"
    )
    p.add_argument(
        "--heartbeat",
        type=bounded(int, 0),
        help="seconds between trial heartbeats on a shared database (default 60; 0 = off)",
    )
    p.add_argument(
        "--show",
        action="store_true",
        help="print trials and parameter importances (alone: without running)",
    )
    add_run_options(p)
    add_tracking_options(p)
    p.set_defaults(func=cmd_search)


def add_file_commands(sub: Any) -> None:
    """data, predict, score, weak-labels, leaderboard: the commands that read and write files."""
    p = sub.add_parser("data", help="download or check a dataset")
    p.add_argument("action", choices=["download", "check"])
    p.add_argument("name")
    p.add_argument("--root", help="default: $SEG_BENCH_DATA/<dataset folder>")
    p.add_argument("--force", action="store_true", help="download again")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("predict", help="apply a checkpoint to images, folders or TIFF stacks")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    p.add_argument("--instances", action="store_true", help="also write instance label images")
    p.add_argument("--overlap", type=bounded(float, 0, below=1), default=0.25)
    p.add_argument("--dsb-csv", help="also write a Kaggle DSB 2018 submission CSV here")
    p.add_argument(
        "--stack", action="store_true", help="a TIFF stack's pages into one multi-page file each"
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "gpu"],
        help="auto (the GPU if present) | cpu | cuda",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("score", help="score predictions against ground truth")
    p.add_argument(
        "--pred", required=True, help="folder of masks/label images, DSB RLE CSV or TIFF stack"
    )
    p.add_argument(
        "--truth",
        required=True,
        help="the same, or a folder in the DSB layout (non-zero = positive)",
    )
    p.add_argument("--kind", default="auto", help="semantic | instance | auto")
    p.add_argument(
        "--dataset",
        help="apply this dataset's truth convention (e.g. isbi2012: membrane = label 0)",
    )
    p.add_argument(
        "--positive", type=int, metavar="VALUE", help="truth label value of the positive class"
    )
    p.add_argument("--root", help="the --dataset folder, for image sizes (CSV against CSV)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("weak-labels", help="training masks from click points")
    p.add_argument("--images", required=True)
    p.add_argument("--points", required=True, help="CSV with columns image,x,y")
    p.add_argument("--method", default="floodfill", help="floodfill | region")
    p.add_argument("--threshold", type=float)
    p.add_argument("--output", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="method option")
    p.set_defaults(func=cmd_weak_labels)

    p = sub.add_parser("leaderboard", help="rebuild a leaderboard from result records")
    p.add_argument("--dataset", required=True)
    p.add_argument("--results-dir", help="default: runs/results")
    p.add_argument("--leaderboard-dir", help="default: <results-dir>/leaderboards")
    p.add_argument("--by", choices=["labels", "postprocess"], help="a study's tables instead")
    p.add_argument("--profile", help="compare the records of this profile (default: the newest)")
    p.add_argument(
        "--force", action="store_true", help="replace committed leaderboards with these records"
    )
    p.set_defaults(func=cmd_leaderboard)


def main(argv: list[str] | None = None) -> int:
    try:
        with one_line_warnings():
            args = build_parser().parse_args(argv)
            load_plugins([*args.plugins, *getattr(args, "command_plugins", [])])
            check_outputs(args)
            return args.func(args)
    except UserError as e:
        if debug():
            raise
        print(f"seg-bench: error: {str(e).replace(chr(10), ' ')}", file=sys.stderr)
        return 2
    except OSError as e:
        # A file the system refused (missing folder, a file where a folder should be, no
        # permission): the user can fix it, so it is one line too.
        if e.filename is None or debug():
            raise
        print(f"seg-bench: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "seg-bench: interrupted; finished results are saved, rerun the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
