"""Ground-floor file utilities: atomic writes, advisory locks, JSON that never half-lands."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seg_bench.errors import UserError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the kernel reports it (Linux 4.7+);
    elsewhere set and restored under a lock, so no thread of ours creates a file meanwhile."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0644 under umask 022, 0600 under 077."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[Any]:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    Readers see the old file or the new one, never a half-written one; on any error (a full
    disk included) the temporary file is removed and the old file stays as it was. A failed
    write raises UserError naming the file and the reason (e.g. no space left on device).
    A process killed mid-write can leave its ``.<name>.*.tmp`` behind: never a result (no
    reader globs it), removed by ``remove_stale_temp`` under the lock that guards ``path``.
    The file gets the mode the umask gives any new file (mkstemp's private 0600 would keep a
    lab mate on a shared cluster from reading results).
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, new_file_mode())
        os.close(fd)  # reopened by name: some writers (tifffile) need a real file name
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(e, OSError):
            full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            hint = "; free space or write elsewhere" if full else ""
            raise UserError(
                f"cannot write {path}: {e.strerror or e}{hint} (any previous version is unchanged)"
            ) from e
        raise


@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive advisory lock (``fcntl.flock``) on ``path``, a file (created if needed) or a
    folder. Yields True once held; with ``blocking=False`` yields False at once when another
    process holds it. The kernel releases it when the block ends or the process dies, a
    SIGKILL included, so a killed run never leaves a stale lock. (No locking without fcntl.)"""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield True
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = (
        os.open(path, os.O_RDONLY)
        if path.is_dir()
        else os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    )
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            held = True
        except BlockingIOError:
            held = False
        yield held
    finally:
        os.close(fd)  # releases the lock


def remove_stale_temp(folder: Path, pattern: str) -> int:
    """Delete ``atomic_write`` temporaries matching ``pattern`` in ``folder`` that a killed process
    left; call it only while holding the lock of the files they belong to."""
    n = 0
    for p in Path(folder).glob(pattern):
        if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                n += 1
    return n


def write_json(path: Path, data: Any) -> None:
    try:
        with atomic_write(path) as f:
            json.dump(data, f, indent=1, sort_keys=True, default=_jsonable)
    except OSError as e:
        raise UserError(
            f"cannot write {path}: {e.strerror or e}; free space or choose another --results-dir"
        ) from e


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
