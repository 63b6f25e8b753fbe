"""Folders taken from the environment: the one place that reads SEG_BENCH_DATA, SEG_BENCH_RUNS
and SEG_BENCH_CACHE.

Defaults follow the user, not the current folder: datasets go to a per-user cache
(``~/.cache/seg-bench/data`` on Linux, the platform's equivalent elsewhere, as pooch and
torch-em do) and runs to ``./runs``. Both are read at call time, so a changed environment
(a test's monkeypatch, a shell export) takes effect without re-importing anything.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "SEG_BENCH_DATA"
RUNS_ENV = "SEG_BENCH_RUNS"
CACHE_ENV = "SEG_BENCH_CACHE"


def default_data_dir() -> Path:
    """The per-user data folder used when SEG_BENCH_DATA is not set."""
    import pooch  # only here: a small import, but nothing else in this module needs it

    return Path(pooch.os_cache("seg-bench")) / "data"


def data_dir() -> Path:
    """The folder holding one sub-folder per dataset: ``$SEG_BENCH_DATA``, else the user cache."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else default_data_dir()


def dataset_dir(subdir: str, root: str | os.PathLike | None = None) -> Path:
    """Where one dataset lives: ``root`` (``--root``) if given, else ``data_dir() / subdir``."""
    return Path(root).expanduser() if root is not None else data_dir() / subdir


def cache_dir() -> Path:
    """Measurements kept per machine (precision timings, image types): ``$SEG_BENCH_CACHE``,
    else ``~/.cache/seg-bench``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "seg-bench"


def runs_dir() -> Path:
    """Where runs, checkpoints and result records go: ``$SEG_BENCH_RUNS``, else ``./runs``."""
    return Path(os.environ.get(RUNS_ENV) or "runs").expanduser()


def missing_data_hint(dataset: str) -> str:
    """The second half of a 'not found' error: how to point seg-bench at a dataset."""
    return (
        f"Run `seg-bench data download {dataset}`, set {DATA_ENV} to the folder that holds "
        "the dataset folders, or pass --root DIR."
    )


def study_storage_url(storage: str | None, runs: str | os.PathLike, study: str) -> str:
    """The database URL of a search study: ``--storage`` (a URL, or a bare ``.db`` file), else
    the study's own SQLite file ``<runs>/search/<study>.db``. Here, not in search/, so that
    the dashboard (tracking, below search) finds a study where ``seg-bench search`` put it."""
    from seg_bench.errors import UserError

    if not storage:
        return f"sqlite:///{(Path(runs) / 'search' / f'{study}.db').resolve()}"
    storage = storage.strip()
    if "://" not in storage:
        if storage.endswith((".db", ".sqlite", ".sqlite3")):  # a bare file path
            return f"sqlite:///{Path(storage).expanduser().resolve()}"
        shown = f"***@{storage.rsplit('@', 1)[1]}" if "@" in storage else storage
        raise UserError(  # a password sits before the '@': cut it off
            f"--storage '{shown}' is not a database URL; use "
            "postgresql://USER:PASSWORD@HOST:PORT/DB, sqlite:///path/to/file.db, "
            "or leave --storage out for a local SQLite file"
        )
    if storage.startswith("postgres://"):  # Heroku-style alias SQLAlchemy no longer accepts
        storage = "postgresql://" + storage[len("postgres://") :]
    return storage
