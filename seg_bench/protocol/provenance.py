"""Where a number came from: code version, libraries and hardware, for every result record."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


# What a bench itself rewrites: changes there say nothing about the code that made a number.
GENERATED = ("leaderboards", "benchmarks/RESULTS.md")


NOT_A_CHECKOUT = "not a git checkout"


def _is_checkout_root(repo: Path) -> bool:
    """True only where ``repo`` is the top of a git work tree. An installed package sits in
    site-packages, which may lie inside someone else's repository: its commit is not ours."""
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return False
    return Path(top).resolve() == Path(repo).resolve()


def git_commit(repo: Path = _REPO) -> str:
    """Short HEAD commit, with ``-dirty`` when tracked files other than generated outputs differ;
    ``not a git checkout`` for an installed package (a wheel) or any folder outside a work tree."""
    if not _is_checkout_root(repo):
        return NOT_A_CHECKOUT
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


@functools.cache
def running_commit(repo: Path = _REPO) -> str:
    """The commit of the code this process runs: ``git_commit`` at the first call, then kept,
    so a record written hours into a bench does not name a commit made meanwhile (the process
    still runs what it imported). ``run_one``, ``bench`` and ``lr-find`` call it as they start."""
    return git_commit(repo)


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
