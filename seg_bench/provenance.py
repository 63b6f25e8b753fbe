"""Where a number came from: code version, libraries and hardware, for every result record."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

_REPO = Path(__file__).resolve().parents[1]


# What a bench itself rewrites: changes there say nothing about the code that made a number.
GENERATED = ("leaderboards", "benchmarks/RESULTS.md")


def git_commit(repo: Path = _REPO) -> str:
    """Short HEAD commit, with ``-dirty`` when tracked files other than generated outputs differ."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){p}" for p in GENERATED)],
            cwd=repo, capture_output=True, text=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def hardware() -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu": cpu_name(), "cores": cores, "gpu": None}
    if torch.cuda.is_available():
        info["gpu"] = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return info


def hardware_label(hw: dict) -> str:
    return hw["gpu"] if hw.get("gpu") else f"{hw['cores']} CPU cores ({hw['cpu']})"


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("seg-bench", "torch", "lightning", "segmentation-models-pytorch", "albumentations", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
