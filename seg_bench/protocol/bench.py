"""The protocol: for every model and seed, train, test, and write one result record; then
rebuild the leaderboard. Finished (model, seed) pairs are skipped, interrupted ones resume
from their last checkpoint, so running the same command again after a kill finishes the job.
Runs and records are keyed by configuration (seg_bench/training/run_dir.py): a bench resumes
exactly its own runs and never touches those of another configuration; the leaderboard it
writes compares its own configurations (protocol/records.py:select_records).

Several benches may share a results folder: each (dataset, model, seed, labels) is run under an
exclusive lock (``.<record>.lock`` beside its record, ``fcntl.flock``, released by the kernel when
its holder exits or is killed). A pair another process holds is put off until the free pairs are
done, then waited for; its record is then normally already there (with ``--force`` it is redone).
A run whose loss becomes NaN/inf leaves ``<record>.failed.json`` (error, epoch, step) instead of a
record; bench goes on with the next pair, builds the leaderboard from the records that exist
(failed pairs are not on it), and then raises a UserError listing the failures (exit code 2).
Rerunning retries failed pairs; a success removes the ``.failed.json``.

``rescore`` re-tests from its best checkpoint every finished pair whose record an older
evaluation scored where a later change would score it differently (``VERSION_CHANGES``,
protocol/retest.py); a leaderboard of such records says so in its header (protocol/header.py).
A configuration that changes only how a network is tested (``--tta``) is not trained: its
training twin's checkpoint is tested with its settings (retest.py), in the twin's layout.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from seg_bench.config import TEST_ONLY, RunConfig, benchmark_models, resolve_config
from seg_bench.errors import UserError
from seg_bench.evaluation.evaluate import evaluate, is_stale
from seg_bench.hardware import hardware
from seg_bench.io import file_lock, remove_stale_temp, write_json
from seg_bench.protocol import provenance
from seg_bench.protocol.instance_choice import target_of
from seg_bench.protocol.records import (
    RECORD_VERSION,
    Asked,
    existing_record,
    failed_path,
    read_record,
    record_key,
    record_path_for,
)
from seg_bench.protocol.retest import (
    PREVIEWS,
    preview_path,
    rescore_one,
    save_previews,
    score_variant,
    training_twin,
    with_training_twins,
)
from seg_bench.training.precision import resolve_precision
from seg_bench.training.run_dir import (
    check_hardware,
    config_key,
    launched_rank_above_zero,
    prepare_run,
    run_dir_for,
)
from seg_bench.training.task import NonFiniteLossError
from seg_bench.training.trainer import train

console = Console(stderr=True, highlight=False)


__all__ = ["bench", "run_one", "run_dir_for", "make_record"]


def make_record(cfg: RunConfig, result, evaluation: dict[str, Any]) -> dict[str, Any]:
    dm = result.datamodule
    choice = getattr(result, "precision_choice", None)
    precision = choice.precision if choice else resolve_precision(cfg.precision, cfg.accelerator)
    return {
        "version": RECORD_VERSION,
        "dataset": cfg.dataset,
        "model": cfg.model,
        "seed": cfg.seed,
        "labels": cfg.labels,
        "profile": cfg.profile,
        "config": cfg.to_dict(),
        "config_key": config_key(cfg),
        "data": dm.describe(),
        "params": sum(p.numel() for p in result.task.model.parameters()),
        "train_time_s": result.train_time_s,
        "epochs": result.epochs,
        "best_val": result.best_val,
        # Where the weights are, for `export --best` (read from here, never rebuilt from names).
        "checkpoint": None
        if result.best_checkpoint is None
        else str(Path(result.best_checkpoint).resolve()),
        "hardware": hardware(cfg.accelerator, cfg.devices),
        "precision": precision,
        # how `auto` decided: setting, ms per step of each candidate, ratio, cache file
        "precision_choice": choice.to_dict() if choice else None,
        # the validation curve: [{step, epoch, val_iou, val_loss}] of every validation
        "curve": list(getattr(result.task, "curve", [])),
        "versions": provenance.versions(),
        "commit": provenance.running_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "metrics": evaluation,
    }


def run_name(cfg: RunConfig) -> str:
    """The W&B run name: model and seed, plus the label source and target where they are not
    the defaults, so the runs of a weak-label or target study do not share one name."""
    extra = [x for x, default in ((cfg.labels, "manual"), (cfg.target, "binary")) if x != default]
    return "-".join([cfg.model, f"seed{cfg.seed}", *extra])


def run_one(
    cfg: RunConfig,
    results_dir: Path,
    runs_dir: Path,
    force: bool = False,
    logger: Any = None,
    log_model: bool = False,
    project: str | None = None,
    run_dir: Path | None = None,
    command: str = "bench",
    progress: bool = False,
) -> dict | None:
    """Train, test and record one configuration; None on a distributed rank above 0.

    Everything is validated and the run folder claimed (``prepare_run``) before the logger
    starts in it. logger: None builds one from ``cfg.logger`` (seg_bench.tracking.runs), False
    logs nothing."""
    provenance.running_commit()  # the record names the code this run started with
    path = record_path_for(results_dir, cfg)
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(runs_dir, cfg)
    prepared = prepare_run(cfg, run_dir, force)
    with prepared.lock:  # held until the record is written, not only while training
        return _record_run(
            cfg, path, run_dir, prepared, logger, log_model, project, command, progress
        )


def _record_run(cfg, path, run_dir, prepared, logger, log_model, project, command, progress):
    from seg_bench.tracking.runs import tracked_run

    if prepared.replaced:  # its record would name checkpoints that are gone
        for old in (path, preview_path(path)):
            if old.exists():
                old.unlink(missing_ok=True)
                console.print(f"--force: removed {old}, the record of the replaced run")
    with tracked_run(
        cfg,
        run_dir,
        group=f"{command}-{cfg.dataset}-{cfg.profile}",
        name=run_name(cfg),
        tags=[cfg.model, cfg.profile, cfg.dataset, cfg.labels, cfg.target],
        logger=logger,
        project=project,
        log_model=log_model,
    ) as run:
        result = train(
            cfg, run_dir, run.logger, run.callbacks, progress=progress, prepared=prepared
        )
        if not result.is_global_zero:  # under DDP only rank 0 tests and writes results
            return None
        nhwc = getattr(result.precision_choice, "channels_last", False)  # the layout it trained in
        evaluation = evaluate(result.task.model, result.datamodule, cfg, "test", PREVIEWS, nhwc)
        save_previews(preview_path(path), evaluation.pop("previews"))
        record = make_record(cfg, result, evaluation)
        write_json(path, record)
        run.summary(
            {f"test/{k}": v for k, v in evaluation.get("overall", {}).items()}
            | {"train_time_s": result.train_time_s}
        )
        run.log_checkpoint(result.best_checkpoint, {"best_val": result.best_val, "seed": cfg.seed})
    return record


def lock_path(record: Path) -> Path:
    return record.with_name(f".{record.stem}.lock")


def pair_lock(record: Path, blocking: bool):
    # A rank > 0 of a distributed launch: its rank 0 holds the lock, taking it would deadlock.
    if launched_rank_above_zero():
        return contextlib.nullcontext(True)
    return file_lock(lock_path(record), blocking=blocking)


def remove_stale_pair_temp(record: Path) -> None:
    """Temporary files of this pair's record that a killed process left (call with the pair's
    lock held; those of its run folder go under the folder's own lock, run_dir.lock_run_dir)."""
    for name in (record.name, preview_path(record).name, failed_path(record).name):
        remove_stale_temp(record.parent, f".{name}.*.tmp")


def write_failure(path: Path, cfg: RunConfig, error: NonFiniteLossError) -> None:
    write_json(
        failed_path(path),
        {
            "version": RECORD_VERSION,
            "status": "failed",
            "dataset": cfg.dataset,
            "model": cfg.model,
            "seed": cfg.seed,
            "labels": cfg.labels,
            "profile": cfg.profile,
            "error": str(error),
            "epoch": error.epoch,
            "step": error.step,
            "config": cfg.to_dict(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


def bench(
    dataset: str,
    models: list[str] | None = None,
    profile: str | None = None,
    seeds: int = 1,
    results_dir: Path = Path("runs/results"),
    runs_dir: Path = Path("runs"),
    leaderboard_dir: Path | None = Path("runs/results/leaderboards"),
    force: bool = False,
    overrides: dict[str, Any] | None = None,
    trials: int = 0,
    rescore: bool = False,
    log_model: bool = False,
    project: str | None = None,
    search_options: dict[str, Any] | None = None,
) -> list[dict]:
    from seg_bench.registry import MODELS

    provenance.running_commit()  # each record names the code this bench started with
    models = models or benchmark_models(dataset, profile, (overrides or {}).get("config_file"))
    for m in models:
        MODELS.require(m)
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    overrides = dict(overrides or {})
    # Before any search or run folder (a search takes hours): what tuning cannot change.
    for cfg in (resolve_config(dataset, m, profile, **overrides) for m in models):
        check_hardware(cfg)
    if leaderboard_dir is not None:
        from seg_bench.protocol.report import check_committed

        check_committed(dataset, Path(leaderboard_dir), force)
    tuned: dict[str, dict[str, Any]] = {m: {} for m in models}
    if trials > 0:  # search every model first (resumable; a finished study runs nothing)
        from seg_bench.search import tuned_parameters

        tuned = tuned_parameters(
            dataset,
            models,
            trials,
            profile,
            overrides,
            runs_dir,
            project,
            search_options,
            echo=console.print,
        )
    configs = [
        resolve_config(dataset, m, profile, seed=s, **{**overrides, **tuned[m]})
        for s in range(seeds)  # seed-major: a stopped bench has whole seeds for every model
        for m in models
    ]
    if torch.cuda.is_available() is False and any(c.profile == "paper" for c in configs):
        console.print("[yellow]warning:[/] the paper profile on a CPU will take a long time")
    runs = with_training_twins(configs)
    records, failures = run_pairs(runs, results_dir, runs_dir, force, log_model, project, rescore)
    asked = {(config_key(c), c.seed) for c in configs}
    records = [r for r in records if (record_key(r), r["seed"]) in asked]
    if leaderboard_dir is not None and records:
        publish(configs, results_dir, Path(leaderboard_dir), runs_dir, project, force)
    if failures:
        raise UserError(
            f"{len(failures)} of {len(runs)} runs failed and are not on the leaderboard: "
            f"{'; '.join(failures)}. Each is noted in <record>.failed.json; "
            "rerun the same command to retry them"
        )
    return records


def finished_record(
    cfg: RunConfig, path: Path, label: str, force: bool, rescore: bool
) -> dict | None:
    """The pair's record if it needs no run (tested again first when ``rescore`` and stale)."""
    done = None if force else existing_record(path)
    stale = done is not None and is_stale(done)
    if rescore and stale and not launched_rank_above_zero():
        t0 = time.perf_counter()
        console.print(f"{label}: rescoring from {done.get('checkpoint')}")
        done = rescore_one(cfg, path, done)
        console.print(f"{label}: rescored in {_fmt(time.perf_counter() - t0)}")
    return done


def twin_finished(cfg: RunConfig, results_dir: Path) -> bool:
    """False for a test variant whose training twin has no record (yet)."""
    twin = training_twin(cfg)
    if twin is None or launched_rank_above_zero():  # rank 0 alone tests variants
        return True
    return existing_record(record_path_for(results_dir, twin)) is not None


def produce_record(
    cfg: RunConfig,
    path: Path,
    label: str,
    results_dir: Path,
    runs_dir: Path,
    force: bool,
    log_model: bool,
    project: str | None,
) -> dict | None:
    """Train and test ``cfg``; a test variant's record tests its training twin's network.
    None on a distributed rank above 0 (rank 0 records)."""
    twin = training_twin(cfg)
    if twin is None:
        console.print(f"{label}: training ({cfg.profile} profile, {cfg.max_epochs} epochs)")
        return run_one(
            cfg, results_dir, runs_dir, force=force, log_model=log_model, project=project
        )
    if launched_rank_above_zero():
        return None
    twin_path = record_path_for(results_dir, twin)
    settings = ", ".join(f"{k} {getattr(cfg, k)}" for k in TEST_ONLY)
    console.print(f"{label}: testing the network of {twin_path.name} ({settings})")
    return score_variant(cfg, path, twin_path, read_record(twin_path))


def run_pairs(
    configs: list[RunConfig],
    results_dir: Path,
    runs_dir: Path,
    force: bool,
    log_model: bool = False,
    project: str | None = None,
    rescore: bool = False,
) -> tuple[list[dict], list[str]]:
    """Run every configuration not done yet, under its lock; (records in order, failures)."""
    done_by_index: dict[int, dict] = {}
    durations: list[float] = []
    failures: list[str] = []
    start = time.perf_counter()
    todo = list(enumerate(configs, 1))
    locked: set[int] = set()  # pairs put off because another process held them
    for wait in (False, True):  # first every pair no other process holds, then wait for the rest
        later = []
        for i, cfg in todo:
            path = record_path_for(results_dir, cfg)
            label = f"[{i}/{len(configs)}] {cfg.model} seed {cfg.seed}"
            if wait and i in locked:
                console.print(
                    f"{label}: waiting for the other seg-bench process ({lock_path(path)})"
                )
            with pair_lock(path, blocking=wait) as held:
                if not held:
                    console.print(
                        f"{label}: another seg-bench process is running it; coming back to it later"
                    )
                    later.append((i, cfg))
                    locked.add(i)
                    continue
                if not launched_rank_above_zero():  # only the lock holder may delete temporaries
                    remove_stale_pair_temp(path)
                done = finished_record(cfg, path, label, force, rescore)
                if done is not None:
                    console.print(f"{label}: already done ({path})")
                    done_by_index[i] = done
                    continue
                if not twin_finished(cfg, results_dir):
                    if not wait:  # another process may be training it: come back to it
                        later.append((i, cfg))
                    else:
                        failures.append(f"{cfg.model} seed {cfg.seed} (its training run failed)")
                    continue
                t0 = time.perf_counter()
                try:
                    record = produce_record(
                        cfg, path, label, results_dir, runs_dir, force, log_model, project
                    )
                except NonFiniteLossError as e:
                    write_failure(path, cfg, e)
                    failures.append(f"{cfg.model} seed {cfg.seed} ({e})")
                    console.print(f"[red]{label}: failed:[/] {e} (noted in {failed_path(path)})")
                    continue
                if record is None:  # a distributed rank above 0: rank 0 records and reports
                    continue
                failed_path(path).unlink(missing_ok=True)
            durations.append(time.perf_counter() - t0)
            remaining = (len(configs) - i) * (sum(durations) / len(durations))
            m = record["metrics"].get("overall", {})
            console.print(
                f"{label}: done in {_fmt(durations[-1])}, IoU {m.get('iou', float('nan')):.3f}; "
                f"elapsed {_fmt(time.perf_counter() - start)}, about {_fmt(remaining)} left"
            )
            done_by_index[i] = record
        todo = later
        if not todo:
            break
    return [done_by_index[i] for i in sorted(done_by_index)], failures


def asked_configurations(configs: list[RunConfig]) -> Asked:
    return {config_key(c): (c.model, c.labels, target_of({"config": vars(c)})) for c in configs}


def publish(
    configs: list[RunConfig],
    results_dir: Path,
    leaderboard_dir: Path,
    runs_dir: Path,
    project: str | None,
    force: bool,
) -> None:
    """The leaderboard of this bench's configurations (seg_bench/protocol/records.py
    select_records), printed and logged."""
    from seg_bench.protocol.report import write_leaderboard
    from seg_bench.tracking.runs import log_leaderboard

    dataset, profile = configs[0].dataset, configs[0].profile
    weak = any(c.labels != "manual" for c in configs)
    md = write_leaderboard(
        dataset,
        results_dir,
        leaderboard_dir,
        by="labels" if weak else None,
        profile=profile,
        prefer=asked_configurations(configs),
        force=force,
    )
    print(md)
    log_leaderboard(
        dataset,
        leaderboard_dir / f"{dataset}.csv",
        configs[0].logger,
        f"bench-{dataset}-{profile}",
        project,
        Path(runs_dir) / dataset,
    )
