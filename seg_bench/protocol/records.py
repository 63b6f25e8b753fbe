"""Result records on disk: one JSON file per (dataset, model, seed, labels), written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seg_bench.errors import UserError

RECORD_VERSION = 1


def record_name(model: str, seed: int, labels: str = "manual") -> str:
    suffix = "" if labels == "manual" else f"__{labels}"
    return f"{model}__seed{seed}{suffix}.json"


def record_path(
    results_dir: Path, dataset: str, model: str, seed: int, labels: str = "manual"
) -> Path:
    return Path(results_dir) / dataset / record_name(model, seed, labels)


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


def load_records(results_dir: Path, dataset: str) -> list[dict[str, Any]]:
    folder = Path(results_dir) / dataset
    if not folder.is_dir():
        return []
    return [
        read_record(p) for p in sorted(folder.glob("*.json")) if not p.name.endswith(".failed.json")
    ]
