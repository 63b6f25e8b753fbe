"""Is first place better than second? Paired tests between the models of one leaderboard.

For every pair of models on a dataset: the two-sided Wilcoxon signed-rank test
(``scipy.stats.wilcoxon``) on the per-image primary metric (IoU; the DSB AP on dsb2018), each
image's score averaged over the model's seeds first, so the test images (not the seeds) are the
unit of replication, and images are paired by id. The p-values are Holm-corrected over all
pairs, and a difference counts when its corrected p-value is below ``ALPHA`` = 0.05.

Exact or approximate (scipy's ``method="auto"``): the exact null distribution up to 50 images
where no differences tie or are zero; where some do, a permutation distribution up to 13 images
and the normal approximation above that (as above 50 images). No bootstrap:
with a handful of images a paired bootstrap's p-values are too small (only a few distinct
resamples exist), while the exact test says plainly what such a set can show. The smallest
p-value a pair can reach is that of all its differences having one sign (2/2^n for n non-zero,
untied differences; scipy's value where some are zero or tie), and Holm multiplies the smallest
of m p-values by m; when m times the smallest such floor over the pairs is >= ALPHA, no
difference can be significant, and the leaderboard says so in a sentence instead of implying
that the models are equal.

Shared ranks: a model's rank is 1 + the length of the longest chain of significant wins above
it (A > B > C puts C third), so a model always ranks below every model that significantly
beats it, even where the pairwise tests are not transitive (A > B, C > A, C ~ B); models in a
cycle of significant wins, which Wilcoxon tests can form, share a rank.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from itertools import combinations

import numpy as np
from scipy import stats

from seg_bench.evaluation.evaluate import aggregate

ALPHA = 0.05
METRIC_NAMES = {"iou": "IoU", "dsb_map": "DSB AP"}


@dataclass(frozen=True)
class PairTest:
    """One paired comparison: ``better`` is the side the signed-rank test leans to (the larger
    sum of signed ranks), which a few large differences can put against the mean."""

    better: str
    worse: str
    n_images: int
    mean_difference: float  # mean over images of better - worse (negative where one image
    # outweighs the many that the test counts)
    p: float
    p_floor: float = 1.0  # the smallest p these images allow: every difference of one sign
    p_holm: float = float("nan")

    @property
    def significant(self) -> bool:
        return bool(self.p_holm < ALPHA)


@dataclass
class Significance:
    """The paired tests of one leaderboard and the shared ranks they give."""

    metric: str
    n_images: int
    pairs: list[PairTest] = field(default_factory=list)
    ranks: dict[str, int] = field(default_factory=dict)
    same_images: bool = True  # False: the models' records hold different test images

    @property
    def too_small(self) -> bool:
        """True when even the most extreme result could not reach ALPHA after Holm."""
        return bool(self.pairs) and len(self.pairs) * self.p_floor >= ALPHA

    @property
    def p_floor(self) -> float:
        """The smallest p-value any pair could reach (before Holm)."""
        return min((t.p_floor for t in self.pairs), default=1.0)

    def header(self) -> str:
        """The leaderboard's line naming the test, the correction and what the ranks mean."""
        name = METRIC_NAMES.get(self.metric, self.metric)
        text = (
            f"- **Rank**: two-sided Wilcoxon signed-rank test on per-image {name} "
            f"({self.n_images} test images, each averaged over seeds), Holm-corrected over "
            f"{_pairs(len(self.pairs))} at alpha {ALPHA}; rank = 1 + the longest chain of "
            "significant wins above the model, so a model ranks below every model that "
            "significantly beats it, and models that no significant win separates share a rank."
        )
        if not self.same_images:
            text += (
                " The models were not all tested on the same images (records from different "
                "splits?): each pair is compared on the images both were tested on."
            )
        if self.too_small:
            smallest = self.p_floor
            text += (
                f" With {self.n_images} test images the smallest attainable Wilcoxon p-value "
                f"(every difference of one sign) is {smallest:.3g}, "
                f"{len(self.pairs) * smallest:.3g} after Holm over {_pairs(len(self.pairs))}: "
                f"this test set is too small for any difference to be significant at alpha "
                f"{ALPHA}."
            )
        return text

    def pairs_line(self) -> str:
        """Every pair: the better model, its mean per-image lead and the Holm-adjusted p."""
        ranked = sorted(self.pairs, key=lambda t: (t.p_holm, t.better, t.worse))
        cells = [
            f"{t.better} {'>' if t.significant else '~'} {t.worse} "
            f"({t.mean_difference:+.3f}, p {t.p_holm:.3g})"
            for t in ranked
        ]
        return (
            "- **Pairs** (the side the signed-rank test favours first; > significant, ~ not; "
            "mean per-image lead, Holm-adjusted p): " + "; ".join(cells)
        )


def _pairs(m: int) -> str:
    return f"{m} model pair" + ("" if m == 1 else "s")


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest of m is
    multiplied by m - i + 1, made non-decreasing, and capped at 1."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def floor_p(d: np.ndarray) -> float:
    """The smallest two-sided Wilcoxon p-value differences ``d`` allow: scipy's test of the
    same magnitudes all of one sign, zeros kept (they decide scipy's method, exact or not)."""
    d = np.abs(np.asarray(d, float))
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d, alternative="two-sided").pvalue)


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired Wilcoxon p-value of ``a`` vs ``b``; 1 when they never differ."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(a, b, alternative="two-sided").pvalue)


def primary_metric(records: list[dict]) -> str:
    """The per-image score the tests use: the DSB AP where every image has one, else IoU."""
    images = [im for r in records for im in r["metrics"]["per_image"]]
    return "dsb_map" if images and all("dsb_map" in im for im in images) else "iou"


def per_image_scores(records: list[dict], metric: str) -> dict[str, float]:
    """Image id -> the metric on that image, averaged over the records (seeds) holding it."""
    scores: dict[str, list[float]] = defaultdict(list)
    for r in records:
        for im in r["metrics"]["per_image"]:
            scores[im["id"]].append(aggregate([im])[metric])
    return {i: float(np.mean(v)) for i, v in scores.items()}


def compare(scores: dict[str, dict[str, float]]) -> list[PairTest]:
    """Wilcoxon test for every pair of models over the images both were tested on, Holm-
    corrected over all pairs. ``scores``: model -> image id -> score."""
    tests = []
    for a, b in combinations(sorted(scores), 2):
        ids = sorted(scores[a].keys() & scores[b].keys())
        x = np.array([scores[a][i] for i in ids])
        y = np.array([scores[b][i] for i in ids])
        diff = float(np.mean(x - y)) if ids else 0.0
        a_better = leans_to_first(x - y, diff)
        better, worse = (a, b) if a_better else (b, a)
        p = wilcoxon_p(x, y) if ids else 1.0
        tests.append(
            PairTest(
                better, worse, len(ids), diff if a_better else -diff, p, p_floor=floor_p(x - y)
            )
        )
    adjusted = holm([t.p for t in tests])
    return [replace(t, p_holm=q) for t, q in zip(tests, adjusted, strict=True)]


def leans_to_first(d: np.ndarray, mean: float) -> bool:
    """Whether the signed-rank statistic favours the first model: the ranks of |d| (zeros
    dropped, ties averaged, as scipy's test ranks them) summed by sign; the mean breaks a tie.
    The direction must come from the statistic that gave the p-value: one image lost by 0.4
    outweighs 14 won by 0.01 in the mean, not in the test."""
    d = np.asarray(d, float)
    d = d[d != 0]
    ranks = stats.rankdata(np.abs(d))
    lean = ranks[d > 0].sum() - ranks[d < 0].sum()
    return bool(lean > 0 or (lean == 0 and mean >= 0))


def shared_ranks(models: list[str], pairs: list[PairTest]) -> dict[str, int]:
    """Rank = 1 + the longest chain of significant wins above the model (1, 1, 2 when the
    first two tie and both beat the third); models in a cycle of wins share a rank."""
    wins = {(t.better, t.worse) for t in pairs if t.significant}
    above = {m: {a for a, b in wins if b == m} for m in models}
    for k in models:  # transitive closure (Warshall): who is above whom through any chain
        for m in models:
            if k in above[m]:
                above[m] |= above[k]
    depth: dict[str, int] = {}

    def chain(m: str) -> int:  # longest chain above m, a cycle counting as one step
        if m not in depth:
            strictly = [a for a in above[m] if m not in above[a]]
            depth[m] = 1 + max((chain(a) for a in strictly), default=0)
        return depth[m]

    return {m: chain(m) for m in models}


def significance(records: list[dict]) -> Significance:
    """Paired tests and shared ranks for the models of one dataset's (manual-label) records."""
    metric = primary_metric(records)
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_model[r["model"]].append(r)
    scores = {m: per_image_scores(recs, metric) for m, recs in by_model.items()}
    pairs = compare(scores)
    n_images = min((t.n_images for t in pairs), default=len(next(iter(scores.values()), {})))
    same = len({frozenset(s) for s in scores.values()}) <= 1
    return Significance(metric, n_images, pairs, shared_ranks(sorted(scores), pairs), same)
