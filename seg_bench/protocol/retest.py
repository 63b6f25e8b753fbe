"""Testing a trained network again from its best checkpoint, without training it again.

* ``rescore_one``: a record that an older evaluation (``EVALUATION_VERSION``) scored, tested by
  today's. Its training fields stay; ``rescored`` says by which code, when and on what hardware.
* ``score_variant``: a configuration that differs from a trained one only in how the network is
  tested (the fields of ``TEST_ONLY``, e.g. ``--tta``) is that run tested another way, not a new
  training. Bench trains (or finds) its *training twin* and tests the twin's best checkpoint
  with the variant's settings, so `bench --tta` after a plain bench costs inference only. The
  variant's record keeps the twin's training fields (train time, curve, checkpoint) and says
  in ``tested`` which record it was tested from, by which code, when and where.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from seg_bench.config import TEST_ONLY, RunConfig
from seg_bench.errors import UserError
from seg_bench.evaluation.evaluate import evaluate
from seg_bench.hardware import hardware
from seg_bench.io import atomic_write, write_json
from seg_bench.protocol import provenance
from seg_bench.training.run_dir import config_key

PREVIEWS = 4


def training_twin(cfg: RunConfig) -> RunConfig | None:
    """The configuration that trains ``cfg``'s network when ``cfg`` changes only how it is
    tested; None when ``cfg`` is a training configuration itself."""
    changed = {k: v for k, v in TEST_ONLY.items() if getattr(cfg, k) != v}
    return dataclasses.replace(cfg, **changed) if changed else None


def with_training_twins(configs: list[RunConfig]) -> list[RunConfig]:
    """``configs`` with each test variant's training twin just before it, each run once."""
    out: list[RunConfig] = []
    seen: set[tuple[str, int]] = set()
    for cfg in configs:
        for c in (training_twin(cfg), cfg):
            if c is not None and (config_key(c), c.seed) not in seen:
                seen.add((config_key(c), c.seed))
                out.append(c)
    return out


def preview_path(record: Path) -> Path:
    return record.with_suffix(".preview.npz")


def save_previews(path: Path, previews: list) -> None:
    """A few test images with truth and probability, for the leaderboard's overlay figure."""
    arrays = {}
    for i, (sample_id, image, truth, prob) in enumerate(previews):
        arrays[f"image{i}"] = image.astype(np.float16)
        arrays[f"truth{i}"] = truth.astype(np.uint8)
        arrays[f"prob{i}"] = prob.astype(np.float16)
        arrays[f"id{i}"] = np.array(sample_id)
    with atomic_write(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def score_checkpoint(cfg: RunConfig, checkpoint: str, record: Path, trained: dict) -> dict:
    """Today's evaluation of ``checkpoint`` under ``cfg``; its previews go beside ``record``.
    ``trained``: the record the network comes from, whose split today's data must still give."""
    from seg_bench.inference.checkpoint import load_checkpoint
    from seg_bench.training.trainer import build_datamodule

    dm = build_datamodule(cfg)
    nhwc = bool((trained.get("precision_choice") or {}).get("channels_last"))
    model = load_checkpoint(checkpoint).model
    evaluation = evaluate(model, dm, cfg, keep_predictions=PREVIEWS, channels_last=nhwc)
    described = dm.describe()
    check_same_split(described["splits"], trained, record, described.get("ignored_test"))
    save_previews(preview_path(record), evaluation.pop("previews"))
    return evaluation


def check_same_split(
    today: dict[str, list], trained: dict, record: Path, ignored_test: list | None = None
) -> None:
    """Refuse to score a network on a split other than the one it trained with: the record
    would describe images that were not the ones tested, and test images could be ones it
    trained on. ``ignored_test``: images today's test split leaves out as unscored (DSB's
    Usage Ignored, evaluation v5); a test split that lost only those is the same one."""
    then = (trained.get("data") or {}).get("splits") or {}
    dropped = {str(i) for i in ignored_test or ()}
    for name in sorted(today.keys() & then.keys()):
        kept = [str(i) for i in then[name] if name != "test" or str(i) not in dropped]
        if [str(i) for i in today[name]] != kept:
            raise UserError(
                f"{record}: the {name} split of {trained.get('dataset')} today is not the one "
                f"this network trained with ({len(today[name])} images against "
                f"{len(then[name])}); retrain it (bench --force) or restore that data"
            )


def tested_by(cfg: RunConfig) -> dict:
    """Which code tested a checkpoint, with which libraries, on what machine and when."""
    return {
        "commit": provenance.running_commit(),
        "versions": provenance.versions(),
        "hardware": hardware(cfg.accelerator, cfg.devices),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def checkpoint_of(record: dict, problem: str) -> str:
    """The record's best checkpoint; UserError ``problem`` (completed) when it is gone."""
    checkpoint = record.get("checkpoint")
    if not checkpoint or not Path(checkpoint).is_file():
        raise UserError(
            f"{problem}, its checkpoint {checkpoint} is gone; retrain that pair with --force "
            "(or restore the checkpoint)"
        )
    return checkpoint


def rescore_one(cfg: RunConfig, path: Path, record: dict) -> dict:
    """``record`` tested again by today's evaluation from its best checkpoint, and rewritten."""
    checkpoint = checkpoint_of(record, f"{path}: cannot rescore")
    metrics = score_checkpoint(cfg, checkpoint, path, record)
    record = {**record, "metrics": metrics, "rescored": tested_by(cfg)}
    write_json(path, record)
    return record


def score_variant(cfg: RunConfig, path: Path, twin_path: Path, twin: dict) -> dict:
    """The record of test variant ``cfg`` (written to ``path``): the network of ``twin`` (the
    record at ``twin_path``) tested with ``cfg``'s settings."""
    checkpoint = checkpoint_of(twin, f"{path}: cannot test the network of {twin_path}")
    metrics = score_checkpoint(cfg, checkpoint, path, twin)
    tested = {"from": twin_path.name, **tested_by(cfg)}  # stamped once tested: after the twin
    record = {
        **{k: v for k, v in twin.items() if k != "rescored"},
        "config": cfg.to_dict(),
        "config_key": config_key(cfg),
        "metrics": metrics,
        "tested": tested,
        "created": tested["created"],  # newer than its twin: a plain leaderboard shows it
    }
    write_json(path, record)
    return record
