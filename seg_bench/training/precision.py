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
accelerators (MPS) keep float32; an explicit precision is used as given.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import platform
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from seg_bench.errors import UserError
from seg_bench.inference.device import uses_gpu
from seg_bench.io import file_lock, write_json
from seg_bench.paths import cache_dir

# Models whose bf16 + channels_last validation IoU stayed within float32's seed range at the
# cpu profile (benchmarks/bench_bf16_accuracy.py, benchmarks/bf16_accuracy_xeon-amx-2core.md;
# a test keeps the two in step). The smp U-Net fell outside it; FC-DenseNet67/103 and other
# smp architectures were never run. Speed alone must not move an unproven model off float32.
BF16_PROVEN = ("unet", "resunet", "segnet", "tiramisu56")
BF16_BENCHMARK = "benchmarks/bf16_accuracy_xeon-amx-2core.md"
MIN_SPEEDUP = 1.2  # a faster setting must beat float32 by this much to be worth a change
# name -> (Lightning precision, channels_last); float32 first: it is the reference.
CANDIDATES = {
    "fp32": ("32-true", False),
    "fp32+cl": ("32-true", True),
    "bf16": ("bf16-mixed", False),
    "bf16+cl": ("bf16-mixed", True),
}
# The first step of a setting includes oneDNN's set-up (measured 2-10x a steady step), so two
# warm-up steps go untimed and the give-up below judges the second.
WARMUP_STEPS, TIMED_STEPS = 2, 3
ROUNDS = 3
# Rounds whose ratios to float32 differ by more than this factor were disturbed: not cached.
ROUND_SPREAD = 1.5
# A candidate whose warm-up step is this much slower than float32's median is not timed on
# (bf16 without native kernels): it cannot win, and timing it would cost minutes.
GIVE_UP_FACTOR = 4.0
# Timing runs in a child process: some candidates crash or hang outright (torch 2.14's oneDNN
# segfaults, or on an AVX2-only CPU spins for good in a 1x1 convolution's weight gradient, on
# residual U-Net in float32 channels_last at narrow widths). A candidate whose child dies or
# outlasts its wait is out, and the run goes on. float32 waits CHILD_TIMEOUT_S (it is the
# reference: nothing tells how slow it may be); later ones wait HANG_MARGIN_S plus their
# steps at the give-up pace, so a hang costs seconds rather than minutes.
CHILD_TIMEOUT_S = 300
HANG_MARGIN_S = 15.0
CACHE_VERSION = 2  # 2: rounds, two warm-up steps, bf16 against the best float32 layout

# Times ``steps`` training steps of one candidate; returns the milliseconds of each step.
StepTimer = Callable[[str, float | None], list[float]]


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
    params = sum(p.numel() for p in model.parameters())
    path = cache_path(cache_key(cfg, in_channels, params) | {"candidates": names}, folder)
    # The lock makes concurrent runs (DDP ranks, parallel benches) measure one at a time: the
    # later ones read the cache, so all agree and no measurement competes with another.
    ms = None
    try:
        with file_lock(path.with_suffix(".lock")):
            ms = _read_cache(path)
            if ms is None:
                ms, steady = measure_rounds(
                    names, timer or _isolated_timer(cfg, model, in_channels)
                )
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
            ms = measure(names, timer or _isolated_timer(cfg, model, in_channels))
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


def _isolated_timer(cfg: Any, model: torch.nn.Module, in_channels: int) -> StepTimer:
    try:
        return _ChildTimer(cfg, model, in_channels)
    except Exception:  # a model that cannot be sent to a child process is timed here
        return _StepTimer(cfg, model, in_channels)


def wait_limit_s(limit_ms: float | None) -> float:
    """How long the parent waits for one candidate's timings (``limit_ms``: its give-up pace
    per step, None for the reference)."""
    if limit_ms is None:
        return CHILD_TIMEOUT_S
    return HANG_MARGIN_S + (WARMUP_STEPS + TIMED_STEPS) * limit_ms / 1000


def _child_loop(conn, timer: StepTimer, parent: int, threads: int) -> None:
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)  # the parent's (the cache key's), not a fresh default
    import seg_bench.training.optimizers  # noqa: F401  the timer's imports, paid before
    import seg_bench.training.targets  # noqa: F401  any candidate's wait

    conn.send("ready")
    while (job := conn.recv()) is not None:
        conn.send(timer(*job))


def _exit_when_orphaned(parent: int) -> None:
    """Ends the timing child once its parent is gone: a killed run must not leave a hung
    candidate spinning on the cores for good. (Torch kernels release the GIL, so this thread
    runs while the main one is stuck in one.)"""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


class _ChildTimer:
    """Runs ``_StepTimer`` in a spawned child, restarted after a crash; a candidate that kills
    its child or hangs is reported as infinitely slow."""

    def __init__(self, cfg: Any, model: torch.nn.Module, in_channels: int):
        self.timer = _StepTimer(cfg, model, in_channels)
        self.proc = None
        try:
            self._start()
        except BaseException:
            self.close()  # a child that started but never said ready must not linger
            raise

    def _start(self) -> None:
        """Starts the child and waits until it is ready, so that no candidate's wait pays
        for the child's imports."""
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_child_loop,
            args=(child, self.timer, os.getpid(), torch.get_num_threads()),
            daemon=True,
        )
        self.proc.start()
        child.close()
        if not self.conn.poll(CHILD_TIMEOUT_S) or self.conn.recv() != "ready":
            raise EOFError("the timing child did not start")

    def __call__(self, name: str, limit_ms: float | None) -> list[float]:
        try:
            if self.proc is None or not self.proc.is_alive():
                self._start()
            self.conn.send((name, limit_ms))
            if self.conn.poll(wait_limit_s(limit_ms)):
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        self.close()
        warnings.warn(f"timing {name} crashed or hung; it is not a candidate", stacklevel=2)
        return [math.inf]

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                with contextlib.suppress(OSError):
                    self.conn.send(None)
                self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
            self.conn.close()
        self.proc = None


def random_batch(batch_size: int, in_channels: int, size: int, target: str) -> dict:
    """Random data of a run's shape, with the per-pixel target its loss reads."""
    from seg_bench.training.targets import make_target

    gen = torch.Generator().manual_seed(0)
    image = torch.rand(batch_size, in_channels, size, size, generator=gen)
    mask = (torch.rand(batch_size, size, size, generator=gen) > 0.5).long()
    batch = {"image": image, "mask": mask, "instances": mask}
    if target != "binary":
        batch["target"] = torch.stack(
            [torch.from_numpy(make_target(target, m.numpy())) for m in mask]
        )
    return batch


class _StepTimer:
    """Times the run's training step (forward + loss under autocast, backward, optimizer step)
    on random data of the run's shape, on a copy of the model."""

    def __init__(self, cfg: Any, model: torch.nn.Module, in_channels: int):
        self.cfg, self.model, self.in_channels = cfg, model, in_channels

    def __call__(self, name: str, limit_ms: float | None) -> list[float]:
        from seg_bench.training.optimizers import build_optimizer
        from seg_bench.training.targets import build_loss

        precision, channels_last = CANDIDATES[name]
        cfg = self.cfg
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = copy.deepcopy(self.model).train().to(memory_format=fmt)
        opt = build_optimizer(
            model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum
        )
        target = getattr(cfg, "target", "binary")
        loss_fn = build_loss(target, cfg.loss, getattr(cfg, "target_options", None))
        batch = random_batch(cfg.batch_size, self.in_channels, cfg.patch_size or 128, target)
        batch["image"] = batch["image"].contiguous(memory_format=fmt)
        with torch.random.fork_rng(devices=[]):  # dropout draws must not shift the run's RNG
            return self._time(model, opt, loss_fn, batch, precision, limit_ms)

    @staticmethod
    def _time(model, opt, loss_fn, batch, precision: str, limit_ms: float | None) -> list[float]:
        times: list[float] = []
        for i in range(WARMUP_STEPS + TIMED_STEPS):
            t0 = time.perf_counter()
            with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16-mixed"):
                loss = loss_fn(model(batch["image"]), batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(1000 * (time.perf_counter() - t0))
            if i == WARMUP_STEPS - 1 and limit_ms is not None and times[-1] > limit_ms:
                return times  # far slower than float32 even allowing for warm-up: out
        return times[WARMUP_STEPS:]
