"""Does an instance-aware training target beat the binary one, and does test-time
augmentation beat plain testing? Per model, each other target against ``binary`` (tested
alike: with or without test-time augmentation), and each target tested with D4 TTA against the
same target tested plainly, on the seeds both have, each side with the post-processing method
validation chose for it on those seeds: test mAP@[.5:.95], pixel IoU, object F1, splits and
merges.

A paired test answers whether a difference is more than chance: the two-sided Wilcoxon
signed-rank test over the test images, paired by image id, each image's score averaged over
the shared seeds first (the images are the unit of replication, as in statistics.py),
Holm-corrected over the rows of each score. The Δ cell is a difference of means (of pooled
confusion matrices for IoU); where the signed ranks lean the other way, the cell says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from seg_bench.evaluation.evaluate import aggregate
from seg_bench.protocol.instance_choice import validation_scores
from seg_bench.protocol.method_scores import best_on_validation, mean_scores, method_scores
from seg_bench.protocol.statistics import ALPHA, holm, leans_to_first, wilcoxon_p

BASE = "binary"
SCORES = ("map", "iou")  # the scores with a paired test
TTA = " + TTA"


@dataclass(frozen=True)
class Scored:
    """One target's records on the compared seeds, scored with its method."""

    method: str
    means: dict[str, float]  # over seeds: map, f1, splits, merges (method_scores), iou
    per_image: dict[str, dict[str, float]]  # image id -> map, iou, averaged over seeds


@dataclass(frozen=True)
class Comparison:
    model: str
    target: str
    seeds: list[int]
    base: Scored
    other: Scored
    p: dict[str, float]  # score -> Holm-adjusted p
    target_leads: dict[str, bool]  # score -> whether the signed ranks favour the target


def score_with_best_method(recs: list[dict]) -> Scored | None:
    """``recs`` scored with the method of the best mean validation mAP over them; None where
    they share no tuned method (records of different evaluation versions)."""
    if not validation_scores(recs):
        return None
    method = best_on_validation(recs)
    means = mean_scores([method_scores(r["metrics"]["per_image"], method) for r in recs])
    means["iou"] = float(np.mean([r["metrics"]["overall"]["iou"] for r in recs]))
    seen: dict[str, list[dict[str, float]]] = {}
    for r in recs:
        for im in r["metrics"]["per_image"]:
            if method in im.get("methods", {}):
                score = {"map": im["methods"][method]["map"], "iou": aggregate([im])["iou"]}
                seen.setdefault(im["id"], []).append(score)
    return Scored(method, means, {i: mean_scores(s) for i, s in seen.items()})


def paired_test(base: Scored, other: Scored, score: str) -> tuple[float, bool]:
    """Two-sided Wilcoxon p of other against base over the images both have, and whether
    the signed ranks favour ``other``."""
    ids = sorted(base.per_image.keys() & other.per_image.keys())
    x = np.array([other.per_image[i][score] for i in ids])
    y = np.array([base.per_image[i][score] for i in ids])
    if not ids:
        return 1.0, True
    return wilcoxon_p(x, y), leans_to_first(x - y, float(np.mean(x - y)))


def base_of(target: str) -> str | None:
    """The binary target tested as ``target`` is (None for binary itself)."""
    if target in (BASE, BASE + TTA):
        return None
    return BASE + (TTA if target.endswith(TTA) else "")


def plain_of(target: str) -> str | None:
    """The same target tested plainly, for a target tested with TTA (else None)."""
    return target.removesuffix(TTA) if target.endswith(TTA) else None


def comparisons(
    groups: dict[tuple[str, str], list[dict]], base_for: Callable[[str], str | None] = base_of
) -> list[Comparison]:
    """Each (model, target) of ``groups`` ((model, target) -> records) against the model's
    ``base_for(target)`` records (binary tested alike by default; ``plain_of`` compares TTA
    with plain testing), on the seeds both have."""
    rows = []
    for (model, target), recs in groups.items():
        base = groups.get((model, base_for(target) or ""), [])
        seeds = sorted({r.get("seed") for r in recs} & {r.get("seed") for r in base})
        if not seeds:
            continue
        b = score_with_best_method([r for r in base if r.get("seed") in seeds])
        o = score_with_best_method([r for r in recs if r.get("seed") in seeds])
        if b and o:
            tests = {s: paired_test(b, o, s) for s in SCORES}
            p = {s: t[0] for s, t in tests.items()}
            rows.append(
                Comparison(model, target, seeds, b, o, p, {s: t[1] for s, t in tests.items()})
            )
    adjusted = {s: holm([c.p[s] for c in rows]) for s in SCORES}
    return [replace(c, p={s: adjusted[s][k] for s in SCORES}) for k, c in enumerate(rows)]


def _pair(c: Comparison, key: str, fmt: str) -> str:
    return f"{c.base.means[key]:{fmt}} → {c.other.means[key]:{fmt}}"


def _delta(c: Comparison, key: str, sides: tuple[str, str]) -> str:
    """Δ and p of ``key``; ``sides`` names (other, base) where the ranks lean against Δ."""
    d = c.other.means[key] - c.base.means[key]
    lean = f" (ranks favour {sides[0] if c.target_leads[key] else sides[1]})"
    return f"{d:+.3f} (p {c.p[key]:.3g})" + (lean if c.target_leads[key] != (d >= 0) else "")


HEAD = [
    "| Model | Target | Seeds | Method (best on val) | mAP@[.5:.95] | Δ mAP | Pixel IoU "
    "| Δ IoU | F1@.5 | Splits | Merges |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]
PAIRING = (
    "p: two-sided Wilcoxon signed-rank test over the test images (each image's score averaged "
    f"over the seeds), Holm-corrected over the rows of each score; below {ALPHA} a difference "
    "counts."
)


def _rows(
    rows: list[Comparison], sides: tuple[str, str], label: Callable[[str], str | None]
) -> list[str]:
    """One table line per comparison; ``label`` spells the row's target."""
    lines = []
    for c in rows:
        seeds = ", ".join(map(str, c.seeds))
        lines.append(
            f"| {c.model} | {label(c.target)} | {seeds} | {c.base.method} → {c.other.method} "
            f"| {_pair(c, 'map', '.3f')} | {_delta(c, 'map', sides)} "
            f"| {_pair(c, 'iou', '.3f')} | {_delta(c, 'iou', sides)} | {_pair(c, 'f1', '.3f')} "
            f"| {_pair(c, 'splits', '.0f')} | {_pair(c, 'merges', '.0f')} |"
        )
    return lines


def target_table(groups: dict[tuple[str, str], list[dict]]) -> list[str]:
    """The markdown section; empty where no model has binary and another target."""
    rows = comparisons(groups)
    if not rows:
        return []
    return [
        f"## Instance-aware targets against {BASE}",
        "",
        f"Per model, each target against {BASE} (tested alike) on the seeds both have (cells: "
        f"{BASE} → target), each with the method validation chose for it on those seeds, which "
        "can differ from the per-type table's choice over all seeds. Δ: target minus binary; "
        + PAIRING
        + " Pixel IoU is the leaderboard's: each run's own post-processing "
        "(the profile's for binary, the seeded watershed tuned on validation for the other "
        "targets), confusion matrices pooled over the images; its test pairs per-image IoUs.",
        "",
        *HEAD,
        *_rows(rows, ("the target", BASE), lambda target: target),
    ]


def tta_table(groups: dict[tuple[str, str], list[dict]]) -> list[str]:
    """The markdown section; empty where no target has records tested both ways."""
    rows = comparisons(groups, plain_of)
    if not rows:
        return []
    return [
        "## Test-time augmentation against plain testing: instance scores",
        "",
        "Per model and target, the same checkpoints tested plainly and with D4 test-time "
        "augmentation (`--tta`) on the seeds both have (cells: plain → TTA), each side with the "
        "method validation chose for it (validation predicted the same way as the test), so "
        "TTA's effect includes any change of method. Δ: TTA minus plain; "
        + PAIRING
        + " Pixel IoU: each run's own post-processing, confusion matrices pooled over the "
        "images.",
        "",
        *HEAD,
        *_rows(rows, ("TTA", "plain"), plain_of),
    ]
