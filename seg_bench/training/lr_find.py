"""Learning-rate range test (Smith 2017): train a few hundred steps while the learning rate
grows exponentially, record the smoothed training loss, and pick the peak learning rate of the
real run from the curve. Lightning's ``Tuner.lr_find`` runs the test; this module fixes the
rule that turns its curve into one number, so a profile's learning rate is reproducible.

The rule: one tenth of the learning rate at the loss minimum (Smith's "a factor below where the
loss starts to climb"; fastai's ``lr_min``), rounded down to 1, 2 or 5 times a power of ten.
Lightning's steepest-descent suggestion is recorded beside it, but is noisier on short curves.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from seg_bench.config import RunConfig

NICE_STEPS = (1.0, 2.0, 5.0)


@dataclass
class LrFinding:
    model: str
    optimizer: str
    lrs: list[float]
    losses: list[float]
    min_loss_lr: float
    steepest_lr: float | None
    chosen_lr: float
    rule: str = "min-loss lr / 10, rounded down to 1-2-5"

    def to_dict(self) -> dict:
        return asdict(self)


def round_down_nice(value: float) -> float:
    """The largest of 1, 2 or 5 times a power of ten that is <= ``value``."""
    if not value > 0:
        raise ValueError(f"a learning rate must be > 0, got {value}")
    exponent = math.floor(math.log10(value))
    # 1 x 10^exponent <= value always holds, so the generator never runs dry.
    step = next(s for s in reversed(NICE_STEPS) if s * 10.0**exponent <= value * (1 + 1e-9))
    return float(f"{step * 10.0**exponent:.3g}")


def choose_lr(lrs: list[float], losses: list[float], skip_begin: int = 10) -> tuple[float, float]:
    """(lr at the smoothed loss minimum, the chosen lr). Ignores the first ``skip_begin``
    points, where the smoothing has not settled, and non-finite losses."""
    lr_arr = np.asarray(lrs, dtype=float)
    loss = np.asarray(losses, dtype=float)
    start = min(skip_begin, max(len(loss) - 1, 0))
    window = np.where(np.isfinite(loss[start:]), loss[start:], np.inf)
    if not np.isfinite(window).any():
        raise ValueError("the range test recorded no finite loss")
    at_min = float(lr_arr[start + int(np.argmin(window))])
    return at_min, round_down_nice(at_min / 10)


def find_lr(
    cfg: RunConfig, min_lr: float = 1e-6, max_lr: float = 1.0, steps: int = 100
) -> LrFinding:
    """Run the range test for ``cfg`` (its data, model, optimizer and precision) on training
    data only; nothing is written outside a temporary folder."""
    from lightning.pytorch.tuner import Tuner

    from seg_bench.training.precision import choose_precision
    from seg_bench.training.run_dir import prepare_run
    from seg_bench.training.trainer import build_task, build_trainer, quiet_lightning

    quiet_lightning()
    # A step budget makes the trainer loop over epochs until the test's steps are done.
    cfg = dataclasses.replace(cfg, max_steps=steps, max_time_s=None)
    with tempfile.TemporaryDirectory(prefix="seg-bench-lr-find-") as tmp:
        run_dir = Path(tmp) / "run"
        prepared = prepare_run(cfg, run_dir)
        prepared.lock.close()  # a private folder: nobody else can train in it
        task = build_task(cfg, prepared.datamodule)
        dm = prepared.datamodule
        choice = choose_precision(cfg, task.model, dm.in_channels, patch_size=dm.patch_size)
        trainer, _, _ = build_trainer(cfg, run_dir, progress=False, precision=choice)
        finder = Tuner(trainer).lr_find(
            task,
            datamodule=prepared.datamodule,
            min_lr=min_lr,
            max_lr=max_lr,
            num_training=steps,
            update_attr=False,
        )
    lrs = [float(x) for x in finder.results["lr"]]
    losses = [float(x) for x in finder.results["loss"]]
    at_min, chosen = choose_lr(lrs, losses)
    steepest = finder.suggestion()
    return LrFinding(
        cfg.model, cfg.optimizer, lrs, losses, at_min, steepest and float(steepest), chosen
    )


def plot_findings(findings: list[LrFinding], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seg_bench.io import atomic_write

    fig, ax = plt.subplots(figsize=(6, 4))
    for f in findings:
        (line,) = ax.plot(f.lrs, f.losses, label=f"{f.model} (chosen {f.chosen_lr:g})")
        ax.axvline(f.chosen_lr, color=line.get_color(), linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed training loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)
