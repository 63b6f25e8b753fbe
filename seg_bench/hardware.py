"""What machine this is: CPU name and flags, GPUs, a one-line label for reports."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from seg_bench.errors import UserError


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


# The vector extensions that decide which precision is fast, best first: the CPU model name
# alone does not tell an AVX2-only EPYC from one with avx512_bf16.
VECTOR_EXTENSIONS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def vector_extension(flags: set[str]) -> str | None:
    return next((x for x in VECTOR_EXTENSIONS if x in flags), None)


def hardware(accelerator: str = "auto", devices: int | str = "auto") -> dict:
    """The machine a run used: its CPU, and the GPUs ``accelerator`` and ``devices`` took (none
    for a CPU run on a GPU machine; 1, not every visible one, for ``--devices 1``)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu": cpu_name(), "cores": cores, "gpu": None, "isa": vector_extension(cpu_flags())}
    n, _, what = processes_per_node(accelerator, devices)
    if what == "GPU(s)" and n > 0:
        info["gpu"] = f"{n} x {torch.cuda.get_device_name(0)}"
    return info


def hardware_label(hw: dict) -> str:
    if hw.get("gpu"):
        return hw["gpu"]
    # Records from before it was kept lack it: say so, rather than look like another machine.
    isa = hw.get("isa") or "vector extensions not recorded"
    return f"{hw['cores']} CPU cores ({hw['cpu']}, {isa})"


# --- what a run may ask of this machine: checked before any run folder is touched -------------
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")  # Lightning's names


def cpu_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def device_count(devices: int | str, available: int, on_gpu: bool) -> int:
    """How many processes per node ``--devices`` asks Lightning for (0 when it asks for none;
    a one-line error when it is not a count, ``auto``, ``-1`` or a list of GPU ids)."""
    text = str(devices).strip()
    if text == "auto":
        return available if on_gpu else 1
    if text.lstrip("-").isdigit():
        n = int(text)
        return available if n == -1 else n
    ids = [p.strip() for p in text.strip("[]").split(",") if p.strip()]  # "0,1" or "[0, 1]"
    if not ids or not all(i.isdigit() for i in ids):
        raise UserError(
            f"--devices {devices}: not a number of devices, 'auto', or GPU ids such as 0,1"
        )
    return len(ids)


def processes_per_node(accelerator: str, devices: int | str) -> tuple[int, int, str]:
    """(processes ``--devices`` asks for, devices this machine has, what they are)."""
    acc = str(accelerator).lower()
    on_gpu = acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())
    available = torch.cuda.device_count() if on_gpu else cpu_cores()
    return (
        device_count(devices, available, on_gpu),
        available,
        "GPU(s)" if on_gpu else "CPU core(s)",
    )


def check_hardware(cfg: Any) -> None:
    """``--accelerator`` and ``--devices`` of a RunConfig against this machine."""
    acc = str(cfg.accelerator).lower()
    if acc not in ACCELERATORS:
        raise UserError(
            f"--accelerator {cfg.accelerator}: unknown; known: {', '.join(ACCELERATORS)}"
        )
    if acc in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"--accelerator {cfg.accelerator}: no CUDA GPU is visible on this machine; "
            "use --accelerator cpu (or auto)"
        )
    n, available, what = processes_per_node(cfg.accelerator, cfg.devices)
    if n < 1 or n > available:
        raise UserError(
            f"--devices {cfg.devices}: this machine has {available} {what}; "
            f"use --devices {available} or fewer"
        )
