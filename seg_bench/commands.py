"""What each `seg-bench` command does, given its parsed arguments (seg_bench/cli.py parses them).

A command checks the values only it knows the meaning of (a folder that must exist, a method
name) before it reads or writes anything; the run options are checked by RunConfig.validate.
``args.runs_dir`` is set by ``cli.main`` ($SEG_BENCH_RUNS, else ./runs).
"""

from __future__ import annotations

import argparse
import difflib
import json
from pathlib import Path
from typing import Any

import yaml

from seg_bench.errors import UserError

# The RunConfig fields that the run options (cli.add_run_options) set.
RUN_OPTIONS = (
    "root config_file max_epochs lr optimizer weight_decay schedule loss batch_size patch_size "
    "width augment labels precision accelerator devices num_nodes strategy tta logger"
).split()


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as a dict (values parsed as YAML, keys with ``_``)."""
    from seg_bench.config_files import load_yaml

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        try:
            out[key.strip().replace("-", "_")] = load_yaml(value)
        except yaml.YAMLError as e:
            problem = str(e).splitlines()[0]
            raise UserError(f"--set {item}: the value is not valid YAML ({problem})") from None
    return out


def existing_folder(option: str, value: str | None, what: str) -> Path | None:
    """``value`` as a Path if it is None or a folder; else a one-line UserError for ``option``."""
    if value is None or Path(value).is_dir():
        return None if value is None else Path(value)
    found = "is a file" if Path(value).exists() else "folder not found"
    raise UserError(f"{option} {value}: {found}; give {what}")


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig overrides the run options and ``--set`` of train, bench or search give."""
    existing_folder("--root", args.root, "the dataset's folder")
    out = {k: getattr(args, k) for k in RUN_OPTIONS if getattr(args, k, None) is not None}
    if "devices" in out and str(out["devices"]).isdigit():
        out["devices"] = int(out["devices"])
    options = parse_set(args.set)
    if cleared := sorted(k for k, v in options.items() if v is None):
        # resolve_config reads None as "not given": the profile's value would stay, silently
        raise UserError(
            f"--set {cleared[0]}=null: a null cannot clear the profile's {cleared[0]}; give a "
            "value, or a --config-file whose profile leaves it out"
        )
    out.update(options)
    return out


def results_dir(args: argparse.Namespace) -> Path:
    return Path(args.results_dir) if args.results_dir else args.runs_dir / "results"


def leaderboard_dir(args: argparse.Namespace, results: Path) -> Path:
    """--leaderboard-dir, else beside the records: never the checkout's committed tables."""
    return Path(args.leaderboard_dir) if args.leaderboard_dir else results / "leaderboards"


def cmd_models(args: argparse.Namespace) -> int:
    from seg_bench.registry import MODELS

    for name in MODELS.names():
        print(f"{name:24s} {MODELS.describe(name)}")
    for fam in MODELS.families():
        print(f"{fam.prefix + '<...>':24s} {fam.description}")
        print(f"{'':24s} e.g. {', '.join(fam.examples)}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from seg_bench.registry import DATASETS

    for name in DATASETS.names():
        print(f"{name:12s} {DATASETS.describe(name)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from seg_bench.config import resolve_config
    from seg_bench.protocol.bench import run_one
    from seg_bench.protocol.records import record_path_for

    cfg = resolve_config(
        args.dataset, args.model, args.profile, seed=args.seed, **run_overrides(args)
    )
    results = results_dir(args)
    record = run_one(
        cfg,
        results,
        args.runs_dir,
        force=args.force,
        run_dir=Path(args.run_dir) if args.run_dir else None,
        command="train",
        progress=True,
        project=args.project,
        log_model=args.log_model,
    )
    if record is None:  # under DDP only rank 0 tests and reports
        return 0
    print(f"best checkpoint: {record['checkpoint']}")
    print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"]["overall"].items()))
    print(f"result record: {record_path_for(results, cfg)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from seg_bench.protocol.bench import bench

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    results = results_dir(args)
    bench(
        args.dataset,
        models=models,
        profile=args.profile,
        seeds=args.seeds,
        results_dir=results,
        runs_dir=args.runs_dir,
        leaderboard_dir=leaderboard_dir(args, results),
        force=args.force,
        rescore=args.rescore,
        overrides=run_overrides(args),
        trials=args.trials,
        log_model=args.log_model,
        project=args.project,
    )
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    """Range-test each model, keep the curves and choices in ``--out``, print the profile
    lines that use them."""
    from seg_bench.config import benchmark_models, check_choice, default_profile, resolve_config
    from seg_bench.hardware import cpu_name
    from seg_bench.io import write_json
    from seg_bench.protocol.provenance import running_commit
    from seg_bench.tracking.loggers import KINDS
    from seg_bench.training.lr_find import LrFinding, find_lr, plot_findings

    if args.logger is not None:  # the test logs nothing, but a typo is still refused
        check_choice("--logger", args.logger, KINDS)
    unused = [
        o
        for o, v in (
            ("--tta", args.tta),
            ("--project", args.project),
            ("--log-model", args.log_model),
        )
        if v
    ]
    if unused:  # silently dropped, they would look applied to the curves
        raise UserError(  # "it": one option in the usual case
            f"lr-find tests no network and logs no run, so {' and '.join(unused)} would have "
            "no effect: leave it out (bench and train take it)"
        )
    running_commit()  # the code this run starts with, not HEAD after its first model
    profile = args.profile or default_profile()
    models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    models = models or benchmark_models(args.dataset, profile, args.config_file)
    overrides = run_overrides(args)
    configs = [
        resolve_config(args.dataset, m, profile, seed=args.seed, **overrides) for m in models
    ]
    out = Path(args.output) / f"{args.dataset}_{profile}.json"
    saved = json.loads(out.read_text()) if out.is_file() else {"models": {}}
    for cfg in configs:
        finding = find_lr(cfg, steps=args.steps)
        # Per model: models kept from an earlier run may have been measured elsewhere.
        provenance = {"commit": running_commit(), "machine": cpu_name()}
        saved["models"][cfg.model] = {**finding.to_dict(), **provenance}
        saved.update(dataset=args.dataset, profile=profile)
        write_json(out, saved)  # after every model: a killed run keeps what it measured
        print(
            f"{cfg.model}: loss minimum at lr {finding.min_loss_lr:.3g}, "
            f"chosen lr {finding.chosen_lr:g} ({finding.optimizer})"
        )
    found = saved["models"].values()
    machines = sorted({f.get("machine") or saved.get("machine", "?") for f in found})
    plot_findings(
        [LrFinding(**{k: f[k] for k in f if k not in ("commit", "machine")}) for f in found],
        out.with_suffix(".png"),
        f"lr range test: {args.dataset}, profile {profile}, {', '.join(machines)}",
    )
    print(f"written: {out}, {out.with_suffix('.png')}; profile lines (profiles.{profile}.models):")
    for name, f in saved["models"].items():
        print(f"  {name}: {{lr: {f['chosen_lr']:g}}}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from seg_bench import search
    from seg_bench.registry import MODELS

    MODELS.require(args.model)
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
            args.dataset, args.model, args.profile, args.storage, args.study, args.runs_dir
        )
        if overrides:  # alone, --show prints the study whatever its options
            search.check_shown_options(study, args.dataset, args.model, args.profile, overrides)
        print(search.show(study, search.mask_url(url)))
        return 0
    result = search.run_search(
        args.dataset,
        args.model,
        args.trials,
        args.profile,
        storage=args.storage,
        study_name=args.study,
        timeout=args.timeout,
        space=args.space,
        pruner=args.pruner,
        overrides=overrides,
        runs_dir=args.runs_dir,
        heartbeat_s=args.heartbeat,
        project=args.project,
        log_model=args.log_model,
    )
    if args.show:
        print(search.show(result.study, result.storage))
    else:
        print(search.trials_table(result.study))
    print(search.describe_best(result))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from seg_bench.config import PROFILES, check_choice
    from seg_bench.protocol.report import write_leaderboard

    if args.profile is not None:
        check_choice("--profile", args.profile, PROFILES)
    results = results_dir(args)
    out = leaderboard_dir(args, results)
    board = write_leaderboard(
        args.dataset, results, out, by=args.by, profile=args.profile, force=args.force
    )
    print(board)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.action == "download":
        from seg_bench.data.download import download

        print(f"{args.name}: ready in {download(args.name, args.root, force=args.force)}")
        return 0
    from seg_bench.data.check import check_dataset, format_summary

    existing_folder("--root", args.root, f"the {args.name} dataset's folder")
    print(format_summary(check_dataset(args.name, args.root)))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from seg_bench.inference.predict import predict_path

    done = predict_path(
        args.checkpoint,
        args.input,
        args.output,
        tta=args.tta,
        instances=args.instances,
        overlap=args.overlap,
        dsb_csv=args.dsb_csv,
        device=args.device,
        stack=args.stack,
        engine=args.engine,
        method=predict_method(args.method, args.record),
    )
    for path in done.files:
        print(f"wrote {path}")
    print(f"predicted {len(done.names)} image(s); {len(done.files)} file(s) in {args.output}")
    return 0


def predict_method(name: str | None, record_path: str | None) -> dict[str, Any] | None:
    """``predict``'s post-processing method: ``name`` with the parameters that validation
    tuned in the record (its chosen method where no name is given), else with its defaults."""
    from seg_bench.inference.instances import POSTPROCESSORS
    from seg_bench.protocol.records import read_record

    if name is not None and name not in POSTPROCESSORS:
        raise UserError(f"--method {name}: unknown; known: {', '.join(POSTPROCESSORS)}")
    if record_path is None:
        return {"method": name} if name else None

    metrics = read_record(Path(record_path))["metrics"]
    tuned = metrics.get("postprocess_methods") or {}
    if name is None and "method" in (metrics.get("postprocess") or {}):
        return dict(metrics["postprocess"])
    if name in tuned:
        return {"method": name, **tuned[name]["params"]}
    known = ", ".join(sorted(tuned)) or "none: it was scored without the method study"
    raise UserError(f"--record {record_path}: no tuned method {name or ''}; it holds {known}")


def cmd_score(args: argparse.Namespace) -> int:
    from seg_bench.evaluation.score import format_score, score

    existing_folder("--root", args.root, "the --dataset folder (for image sizes)")
    result = score(
        Path(args.pred),
        Path(args.truth),
        kind=args.kind,
        dataset=args.dataset,
        positive=args.positive,
        root=args.root,
    )
    print(json.dumps(result, indent=1) if args.json else format_score(result))
    return 0


def check_weak_label_method(method: str, options: dict[str, Any]) -> None:
    """``--method`` and the ``--set``/``--threshold`` names, before any image is read."""
    from seg_bench.labels.source import METHODS, method_options

    if method not in METHODS:
        close = difflib.get_close_matches(method, METHODS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(f"--method {method}: unknown; {hint}choose {' or '.join(METHODS)}")
    known = method_options(method)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UserError(
            f"--set {', '.join(unknown)}: not an option of --method {method}; "
            f"known: {', '.join(known)}"
        )


def cmd_weak_labels(args: argparse.Namespace) -> int:
    import numpy as np
    import tifffile

    from seg_bench.data.io import read_image
    from seg_bench.io import atomic_write
    from seg_bench.labels import read_points_rows, validate_points, weak_labels

    images = existing_folder(
        "--images", args.images, f"the folder holding the images {args.points} names"
    )
    options = parse_set(args.set)
    if args.threshold is not None:
        options["threshold"] = args.threshold
    check_weak_label_method(args.method, options)
    points = read_points_rows(args.points)
    out = Path(args.output)
    stems: dict[str, str] = {}
    for name in sorted(points):  # outputs are named by stem: a.png and a.tif would collide
        other = stems.setdefault(Path(name).stem, name)
        if other != name:
            raise UserError(
                f"{args.points}: images '{other}' and '{name}' would both write "
                f"{Path(name).stem}.tif; rename one"
            )
    for name, (pts, rows) in sorted(points.items()):
        candidates = [images / name, *sorted(images.glob(f"{Path(name).stem}.*"))]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise UserError(f"{args.points}: image '{name}' is not in {images}")
        image = read_image(path)
        validate_points(pts, image.shape, name, where=rows)  # errors name the CSV row
        labels = weak_labels(image, pts, args.method, image_name=name, **options)
        with atomic_write(out / f"{Path(name).stem}.tif", "wb") as f:
            dtype = np.uint16 if labels.max() < 2**16 else np.uint32
            tifffile.imwrite(f, labels.astype(dtype), photometric="minisblack")
        print(f"{name}: {int(labels.max())} objects from {len(pts)} points")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from seg_bench.inference.export import export_checkpoint, parse_formats
    from seg_bench.inference.model_card import best_record
    from seg_bench.protocol.records import load_records, read_record
    from seg_bench.protocol.report import COLUMNS, bootstrap_cis

    formats = parse_formats(args.format)
    if args.dataset and not args.best:
        raise UserError(f"--dataset {args.dataset}: only used with --best; add --best or drop it")
    record = read_record(Path(args.record)) if args.record else None
    if args.best:
        if not args.dataset:
            raise UserError("--best needs --dataset NAME (the leaderboard to take the model from)")
        record = best_record(load_records(results_dir(args), args.dataset), args.dataset)
    checkpoint = args.checkpoint or (record or {}).get("checkpoint")
    if not checkpoint:
        raise UserError("export needs --checkpoint PATH, or --best --dataset NAME (or --record)")
    if not Path(checkpoint).is_file():
        raise UserError(f"--checkpoint {checkpoint}: no such file; give a seg-bench .ckpt")
    if record:
        overall = record["metrics"].get("overall", {})
        record["ci"] = bootstrap_cis([record], [k for k, _ in COLUMNS if k in overall])
    sample = None
    if args.sample:
        from seg_bench.data.io import read_image

        sample = read_image(Path(args.sample))
    done = export_checkpoint(
        checkpoint, args.output, formats, force=args.force, record=record, sample=sample
    )
    print("\n".join([r.line() for r in done] + [f"written to {args.output}"]))
    return 0
