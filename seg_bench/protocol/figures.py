"""Leaderboard figures: ROC and precision-recall curves from the records' pooled probability
histograms, a grid of prediction overlays (errors coloured) from the saved previews, and the
learning curves (validation IoU against the optimizer step) from the records' ``curve``."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from seg_bench.io import atomic_write  # noqa: E402

# True positives green, false positives magenta, false negatives cyan: readable by most
# colour-blind readers.
ERROR_COLOURS = {"tp": (0.1, 0.8, 0.1), "fp": (0.9, 0.1, 0.9), "fn": (0.1, 0.8, 0.9)}


def curves_from_histograms(pos: np.ndarray, neg: np.ndarray) -> dict[str, np.ndarray]:
    """ROC and PR points for thresholds at every bin edge, from high to low."""
    tp = np.cumsum(pos[::-1])
    fp = np.cumsum(neg[::-1])
    tpr = tp / max(pos.sum(), 1)
    fpr = fp / max(neg.sum(), 1)
    precision = tp / np.maximum(tp + fp, 1)
    return {"fpr": np.r_[0, fpr], "tpr": np.r_[0, tpr], "recall": tpr, "precision": precision}


def _pooled(records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    per_image = [im for r in records for im in r["metrics"]["per_image"]]
    return (
        np.sum([im["hist_pos"] for im in per_image], axis=0),
        np.sum([im["hist_neg"] for im in per_image], axis=0),
    )


def _save(fig, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_curves(dataset: str, records: list[dict], out_dir: Path) -> list[Path]:
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_model[
            f"{r['model']}" + ("" if r.get("labels", "manual") == "manual" else f" ({r['labels']})")
        ].append(r)
    fig_roc, ax_roc = plt.subplots(figsize=(5, 5))
    fig_pr, ax_pr = plt.subplots(figsize=(5, 5))
    for name, recs in sorted(by_model.items()):
        c = curves_from_histograms(*_pooled(recs))
        auc = np.mean([r["metrics"]["overall"].get("auroc", np.nan) for r in recs])
        ax_roc.plot(c["fpr"], c["tpr"], label=f"{name} (mean AUROC of seeds {auc:.3f})")
        ax_pr.plot(c["recall"], c["precision"], label=name)
    ax_roc.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax_roc.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=f"{dataset}: ROC (test pixels, all seeds)",
    )
    ax_pr.set(
        xlabel="recall",
        ylabel="precision",
        title=f"{dataset}: precision-recall",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    for ax in (ax_roc, ax_pr):
        ax.legend(fontsize=8, loc="lower right" if ax is ax_roc else "lower left")
        ax.grid(alpha=0.3)
    paths = [out_dir / "roc.png", out_dir / "pr.png"]
    _save(fig_roc, paths[0])
    _save(fig_pr, paths[1])
    return paths


def error_overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB picture of the image with TP/FP/FN pixels tinted."""
    grey = image.astype(np.float32)
    grey = grey.mean(-1) if grey.ndim == 3 else grey
    lo, hi = np.percentile(grey, [1, 99.5])
    rgb = np.repeat(np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1)[..., None], 3, -1)
    for key, where in (("tp", truth & pred), ("fp", ~truth & pred), ("fn", truth & ~pred)):
        rgb[where] = 0.45 * rgb[where] + 0.55 * np.array(ERROR_COLOURS[key])
    return rgb


def predicted_mask(prob: np.ndarray, post: dict | None) -> np.ndarray:
    """The mask a run was scored on: its post-processing (threshold, small objects removed)
    applied to its foreground map; class probabilities (K, H, W) by their most likely class."""
    from seg_bench.errors import UserError
    from seg_bench.inference.postprocess import PostprocessConfig, postprocess

    if prob.ndim == 3:
        return prob.argmax(axis=0) > 0
    try:
        return postprocess(prob, PostprocessConfig.from_dict(post or {}))[0]
    except UserError:  # a record of another code version's options: the plain threshold
        return prob > 0.5


def plot_overlays(
    dataset: str, previews: dict[str, tuple[Path, dict | None]], out_path: Path, rows: int = 3
) -> Path | None:
    """One row per test image: image, truth, then each model's errors (``previews``: model ->
    its preview file and post-processing). Images are matched by id across models."""
    loaded = {m: (np.load(p), post) for m, (p, post) in sorted(previews.items()) if p.exists()}
    if not loaded:
        return None
    first = next(iter(loaded.values()))[0]
    n = min(rows, sum(1 for k in first.files if k.startswith("image")))
    cols = 2 + len(loaded)
    fig, axes = plt.subplots(n, cols, figsize=(2.4 * cols, 2.4 * n), squeeze=False)
    for i in range(n):
        image = first[f"image{i}"].astype(np.float32)
        truth = first[f"truth{i}"] > 0
        axes[i, 0].imshow(
            image[..., 0] if image.shape[-1] == 1 else np.clip(image, 0, 1), cmap="gray"
        )
        axes[i, 1].imshow(truth, cmap="gray")
        for j, (model, (data, post)) in enumerate(loaded.items()):
            k = _same_image(data, first, i)
            if k is not None:
                pred = predicted_mask(data[f"prob{k}"].astype(np.float32), post)
                axes[i, 2 + j].imshow(error_overlay(image, truth, pred))
            if i == 0:
                axes[0, 2 + j].set_title(model, fontsize=9)
    axes[0, 0].set_title("image", fontsize=9)
    axes[0, 1].set_title("truth", fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"{dataset}: green TP, magenta FP, cyan FN (seed 0)", fontsize=10)
    _save(fig, out_path)
    return out_path


def _same_image(data: Any, first: Any, i: int) -> int | None:
    """The index of ``first``'s image ``i`` among ``data``'s previews (None: not there)."""
    if f"id{i}" not in first.files:  # previews from before ids were kept: by position
        return i if f"prob{i}" in data.files else None
    want = str(first[f"id{i}"])
    ids = [k for k in data.files if k.startswith("id") and str(data[k]) == want]
    return int(ids[0][2:]) if ids else None


def cd_groups(average_ranks: dict[str, float], cd: float) -> list[tuple[float, float]]:
    """Rank spans of the maximal groups of models whose average ranks differ by less than
    ``cd`` (no significant difference within a group), as (lowest, highest) rank."""
    ranks = sorted(average_ranks.values())
    spans = []
    for i, low in enumerate(ranks):
        j = max(j for j in range(i, len(ranks)) if ranks[j] - low < cd)
        if j > i and not any(a <= low and ranks[j] <= b for a, b in spans):
            spans.append((low, ranks[j]))
    return spans


def cd_bars(
    average_ranks: dict[str, float], cd: float, friedman_rejects: bool
) -> list[tuple[float, float]]:
    """The diagram's thick lines: ``cd_groups`` where the Friedman test rejects, else one line
    joining every model (without that rejection no pair is tested, so none may look apart)."""
    if friedman_rejects:
        return cd_groups(average_ranks, cd)
    ranks = sorted(average_ranks.values())
    return [(ranks[0], ranks[-1])]


def plot_critical_difference(
    average_ranks: dict[str, float],
    cd: float,
    out_path: Path,
    n_datasets: int,
    friedman_rejects: bool = True,
) -> Path:
    """Demsar's (2006) critical-difference diagram: average ranks on an axis (1 = best, left),
    the CD as a bar above it, and a thick line joining models not significantly different.
    Where the Friedman test does not reject (or could not run), the Nemenyi test is not
    applied: one line joins every model, and the title says why."""
    models = sorted(average_ranks, key=lambda m: (average_ranks[m], m))
    k = len(models)
    fig, ax = plt.subplots(figsize=(7, 1.6 + 0.3 * k))
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-(k // 2 + 2.5), 2)
    ax.hlines(0, 1, k, color="k", lw=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.15, color="k", lw=1)
        ax.text(r, 0.3, str(r), ha="center", fontsize=9)
    ax.hlines(1.2, 1, 1 + cd, color="k", lw=1.5)
    ax.text(1 + cd / 2, 1.35, f"CD = {cd:.2f}", ha="center", fontsize=9)
    half = (k + 1) // 2
    for i, m in enumerate(models):  # better half labelled on the left, the rest on the right
        r = average_ranks[m]
        left = i < half
        y = -(i + 1 if left else k - i) - 0.4
        x_end = 0.6 if left else k + 0.4
        ax.plot([r, r, x_end], [0, y, y], color="k", lw=0.8)
        ax.text(x_end, y + 0.12, f"{m} ({r:.2f})", ha="left" if left else "right", fontsize=9)
    for n, (low, high) in enumerate(cd_bars(average_ranks, cd, friedman_rejects)):
        ax.hlines(-0.25 - 0.2 * n, low - 0.03, high + 0.03, color="k", lw=3)
    ax.set_axis_off()
    test = "Nemenyi" if friedman_rejects else "Friedman not rejected: no pair tested"
    ax.set_title(f"Average rank over {n_datasets} datasets ({test}, alpha 0.05)", fontsize=10)
    _save(fig, out_path)
    return out_path


def mean_curve(curves: list[list[dict]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, low, high) of val IoU over seeds, on the union of their validation steps;
    each seed is interpolated linearly between its own validations, over its own range only."""
    steps = np.unique([p["step"] for c in curves for p in c]).astype(float)
    stacked = np.full((len(curves), len(steps)), np.nan)
    for i, c in enumerate(curves):
        x = np.array([p["step"] for p in c], dtype=float)
        y = np.array([p["val_iou"] for p in c], dtype=float)
        inside = (steps >= x.min()) & (steps <= x.max())
        stacked[i, inside] = np.interp(steps[inside], x, y)
    return (
        steps,
        np.nanmean(stacked, 0),
        np.nanmin(stacked, 0),
        np.nanmax(stacked, 0),
    )


def plot_learning_curves(dataset: str, records: list[dict], out_path: Path) -> Path | None:
    """Validation IoU against the optimizer step per model: the mean over seeds and the band
    from the lowest to the highest seed. None when no record has a curve."""
    by_model: dict[str, list[list[dict]]] = defaultdict(list)
    for r in records:
        if r.get("curve"):
            by_model[r["model"]].append(r["curve"])
    if not by_model:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, curves in sorted(by_model.items()):
        steps, mean, low, high = mean_curve(curves)
        (line,) = ax.plot(steps, mean, marker=".", label=f"{model} ({len(curves)} seeds)")
        if len(curves) > 1:
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, lw=0)
    ax.set(
        xlabel="optimizer step",
        ylabel="validation IoU",
        title=f"{dataset}: learning curves (mean, band = seed range)",
    )
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    _save(fig, out_path)
    return out_path


def write_figures(
    dataset: str, records: list[dict], results_dir: Path, fig_dir: Path
) -> list[Path]:
    from seg_bench.protocol.records import preview_for

    paths = plot_curves(dataset, records, fig_dir)
    previews = {
        r["model"]: (preview_for(results_dir, r), (r.get("config") or {}).get("postprocess"))
        for r in records
        if r["seed"] == 0 and r.get("labels", "manual") == "manual"
    }
    overlay = plot_overlays(dataset, previews, fig_dir / "overlays.png")
    learning = plot_learning_curves(dataset, records, fig_dir / "curves.png")
    return paths + [p for p in (overlay, learning) if p]
