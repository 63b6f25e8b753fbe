"""Per-method instance scores of DSB 2018 records, grouped by (model, target).

Records keep, per test image, the scores of each post-processing method
(``metrics.per_image[i].methods``, seg_bench/evaluation/evaluate.py) and the parameters and
validation mAP each method was given after tuning on the validation split
(``metrics.postprocess_methods``).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from seg_bench.errors import UserError
from seg_bench.protocol.instance_choice import target_of, validation_scores


def has_methods(record: dict) -> bool:
    per_image = record.get("metrics", {}).get("per_image") or []
    return bool(per_image) and all("methods" in r for r in per_image)


def method_scores(images: list[dict], method: str) -> dict[str, float]:
    """One record's scores of ``method`` over ``images`` (its per-image entries): mAP and AP
    at 0.5 and 0.75 as means over images; object F1 from TP, FP and FN pooled over them; split
    and merge counts summed."""
    rows = [r["methods"][method] for r in images if method in r.get("methods", {})]
    if not rows:
        return {}
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    return {
        "map": float(np.mean([r["map"] for r in rows])),
        "ap50": float(np.mean([r["ap50"] for r in rows])),
        "ap75": float(np.mean([r["ap75"] for r in rows])),
        "f1": 1.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn),
        "splits": float(sum(r["splits"] for r in rows)),
        "merges": float(sum(r["merges"] for r in rows)),
        "images": float(len(rows)),
    }


def by_model_target(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(model, target) -> its records that keep method scores, in name order."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        if has_methods(r):
            groups[(r["model"], target_of(r))].append(r)
    if not groups:
        raise UserError(
            "no result record holds per-method scores (DSB 2018 records made before they "
            "were kept); re-run `seg-bench bench --dataset dsb2018` to make them"
        )
    return dict(sorted(groups.items()))


def mean_scores(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Each score's mean over the seeds that have it."""
    keys = set().union(*per_seed) if per_seed else set()
    return {k: float(np.mean([s[k] for s in per_seed if k in s])) for k in keys}


def best_on_validation(recs: list[dict]) -> str:
    """The method with the highest mean validation mAP over ``recs`` (instance_choice); ties
    go to the first name."""
    val = validation_scores(recs)
    return max(sorted(val), key=lambda m: val[m])
