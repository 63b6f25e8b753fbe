"""DSB 2018 instance tables from result records: every (model, target) against every
post-processing method, each instance-aware target against the binary one, and the scores per
imaging type.

Per (model, target) row, values are means over seeds of: mAP@[.5:.95], AP at IoU 0.5 and 0.75
(means over images), object F1 at IoU 0.5 (2TP / (2TP + FP + FN) with TP, FP, FN summed over
the images) and the split and merge counts summed over the images (protocol/method_scores.py).
"""

from __future__ import annotations

from typing import Any

from seg_bench.protocol.instance_choice import target_of
from seg_bench.protocol.method_scores import (
    best_on_validation,
    by_model_target,
    has_methods,
    mean_scores,
    method_scores,
)
from seg_bench.protocol.records import Asked, select_records
from seg_bench.protocol.target_comparison import target_table, tta_table

TYPES = ("fluorescence", "histology", "brightfield")


def select_by_target(
    records: list[dict], profile: str | None, prefer: Asked | None = None
) -> list[dict]:
    """The records the method study compares: ``select_records`` (one profile, one
    configuration per model) applied to each training target, so each (model, target) is a
    row; what bench asked for counts only for its own target. Weak-label runs are left out,
    as on the leaderboard."""
    manual = [r for r in records if r.get("labels", "manual") == "manual"]
    chosen = []
    for target in sorted({target_of(r) for r in manual}):
        asked = {k: v for k, v in (prefer or {}).items() if v[2] == target}
        chosen += select_records([r for r in manual if target_of(r) == target], profile, asked)[0]
    return chosen


def missing_targets(by_target: list[dict], rows: list[dict], prefer: Asked | None) -> list[str]:
    """The asked (model, label source, target)s without a record whose model still has a row,
    from another target (``missing_asked`` names the models without any row)."""
    have = {(r["model"], r.get("labels", "manual"), target_of(r)) for r in by_target}
    shown = {(r["model"], r.get("labels", "manual")) for r in rows}
    # by_target holds manual-label records only (weak-label runs are not in the study).
    asked = sorted({a for a in (prefer or {}).values() if a[1] == "manual"} - have)
    return [f"{m} ({lab} labels), target {t}" for m, lab, t in asked if (m, lab) in shown]


def _params(recs: list[dict], method: str) -> str:
    """The parameters the lowest seed's tuning gave, with that seed's number."""
    first = min(recs, key=lambda r: r.get("seed", 0))
    params = first["metrics"].get("postprocess_methods", {}).get(method, {}).get("params", {})
    spelled = ", ".join(f"{k} {v}" for k, v in sorted(params.items()))
    return f"seed {first.get('seed', 0)}: {spelled}" if spelled else "–"


def method_table(records: list[dict]) -> list[str]:
    lines = [
        "| Model | Target | Method | Parameters (lowest seed) | mAP@[.5:.95] | AP@.5 | AP@.75 "
        "| F1@.5 | Splits | Merges |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, target), recs in by_model_target(records).items():
        methods = sorted({m for r in recs for i in r["metrics"]["per_image"] for m in i["methods"]})
        for method in methods:
            s = mean_scores([method_scores(r["metrics"]["per_image"], method) for r in recs])
            lines.append(
                f"| {model} | {target} | {method} | {_params(recs, method)} | {s['map']:.3f} "
                f"| {s['ap50']:.3f} | {s['ap75']:.3f} | {s['f1']:.3f} | {s['splits']:.0f} "
                f"| {s['merges']:.0f} |"
            )
    return lines


def type_table(records: list[dict]) -> list[str]:
    """mAP and object F1 per imaging type beside the overall mean, for each (model, target)
    with the method that scored best on the validation split."""
    found = {i.get("type") for r in records if has_methods(r) for i in r["metrics"]["per_image"]}
    types = [t for t in TYPES if t in found] + sorted(t for t in found - set(TYPES) if t)
    head = ["Model", "Target", "Method (best on val)", "mAP all", "F1 all"]
    head += [h for t in types for h in (f"mAP {t} (n)", f"F1 {t}")]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for (model, target), recs in by_model_target(records).items():
        method = best_on_validation(recs)
        cells = [model, target, method]
        overall = mean_scores([method_scores(r["metrics"]["per_image"], method) for r in recs])
        cells += [f"{overall['map']:.3f}", f"{overall['f1']:.3f}"]
        for t in types:
            s = mean_scores(
                [
                    method_scores(
                        [i for i in r["metrics"]["per_image"] if i.get("type") == t], method
                    )
                    for r in recs
                ]
            )
            n = f" ({s['images']:.0f})" if s else ""
            cells += [f"{s['map']:.3f}{n}", f"{s['f1']:.3f}"] if s else ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_postprocess_study(dataset: str, records: list[dict], provenance: list[str]) -> str:
    """The `leaderboard --by postprocess` text: the method table, each instance-aware target
    against binary, TTA against plain testing, then the per-type table."""
    return "\n".join(
        [
            f"# {dataset}: post-processing methods",
            "",
            "Every method's parameters were tuned on the **validation split only** (the grid in "
            "seg_bench/inference/instances.py, grown past an end it is best at from evaluation "
            "v2 on; best mean mAP@[.5:.95]), then applied unchanged "
            "to the test images scored here. Mean over seeds; F1 at IoU 0.5, splits and merges "
            "pooled over the test images. Splits: true objects hit by two or more predictions "
            "that each lie more than half inside it; merges: predictions covering more than "
            "half of each of two or more true objects (no IoU threshold for either).",
            "",
            *provenance,
            "",
            *method_table(records),
            "",
            *(section + [""] if (section := target_table(by_model_target(records))) else []),
            *(section + [""] if (section := tta_table(by_model_target(records))) else []),
            "## Scores per image type",
            "",
            *type_table(records),
            "",
        ]
    )


def postprocess_sections(dataset: str, records: list[dict[str, Any]]) -> str:
    """The line the leaderboard gains when its records have method scores: where the method
    study is (the leaderboard keeps one row per model)."""
    if not any(has_methods(r) for r in records):
        return ""
    return (
        f"\nEvery post-processing method, each target against binary, instance scores with "
        f"TTA against plain testing (where a model has both), and mAP and object F1 per image "
        f"type: "
        f"[{dataset}_postprocess.md]({dataset}_postprocess.md) "
        f"(`seg-bench leaderboard --dataset {dataset} --by postprocess`).\n"
    )
