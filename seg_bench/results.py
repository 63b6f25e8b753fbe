"""Result records on disk: one JSON file per (dataset, model, seed, labels), written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seg_bench.errors import UserError

RECORD_VERSION = 1


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[Any]:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    Readers see the old file or the new one, never a half-written one; on any error (a full
    disk included) the temporary file is removed and the old file stays as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)  # reopened by name: some writers (tifffile) need a real file name
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: Any) -> None:
    try:
        with atomic_write(path) as f:
            json.dump(data, f, indent=1, sort_keys=True, default=_jsonable)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}; free space or choose another --results-dir") from e


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def record_name(model: str, seed: int, labels: str = "manual") -> str:
    suffix = "" if labels == "manual" else f"__{labels}"
    return f"{model}__seed{seed}{suffix}.json"


def record_path(results_dir: Path, dataset: str, model: str, seed: int, labels: str = "manual") -> Path:
    return Path(results_dir) / dataset / record_name(model, seed, labels)


def read_record(path: Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"result record {path} is unreadable ({e}); delete it and rerun that model") from e
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION or "metrics" not in record:
        raise UserError(f"result record {path} is not a seg-bench v{RECORD_VERSION} record; delete it and rerun")
    return record


def load_records(results_dir: Path, dataset: str) -> list[dict[str, Any]]:
    folder = Path(results_dir) / dataset
    if not folder.is_dir():
        return []
    return [read_record(p) for p in sorted(folder.glob("*.json"))]
