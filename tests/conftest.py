"""Shared fixtures. Real data lives outside the repo: $SEG_BENCH_DATA, else ../shared/data.

``../shared/data`` is this repository's test setting only (the package itself defaults to a
per-user folder, see seg_bench/paths.py), so it is exported here for every test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.setdefault("SEG_BENCH_DATA", str(REPO.parent / "shared" / "data")))


def real_data(subdir: str) -> Path:
    """Path to a real dataset sample, or skip the test saying what is missing."""
    path = DATA / subdir
    if not path.exists():
        pytest.skip(
            f"real data not found at {path}; set SEG_BENCH_DATA to the folder holding {subdir}/"
        )
    return path


USER_SETTINGS = (
    "SEG_BENCH_CONFIGS",
    "SEG_BENCH_PLUGINS",
    "SEG_BENCH_DEBUG",
    "WANDB_PROJECT",
    "WANDB_ENTITY",
    "LOCAL_RANK",
    "RANK",
    "WORLD_SIZE",
    "NODE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
)


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path, tmp_path_factory, monkeypatch):
    """Runs and results of a test go to its own temporary folder."""
    monkeypatch.setenv("SEG_BENCH_RUNS", str(tmp_path / "runs"))
    # precision: auto's step-time measurements, shared by the session's tests, not the user's
    monkeypatch.setenv("SEG_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    # A user's own settings would change what the tests see: their profile folder, plugins,
    # tracebacks instead of one-line errors, a W&B project, a half-set distributed launch.
    for name in USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name in ("NO_PROXY", "no_proxy"):  # the tests' servers listen on loopback
        monkeypatch.setenv(name, ",".join(filter(None, ["127.0.0.1,localhost", os.getenv(name)])))
