"""Timing a run's training step in each precision candidate, for ``precision: auto``.

A candidate is timed in a spawned child process, restarted after a crash, so one that
segfaults or hangs (as oneDNN does for some networks and CPUs) is reported as infinitely slow
and the run goes on; a killed run leaves no child behind. ``precision.py`` decides from the
times.
"""

from __future__ import annotations

import contextlib
import copy
import math
import multiprocessing
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

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

# Timing runs in a child process: some candidates crash or hang outright (torch 2.14's oneDNN
# segfaults, or on an AVX2-only CPU spins for good in a 1x1 convolution's weight gradient, on
# residual U-Net in float32 channels_last at narrow widths). A candidate whose child dies or
# outlasts its wait is out, and the run goes on. float32 waits CHILD_TIMEOUT_S (it is the
# reference: nothing tells how slow it may be); later ones wait HANG_MARGIN_S plus their
# steps at the give-up pace, so a hang costs seconds rather than minutes.
CHILD_TIMEOUT_S = 300
HANG_MARGIN_S = 15.0

# Times ``steps`` training steps of one candidate; returns the milliseconds of each step.
StepTimer = Callable[[str, float | None], list[float]]


def isolated_timer(cfg: Any, model: torch.nn.Module, in_channels: int) -> StepTimer:
    try:
        return ChildTimer(cfg, model, in_channels)
    except Exception:  # a model that cannot be sent to a child process is timed here
        return LocalTimer(cfg, model, in_channels)


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


class ChildTimer:
    """Runs ``LocalTimer`` in a spawned child, restarted after a crash; a candidate that kills
    its child or hangs is reported as infinitely slow."""

    def __init__(self, cfg: Any, model: torch.nn.Module, in_channels: int):
        self.timer = LocalTimer(cfg, model, in_channels)
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


class LocalTimer:
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
