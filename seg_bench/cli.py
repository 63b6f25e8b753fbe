"""`seg-bench` command line: the parser and ``main``. The commands live in seg_bench/commands.py.

User errors print one line and exit 2 (see seg_bench/console.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from seg_bench.commands import (
    cmd_bench,
    cmd_data,
    cmd_datasets,
    cmd_export,
    cmd_leaderboard,
    cmd_lr_find,
    cmd_models,
    cmd_predict,
    cmd_score,
    cmd_search,
    cmd_train,
    cmd_weak_labels,
)
from seg_bench.config import PROFILES, SCHEDULES
from seg_bench.console import Parser, bounded, check_outputs, debug, one_line_warnings
from seg_bench.errors import UserError
from seg_bench.paths import runs_dir
from seg_bench.plugins import load_plugins
from seg_bench.tracking.dashboard_cli import add_dashboard_command

# Where runs go; None: $SEG_BENCH_RUNS, else ./runs, read when a command starts (tests set it).
RUNS_DIR: Path | None = None
PLUGIN_HELP = "import this module or .py file first (repeatable; also $SEG_BENCH_PLUGINS)"


def add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run options (override the profile)")
    g.add_argument(
        "--profile",
        help=f"{' | '.join(PROFILES)} (default: cpu without a GPU, paper with one)",
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
    g.add_argument("--schedule", help=" | ".join(str(s) for s in SCHEDULES if s))
    g.add_argument(
        "--loss",
        help="bce | ce | dice | bce_dice | focal | unet_weighted | boundary3_ce_dice | "
        "distance_bce_mse (the last two follow --set target=...)",
    )
    g.add_argument("--batch-size", type=bounded(int, 1))
    g.add_argument("--patch-size", type=bounded(int, 16))
    g.add_argument(
        "--width",
        type=bounded(float, 0, strict=True),
        help="channel multiplier (1.0 = the published network)",
    )
    g.add_argument("--augment", help="none | d4 | paper | heavy")
    g.add_argument("--labels", help="manual | floodfill | region (train on weak labels)")
    g.add_argument("--precision", help="auto | 32-true | bf16-mixed | 16-mixed | ...")
    g.add_argument("--accelerator")
    g.add_argument("--devices")
    g.add_argument("--num-nodes", type=bounded(int, 1))
    g.add_argument("--strategy", help="auto | ddp | ddp_spawn | fsdp | ... (Lightning's names)")
    g.add_argument(
        "--tta",
        action="store_true",
        default=None,
        help="test-time augmentation (D4); bench tests the network of the run without it "
        "(training that run first if needed) and records both",
    )
    g.add_argument(
        "--logger",
        help="auto (W&B, offline without WANDB_API_KEY) | wandb | csv | tensorboard | none",
    )
    g.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any RunConfig field"
    )


def add_tracking_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "tracking (--logger picks the kind; see seg_bench/tracking/loggers.py)"
    )
    g.add_argument("--project", help="W&B project (default: $WANDB_PROJECT or seg-bench-<dataset>)")
    g.add_argument(
        "--log-model", action="store_true", help="log the best checkpoint as a W&B artifact"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="seg-bench", description=__doc__)
    parser.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help=PLUGIN_HELP,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("models", help="list registered architectures").set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list registered datasets").set_defaults(func=cmd_datasets)
    add_training_commands(sub)
    add_lr_find_command(sub)
    add_file_commands(sub)
    add_export_command(sub)
    add_dashboard_command(sub)
    for command in sub.choices.values():  # --plugin may also follow the command
        command.add_argument(
            "--plugin",
            dest="command_plugins",
            action="append",
            default=argparse.SUPPRESS,
            metavar="MODULE_OR_FILE",
            help=PLUGIN_HELP,
        )
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
    end_run_command(p, cmd_train)

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
    p.add_argument(
        "--rescore",
        action="store_true",
        help="re-test finished pairs that older evaluation code scored, from their checkpoints "
        "(no training); pairs not yet run are trained as usual",
    )
    end_run_command(p, cmd_bench)

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
    end_run_command(p, cmd_search)


def add_lr_find_command(sub: Any) -> None:
    """lr-find: a training command too (it takes the run options)."""
    p = sub.add_parser("lr-find", help="learning-rate range test per model (training data)")
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--models", help="comma-separated (default: the dataset's benchmark list)")
    p.add_argument("--seed", type=bounded(int, 0), default=0)
    p.add_argument("--steps", type=bounded(int, 10), default=100, help="steps of the test")
    p.add_argument(
        "--output",
        default="benchmarks/lr_find",
        help="folder for <dataset>_<profile>.json and .png (models found there are kept)",
    )
    end_run_command(p, cmd_lr_find)


def end_run_command(p: argparse.ArgumentParser, func: Any) -> None:
    """Close a training command: after its own options, the run and tracking options (their
    own ``--help`` sections) and the function that runs it."""
    add_run_options(p)
    add_tracking_options(p)
    p.set_defaults(func=func)


def add_predict_command(sub) -> None:
    p = sub.add_parser("predict", help="apply a checkpoint to images, folders or TIFF stacks")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    p.add_argument("--instances", action="store_true", help="also write instance label images")
    p.add_argument("--overlap", type=bounded(float, 0, below=1), default=0.25)
    p.add_argument("--dsb-csv", help="also write a Kaggle DSB 2018 submission CSV here")
    p.add_argument(
        "--method",
        help="instances by this post-processing method (leaderboard --by postprocess names "
        "them); its parameters from --record, else its defaults",
    )
    p.add_argument(
        "--record",
        help="the checkpoint's result record: instances by the method and parameters that "
        "validation chose for the leaderboard (or by --method's tuned ones)",
    )
    p.add_argument(
        "--stack", action="store_true", help="a TIFF stack's pages into one multi-page file each"
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "gpu"],
        help="auto (the GPU if present) | cpu | cuda",
    )
    p.add_argument(
        "--engine",
        default="torch",
        choices=["torch", "onnxruntime"],
        help="onnxruntime: run an exported model.onnx (or its folder) on the CPU",
    )
    p.set_defaults(func=cmd_predict)


def add_file_commands(sub: Any) -> None:
    """data, predict, score, weak-labels, leaderboard: the commands that read and write files."""
    p = sub.add_parser("data", help="download or check a dataset")
    p.add_argument("action", choices=["download", "check"])
    p.add_argument("name")
    p.add_argument("--root", help="default: $SEG_BENCH_DATA/<dataset folder>")
    p.add_argument("--force", action="store_true", help="download again")
    p.set_defaults(func=cmd_data)

    add_predict_command(sub)

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


def add_export_command(sub: Any) -> None:
    p = sub.add_parser("export", help="ONNX / TorchScript / bioimage.io package + model card")
    p.add_argument("--checkpoint", help="a seg-bench checkpoint (default: the record's)")
    p.add_argument("--format", default="onnx,torchscript,bioimageio", help="comma-separated")
    p.add_argument("--output", required=True, help="folder to write (replaced atomically)")
    p.add_argument("--record", help="the run's result record: metrics and CI for the card")
    p.add_argument("--best", action="store_true", help="the best model of --dataset (by val)")
    p.add_argument("--dataset", help="with --best")
    p.add_argument("--results-dir", help="with --best; default: runs/results")
    p.add_argument("--sample", help="image for the package's test tensors and cover")
    p.add_argument("--force", action="store_true", help="replace a folder holding another model")
    p.set_defaults(func=cmd_export)


def main(argv: list[str] | None = None) -> int:
    try:
        with one_line_warnings():
            args = build_parser().parse_args(argv)
            load_plugins([*args.plugins, *getattr(args, "command_plugins", [])])
            check_outputs(args)
            args.runs_dir = RUNS_DIR or runs_dir()
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
