"""Does an instance-aware training target beat the binary one? Per model, each other target
against ``binary`` on the seeds both have, each with the post-processing method validation
chose for it: test mAP@[.5:.95], pixel IoU, object F1, merges and splits.

A paired test answers whether a difference is more than chance: the two-sided Wilcoxon
signed-rank test over the test images, each image's score averaged over the shared seeds
first (the images are the unit of replication, as in statistics.py), Holm-corrected over the
rows of each score. Pixel IoU shows whether a target costs the foreground mask: the
difference is that of the leaderboard's IoU (confusion matrices pooled over the images), the
test pairs the per-image IoUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seg_bench.evaluation.evaluate import aggregate
from seg_bench.protocol.method_scores import (
    best_on_validation,
    by_model_target,
    mean_scores,
    method_scores,
)
from seg_bench.protocol.statistics import ALPHA, holm, wilcoxon_p

BASE = "binary"
SCORES = ("map", "iou")  # the scores with a paired test


@dataclass(frozen=True)
class Side:
    """One target's records on the compared seeds, scored with its method."""

    method: str
    means: dict[str, float]  # over seeds: map, f1, merges, splits (method_scores), iou
    per_image: dict[str, dict[str, float]]  # image id -> map, iou, averaged over seeds


@dataclass(frozen=True)
class Comparison:
    model: str
    target: str
    seeds: list[int]
    base: Side
    other: Side
    p: dict[str, float]  # score -> Holm-adjusted p


def side(recs: list[dict]) -> Side:
    method = best_on_validation(recs)
    means = mean_scores([method_scores(r["metrics"]["per_image"], method) for r in recs])
    means["iou"] = float(np.mean([r["metrics"]["overall"]["iou"] for r in recs]))
    seen: dict[str, list[dict[str, float]]] = {}
    for r in recs:
        for im in r["metrics"]["per_image"]:
            score = {"map": im["methods"][method]["map"], "iou": aggregate([im])["iou"]}
            seen.setdefault(im["id"], []).append(score)
    return Side(method, means, {i: mean_scores(s) for i, s in seen.items()})


def paired_p(base: Side, other: Side, score: str) -> float:
    ids = sorted(base.per_image.keys() & other.per_image.keys())
    x = np.array([other.per_image[i][score] for i in ids])
    y = np.array([base.per_image[i][score] for i in ids])
    return wilcoxon_p(x, y) if ids else 1.0


def comparisons(records: list[dict]) -> list[Comparison]:
    """Every (model, target other than binary) whose model has binary records on one or more
    of its seeds, with p-values Holm-corrected over these rows, score by score."""
    groups = by_model_target(records)
    rows = []
    for (model, target), recs in groups.items():
        base = groups.get((model, BASE))
        seeds = sorted({r["seed"] for r in recs} & {r["seed"] for r in base or []})
        if target == BASE or not seeds:
            continue
        b = side([r for r in base if r["seed"] in seeds])
        o = side([r for r in recs if r["seed"] in seeds])
        rows.append(Comparison(model, target, seeds, b, o, {s: paired_p(b, o, s) for s in SCORES}))
    adjusted = {s: holm([c.p[s] for c in rows]) for s in SCORES}
    return [
        Comparison(c.model, c.target, c.seeds, c.base, c.other, {s: adjusted[s][k] for s in SCORES})
        for k, c in enumerate(rows)
    ]


def _pair(c: Comparison, key: str, fmt: str) -> str:
    return f"{c.base.means[key]:{fmt}} → {c.other.means[key]:{fmt}}"


def _delta(c: Comparison, key: str) -> str:
    return f"{c.other.means[key] - c.base.means[key]:+.3f} (p {c.p[key]:.3g})"


def target_table(records: list[dict]) -> list[str]:
    """The markdown section; empty where no model has binary and another target."""
    rows = comparisons(records)
    if not rows:
        return []
    lines = [
        f"## Instance-aware targets against {BASE}",
        "",
        f"Per model, each target against {BASE} on the seeds both have (cells: {BASE} → "
        "target), each with the method validation chose for it. Δ: target minus binary; p: "
        "two-sided Wilcoxon signed-rank test over the test images (each image's score "
        f"averaged over the seeds), Holm-corrected over the rows of each score; below {ALPHA} "
        "a difference counts. IoU is the pixel IoU of the leaderboard (confusion matrices "
        "pooled over the images); its test pairs the per-image IoUs.",
        "",
        "| Model | Target | Seeds | Method (best on val) | mAP@[.5:.95] | Δ mAP | Pixel IoU "
        "| Δ IoU | F1@.5 | Merges | Splits |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        seeds = ", ".join(map(str, c.seeds))
        lines.append(
            f"| {c.model} | {c.target} | {seeds} | {c.base.method} → {c.other.method} "
            f"| {_pair(c, 'map', '.3f')} | {_delta(c, 'map')} | {_pair(c, 'iou', '.3f')} "
            f"| {_delta(c, 'iou')} | {_pair(c, 'f1', '.3f')} | {_pair(c, 'merges', '.0f')} "
            f"| {_pair(c, 'splits', '.0f')} |"
        )
    return lines
