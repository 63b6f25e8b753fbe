"""The label-source study: models trained on manual masks against weak labels from click
points, all tested on the manual ground truth."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from seg_bench.protocol.cells import metric_cell
from seg_bench.protocol.header import provenance_lines


def render_label_study(dataset: str, rows: list[dict], records: list[dict]) -> str:
    """The label-source study's tables: kappa and AUROC per architecture and label source,
    FNR/FPR, and the quality of the weak labels themselves against the manual masks."""
    sources = [s for s in ("manual", "floodfill", "region") if any(r["labels"] == s for r in rows)]
    models = sorted({r["model"] for r in rows})
    by = {(r["model"], r["labels"]): r for r in rows}

    def table(title: str, keys: list[tuple[str, str]]) -> list[str]:
        head = ["Model"] + [f"{t} ({s})" for s in sources for _, t in keys]
        out = [
            f"## {title}",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join("---" for _ in head) + "|",
        ]
        for m in models:
            cells = [m] + [
                metric_cell(by[(m, s)], k) if (m, s) in by else "–"
                for s in sources
                for k, _ in keys
            ]
            out.append("| " + " | ".join(cells) + " |")
        return out + [""]

    quality = defaultdict(list)
    for r in records:
        q = r.get("data", {}).get("weak_label_quality", {}).get("train")
        if q:
            quality[r["labels"]].append(q)
    lines = [
        f"# {dataset}: training on manual masks vs weak labels from click points",
        "",
        "Every model is tested on the manual ground truth. "
        "Mean ± std over seeds [bootstrap 95 % CI].",
        "",
        *provenance_lines(dataset, records),
        "",
        *table("Agreement with the manual test masks", [("kappa", "kappa"), ("auroc", "AUROC")]),
        *table("Error rates", [("fnr", "FNR"), ("fpr", "FPR")]),
        "## Quality of the weak training labels against the manual masks",
        "",
        "| Label source | IoU | Dice | kappa |",
        "|---|---|---|---|",
    ]
    for source, qs in sorted(quality.items()):
        mean = {k: np.mean([q[k] for q in qs]) for k in ("iou", "dice", "kappa")}
        lines.append(f"| {source} | {mean['iou']:.3f} | {mean['dice']:.3f} | {mean['kappa']:.3f} |")
    return "\n".join(lines) + "\n"
