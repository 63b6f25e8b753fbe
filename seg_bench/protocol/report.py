"""Leaderboards from result records: Markdown and CSV, mean ± std over seeds and a bootstrap
95 % confidence interval over test images, with the provenance of every table; a rank column
from paired tests between the models (protocol/statistics.py), and the cross-dataset summary
(protocol/summary.py) rebuilt beside the tables."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from seg_bench.errors import UserError
from seg_bench.evaluation.evaluate import aggregate
from seg_bench.io import atomic_write, file_lock, remove_stale_temp
from seg_bench.protocol.cells import metric_cell, timing_cell
from seg_bench.protocol.convergence import (
    PLATEAU_NOTE,
    budget_lines,
    convergence_verdict,
    doubling_cell,
    doubling_note,
    load_study,
    optimizer_steps,
    rank_cell,
    with_doubling,
)
from seg_bench.protocol.header import provenance_lines
from seg_bench.protocol.instance_choice import CHOICE_NOTE, choice_cell, choose_instance_rows
from seg_bench.protocol.label_study import render_label_study
from seg_bench.protocol.machines import (
    machine_order,
    mean_by_machine,
    tested_on,
    trained_on,
)
from seg_bench.protocol.postprocess_report import (
    has_methods,
    missing_targets,
    postprocess_sections,
    render_postprocess_study,
    select_by_target,
)
from seg_bench.protocol.records import Asked, load_records, missing_asked, select_records
from seg_bench.protocol.statistics import Significance, primary_metric
from seg_bench.protocol.statistics import significance as paired_significance
from seg_bench.protocol.summary import write_summary
from seg_bench.protocol.tta_comparison import tta_section

# (record key in metrics.overall, column title); a column appears when any record has it.
COLUMNS = [
    ("iou", "IoU"),
    ("dice", "Dice"),
    ("accuracy", "Accuracy"),
    ("kappa", "Kappa"),
    ("auroc", "AUROC"),
    ("auroc_balanced", "AUROC (1-(FPR+FNR)/2)"),
    ("fnr", "FNR"),
    ("fpr", "FPR"),
    ("dsb_map", "mAP@[.5:.95]"),
    ("vrand", "V_rand"),
    ("vinfo", "V_info"),
    ("vrand_thinned", "V_rand thinned"),
    ("vinfo_thinned", "V_info thinned"),
    ("adapted_rand_error", "ARAND"),
]
EM_NOTE = (
    "V_rand, V_info: ISBI 2012's foreground-restricted Rand and information scores at the best "
    "of 11 thresholds (Arganda-Carreras et al. 2015); *thinned*: after thinning the predicted "
    "borders to 1-px watershed lines, as the challenge's final ranking does (Fiji's "
    "getMaximalVRandAfterThinning); unthinned, every predicted border pixel inside a true cell "
    "counts as a cell of its own."
)


def bootstrap_ci(
    records: list[dict], key: str, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """CI of the seed-averaged score, resampling test images (the same draw for every seed)."""
    return bootstrap_cis(records, [key], n_boot, seed, level)[key]


def paired_images(per_seed: list[list[dict]]) -> list[list[dict]]:
    """Each seed's per-image scores on the images every seed has, in one order, so that a
    resample draws the same images from every seed (by id; by position where ids are absent)."""
    if not all(im.get("id") is not None for p in per_seed for im in p):
        return per_seed
    by_id = [{im["id"]: im for im in p} for p in per_seed]
    common = [i for i in by_id[0] if all(i in b for b in by_id[1:])]
    return [[b[i] for i in common] for b in by_id]


def bootstrap_cis(
    records: list[dict], keys: list[str], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """``bootstrap_ci`` of several keys from one set of resamples (each resample scored once)."""
    per_seed = paired_images([r["metrics"]["per_image"] for r in records])
    n = min(len(p) for p in per_seed)
    if n < 2:
        return {k: (float("nan"), float("nan")) for k in keys}
    rng = np.random.default_rng(seed)
    stats: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        scores = [aggregate(p, idx) for p in per_seed]
        for k in keys:
            stats[k].append(np.mean([s.get(k, np.nan) for s in scores]))
    out = {}
    for k in keys:
        lo, hi = np.nanpercentile(stats[k], [100 * (1 - level) / 2, 100 * (1 + level) / 2])
        out[k] = (float(lo), float(hi))
    return out


def summarise(records: list[dict], n_boot: int = 1000) -> list[dict[str, Any]]:
    by_model: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        by_model[(r["model"], r.get("labels", "manual"))].append(r)
    rows = []
    for (model, labels), recs in by_model.items():
        row: dict[str, Any] = {
            "model": model,
            "labels": labels,
            "seeds": len(recs),
            "steps": max((optimizer_steps(r) or 0 for r in recs), default=0) or None,
            "params_m": recs[0]["params"] / 1e6,
            "train_time_s": float(np.mean([r["train_time_s"] for r in recs])),
            "inference_mpix_s": float(np.mean([inference_speed(r) for r in recs])),
            "train_time_by": mean_by_machine(recs, lambda r: r["train_time_s"], trained_on),
            "inference_by": mean_by_machine(recs, inference_speed, tested_on),
        }
        for key, _ in COLUMNS:
            values = [r["metrics"]["overall"].get(key) for r in recs]
            values = [v for v in values if v is not None]
            if not values:
                continue
            row[key] = float(np.mean(values))
            # One seed says nothing about the spread over seeds: NaN, shown as no "± std" at all.
            row[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
        row["plateaued"] = convergence_verdict(recs)
        row.update(recs[0].get("instance_choice", {}))  # target, method, val_map
        keys = [k for k, _ in COLUMNS if k in row]
        for key, ci in bootstrap_cis(recs, keys, n_boot).items():
            row[f"{key}_ci"] = ci
        rows.append(row)
    metric = primary_metric(records)  # the one the paired tests rank by (DSB: mAP)
    rows.sort(key=lambda r: -r.get(metric, -1))
    return rows


def inference_speed(record: dict) -> float:
    return record["metrics"].get("inference_mpix_per_s", np.nan)


def with_ranks(rows: list[dict], significance: Significance) -> list[dict]:
    """Add each model's shared rank (see protocol/statistics.py) and order the rows by it;
    within a rank the order of the primary metric (IoU; DSB 2018: mAP) stays."""
    for r in rows:
        r["rank"] = significance.ranks[r["model"]]
    return sorted(rows, key=lambda r: r["rank"])


def significance_lines(significance: Significance) -> list[str]:
    """The header lines naming the paired test and listing the pairs (none for one model)."""
    return [significance.header(), significance.pairs_line()] if significance.pairs else []


def render_markdown(
    dataset: str,
    rows: list[dict],
    records: list[dict],
    significance: Significance | None = None,
    compared: list[dict] | None = None,
) -> str:
    """The leaderboard page. ``compared``: every record the rows were chosen from (each
    target of an instance benchmark), which the header's provenance and Reproduce line cover:
    rerunning only the chosen targets could not remake the choice."""
    present = [(k, t) for k, t in COLUMNS if any(k in r for r in rows)]
    show_labels = any(r["labels"] != "manual" for r in rows)
    show_rank = all("rank" in r for r in rows)
    show_choice = any("method" in r for r in rows)
    machines = machine_order(compared or records)
    per = " [machine]" if len(machines) > 1 else ""  # numbered in the Hardware line
    head = ["Model"] + (["Labels"] if show_labels else [])
    head += ["Params (M)", f"Train time (s){per}", "Seeds"]
    head += ["Target, method (val mAP)"] if show_choice else []
    head[1:1] = ["Rank"] if show_rank else []
    head += [t for _, t in present] + [f"Inference (MPix/s){per}"]
    show_plateau = any(r.get("plateaued") for r in rows)
    head += ["Plateaued"] if show_plateau else []
    show_doubling = any("doubling" in r for r in rows)
    head += ["Doubling"] if show_doubling else []
    lines = [
        f"# {dataset} leaderboard",
        "",
        "Mean ± std over seeds, [bootstrap 95 % CI over test images]. Generated by "
        "`seg-bench leaderboard`; do not edit by hand.",
        "",
        *(budget_lines(records) + [""] if budget_lines(records) else []),
        *provenance_lines(dataset, compared or records, numbered=True),
        *(significance_lines(significance) if significance is not None else []),
        *(["", CHOICE_NOTE] if show_choice else []),
        "",
        f"Figures: [ROC]({dataset}/roc.png), [precision-recall]({dataset}/pr.png), "
        f"[prediction overlays]({dataset}/overlays.png)"
        + (f", [learning curves]({dataset}/curves.png)." if show_plateau else "."),
        *([PLATEAU_NOTE] if show_plateau else []),
        *([doubling_note(rows)] if show_doubling else []),
        *([EM_NOTE] if any(k == "vrand_thinned" for k, _ in present) else []),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for r in rows:
        cells = [r["model"]] + ([r["labels"]] if show_labels else [])
        train_time = timing_cell(r["train_time_by"], machines, ".0f")
        cells += [f"{r['params_m']:.2f}", train_time, str(r["seeds"])]
        cells += [choice_cell(r)] if show_choice else []
        cells += [metric_cell(r, k) for k, _ in present]
        cells += [timing_cell(r["inference_by"], machines, ".2f")]
        cells[1:1] = [rank_cell(r)] if show_rank else []
        cells += [r.get("plateaued") or "–"] if show_plateau else []
        cells += [doubling_cell(r)] if show_doubling else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_csv(rows: list[dict]) -> str:
    keys = ["model", "labels", "seeds"]
    keys += ["steps"] if any(r.get("steps") for r in rows) else []
    keys += ["params_m", "train_time_s", "inference_mpix_s"]
    keys += ["plateaued"] if any(r.get("plateaued") for r in rows) else []
    keys += ["target", "method", "val_map"] if any("method" in r for r in rows) else []
    for k, _ in COLUMNS:
        if any(k in r for r in rows):
            keys += [k, f"{k}_std", f"{k}_ci_low", f"{k}_ci_high"]
    keys += ["rank"] if any("rank" in r for r in rows) else []
    keys += ["doubling_change", "converged_at_budget"] if any("doubling" in r for r in rows) else []
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        flat = dict(r)
        for k, _ in COLUMNS:
            if f"{k}_ci" in r:
                flat[f"{k}_ci_low"], flat[f"{k}_ci_high"] = r[f"{k}_ci"]
        if "doubling" in r:
            flat["doubling_change"] = r["doubling"]["change"]
            flat["converged_at_budget"] = r["doubling"]["converged"]
            if not r["doubling"]["converged"]:
                flat["rank"] = ""  # as in the table: no rank at a budget it has not converged at
        writer.writerow(flat)
    return buf.getvalue()


def write_leaderboard(
    dataset: str,
    results_dir: Path,
    out_dir: Path,
    n_boot: int = 1000,
    by: str | None = None,
    profile: str | None = None,
    prefer: Asked | None = None,
    force: bool = False,
) -> str:
    """Rebuild the leaderboard from the records on disk now that ``select_records`` picks (one
    profile, one configuration per model; ``prefer``: what bench asked for, which wins; with
    per-method instance scores, the target and method validation chose). Writers
    into one ``out_dir`` take turns (a lock on the folder), so with concurrent benches the last
    one to finish writes a table with every record; each file is replaced atomically.
    Leaderboards committed to git are not replaced by other records unless ``force``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(out_dir):
        for name in (
            f"{dataset}.md",
            f"{dataset}.csv",
            f"{dataset}_labels.md",
            f"{dataset}_postprocess.md",
            "README.md",
            "cd.png",
        ):
            remove_stale_temp(out_dir, f".{name}.*.tmp")  # left by a killed writer
        remove_stale_temp(out_dir / dataset, ".*.tmp")
        every = load_records(results_dir, dataset)
        records, left_out = select_records(every, profile, prefer)
        if every and not records:
            found = ", ".join(sorted({str(r.get("profile")) for r in every}))
            raise UserError(
                f"no result records of profile '{profile}' for '{dataset}' in {results_dir} "
                f"(it holds profiles {found}); give one of those with --profile"
            )
        profile = profile or (records[0]["profile"] if records else None)
        by_target = select_by_target(every, profile, prefer)
        records = with_instance_choice(records, by_target)
        for missing in missing_asked(records, prefer):
            print(
                f"leaderboard: {missing} has no row: no record of the configuration bench ran "
                "(its runs failed, see the .failed.json notes); older ones are not shown instead",
                file=sys.stderr,
            )
        for missing in missing_targets(by_target, records, prefer):
            print(
                f"leaderboard: {missing} has no record (its runs failed, see the .failed.json "
                "notes); the model's row chooses among its other targets only",
                file=sys.stderr,
            )
        if left_out:
            print(
                f"leaderboard: {len(left_out)} record(s) of other profiles or configurations "
                f"left out (profile {profile}, one configuration per model)",
                file=sys.stderr,
            )
        variants = [r for r in every if r.get("profile") == profile]
        return _write_leaderboard(
            dataset, records, results_dir, out_dir, n_boot, by, force, by_target, variants
        )


def with_instance_choice(records: list[dict], by_target: list[dict]) -> list[dict]:
    """An instance benchmark's rows: per model, the target and method that validation chose
    (protocol/instance_choice.py); models without per-method scores keep their records."""
    chosen = choose_instance_rows([r for r in by_target if has_methods(r)])
    models = {(r["model"], r.get("labels", "manual")) for r in chosen}
    return chosen + [r for r in records if (r["model"], r.get("labels", "manual")) not in models]


def committed_files(dataset: str, out_dir: Path) -> list[Path]:
    """This dataset's leaderboard files in ``out_dir`` that git tracks (none outside a checkout
    or without git)."""
    out_dir = Path(out_dir)
    names = [f"{dataset}.md", f"{dataset}.csv", f"{dataset}_labels.md", f"{dataset}_postprocess.md"]
    if not out_dir.is_dir() or not any((out_dir / n).exists() for n in names):
        return []
    try:
        done = subprocess.run(
            ["git", "-C", str(out_dir), "ls-files", "--", *names],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [out_dir / Path(line).name for line in done.stdout.splitlines() if line.strip()]


def check_committed(dataset: str, out_dir: Path, force: bool, new: dict | None = None) -> None:
    """Refuse to replace committed leaderboard files, unless ``force`` or (``new``: name ->
    text) the text is what they hold already (records that are theirs)."""
    for path in committed_files(dataset, out_dir):
        if force or (new is not None and new.get(path.name, path.read_text()) == path.read_text()):
            continue
        raise UserError(
            f"{path} is a committed leaderboard and these records are not its own; "
            "write elsewhere with --leaderboard-dir, or pass --force to replace it"
        )


def _write_leaderboard(
    dataset: str,
    records: list[dict],
    results_dir: Path,
    out_dir: Path,
    n_boot: int,
    by: str | None,
    force: bool = False,
    by_target: list[dict] | None = None,
    variants: list[dict] | None = None,
) -> str:
    """``by_target``: the records of the post-processing study, one configuration per
    (model, target) (``select_by_target``); the leaderboard's own records by default.
    ``variants``: every record of the profile, among which plain and TTA twins are compared."""
    if not records:
        raise UserError(
            f"no result records for '{dataset}' in {results_dir}; "
            f"run `seg-bench bench --dataset {dataset}` first"
        )
    texts: dict[str, str] = {}
    study = None
    if any(r.get("labels", "manual") != "manual" for r in records):
        study = render_label_study(dataset, summarise(records, n_boot), records)
        texts[f"{dataset}_labels.md"] = study
    # The leaderboard ranks models trained on the manual masks only; weak-label runs are
    # compared in their study, so a weak-label-only results folder leaves the leaderboard alone.
    manual = [r for r in records if r.get("labels", "manual") == "manual"]
    md = None
    if manual:
        significance = paired_significance(manual)
        rows = with_ranks(summarise(manual, n_boot), significance)
        rows = with_doubling(rows, load_study(out_dir / dataset, manual[0].get("profile")))
        compared = by_target if any(has_methods(r) for r in by_target or []) else None
        md = render_markdown(dataset, rows, manual, significance, compared)
        md += postprocess_sections(dataset, manual)
        md += tta_section([r for r in variants or manual if r.get("labels", "manual") == "manual"])
        texts[f"{dataset}.md"], texts[f"{dataset}.csv"] = md, render_csv(rows)
    study_pp, study_records = None, by_target or manual or records
    if by == "postprocess" or any(has_methods(r) for r in study_records):
        prov = provenance_lines(dataset, study_records)
        study_pp = render_postprocess_study(dataset, study_records, prov)
        texts[f"{dataset}_postprocess.md"] = study_pp
    check_committed(dataset, out_dir, force, texts)
    for name, text in texts.items():
        with atomic_write(out_dir / name) as f:
            f.write(text)
    if manual:
        from seg_bench.protocol.figures import write_figures

        write_figures(dataset, manual, Path(results_dir), out_dir / dataset)
        write_summary(out_dir)  # the cross-dataset README.md, from every table now there
    if by == "labels":
        return study or render_label_study(dataset, summarise(records, n_boot), records)
    if by == "postprocess":
        return study_pp
    return md if md is not None else study
