"""Across datasets: each model's average rank, the Friedman test (decided by Iman and
Davenport's F form, which Demsar 2006 recommends over the conservative chi-square) and the
Nemenyi critical difference (Demsar 2006), written to ``leaderboards/README.md`` with a CD diagram.

The input is the leaderboards' CSV tables (one per dataset, the seed means of the manual-label
runs), so the summary always agrees with the tables beside it. Each dataset is one block: its
models are ranked by the dataset's primary metric (mAP@[.5:.95] where the table has it, as on
dsb2018, else IoU), 1 = best, ties sharing the average rank. Only models present on every
dataset are ranked (the Friedman test needs complete blocks). The synthetic dataset is left out:
it is generated data that checks the pipeline, not a benchmark.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from seg_bench.io import atomic_write

ALPHA = 0.05
EXCLUDED = ("synthetic",)
# Demsar (2006), Table 5(a): critical values q_0.05 of the two-tailed Nemenyi test, by the
# number of models k (the Studentized range statistic at infinite df divided by sqrt(2)).
Q_05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}
METRIC_TITLES = {"iou": "IoU", "dsb_map": "mAP@[.5:.95]"}


def nemenyi_q(k: int) -> float:
    """q_0.05 for k models: Demsar's table, and beyond it the same Studentized-range quantile."""
    if k in Q_05:
        return Q_05[k]
    return float(stats.studentized_range.ppf(1 - ALPHA, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n_datasets: int) -> float:
    """Nemenyi CD = q_alpha * sqrt(k (k + 1) / (6 N)) for k models over N datasets."""
    return nemenyi_q(k) * math.sqrt(k * (k + 1) / (6 * n_datasets))


def read_scores(leaderboard_dir: Path, exclude=EXCLUDED) -> dict[str, tuple[str, dict]]:
    """dataset -> (primary metric, model -> seed-mean score) from ``<dataset>.csv`` tables."""
    out = {}
    for path in sorted(Path(leaderboard_dir).glob("*.csv")):
        if path.stem in exclude:
            continue
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("labels", "manual") == "manual"]
        metric = "dsb_map" if rows and all(r.get("dsb_map") for r in rows) else "iou"
        scores = {r["model"]: float(r[metric]) for r in rows if r.get(metric)}
        if scores:
            out[path.stem] = (metric, scores)
    return out


def read_budgets(leaderboard_dir: Path, exclude=EXCLUDED) -> dict[str, str]:
    """dataset -> the optimizer steps per run in its table ("1024", "96-1024" where models
    differ, "not in its table" for a table older than the steps column)."""
    out = {}
    for path in sorted(Path(leaderboard_dir).glob("*.csv")):
        if path.stem in exclude:
            continue
        with open(path, newline="") as f:
            steps = {r.get("steps") or "" for r in csv.DictReader(f)}
        known = sorted(int(s) for s in steps if s)
        if not known or "" in steps:
            out[path.stem] = "not in its table"
        else:
            out[path.stem] = f"{known[0]}" if known[0] == known[-1] else f"{known[0]}-{known[-1]}"
    return out


def read_not_converged(leaderboard_dir: Path, exclude=EXCLUDED) -> dict[str, list[str]]:
    """dataset -> the models its doubling study found still gaining at its budget (the CSV's
    ``converged_at_budget``; none where no study ran)."""
    out = {}
    for path in sorted(Path(leaderboard_dir).glob("*.csv")):
        if path.stem in exclude:
            continue
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        gaining = [r["model"] for r in rows if r.get("converged_at_budget") == "False"]
        if gaining:
            out[path.stem] = sorted(gaining)
    return out


def not_converged_sentence(gaining: dict[str, list[str]]) -> str:
    listed = "; ".join(f"{', '.join(ms)} on {d}" for d, ms in sorted(gaining.items()))
    return (
        f"Not converged at its dataset's budget (doubling it still moved the validation IoU, "
        f"`benchmarks/bench_convergence.py`): {listed}. Such a rank says how far the model got "
        "within the budget, not how good it can be; the dataset's table gives it no rank."
    )


def budget_sentence(budgets: dict[str, str]) -> str:
    """Which budget each dataset's ranks come from, and a warning where they differ."""
    listed = "; ".join(f"{d} {b}" for d, b in sorted(budgets.items()))
    line = f"Optimizer steps per run: {listed}."
    if len(set(budgets.values())) > 1:
        line += (
            " **The datasets were not all trained at one budget: their ranks mix converged and "
            "short runs. Regenerate the older tables under one profile before reading the "
            "average ranks as a comparison.**"
        )
    return line


@dataclass
class Summary:
    datasets: list[str]
    metrics: dict[str, str]  # dataset -> primary metric
    models: list[str]  # on every dataset, best average rank first
    ranks: dict[str, dict[str, float]]  # dataset -> model -> rank (1 = best)
    average: dict[str, float]
    missing: dict[str, list[str]]  # model -> datasets it lacks (not ranked)
    friedman: tuple[float, float] | None  # (chi-square, p) where computable
    cd: float | None
    iman_davenport: tuple[float, float] | None = None  # (F, p) beside the chi-square

    @property
    def rejects(self) -> bool:
        """Equal ranks rejected, by the F form (the chi-square where F is undefined)."""
        test = self.iman_davenport or self.friedman
        return test is not None and test[1] < ALPHA


def summarise_datasets(scores: dict[str, tuple[str, dict]]) -> Summary:
    """Average ranks, Friedman test and Nemenyi CD over the datasets in ``scores``."""
    datasets = sorted(scores)
    every = sorted(set.union(*(set(s) for _, s in scores.values()))) if scores else []
    models = [m for m in every if all(m in scores[d][1] for d in datasets)]
    missing = {m: [d for d in datasets if m not in scores[d][1]] for m in every if m not in models}
    ranks = {}
    for d in datasets:
        values = np.array([scores[d][1][m] for m in models])
        ranks[d] = dict(zip(models, stats.rankdata(-values).tolist(), strict=True))
    average = {m: float(np.mean([ranks[d][m] for d in datasets])) for m in models}
    models.sort(key=lambda m: (average[m], m))
    k, n = len(models), len(datasets)
    friedman = None
    if k >= 3 and n >= 2:
        table = [[scores[d][1][m] for d in datasets] for m in models]
        result = stats.friedmanchisquare(*table)
        friedman = (float(result.statistic), float(result.pvalue))
    cd = critical_difference(k, n) if k >= 2 and n >= 2 else None
    return Summary(
        datasets,
        {d: scores[d][0] for d in datasets},
        models,
        ranks,
        average,
        missing,
        friedman,
        cd,
        iman_davenport(friedman[0], k, n) if friedman else None,
    )


def iman_davenport(chi2: float, k: int, n: int) -> tuple[float, float]:
    """Iman and Davenport's F = (N-1) chi2 / (N(k-1) - chi2), F-distributed with k-1 and
    (k-1)(N-1) degrees of freedom (Demsar 2006, eq. 3). Rankings that agree on every dataset
    reach chi2 = N(k-1): F is infinite there, p 0."""
    room = n * (k - 1) - chi2
    f = math.inf if room <= 1e-12 else (n - 1) * chi2 / room
    p = 0.0 if math.isinf(f) else float(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))
    return f, p


def render_summary(
    s: Summary, budgets: dict[str, str] | None = None, gaining: dict[str, list[str]] | None = None
) -> str:
    k, n = len(s.models), len(s.datasets)
    metrics = ", ".join(
        f"{METRIC_TITLES.get(s.metrics[d], s.metrics[d])} ({d})" for d in s.datasets
    )
    lines = [
        "# Leaderboards across datasets",
        "",
        "Generated by `seg-bench leaderboard` from the tables in this folder; do not edit by "
        "hand. On each dataset the models are ranked by the seed mean of its primary metric: "
        f"{metrics or 'none yet'} (1 = best, ties share the average rank). "
        f"Synthetic data is left out: it checks the pipeline, it is not a benchmark.",
        "",
    ]
    if s.models:
        head = ["Model", *s.datasets, "Average rank"]
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for m in s.models:
            cells = [m, *(f"{s.ranks[d][m]:g}" for d in s.datasets), f"{s.average[m]:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for m, lacking in sorted(s.missing.items()):
        lines.append(f"- `{m}` is not ranked: it has no result on {', '.join(lacking)}.")
    if s.missing:
        lines.append("")
    lines += [budget_sentence(budgets), ""] if budgets else []
    lines += [not_converged_sentence(gaining), ""] if gaining else []
    lines += [friedman_sentence(s, k, n), ""]
    if s.cd is not None:
        lines += [
            f"Nemenyi critical difference (Demsar 2006) at alpha {ALPHA}: CD = q * sqrt(k(k+1)/"
            f"(6N)) = {nemenyi_q(k):.3f} * sqrt({k}*{k + 1}/(6*{n})) = {s.cd:.3f}. Models whose "
            "average ranks differ by less than CD are not significantly different; the "
            f"[critical-difference diagram](cd.png) joins them with a bar. {nemenyi_sentence(s)}",
            "",
        ]
    return "\n".join(lines)


def nemenyi_sentence(s: Summary) -> str:
    """The post-hoc verdict, given only where the Friedman test rejected equal ranks (Demsar
    2006, section 3.2.2): otherwise a gap of CD is no evidence of a difference."""
    if not s.rejects:
        return (
            "The Friedman test did not reject equal ranks, so no pair is called significantly "
            "different (the Nemenyi test follows only a rejection)."
        )
    apart = [
        f"{a} vs {b}"
        for i, a in enumerate(s.models)
        for b in s.models[i + 1 :]
        if s.average[b] - s.average[a] >= s.cd
    ]
    if not apart:
        return "No pair of models is that far apart."
    return f"Pairs that far apart (significantly different): {', '.join(apart)}."


def friedman_sentence(s: Summary, k: int, n: int) -> str:
    if s.friedman is None:
        return (
            f"Friedman test: not computed, too few results ({k} models on all of {n} datasets; "
            "it needs at least 3 models and 2 datasets)."
        )
    chi2, p = s.friedman
    f, p_f = s.iman_davenport or (math.nan, math.nan)
    verdict = "differ" if s.rejects else "are not shown to differ"
    return (
        f"Friedman test (scipy.stats.friedmanchisquare) over {k} models and {n} datasets: "
        f"chi-square = {chi2:.2f}, p = {p:.3g}; Iman-Davenport F({k - 1}, {(k - 1) * (n - 1)}) "
        f"= {f:.2f}, p = {p_f:.3g} (Demsar 2006 decides by F: the chi-square is conservative); "
        f"at alpha {ALPHA} the models' ranks {verdict}."
    )


def write_summary(leaderboard_dir: Path) -> str | None:
    """Rewrite ``README.md`` (and ``cd.png``) in ``leaderboard_dir`` from its CSV tables;
    None, writing nothing, when there is no table to summarise."""
    from seg_bench.protocol.figures import plot_critical_difference

    leaderboard_dir = Path(leaderboard_dir)
    scores = read_scores(leaderboard_dir)
    if not scores:
        return None
    s = summarise_datasets(scores)
    budgets = {d: b for d, b in read_budgets(leaderboard_dir).items() if d in s.datasets}
    gaining = {d: m for d, m in read_not_converged(leaderboard_dir).items() if d in s.datasets}
    text = render_summary(s, budgets, gaining)
    if s.cd is not None:
        cd_png = leaderboard_dir / "cd.png"
        plot_critical_difference(s.average, s.cd, cd_png, len(s.datasets), s.rejects)
    with atomic_write(leaderboard_dir / "README.md") as f:
        f.write(text)
    return text
