"""Which numeric precision and memory format a run trains in, decided by measurement.

CPU flags do not tell whether bf16 pays: on a 2-core EPYC with ``avx512_bf16`` (no AMX)
bf16 autocast + channels_last trains U-Net 2.1x faster than float32, while on an AVX2-only
EPYC bf16 is 7-25x slower. So ``precision: auto`` on a CPU times a few training steps of the
run's own model at its patch, batch and width in each candidate setting and takes the fastest
only if it beats float32 by ``MIN_SPEEDUP`` (bf16 must beat the faster float32 layout by as
much: channels_last alone costs no accuracy). The candidates are timed in turn over
``ROUNDS`` rounds, so a load that comes and goes slows them alike; when the rounds disagree
the verdict is used but not cached. The verdict is cached per (machine and its vector ISA,
threads, torch version, model, shape) as JSON in the user's cache folder
(``$SEG_BENCH_CACHE``, else ``~/.cache/seg-bench``), so a machine pays the seconds once per
model; a run keeps its choice when it resumes. bf16 is a candidate only for the models the
bf16 accuracy benchmark proved (``BF16_PROVEN``). GPUs keep 16-bit mixed precision; other
accelerators (MPS) keep float32; an explicit precision is used as given. A run of fewer
optimizer steps than the timing itself trains (a smoke run) keeps float32 untimed: no speed-up
could win back the timing's seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from seg_bench.config import planned_steps
from seg_bench.errors import UserError
from seg_bench.inference.device import uses_gpu
from seg_bench.io import file_lock, write_json
from seg_bench.paths import cache_dir
from seg_bench.training.step_timer import (
    CANDIDATES,
    TIMED_STEPS,
    WARMUP_STEPS,
    StepTimer,
    isolated_timer,
)

# Models whose bf16 + channels_last validation IoU stayed within float32's seed range at the
# cpu profile (benchmarks/bench_bf16_accuracy.py, benchmarks/bf16_accuracy_xeon-amx-2core.md;
# a test keeps the two in step). The smp U-Net fell outside it; FC-DenseNet67/103 and other
# smp architectures were never run. Speed alone must not move an unproven model off float32.
BF16_PROVEN = ("unet", "resunet", "segnet", "tiramisu56")
BF16_BENCHMARK = "benchmarks/bf16_accuracy_xeon-amx-2core.md"
MIN_SPEEDUP = 1.2  # a faster setting must beat float32 by this much to be worth a change
ROUNDS = 3
# Rounds whose ratios to float32 differ by more than this factor were disturbed: not cached.
ROUND_SPREAD = 1.5
# A candidate whose warm-up step is this much slower than float32's median is not timed on
# (bf16 without native kernels): it cannot win, and timing it would cost minutes.
GIVE_UP_FACTOR = 4.0
CACHE_VERSION = 2  # 2: rounds, two warm-up steps, bf16 against the best float32 layout


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run trains in, and why (stored in the result record)."""

    precision: str  # Lightning's precision argument
    channels_last: bool = False
    setting: str = ""  # the winning candidate's name, e.g. "bf16+cl"
    ms_per_step: dict[str, float] = dataclasses.field(default_factory=dict)
    ratio: float | None = None  # float32's ms per step over the fastest candidate's
    cache_file: str | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """The precision without measuring: as given; ``auto`` is 16-mixed on GPUs, else float32.

    For callers that have no model to time (``choose_precision`` is what training uses)."""
    if precision != "auto":
        return precision
    return "16-mixed" if uses_gpu(accelerator) else "32-true"


def cache_key(cfg: Any, in_channels: int, params: int) -> dict[str, Any]:
    """What a measurement depends on: machine (its name says too little: one generic name
    covers CPUs with and without bf16 units, so the ISA torch dispatches to is in too),
    threads, torch, the model and the step's shape. Not the optimizer: its update is a small
    part of a step, the same in every setting."""
    from seg_bench.hardware import cpu_name

    return {
        "version": CACHE_VERSION,
        "cpu": cpu_name(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": cfg.model,
        "model_options": cfg.model_options,
        "width": cfg.width,
        "params": params,  # in/out channels and any option that changes the network
        "in_channels": in_channels,
        "patch_size": cfg.patch_size,
        "batch_size": cfg.batch_size,
        "loss": cfg.loss,
        "compile": bool(getattr(cfg, "compile", False)),
    }


def cache_path(key: dict[str, Any], folder: Path | None = None) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return (folder or cache_dir()) / "precision" / f"{key['model']}-{digest}.json"


def decide(ms_per_step: dict[str, float], threshold: float = MIN_SPEEDUP) -> tuple[str, str, float]:
    """(chosen, fastest, ratio): the fastest setting if it beats float32 by ``threshold`` (a
    bf16 one must also beat the faster float32 layout by as much, or that layout is weighed
    instead), else float32; ratio is float32's time per step over the fastest's. Needs
    float32's time (``choose_precision`` keeps float32 when that timing failed)."""
    ran = {k: v for k, v in ms_per_step.items() if v is not None}  # None: crashed
    fastest = min(ran, key=ran.__getitem__)
    ratio = ran["fp32"] / ran[fastest]
    best32 = min((k for k in ran if k.startswith("fp32")), key=ran.__getitem__)
    if fastest.startswith("bf16") and ran[best32] / ran[fastest] < threshold:
        candidate = best32  # bf16's gain over float32 comes from the layout, not the precision
    else:
        candidate = fastest
    return (candidate if ran["fp32"] / ran[candidate] >= threshold else "fp32"), fastest, ratio


def bf16_unproven(model: str) -> str | None:
    """Why ``auto`` keeps ``model`` off bf16 when the profile does not say: None if proven."""
    if model in BF16_PROVEN:
        return None
    return (
        f"not among the models the bf16 accuracy benchmark found within float32's seed range "
        f"({BF16_BENCHMARK}); run benchmarks/bench_bf16_accuracy.py for it, or set precision"
    )


def choose_precision(
    cfg: Any,
    model: torch.nn.Module,
    in_channels: int,
    timer: StepTimer | None = None,
    folder: Path | None = None,
    patch_size: int | None = None,
) -> PrecisionChoice:
    """The run's precision: explicit as given, GPUs 16-mixed, CPUs by (cached) measurement.

    ``model`` is the run's network (copied for timing, never changed); ``timer`` replaces the
    real step timing (tests); ``folder`` replaces the cache folder; ``patch_size``: the one
    the data module trains with where the config leaves it to the dataset (timed and cached
    at that size, not at a stand-in). Models in the profile's ``bf16_exclude`` (model ->
    reason) only choose between float32 layouts.
    """
    if cfg.patch_size is None and patch_size is not None:
        cfg = dataclasses.replace(cfg, patch_size=patch_size)
    if cfg.precision != "auto":
        return PrecisionChoice(cfg.precision, reason="given explicitly")
    if uses_gpu(cfg.accelerator):
        return PrecisionChoice("16-mixed", reason="GPU: 16-bit mixed precision")
    if cfg.accelerator not in ("auto", "cpu"):  # e.g. mps: a CPU timing says nothing of it
        return PrecisionChoice("32-true", reason=f"{cfg.accelerator}: float32, untimed")
    excluded = (getattr(cfg, "bf16_exclude", None) or {}).get(cfg.model) or bf16_unproven(cfg.model)
    names = [n for n in CANDIDATES if not (excluded and n.startswith("bf16"))]
    timing = len(names) * ROUNDS * (WARMUP_STEPS + TIMED_STEPS)
    if (steps := planned_steps(cfg)) is not None and steps < timing:
        reason = f"float32, untimed: the run's {steps} steps are fewer than timing takes ({timing})"
        return PrecisionChoice("32-true", reason=reason)
    params = sum(p.numel() for p in model.parameters())
    path = cache_path(cache_key(cfg, in_channels, params) | {"candidates": names}, folder)
    # The lock makes concurrent runs (DDP ranks, parallel benches) measure one at a time: the
    # later ones read the cache, so all agree and no measurement competes with another.
    ms = None
    try:
        with file_lock(path.with_suffix(".lock")):
            ms = _read_cache(path)
            if ms is None:
                ms, steady = measure_rounds(names, timer or isolated_timer(cfg, model, in_channels))
                if ms.get("fp32") and steady:
                    _write_cache(path, ms)
                elif ms.get("fp32"):
                    warnings.warn(
                        f"precision timings disagreed between rounds (a busy machine?): used "
                        f"for this run, not cached in {path}",
                        stacklevel=2,
                    )
    except (OSError, UserError) as e:  # an unusable cache costs a measurement, no more
        warnings.warn(f"precision cache {path} not usable ({e})", stacklevel=2)
        path = None
        if ms is None:
            ms = measure(names, timer or isolated_timer(cfg, model, in_channels))
    if not ms.get("fp32"):  # no float32 time to compare with: training will say why, if any
        return PrecisionChoice(
            "32-true", ms_per_step=ms, reason="timing failed for float32: float32, untimed"
        )
    setting, fastest, ratio = decide(ms)
    precision, channels_last = CANDIDATES[setting]
    verdict = (
        "chosen" if setting == fastest else ("float32" if setting == "fp32" else setting) + " kept"
    )
    reason = f"measured: fastest {fastest} at {ratio:.2f}x float32 (need {MIN_SPEEDUP}x): {verdict}"
    if excluded:
        reason += f"; bf16 excluded for {cfg.model}: {excluded}"
    return PrecisionChoice(
        precision, channels_last, setting, ms, ratio, str(path) if path else None, reason
    )


def measure(names: list[str], timer: StepTimer) -> dict[str, float | None]:
    """``measure_rounds``' ms per step, without its verdict on the rounds' agreement."""
    return measure_rounds(names, timer)[0]


def measure_rounds(names: list[str], timer: StepTimer) -> tuple[dict[str, float | None], bool]:
    """(median over ``ROUNDS`` of each candidate's median ms per step, None where it crashed;
    whether the rounds agree). Within a round the candidates run in turn, so a load that comes
    and goes slows them alike; one hopelessly slow warm-up ends a candidate."""
    rounds: dict[str, list[float]] = {n: [] for n in names}
    out: set[str] = set()  # crashed or gave up: not timed again
    steady = True
    try:
        for _ in range(ROUNDS):
            for name in names:
                if name in out:
                    continue
                ref = rounds["fp32"][-1] if rounds.get("fp32") else None
                limit = GIVE_UP_FACTOR * ref if ref and name != "fp32" else None
                times = timer(name, limit)
                median = statistics.median(times)
                if not math.isfinite(median):  # crashed or hung: never a candidate, even if
                    steady = steady and not rounds[name]  # an earlier round went through
                    rounds[name] = []
                    out.add(name)
                    if name == "fp32":
                        return {n: None for n in names}, False  # nothing to compare with
                    continue
                rounds[name].append(median)
                if len(times) < TIMED_STEPS:  # gave up during warm-up: far slower than float32
                    out.add(name)
    finally:
        getattr(timer, "close", lambda: None)()
    ms = {n: (round(statistics.median(v), 2) if v else None) for n, v in rounds.items()}
    return ms, steady and rounds_agree(rounds)


def rounds_agree(rounds: dict[str, list[float]]) -> bool:
    """Whether every candidate's ratio to float32 stays within ``ROUND_SPREAD`` across the
    rounds (a round disturbed by other work shifts the ratios, not only the times)."""
    ref = rounds.get("fp32") or []
    for v in rounds.values():
        ratios = [r / x for r, x in zip(ref, v, strict=False) if x > 0]
        if len(ratios) > 1 and max(ratios) / min(ratios) > ROUND_SPREAD:
            return False
    return True


def _read_cache(path: Path) -> dict[str, float] | None:
    try:
        with open(path) as f:
            ms = json.load(f)["ms_per_step"]
        out = {str(k): None if v is None else float(v) for k, v in ms.items()}
        return out if out.get("fp32") else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # none yet, or damaged: measure again


def _write_cache(path: Path, ms: dict[str, float]) -> None:
    setting, fastest, ratio = decide(ms)
    write_json(
        path,
        {
            "ms_per_step": ms,
            "setting": setting,
            "fastest": fastest,
            "ratio": ratio,
            "threshold": MIN_SPEEDUP,
            "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
