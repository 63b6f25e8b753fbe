"""Where a number came from: code version, libraries and hardware, for every result record."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


# What a bench itself rewrites: changes there say nothing about the code that made a number.
GENERATED = ("leaderboards", "benchmarks/RESULTS.md")


def git_commit(repo: Path = _REPO) -> str:
    """Short HEAD commit, with ``-dirty`` when tracked files other than generated outputs differ."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                *(f":(exclude){p}" for p in GENERATED),
            ],
            cwd=repo,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in (
        "seg-bench",
        "torch",
        "lightning",
        "segmentation-models-pytorch",
        "albumentations",
        "numpy",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
