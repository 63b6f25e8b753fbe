"""Reading an offline W&B run back from disk, for tests: config, metric history, summary,
files, artifacts and media, as W&B's service wrote them (``<run_dir>/wandb/offline-run-*``).

A ``.wandb`` file is a transaction log: a 7-byte ``:W&B`` header, then LevelDB-log style chunks
(4-byte CRC, 2-byte length, 1-byte type) in 32 KiB blocks, each record a protobuf ``Record``.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_BLOCK = 32768
_HEADER = 7
# chunk types of the LevelDB log format
_ZERO, _FULL, _FIRST, _MIDDLE, _LAST = range(5)


def _records(path: Path) -> Iterator[bytes]:
    """The raw records of a ``.wandb`` transaction log, reassembled from their chunks."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        chunk = data[pos : pos + length]
        if len(chunk) < length:  # the writer is still at it: the rest is read next time
            return
        pos += length
        if kind == _ZERO and length == 0:
            pos += _BLOCK - pos % _BLOCK if pos % _BLOCK else 0
        elif kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


def _item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _history_value(item) -> Any:
    which = item.WhichOneof("value")  # newer W&B writes typed values, older ones JSON text
    if which is None or which == "json":
        return _json_value(item.json if which == "json" else item.value_json)
    return None if which == "none" else getattr(item, which)


def _wandb_file(path: Path) -> Path:
    """The ``.wandb`` file of ``path``: an ``offline-run-*`` directory, the file itself, or a
    run directory holding ``wandb/`` (its latest run)."""
    if path.is_dir() and not path.name.startswith(("offline-run-", "run-")):
        runs = sorted((path / "wandb").glob("*run-*"))
        if not runs:
            raise FileNotFoundError(f"no W&B runs under {path / 'wandb'}")
        path = runs[-1]
    files = sorted(path.glob("*.wandb")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no .wandb file in {path}")
    return files[0]


def _read_until_exit(file: Path, wait_s: float) -> tuple[list[Any], bool]:
    """W&B's service writes the log a moment after ``finish()`` returns: wait up to ``wait_s``
    seconds for the exit record (a crashed run has none: its partial log comes back)."""
    from wandb.proto import wandb_internal_pb2 as pb

    deadline = time.monotonic() + wait_s
    while True:
        records = []
        for raw in _records(file):
            rec = pb.Record()
            rec.ParseFromString(raw)
            records.append(rec)
        exited = any(r.WhichOneof("record_type") == "exit" for r in records)
        if exited or time.monotonic() > deadline:
            return records, exited
        time.sleep(0.2)


def _add_record(out: dict[str, Any], rec) -> None:
    what = rec.WhichOneof("record_type")
    if what == "run":
        r = rec.run
        out["run"] = {
            "id": r.run_id,
            "project": r.project,
            "group": r.run_group,
            "name": r.display_name,
            "tags": list(r.tags),
            "job_type": r.job_type,
        }
        for item in r.config.update:
            out["config"][_item_key(item)] = _json_value(item.value_json)
    elif what == "config":
        for item in rec.config.update:
            out["config"][_item_key(item)] = _json_value(item.value_json)
    elif what == "history":
        out["history"].append({_item_key(i): _history_value(i) for i in rec.history.item})
    elif what == "summary":
        for item in rec.summary.update:
            out["summary"][_item_key(item)] = _json_value(item.value_json)
    elif what == "files":
        out["files"].extend(f.path for f in rec.files.files)
    elif what == "artifact":
        out["artifacts"].append({"name": rec.artifact.name, "type": rec.artifact.type})


def read_offline_run(path: Path | str, wait_s: float = 60.0) -> dict[str, Any]:
    """Config, metric history, summary, files, artifacts and media of an offline W&B run, and
    whether it ``exited``. ``path``: see :func:`_wandb_file`."""
    file = _wandb_file(Path(path))
    records, exited = _read_until_exit(file, wait_s)
    out: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "run": {}, "files": []}
    out |= {"artifacts": [], "exited": exited}
    for rec in records:
        _add_record(out, rec)
    out["config"] = {  # W&B stores config values as {"value": v}
        k: (v["value"] if isinstance(v, dict) and set(v) == {"value"} else v)
        for k, v in out["config"].items()
    }
    media = file.parent / "files" / "media"
    out["media"] = sorted(str(p.relative_to(file.parent)) for p in media.rglob("*") if p.is_file())
    return out
