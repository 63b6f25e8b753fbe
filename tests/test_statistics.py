"""Significance on the leaderboards: paired Wilcoxon tests with Holm's correction and shared
ranks per dataset; average ranks, Friedman test and Nemenyi critical difference across them."""

from __future__ import annotations

import csv
import math
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from seg_bench.protocol.convergence import optimizer_steps
from seg_bench.protocol.figures import cd_bars, cd_groups
from seg_bench.protocol.statistics import (
    PairTest,
    floor_p,
    holm,
    per_image_scores,
    primary_metric,
    shared_ranks,
    significance,
)
from seg_bench.protocol.summary import (
    Q_05,
    critical_difference,
    iman_davenport,
    nemenyi_sentence,
    read_budgets,
    read_scores,
    summarise_datasets,
    write_summary,
)


def image(image_id: str, iou_percent: int, **extra) -> dict:
    """Per-image statistics whose IoU is exactly iou_percent / 100 (tp = k, fn = 100 - k)."""
    k = iou_percent
    confmat = [[900, 0], [100 - k, k]]
    return {"id": image_id, "confmat": confmat, "hist_pos": [1, 1], "hist_neg": [1, 1], **extra}


def rec(model: str, seed: int, ious: list[int], **extra) -> dict:
    per_image = [image(f"img{i}", v, **extra) for i, v in enumerate(ious)]
    return {"model": model, "seed": seed, "metrics": {"per_image": per_image}}


# --- per dataset ---------------------------------------------------------------------------
def test_holm_on_a_hand_worked_example():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> made
    # non-decreasing: 0.02, 0.03, 0.06, 0.06; returned in the input order.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # 2 x 0.5 capped at 1; never below a smaller p's


def test_smallest_attainable_p_is_two_over_two_to_the_n_without_ties_or_zeros():
    assert floor_p(np.array([1.0, -2, 3, -4, 5, 6])) == pytest.approx(2 / 2**6)
    assert floor_p(np.zeros(5)) == 1.0
    # A zero changes scipy's method (not exact above a few images): the floor must follow it,
    # as the test's own p does. 14 images, one zero: exact 2/2^13 = 2.4e-4 would be too low.
    d = np.concatenate([[0.0], np.arange(1.0, 14.0)])
    assert floor_p(d) == pytest.approx(stats.wilcoxon(np.abs(d)).pvalue)
    assert floor_p(d) > 1e-3
    # With ties the floor is scipy's p of the same magnitudes all positive, above 2/2^n.
    tied = np.array([1.0, 1, 2, 2, 3, 3, 4])
    assert floor_p(tied) == pytest.approx(stats.wilcoxon(tied).pvalue)


def test_pair_p_values_are_scipys_wilcoxon_on_seed_averaged_images():
    rng = np.random.default_rng(0)
    base = rng.integers(40, 80, 12)
    a = [rec("a", s, list(base + rng.integers(3, 9, 12))) for s in range(2)]
    b = [rec("b", 0, list(base + rng.integers(-3, 3, 12)))]
    result = significance(a + b)
    [pair] = result.pairs
    # Oracle: the seed means of the per-image IoUs, computed here from the confusion counts.
    mean_a = np.mean(
        [[im["confmat"][1][1] / 100 for im in r["metrics"]["per_image"]] for r in a], 0
    )
    iou_b = np.array([im["confmat"][1][1] / 100 for im in b[0]["metrics"]["per_image"]])
    assert pair.p == pytest.approx(stats.wilcoxon(mean_a, iou_b).pvalue)
    assert pair.p_holm == pair.p  # a single pair: Holm changes nothing
    assert (pair.better, pair.worse, pair.n_images) == ("a", "b", 12)
    assert pair.mean_difference == pytest.approx(np.mean(mean_a - iou_b))
    assert result.ranks == {"a": 1, "b": 2} and result.metric == "iou"


def test_the_better_side_is_the_one_the_signed_rank_test_favours_not_the_mean():
    # A wins 14 of 15 images by 0.01 and loses one by 0.40: the test favours A (p 0.0047 in
    # scipy), while the mean favours B by 0.017.
    a = rec("a", 0, [50] * 15)
    b = rec("b", 0, [49] * 14 + [90])
    [pair] = significance([a, b]).pairs
    assert (pair.better, pair.worse) == ("a", "b") and pair.significant
    assert pair.p == pytest.approx(stats.wilcoxon([0.5] * 15, [0.49] * 14 + [0.9]).pvalue)
    assert pair.mean_difference == pytest.approx((14 * 0.01 - 0.40) / 15)
    assert "a > b (-0.017," in significance([a, b]).pairs_line()


def test_per_image_score_is_the_mean_over_seeds_matched_by_image_id():
    records = [rec("m", 0, [50, 60]), rec("m", 1, [70, 80])]
    assert per_image_scores(records, "iou") == pytest.approx({"img0": 0.6, "img1": 0.7})


def test_dsb2018_records_are_compared_on_the_dsb_ap():
    records = [rec("m", 0, [50, 60], dsb_map=0.25)]
    assert primary_metric(records) == "dsb_map"
    assert per_image_scores(records, "dsb_map") == {"img0": 0.25, "img1": 0.25}
    assert primary_metric([rec("m", 0, [50])]) == "iou"


def pair(better: str, worse: str, p_holm: float) -> PairTest:
    return PairTest(better, worse, 10, 0.1, p=p_holm, p_holm=p_holm)


@pytest.mark.parametrize(
    "pairs,ranks",
    [
        # A and B not separated, both significantly above C: 1, 1, 2.
        ([("A", "B", 0.4), ("A", "C", 0.01), ("B", "C", 0.02)], {"A": 1, "B": 1, "C": 2}),
        # Every pair separated: 1, 2, 3.
        ([("A", "B", 0.01), ("A", "C", 0.01), ("B", "C", 0.01)], {"A": 1, "B": 2, "C": 3}),
        # Only A above C: B is beaten by nobody, C by one model.
        ([("A", "B", 0.2), ("A", "C", 0.01), ("B", "C", 0.3)], {"A": 1, "B": 1, "C": 2}),
        # Nothing significant: everyone shares first place.
        ([("A", "B", 0.06), ("A", "C", 0.05), ("B", "C", 1.0)], {"A": 1, "B": 1, "C": 1}),
    ],
)
def test_models_not_significantly_different_share_a_rank(pairs, ranks):
    assert shared_ranks(["A", "B", "C"], [pair(*p) for p in pairs]) == ranks


def test_a_significant_win_always_means_a_better_rank_even_without_transitivity():
    # The reviewer's case: A > B, C > A, D > A, and C, D ~ B. Counting the models above gave
    # A rank 3 below B's 2, though A significantly beats B.
    pairs = [
        pair("A", "B", 0.01),
        pair("C", "A", 0.01),
        pair("D", "A", 0.01),
        pair("C", "B", 0.5),
        pair("D", "B", 0.5),
        pair("C", "D", 0.5),
    ]
    assert shared_ranks(list("ABCD"), pairs) == {"C": 1, "D": 1, "A": 2, "B": 3}


def test_a_cycle_of_significant_wins_shares_a_rank():
    pairs = [pair("X", "Y", 0.01), pair("Y", "Z", 0.01), pair("Z", "X", 0.01), pair("X", "W", 0.01)]
    pairs += [pair("Y", "W", 0.5), pair("Z", "W", 0.5)]
    assert shared_ranks(list("WXYZ"), pairs) == {"X": 1, "Y": 1, "Z": 1, "W": 2}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=10, max_size=10))
def test_ranks_follow_every_significant_win(outcomes):
    """Five models, each pair's direction and significance drawn: the winner of any
    significant pair ranks strictly above the loser unless the two lie on a cycle."""
    models = list("abcde")
    pairs = [
        pair(*((a, b) if forward else (b, a)), 0.01 if sig else 0.5)
        for (a, b), (forward, sig) in zip(combinations(models, 2), outcomes, strict=True)
    ]
    ranks = shared_ranks(models, pairs)
    wins = {(t.better, t.worse) for t in pairs if t.significant}

    def reaches(x, y, seen=()):
        return any(
            a == x and (b == y or (b not in seen and reaches(b, y, (*seen, b)))) for a, b in wins
        )

    for better, worse in wins:
        if not reaches(worse, better):
            assert ranks[better] < ranks[worse]
    assert min(ranks.values()) == 1


def test_too_few_images_say_no_difference_can_be_significant():
    records = [rec(m, 0, [10 * (k + 1) + 5 * j for j in range(4)]) for k, m in enumerate("abc")]
    result = significance(records)
    assert result.n_images == 4 and len(result.pairs) == 3
    assert all(t.p == pytest.approx(0.125) for t in result.pairs)  # 2/2^4: all one sign
    assert result.ranks == {"a": 1, "b": 1, "c": 1}
    header = result.header()
    assert "Wilcoxon signed-rank" in header and "Holm-corrected over 3 model pairs" in header
    assert "(every difference of one sign) is 0.125" in header
    assert "too small for any difference" in header
    # 9 images: 2/2^9 * 3 pairs = 0.0117 < 0.05, so the sentence goes.
    big = [rec(m, 0, [10 * (k + 1) + j for j in range(9)]) for k, m in enumerate("abc")]
    assert not significance(big).too_small and "too small" not in significance(big).header()
    assert significance(big).ranks == {"a": 3, "b": 2, "c": 1}


def test_an_image_every_model_scores_alike_does_not_count_towards_significance():
    # 7 images, one scored 1.0 by all: each pair has 6 non-zero differences, so its p is at
    # least 2/2^6 and 3 pairs x 0.031 = 0.094: nothing can be significant. Counting the tied
    # image (2/2^7 x 3 = 0.047) said otherwise, and the shared rank 1 read as "equal".
    records = [rec(m, 0, [100] + [10 * (k + 1) + j for j in range(6)]) for k, m in enumerate("abc")]
    result = significance(records)
    floor = stats.wilcoxon(np.concatenate([[0.0], np.arange(1.0, 7.0)])).pvalue
    assert result.n_images == 7 and result.p_floor == pytest.approx(floor)
    assert 3 * floor >= 0.05  # what makes the set too small
    assert result.too_small and "too small for any difference" in result.header()


def test_a_small_pair_does_not_hide_a_larger_pair_that_can_be_significant():
    # a and b share 10 images, c only 4: the a-b pair can reach significance (and does).
    a = rec("a", 0, [50 + 3 * j for j in range(10)])
    b = rec("b", 0, [40 + 3 * j for j in range(10)])
    c = rec("c", 0, [45, 48, 51, 54])
    result = significance([a, b, c])
    assert not result.too_small and "too small" not in result.header()
    assert [t.significant for t in result.pairs if {t.better, t.worse} == {"a", "b"}] == [True]


def test_models_tested_on_different_images_are_paired_on_the_shared_ones():
    a = rec("a", 0, [50, 60, 70, 80, 90, 95, 99])
    b = rec("b", 0, [40, 50, 60, 70, 80, 85])  # img0 ... img5: one image fewer
    result = significance([a, b])
    assert result.pairs[0].n_images == 6 and not result.same_images
    assert result.pairs[0].p == pytest.approx(stats.wilcoxon([10] * 6, [0] * 6).pvalue)
    assert "not all tested on the same images" in result.header()


def test_identical_models_are_never_different():
    records = [rec("a", 0, [50, 60, 70, 80, 90, 55, 65]), rec("b", 0, [50, 60, 70, 80, 90, 55, 65])]
    [pair_ab] = significance(records).pairs
    assert pair_ab.p == 1.0 and pair_ab.mean_difference == 0.0


# --- across datasets -----------------------------------------------------------------------
def test_critical_difference_for_five_models_on_four_datasets_from_demsar():
    # Demsar (2006), Table 5(a): q_0.05 = 2.728 for k = 5.
    assert critical_difference(5, 4) == pytest.approx(2.728 * math.sqrt(5 * 6 / 24))
    assert critical_difference(5, 4) == pytest.approx(3.050, abs=5e-4)


@pytest.mark.parametrize("k", sorted(Q_05))
def test_nemenyi_table_is_the_studentized_range_over_root_two(k):
    q = stats.studentized_range.ppf(0.95, k, np.inf) / math.sqrt(2)
    assert Q_05[k] == pytest.approx(q, abs=1.5e-3)


def test_average_ranks_and_friedman_match_scipy():
    scores = {
        "d1": ("iou", {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.1}),
        "d2": ("iou", {"a": 0.6, "b": 0.7, "c": 0.5, "d": 0.2}),
        "d3": ("dsb_map", {"a": 0.4, "b": 0.3, "c": 0.3, "d": 0.1}),
    }
    s = summarise_datasets(scores)
    # ranks: a 1, 2, 1; b 2, 1, 2.5; c 3, 3, 2.5; d 4, 4, 4
    assert s.average == pytest.approx({"a": 4 / 3, "b": 5.5 / 3, "c": 8.5 / 3, "d": 4.0})
    assert s.models == ["a", "b", "c", "d"]
    table = [[scores[d][1][m] for d in ("d1", "d2", "d3")] for m in "abcd"]
    expected = stats.friedmanchisquare(*table)
    assert s.friedman == pytest.approx((expected.statistic, expected.pvalue))
    assert s.cd == pytest.approx(2.569 * math.sqrt(4 * 5 / 18))


def test_friedman_needs_three_models_and_two_datasets():
    two_models = {d: ("iou", {"a": 0.5, "b": 0.4}) for d in ("d1", "d2")}
    assert summarise_datasets(two_models).friedman is None
    one_dataset = {"d1": ("iou", {"a": 0.5, "b": 0.4, "c": 0.3})}
    s = summarise_datasets(one_dataset)
    assert s.friedman is None and s.cd is None


def test_no_pair_is_called_different_unless_the_friedman_test_rejects():
    # Ranks of a, b, c on nine datasets: average 1.44, 2.00, 2.56, so a-c (1.11) exceeds
    # CD 1.10, while Friedman's p is 0.062.
    ranks = [(1, 2, 3), (1, 3, 2), (2, 1, 3), (1, 2, 3), (1, 2, 3)]
    ranks += [(1, 2, 3), (1, 3, 2), (3, 2, 1), (2, 1, 3)]
    scores = {
        f"d{i}": ("iou", {m: -r for m, r in zip("abc", row, strict=True)})
        for i, row in enumerate(ranks)
    }
    s = summarise_datasets(scores)
    assert s.average["c"] - s.average["a"] >= s.cd and s.friedman[1] == pytest.approx(0.0622, 1e-3)
    assert "no pair is called significantly different" in nemenyi_sentence(s)
    two = {d: ("iou", {"a": 0.5, "b": 0.4}) for d in "wxyz"}  # no Friedman test for 2 models
    assert "no pair is called" in nemenyi_sentence(summarise_datasets(two))
    rejects = {f"d{i}": ("iou", {"a": 0.9, "b": 0.5, "c": 0.1}) for i in range(6)}
    assert nemenyi_sentence(summarise_datasets(rejects)).endswith("a vs c.")


def test_iman_davenport_matches_demsars_worked_example():
    # Demsar 2006, section 3.2.4: four classifiers on 14 data sets, chi2_F = 9.28, F_F = 3.69,
    # against the critical F(3, 39) = 2.85 at alpha 0.05.
    f, p = iman_davenport(9.28, k=4, n=14)
    assert f == pytest.approx(3.69, abs=0.005)
    assert stats.f.ppf(0.95, 3, 39) == pytest.approx(2.85, abs=0.005) and p < 0.05
    assert iman_davenport(4 * 3, k=4, n=4) == (math.inf, 0.0)  # every dataset ranks alike


def test_the_f_form_decides_where_the_chi_square_is_too_conservative():
    # Ranks of models a-e on four datasets: chi2 = 9.0, p 0.061, but F(4, 12) = 3.857, p 0.031.
    rows = [(3, 1, 2, 4, 5), (1, 2, 4, 5, 3), (1, 2, 3, 4, 5), (1, 4, 3, 2, 5)]
    scores = {
        f"d{i}": ("iou", {m: -r for m, r in zip("abcde", row, strict=True)})
        for i, row in enumerate(rows)
    }
    s = summarise_datasets(scores)
    assert s.friedman == pytest.approx((9.0, 0.0611), rel=1e-3)
    assert s.iman_davenport == pytest.approx((27 / 7, 0.0307), rel=1e-2)
    assert s.rejects and not nemenyi_sentence(s).startswith("The Friedman test did not reject")


def test_cd_diagram_joins_every_model_when_friedman_does_not_reject():
    # Average ranks 1.44, 2.00, 2.56 with CD 1.10: Nemenyi would draw two bars, making a and c
    # look apart, but Friedman's p 0.062 means no pair is tested.
    ranks = {"a": 1.44, "b": 2.00, "c": 2.56}
    assert cd_bars(ranks, 1.10, friedman_rejects=True) == [(1.44, 2.0), (2.0, 2.56)]
    assert cd_bars(ranks, 1.10, friedman_rejects=False) == [(1.44, 2.56)]


def test_cd_groups_join_models_closer_than_the_critical_difference():
    ranks = {"a": 1.0, "b": 1.5, "c": 2.9, "d": 4.0, "e": 4.6}
    # CD 2: a-c (2.9 - 1.0 < 2), c-e (4.6 - 2.9 < 2); b-d is inside neither but b-c already
    # lies in a-c and c-d in c-e, so b..d (2.5 apart) is not a group.
    assert cd_groups(ranks, 2.0) == [(1.0, 2.9), (2.9, 4.6)]
    assert cd_groups(ranks, 0.4) == []


def write_table(path, rows: list[dict]) -> None:
    steps = ["steps"] if any("steps" in r for r in rows) else []
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model", "labels", *steps, "iou", "dsb_map"])
        writer.writeheader()
        writer.writerows(rows)


def test_summary_readme_from_the_leaderboard_tables(tmp_path):
    write_table(
        tmp_path / "epfl.csv",
        [
            {"model": "a", "labels": "manual", "iou": 0.7},
            {"model": "b", "labels": "manual", "iou": 0.6},
            {"model": "c", "labels": "manual", "iou": 0.5},
        ],
    )
    write_table(
        tmp_path / "dsb2018.csv",
        [
            {"model": "a", "labels": "manual", "iou": 0.5, "dsb_map": 0.3},
            {"model": "b", "labels": "manual", "iou": 0.9, "dsb_map": 0.4},
            {"model": "c", "labels": "manual", "iou": 0.8, "dsb_map": 0.2},
            {"model": "z", "labels": "manual", "iou": 0.9, "dsb_map": 0.9},
        ],
    )
    write_table(tmp_path / "synthetic.csv", [{"model": "a", "labels": "manual", "iou": 0.1}])
    assert read_scores(tmp_path)["dsb2018"] == ("dsb_map", {"a": 0.3, "b": 0.4, "c": 0.2, "z": 0.9})
    text = write_summary(tmp_path)
    assert text == (tmp_path / "README.md").read_text()
    assert "| Model | dsb2018 | epfl | Average rank |" in text
    assert "| a | 2 | 1 | 1.50 |" in text and "| b | 1 | 2 | 1.50 |" in text
    assert "`z` is not ranked: it has no result on epfl" in text
    assert "synthetic" not in text.split("\n| Model")[1]  # left out of the table
    assert "Friedman test (scipy.stats.friedmanchisquare) over 3 models and 2 datasets" in text
    assert "Iman-Davenport F(2, 2) = " in text
    assert "CD = q * sqrt(k(k+1)/(6N)) = 2.343 * sqrt(3*4/(6*2)) = 2.343" in text
    assert (tmp_path / "cd.png").read_bytes()[:4] == b"\x89PNG"


def test_summary_with_too_few_results_says_so(tmp_path):
    write_table(tmp_path / "epfl.csv", [{"model": "a", "labels": "manual", "iou": 0.7}])
    text = write_summary(tmp_path)
    assert "Friedman test: not computed, too few results (1 models on all of 1 datasets" in text
    assert not (tmp_path / "cd.png").exists()
    assert write_summary(tmp_path / "nothing") is None


def test_summary_names_each_datasets_budget_and_warns_when_they_differ(tmp_path):
    rows = [
        {"model": m, "labels": "manual", "iou": v}
        for m, v in zip("abc", (0.7, 0.6, 0.5), strict=True)
    ]
    write_table(tmp_path / "epfl.csv", [{**r, "steps": 1024} for r in rows])
    write_table(tmp_path / "isbi2012.csv", [{**r, "steps": 1024} for r in rows])
    text = write_summary(tmp_path)
    assert "Optimizer steps per run: epfl 1024; isbi2012 1024." in text
    assert "not all trained at one budget" not in text
    write_table(tmp_path / "ncmir.csv", rows)  # an older table, without the steps column
    write_table(tmp_path / "dsb2018.csv", [{**r, "steps": 96} for r in rows])
    assert read_budgets(tmp_path) == {
        "dsb2018": "96",
        "epfl": "1024",
        "isbi2012": "1024",
        "ncmir": "not in its table",
    }
    assert "**The datasets were not all trained at one budget" in write_summary(tmp_path)


def test_optimizer_steps_of_a_run_from_its_curve_or_its_configuration():
    curve = [{"step": 512, "val_iou": 0.5}, {"step": 1024, "val_iou": 0.6}]
    assert optimizer_steps({"curve": curve, "config": {"max_steps": 2048}}) == 1024
    assert optimizer_steps({"config": {"max_steps": 2048}}) == 2048
    quick = {"max_epochs": 6, "samples_per_epoch": 130, "batch_size": 8}
    assert optimizer_steps({"config": quick}) == 6 * 17  # the last batch of an epoch is short
    assert optimizer_steps({"config": {"max_epochs": 6, "batch_size": 8}}) is None


def test_summary_names_the_models_a_doubling_study_found_still_gaining(tmp_path):
    rows = [{"model": m, "labels": "manual", "iou": v} for m, v in (("a", 0.7), ("b", 0.6))]
    write_table(tmp_path / "epfl.csv", rows)
    with open(tmp_path / "isbi2012.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model", "labels", "iou", "converged_at_budget"])
        writer.writeheader()
        writer.writerows([{**rows[0], "converged_at_budget": True}, {**rows[1]}])
    assert "Not converged" not in write_summary(tmp_path)  # no study says so
    with open(tmp_path / "isbi2012.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model", "labels", "iou", "converged_at_budget"])
        writer.writeheader()
        writer.writerows([{**rows[0], "converged_at_budget": True},
                          {**rows[1], "converged_at_budget": False}])  # fmt: skip
    text = write_summary(tmp_path)
    assert "Not converged at its dataset's budget" in text and ": b on isbi2012." in text
