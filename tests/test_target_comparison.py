"""Instance-aware targets against the binary one (the DSB post-processing study's section):
the seeds both targets have, each target's method chosen on validation over those seeds,
images paired by id, and Wilcoxon p-values Holm-corrected, checked against scipy and a
hand-worked Holm step."""

import numpy as np
import pytest
from result_records import fake_record
from scipy import stats

from seg_bench.protocol.method_scores import by_model_target
from seg_bench.protocol.postprocess_report import render_postprocess_study
from seg_bench.protocol.target_comparison import comparisons, plain_of, target_table, tta_table

B = np.array([0.3, 0.4, 0.5, 0.35, 0.45, 0.5, 0.2, 0.6])  # binary mAP per image, seed 0
LIFT = np.array([0.1, 0.12, 0.08, 0.15, 0.11, 0.09, 0.13, -0.04])  # no tied |differences|
# Seven small losses and one large win: the mean favours the target, the signed ranks binary.
SKEW = np.array([-0.01, -0.011, -0.012, -0.013, -0.014, -0.015, -0.016, 0.5])
TP3 = [7, 8, 6, 7, 9, 7, 8, 6]  # boundary3 true-positive pixels per image (of 10)


def run(model, target, seed, maps, tps, val, splits=1, tta=False, reverse=False):
    """One record. The method validation prefers scores ``maps`` on the test images, every
    other method 0.2 more, so a choice made on test data would show; ``tps`` of 10 foreground
    pixels found (pixel IoU tp / 10); image 0, 3, 6 each have a merge on boundary3."""
    chosen = max(val, key=val.get)
    merges = 1 if target == "binary" else 0
    images = [
        {
            "id": f"img{i}",
            "confmat": [[90, 0], [10 - tp, tp]],
            "hist_pos": [1, 4],
            "hist_neg": [85, 5],
            "methods": {
                m: {
                    "map": a if m == chosen else a + 0.2,
                    "ap50": a,
                    "ap75": a,
                    "tp": 4,
                    "fp": 1,
                    "fn": 1,
                    "splits": splits,
                    "merges": merges or int(i % 3 == 0),
                }
                for m in val
            },  # fmt: skip
        }
        for i, (a, tp) in enumerate(zip(maps, tps, strict=True))
    ]
    methods = {m: {"params": {}, "val_map": v} for m, v in val.items()}
    return fake_record(
        model,
        seed,
        images[::-1] if reverse else images,
        config={"target": target, "tta": tta},
        metrics={"postprocess_methods": methods},
    )


BINARY = {"distance_watershed": 0.5, "threshold_cc": 0.4}
BOUNDARY = {"seeded_watershed": 0.6, "distance_watershed": 0.55}
SEED2_VAL = {"distance_watershed": 0.1, "threshold_cc": 0.9}


@pytest.fixture
def groups():
    return by_model_target(
        [
            run("unet", "binary", 0, B, [8] * 8, BINARY),
            run("unet", "binary", 1, B + 0.1, [8] * 8, BINARY, reverse=True),
            # Seed 2 has no boundary3 run: its scores and its validation (which would pick
            # threshold_cc over seeds 0-2) must not count.
            run("unet", "binary", 2, B * 0, [0] * 8, SEED2_VAL),
            run("unet", "boundary3", 0, B + LIFT, TP3, BOUNDARY, splits=2),
            run("unet", "boundary3", 1, B + LIFT, TP3, BOUNDARY, splits=2),
            run("segnet", "binary", 0, B, [8] * 8, BINARY),  # seed 0 has no boundary3 run
            run("segnet", "binary", 1, B, [8] * 8, BINARY),
            run("segnet", "boundary3", 1, B + SKEW, [8] * 8, BOUNDARY),
            run("resunet", "binary", 0, B, [8] * 8, BINARY),  # one target: no row
            # Tested with TTA: compared with binary + TTA, never with plain binary.
            run("resunet", "binary", 0, B, [8] * 8, BINARY, tta=True),
            run("resunet", "boundary3", 0, B + LIFT, [8] * 8, BOUNDARY, tta=True),
        ]
    )  # fmt: skip


def test_targets_are_compared_on_shared_seeds_with_holm_corrected_wilcoxon(groups):
    resunet, segnet, unet = comparisons(groups)
    assert [(c.model, c.target, c.seeds) for c in (resunet, segnet, unet)] == [
        ("resunet", "boundary3 + TTA", [0]),
        ("segnet", "boundary3", [1]),
        ("unet", "boundary3", [0, 1]),
    ]
    assert (unet.base.method, unet.other.method) == ("distance_watershed", "seeded_watershed")
    assert unet.base.means["map"] == pytest.approx(B.mean() + 0.05)  # seeds 0-1, not 2
    assert unet.other.means["map"] == pytest.approx((B + LIFT).mean())
    assert unet.base.means["iou"] == pytest.approx(0.8)
    assert unet.other.means["iou"] == pytest.approx(sum(TP3) / 80)
    assert resunet.base.means["map"] == pytest.approx(B.mean())  # binary + TTA, seed 0
    raw = {
        "resunet": stats.wilcoxon(B + LIFT, B).pvalue,
        "segnet": stats.wilcoxon(B + SKEW, B).pvalue,
        "unet": stats.wilcoxon(B + LIFT, B + 0.05).pvalue,  # images paired by id
    }
    order = sorted(raw, key=raw.get)
    holm, running = {}, 0.0
    for k, name in enumerate(order):  # Holm's step-down, by hand
        running = max(running, min(1.0, (3 - k) * raw[name]))
        holm[name] = running
    for c in (resunet, segnet, unet):
        assert c.p["map"] == pytest.approx(holm[c.model]), c.model
    assert segnet.p["iou"] == 1.0  # identical pixels: no difference to test
    assert (segnet.target_leads["map"], unet.target_leads["map"]) == (False, True)


def test_table_spells_each_pair_as_binary_then_target(groups):
    lines = target_table(groups)
    assert lines[0] == "## Instance-aware targets against binary"
    unet = next(line for line in lines if line.startswith("| unet |"))
    lead = (B + LIFT).mean() - (B.mean() + 0.05)
    assert unet.startswith(
        "| unet | boundary3 | 0, 1 | distance_watershed → seeded_watershed "
        f"| {B.mean() + 0.05:.3f} → {(B + LIFT).mean():.3f} | {lead:+.3f} (p "
    )
    assert unet.endswith("| 8 → 16 | 8 → 3 |")  # splits, then merges
    segnet = next(line for line in lines if line.startswith("| segnet |"))
    assert f"| {SKEW.mean():+.3f} (p " in segnet and "(ranks favour binary)" in segnet
    assert "favour" not in unet


def test_a_study_with_one_target_has_no_section_and_the_report_places_it(groups):
    records = [r for recs in groups.values() for r in recs]
    binary_only = [r for r in records if r["config"]["target"] == "binary"]
    assert target_table(by_model_target(binary_only)) == []
    assert "Instance-aware" not in render_postprocess_study("dsb2018", binary_only, [])
    text = render_postprocess_study("dsb2018", records, [])
    assert text.index("## Instance-aware targets") < text.index("## Scores per image type")


def test_tta_is_compared_with_the_same_target_tested_plainly(groups):
    # resunet binary: seed 0 plain and with TTA, the same scores; boundary3 only with TTA.
    (row,) = comparisons(groups, plain_of)
    assert (row.model, row.target, row.seeds) == ("resunet", "binary + TTA", [0])
    assert row.base.means["map"] == row.other.means["map"] == pytest.approx(B.mean())
    assert row.p["map"] == 1.0  # no difference to test
    lines = tta_table(groups)
    assert lines[0] == "## Test-time augmentation against plain testing: instance scores"
    (line,) = [x for x in lines if x.startswith("| resunet |")]
    assert line.startswith(
        f"| resunet | binary | 0 | distance_watershed → distance_watershed | {B.mean():.3f} → "
    )
    plain_only = [r for recs in groups.values() for r in recs if not r["config"]["tta"]]
    assert tta_table(by_model_target(plain_only)) == []


def test_tta_rows_pair_images_by_id_and_name_the_side_the_ranks_favour():
    groups = by_model_target(
        [
            run("unet", "boundary3", 0, B, [8] * 8, BOUNDARY),
            run("unet", "boundary3", 0, B + SKEW, [8] * 8, BOUNDARY, tta=True, reverse=True),
        ]
    )
    (row,) = comparisons(groups, plain_of)
    assert row.p["map"] == pytest.approx(stats.wilcoxon(B + SKEW, B).pvalue)  # one row: no Holm
    (line,) = [x for x in tta_table(groups) if x.startswith("| unet |")]
    assert f"| {SKEW.mean():+.3f} (p " in line and "(ranks favour plain)" in line
    assert "| unet | boundary3 | 0 | seeded_watershed → seeded_watershed |" in line
    text = render_postprocess_study("dsb2018", [r for recs in groups.values() for r in recs], [])
    assert text.index("## Test-time augmentation") < text.index("## Scores per image type")
