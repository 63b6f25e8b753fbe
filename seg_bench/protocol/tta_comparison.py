"""Does test-time augmentation help? Per model, its networks tested with D4 test-time
augmentation (``--tta``: the mean of the 8 flips and rotations) against the same networks tested
plainly: each TTA record paired with its training twin's record (the same configuration but
``tta``, the same seed), so the two differ only in how one checkpoint was tested.

The paired test is the leaderboard's (statistics.py): the two-sided Wilcoxon signed-rank test
over the test images, each image's IoU averaged over the seeds both have, Holm-corrected over
the models. With few test images no difference can reach significance, and the section says so
rather than leaving "not significant" to read as "no effect".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seg_bench.protocol.records import record_key
from seg_bench.protocol.statistics import (
    ALPHA,
    floor_p,
    holm,
    leans_to_first,
    per_image_scores,
    wilcoxon_p,
)
from seg_bench.training.run_dir import config_key

SCORES = (("iou", "IoU", ".3f"), ("dice", "Dice", ".3f"), ("accuracy", "Accuracy", ".4f"))
SCORES_EM = (
    ("vrand", "V_rand", ".3f"),
    ("vinfo", "V_info", ".3f"),
    ("vrand_thinned", "V_rand thinned", ".3f"),
)


@dataclass(frozen=True)
class TtaPair:
    """One model's plain and TTA records on the seeds both have, and the paired IoU test."""

    model: str
    seeds: list[int]
    plain: list[dict]
    tta: list[dict]
    p: float  # Holm-adjusted
    p_floor: float  # the smallest p its image differences allow, before Holm
    tta_leads: bool  # whether the signed ranks favour TTA

    def mean(self, side: str, key: str) -> float:
        recs = self.tta if side == "tta" else self.plain
        if key == "inference":
            return float(np.mean([r["metrics"]["inference_mpix_per_s"] for r in recs]))
        return float(np.mean([r["metrics"]["overall"][key] for r in recs]))


def twin_key(record: dict) -> str:
    """The config key of the plain configuration that trained a TTA record's network."""
    return config_key({**record["config"], "tta": False})


def tta_pairs(records: list[dict]) -> list[TtaPair]:
    """Each model with TTA records whose plain twins (same key but tta, same seed) are among
    ``records``; p-values Holm-corrected over the models."""
    plain = {(record_key(r), r["seed"]): r for r in records if not r["config"].get("tta")}
    matched: dict[str, list[tuple[dict, dict]]] = {}
    for r in records:
        twin = plain.get((twin_key(r), r["seed"])) if r["config"].get("tta") else None
        if twin is not None:
            matched.setdefault(r["model"], []).append((twin, r))
    rows = []
    for model, both in sorted(matched.items()):
        both.sort(key=lambda pair: pair[0]["seed"])
        base, tta = [b for b, _ in both], [t for _, t in both]
        x, y = per_image_scores(tta, "iou"), per_image_scores(base, "iou")
        ids = sorted(x.keys() & y.keys())
        d = np.array([x[i] - y[i] for i in ids])
        p = wilcoxon_p(d, np.zeros_like(d)) if ids else 1.0
        lead = leans_to_first(d, float(np.mean(d)) if ids else 0.0)
        floor = floor_p(d) if ids else 1.0
        rows.append(TtaPair(model, [b["seed"] for b in base], base, tta, p, floor, lead))
    adjusted = holm([r.p for r in rows])
    return [
        TtaPair(r.model, r.seeds, r.plain, r.tta, q, r.p_floor, r.tta_leads)
        for r, q in zip(rows, adjusted, strict=True)
    ]


def _delta(pair: TtaPair, key: str, fmt: str) -> str:
    if not all(key in r["metrics"]["overall"] for r in pair.plain + pair.tta):
        return "–"  # records scored before the score existed
    plain, tta = pair.mean("plain", key), pair.mean("tta", key)
    return f"{plain:{fmt}} → {tta:{fmt}} ({tta - plain:+{fmt}})"


def _iou_cell(pair: TtaPair) -> str:
    cell = f"{_delta(pair, 'iou', '.3f')}, p {pair.p:.3g}"
    diff = pair.mean("tta", "iou") - pair.mean("plain", "iou")
    if pair.tta_leads != (diff >= 0):
        cell += " (ranks favour " + ("TTA)" if pair.tta_leads else "plain)")
    return cell


def power_sentence(rows: list[TtaPair]) -> str:
    """Whether these test images can show any difference at ``ALPHA`` after Holm."""
    best = min(r.p_floor for r in rows) * len(rows)
    if best >= ALPHA:
        return (
            f"With these test images the smallest attainable p-value after Holm over "
            f"{len(rows)} model(s) is {min(best, 1):.3g}: no difference can be significant at "
            f"alpha {ALPHA}, whatever its size."
        )
    return f"Below {ALPHA} (Holm-adjusted) a difference counts."


def tta_section(records: list[dict]) -> str:
    """The markdown section; empty where no model has both plain and TTA records."""
    rows = tta_pairs(records)
    if not rows:
        return ""
    em = tuple(s for s in SCORES_EM if any(s[0] in r.plain[0]["metrics"]["overall"] for r in rows))
    scores = SCORES + em
    head = ["Model", "Seeds"] + [title for _, title, _ in scores] + ["Inference (MPix/s)"]
    lines = [
        "",
        "## Test-time augmentation against plain testing",
        "",
        "Per model, the same checkpoints tested plainly and with D4 test-time augmentation (the "
        "mean of the 8 flips and rotations, `--tta`), on the seeds both have (cells: plain → "
        "TTA (difference)). p: two-sided Wilcoxon signed-rank test over the test images of "
        "per-image IoU (each image averaged over the seeds), Holm-corrected over the models. "
        + power_sentence(rows),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for r in rows:
        cells = [r.model, ", ".join(map(str, r.seeds)), _iou_cell(r)]
        cells += [_delta(r, key, fmt) for key, _, fmt in scores[1:]]
        cells += [f"{r.mean('plain', 'inference'):.2f} → {r.mean('tta', 'inference'):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
