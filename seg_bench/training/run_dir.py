"""Run folders: one per resolved configuration, checked before it is touched, never emptied
silently.

A run folder is ``<runs>/<dataset>/<model>__seed<k>__<profile>[__<labels>]__<key>``, where
``<key>`` (``config_key``) is a short hash of every RunConfig field that changes the trained
model or its evaluation. Two configurations that differ anywhere that matters get two folders,
so comparing learning rates keeps every run; the same configuration finds its folder again and
resumes from ``checkpoints/last.ckpt`` (or ``best.ckpt`` where that is newer, see
``resume_checkpoint``). The seed is left out of the key (it is in the name), so
the seeds of one configuration share a key: result records use it to group them.

Fields left out of the key (purely operational; resuming with another value is the same run):

- ``logger``: where metrics are logged, not what is trained or measured.
- ``num_workers``: how many processes load data. Patches stay random draws from the same
  distribution (which draw a worker makes depends on its seed, as on any other machine).
- ``config_file``: the path of a profile file. Its values are resolved into the other fields,
  which enter the key; the same values from a copy of the file are the same run.

A run folder also keeps the precision its run chose (``precision.json``, ``run_precision``),
so a resumed run trains on in it. Before a folder is created or touched, ``prepare_run``
builds the DataModule, loads its splits (the patch size is checked against the images there)
and checks the hardware options against the machine and the splits, so a bad option never
costs a finished run; then the folder is locked for the whole run (``lock_run_dir``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from seg_bench.config import RunConfig
from seg_bench.data import SegmentationDataModule
from seg_bench.errors import UserError
from seg_bench.hardware import check_hardware, processes_per_node
from seg_bench.io import atomic_write, file_lock, remove_stale_temp, write_json
from seg_bench.training.precision import PrecisionChoice, choose_precision

# Not what is compared: where it logs, how it loads, which seed, captions (lr_source and
# budget_note only describe the run), and policy whose effect the record states anyway
# (bf16_exclude steers precision auto, as the machine does; the record names the precision it
# trained in, and the profile keeps only exclusions that bf16 accuracy benchmarks justify).
NOT_IN_KEY = (
    "logger",
    "num_workers",
    "config_file",
    "seed",
    "lr_source",
    "budget_note",
    "bf16_exclude",
)


def key_fields(config: RunConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a configuration that ``config_key`` hashes, JSON-normalised."""
    values = config.to_dict() if isinstance(config, RunConfig) else dict(config)
    kept = {k: v for k, v in values.items() if k not in NOT_IN_KEY}
    # Fields added later hash as before while they hold their defaults (old runs resume).
    for name, default in (("target", "binary"), ("target_options", {})):
        if kept.get(name, default) == default:
            kept.pop(name, None)
    return json.loads(json.dumps(kept, sort_keys=True, default=str))


def config_key(config: RunConfig | Mapping[str, Any]) -> str:
    """8 hex digits of the SHA-256 of ``key_fields`` (a RunConfig or a record's ``config``)."""
    text = json.dumps(key_fields(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def run_name(cfg: RunConfig) -> str:
    labels = "" if cfg.labels == "manual" else f"__{cfg.labels}"
    return f"{cfg.model}__seed{cfg.seed}__{cfg.profile}{labels}__{config_key(cfg)}"


def run_dir_for(runs_dir: Path, cfg: RunConfig) -> Path:
    return Path(runs_dir) / cfg.dataset / run_name(cfg)


def launched_rank_above_zero() -> bool:
    """A process that a distributed launch (Lightning, torchrun, SLURM) started as rank > 0:
    rank 0 owns the run folder and the locks, this one only follows."""
    return any(
        os.environ.get(v, "0") not in ("", "0")
        for v in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID")
    )


def check_splits_feed_processes(cfg: RunConfig, dm: SegmentationDataModule) -> None:
    """Each process validates whole images: it needs at least one. (Only rank 0 tests.)"""
    world = processes_per_node(cfg.accelerator, cfg.devices)[0] * int(cfg.num_nodes)
    size = len(dm.samples("val"))
    if size < world:
        raise UserError(
            f"--devices {cfg.devices}: {world} processes, but the {dm.name} validation split "
            f"has {size} image(s) and each process validates at least one; "
            f"use --devices {size} or fewer"
        )


@dataclass
class PreparedRun:
    datamodule: SegmentationDataModule
    resume: Path | None  # the checkpoint of this configuration's unfinished run, if any
    replaced: bool = False  # --force removed an earlier run's files from the folder
    # The run folder's lock, held until training ends (``train`` closes it).
    lock: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


def prepare_run(cfg: RunConfig, run_dir: Path, force: bool = False) -> PreparedRun:
    """Validate everything, then claim ``run_dir``: nothing is created or removed before the
    DataModule's splits load and the hardware options fit them."""
    from seg_bench.training.trainer import build_datamodule

    check_hardware(cfg)
    import lightning as L

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    dm.setup("fit")  # loads train and val, checks the patch size against the images
    dm.setup("test")
    check_splits_feed_processes(cfg, dm)
    run_dir = Path(run_dir)
    lock = contextlib.ExitStack()
    if not launched_rank_above_zero():  # rank 0 holds it for the whole launch
        lock_run_dir(run_dir, lock)
    replaced = (
        force and not launched_rank_above_zero() and any(p.is_file() for p in run_dir.rglob("*"))
    )
    return PreparedRun(dm, claim_run_dir(cfg, run_dir, force), replaced, lock)


def lock_run_dir(run_dir: Path, stack: contextlib.ExitStack) -> None:
    """Take the lock of the run folder itself (created if new; --force empties it but keeps
    it) into ``stack``, or stop: two processes must never train into, or empty, one folder.
    Then the temporary files a killed writer left in it are removed (only the holder may)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not stack.enter_context(file_lock(run_dir, blocking=False)):
        raise UserError(
            f"{run_dir}: another process is training in this run folder; nothing was changed: "
            "wait for it, or give another --run-dir"
        )
    for folder in (run_dir, run_dir / "checkpoints"):
        if folder.is_dir():
            remove_stale_temp(folder, ".*.tmp")


def claim_run_dir(cfg: RunConfig, run_dir: Path, force: bool = False) -> Path | None:
    """Make ``run_dir`` this configuration's folder and return the checkpoint to resume from.

    A folder holding another configuration's run (or checkpoints of unknown origin) is
    refused; ``force`` empties an existing run folder (one with ``config.json``) first and
    says what it removed, but never a folder that is not one (it may hold many runs)."""
    if launched_rank_above_zero():  # rank 0 has claimed the folder already
        return resume_checkpoint(run_dir)
    files = sorted(p for p in run_dir.rglob("*") if p.is_file()) if run_dir.is_dir() else []
    if files and force:
        shown = ", ".join(str(p.relative_to(run_dir)) for p in files[:6])
        more = f" and {len(files) - 6} more" if len(files) > 6 else ""
        if not (run_dir / "config.json").is_file():
            raise UserError(
                f"{run_dir}: --force replaces one run's folder, and this has no config.json "
                f"(it holds {shown}{more}); nothing was removed: give the run's own folder"
            )
        print(f"--force: removing {run_dir} ({shown}{more})", file=sys.stderr)
        for child in run_dir.iterdir():  # the folder itself stays: its lock is on it
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    elif _holds_other_run(cfg, run_dir):
        raise UserError(
            f"{run_dir} holds a run of another configuration ({_difference(cfg, run_dir)}); "
            "nothing was changed: choose another --run-dir, or pass --force to replace it"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "config.json").exists():
        write_json(run_dir / "config.json", cfg.to_dict())
    resume = resume_checkpoint(run_dir)
    if resume is not None and resume.name == "best.ckpt":
        # last.ckpt is the newest state again for every later reader (a kill inside the final
        # validation would otherwise leave it behind for good: the rerun finds fit done).
        with atomic_write(resume.with_name("last.ckpt"), "wb") as f, open(resume, "rb") as src:
            shutil.copyfileobj(src, f)
        resume = resume.with_name("last.ckpt")
    return resume


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint an unfinished run resumes from: ``last.ckpt``, unless ``best.ckpt`` is
    further on. A validation writes the best first, so a kill between the two files leaves the
    best one validation ahead; resuming from last.ckpt would redo that epoch, and a redo
    scoring lower would keep the killed run's weights as best under the older best score."""
    folder = run_dir / "checkpoints"
    last, best = folder / "last.ckpt", folder / "best.ckpt"
    if not best.exists():
        return last if last.exists() else None
    if not last.exists() or _global_step(best) > _global_step(last):
        return best
    return last


def _global_step(checkpoint: Path) -> int:
    """-1 for a file that does not load (Lightning names it when it resumes from it)."""
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        return int(state["global_step"])
    except Exception:  # noqa: BLE001 - any unreadable checkpoint is "not further on"
        return -1


def _stored_config(run_dir: Path) -> dict[str, Any] | None:
    try:
        with open(run_dir / "config.json") as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) else None


def _holds_other_run(cfg: RunConfig, run_dir: Path) -> bool:
    if (run_dir / "config.json").exists():
        return not resume_matches(cfg, run_dir)
    return any((run_dir / "checkpoints").glob("*.ckpt"))  # a folder only a logger wrote in: ours


def resume_matches(cfg: RunConfig, run_dir: Path) -> bool:
    """A run folder may only be resumed by the configuration that wrote it (every key field
    compared, not only their 8-digit hash)."""
    stored = _stored_config(Path(run_dir))
    return stored is not None and key_fields(stored) == key_fields(cfg)


def _difference(cfg: RunConfig, run_dir: Path) -> str:
    stored = _stored_config(run_dir)
    if stored is None:
        return "no readable config.json"
    old, new = key_fields(stored), key_fields(cfg)
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    shown = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:3]]
    return ", ".join(shown) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")


def run_precision(
    cfg: RunConfig, model: Any, in_channels: int, run_dir: Path, resuming: bool, **kw: Any
) -> PrecisionChoice:
    """``choose_precision`` for a run folder: a resumed run keeps the choice its start made
    (stored in ``precision.json``), whatever this machine or its cache would say now, so one
    run never trains in two precisions; so do the other processes of a distributed launch."""
    path = Path(run_dir) / "precision.json"
    # Ranks above 0 of a launch follow rank 0's choice, which it stored before launching them.
    follower = launched_rank_above_zero()
    if (resuming or follower) and path.is_file():
        try:
            with open(path) as f:
                kept = PrecisionChoice(**json.load(f))
            return replace(kept, reason=kept.reason + "; kept on resuming")
        except (OSError, ValueError, TypeError):
            pass  # damaged: choose again, as a fresh run would
    choice = choose_precision(cfg, model, in_channels, **kw)
    if not follower:  # only rank 0 writes in the run folder
        write_json(path, choice.to_dict())
    return choice
