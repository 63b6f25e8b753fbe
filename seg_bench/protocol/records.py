"""Result records on disk: one JSON file per configuration and seed, written atomically.

A record is ``<results>/<dataset>/<model>__seed<k>[__<labels>]__<key>.json``, ``<key>`` being
the configuration's ``config_key`` (seg_bench/training/run_dir.py), shared by its seeds. Two
configurations of one model (say two learning rates, or the smoke and cpu profiles) therefore
keep a record each; ``select_records`` decides which of them a leaderboard compares.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from seg_bench.config import RunConfig
from seg_bench.errors import UserError
from seg_bench.training.run_dir import config_key

RECORD_VERSION = 1


def record_name(model: str, seed: int, labels: str = "manual", key: str = "") -> str:
    suffix = "" if labels == "manual" else f"__{labels}"
    return f"{model}__seed{seed}{suffix}{f'__{key}' if key else ''}.json"


def record_path(
    results_dir: Path, dataset: str, model: str, seed: int, labels: str = "manual", key: str = ""
) -> Path:
    """``key`` empty: the name records had before configurations were keyed (still read)."""
    return Path(results_dir) / dataset / record_name(model, seed, labels, key)


def record_path_for(results_dir: Path, cfg: RunConfig) -> Path:
    """Where the record of ``cfg`` is or goes: its keyed name, else a record of the same model,
    seed and labels under another name whose configuration has ``cfg``'s key today (one made
    before a field such as ``bf16_exclude`` left the key), so that no finished run is redone."""
    key = config_key(cfg)
    path = record_path(results_dir, cfg.dataset, cfg.model, cfg.seed, cfg.labels, key)
    if path.exists() or not path.parent.is_dir():
        return path
    legacy = record_path(results_dir, cfg.dataset, cfg.model, cfg.seed, cfg.labels)
    stem = legacy.name.removesuffix(".json")
    for other in [legacy, *sorted(path.parent.glob(f"{stem}__*.json"))]:
        if other.is_file() and other.name.count(".") == 1 and _key_of_file(other) == key:
            return other
    return path


def _key_of_file(path: Path) -> str | None:
    try:
        return record_key(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError):
        return None  # not a record: never matched


def record_key(record: dict[str, Any]) -> str:
    """The ``config_key`` of the configuration a record was made with."""
    return config_key(record.get("config") or {})


def preview_for(results_dir: Path, record: dict[str, Any]) -> Path:
    """The preview arrays saved beside a record (keyed name first, then the older unkeyed one)."""
    args = (results_dir, record["dataset"], record["model"], record["seed"])
    labels = record.get("labels", "manual")
    # The key today, then the one stored when it was written (a field may have left the key).
    for key in (record_key(record), record.get("config_key")):
        keyed = record_path(*args, labels, key).with_suffix(".preview.npz")
        if key and keyed.exists():
            return keyed
    return record_path(*args, labels).with_suffix(".preview.npz")


def failed_path(record: Path) -> Path:
    """Where bench notes a (model, seed) whose training failed (e.g. a non-finite loss)."""
    return Path(record).with_suffix(".failed.json")


def read_record(path: Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise UserError(
            f"result record {path} is unreadable ({e}); delete it and rerun that model"
        ) from e
    if (
        not isinstance(record, dict)
        or record.get("version") != RECORD_VERSION
        or not isinstance(record.get("metrics"), dict)
        or not isinstance(record.get("model"), str)
        or not isinstance(record.get("seed"), int)
    ):
        raise UserError(
            f"result record {path} is not a seg-bench v{RECORD_VERSION} record; delete it and rerun"
        )
    return record


def existing_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None where there is none or it is foreign or damaged (so that
    its run is redone, not trusted)."""
    if not path.exists():
        return None
    try:
        return read_record(path)
    except UserError:
        return None


def load_records(results_dir: Path, dataset: str) -> list[dict[str, Any]]:
    folder = Path(results_dir) / dataset
    if not folder.is_dir():
        return []
    return [
        read_record(p) for p in sorted(folder.glob("*.json")) if not p.name.endswith(".failed.json")
    ]


# What bench asked for: config key -> (model, label source, training target).
Asked = dict[str, tuple[str, str, str]]


def select_records(
    records: list[dict[str, Any]], profile: str | None = None, prefer: Asked | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The records one leaderboard compares, and those it leaves out.

    1. One profile (budget): ``profile``, else that of the ``prefer`` records, else that of the
       newest record. Records of other profiles are left out, never mixed in.
    2. One configuration per (model, label source): the one whose key is in ``prefer`` (bench
       passes the configurations it ran), else the one with the newest record. Its seeds are
       the rows' seeds (one record each, the newest: a record under a name from before keys
       and its keyed copy are one run); the other configurations of that model are left out.
       A model whose asked configuration has no record (every seed failed) gets no row rather
       than an older configuration's: ``missing_asked`` names it.
    """
    prefer = prefer or {}
    if not records:
        return [], []
    if profile is None:
        preferred = [r for r in records if record_key(r) in prefer]
        profile = max(preferred or records, key=lambda r: r.get("created", ""))["profile"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("profile") == profile:
            groups[(r["model"], r.get("labels", "manual"))].append(r)
    asked = {v[:2] for v in prefer.values()}
    chosen: list[dict[str, Any]] = []
    for group, recs in groups.items():
        wanted = {record_key(r) for r in recs} & prefer.keys()
        if group in asked and not wanted:
            continue
        newest = record_key(max(recs, key=made_after))
        key = sorted(wanted)[0] if wanted else newest
        chosen += newest_per_seed([r for r in recs if record_key(r) == key])
    ids = {id(r) for r in chosen}
    return [r for r in records if id(r) in ids], [r for r in records if id(r) not in ids]


def made_after(record: dict[str, Any]) -> tuple[str, bool]:
    """Sorts records by when they were made; a test variant (``tested``) comes after a record
    stamped in the same second, as its twin always is (``created`` counts whole seconds)."""
    return record.get("created", ""), bool(record.get("tested"))


def missing_asked(chosen: list[dict[str, Any]], prefer: Asked | None) -> list[str]:
    """The asked (model, label source) pairs without a row, as 'model (labels)'."""
    shown = {(r["model"], r.get("labels", "manual")) for r in chosen}
    asked = sorted({v[:2] for v in (prefer or {}).values()} - shown)
    return [f"{model} ({labels} labels)" for model, labels in asked]


def newest_per_seed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per seed, the newest, so that no seed counts twice in a mean or a test."""
    by_seed: dict[int, dict[str, Any]] = {}
    for r in records:
        if r["seed"] not in by_seed or r.get("created", "") > by_seed[r["seed"]].get("created", ""):
            by_seed[r["seed"]] = r
    return list(by_seed.values())
