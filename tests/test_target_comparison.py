"""Instance-aware targets against the binary one (the DSB post-processing study's section):
the seeds both targets have, each target's method chosen on validation, and Wilcoxon p-values
over the test images, Holm-corrected, checked against scipy and a hand-worked Holm step."""

import numpy as np
import pytest
from result_records import fake_record
from scipy import stats

from seg_bench.protocol.postprocess_report import render_postprocess_study
from seg_bench.protocol.target_comparison import comparisons, target_table

B = np.array([0.3, 0.4, 0.5, 0.35, 0.45, 0.5, 0.2, 0.6])  # binary mAP per image, seed 0
LIFT = np.array([0.1, 0.12, 0.08, 0.15, 0.11, 0.09, 0.13, -0.04])  # no tied |differences|
TP3 = [7, 8, 6, 7, 9, 7, 8, 6]  # boundary3 true-positive pixels per image (of 10)


def scores(map_, merges=0):
    return {"map": map_, "ap50": map_, "ap75": map_, "tp": 4, "fp": 1, "fn": 1, "splits": 1,
            "merges": merges}  # fmt: skip


def run(model, target, seed, maps, tps, val):
    """One record: per image, each method of ``val`` scores ``maps`` (the first method) or
    half of it; ``tps`` of 10 foreground pixels found (pixel IoU tp / 10)."""
    first = next(iter(val))
    images = [
        {
            "id": f"img{i}",
            "confmat": [[90, 0], [10 - tp, tp]],
            "hist_pos": [1, 4],
            "hist_neg": [85, 5],
            "methods": {m: scores(a if m == first else a / 2, merges=i % 2) for m in val},
        }
        for i, (a, tp) in enumerate(zip(maps, tps, strict=True))
    ]
    methods = {m: {"params": {}, "val_map": v} for m, v in val.items()}
    return fake_record(
        model,
        seed,
        images,
        config={"target": target},
        metrics={"postprocess_methods": methods},
    )


BINARY = {"distance_watershed": 0.5, "threshold_cc": 0.4}
BOUNDARY = {"seeded_watershed": 0.6, "distance_watershed": 0.55}


@pytest.fixture
def records():
    return [
        run("unet", "binary", 0, B, [8] * 8, BINARY),
        run("unet", "binary", 1, B + 0.1, [8] * 8, BINARY),
        run("unet", "binary", 2, B * 0, [0] * 8, BINARY),  # no boundary3 seed 2: left out
        run("unet", "boundary3", 0, B + LIFT, TP3, BOUNDARY),
        run("unet", "boundary3", 1, B + LIFT, TP3, BOUNDARY),
        run("segnet", "binary", 0, B, [8] * 8, BINARY),  # seed 0 has no boundary3 run
        run("segnet", "binary", 1, B, [8] * 8, BINARY),
        run("segnet", "boundary3", 1, B - LIFT / 2, [8] * 8, BOUNDARY),
        run("resunet", "binary", 0, B, [8] * 8, BINARY),  # one target: no row
    ]


def test_targets_are_compared_on_shared_seeds_with_holm_corrected_wilcoxon(records):
    segnet, unet = comparisons(records)
    assert [(c.model, c.target, c.seeds) for c in (segnet, unet)] == [
        ("segnet", "boundary3", [1]),
        ("unet", "boundary3", [0, 1]),
    ]
    assert (unet.base.method, unet.other.method) == ("distance_watershed", "seeded_watershed")
    assert unet.base.means["map"] == pytest.approx(B.mean() + 0.05)  # seeds 0-1, not 2
    assert unet.other.means["map"] == pytest.approx((B + LIFT).mean())
    assert unet.base.means["iou"] == pytest.approx(0.8)
    assert unet.other.means["iou"] == pytest.approx(sum(TP3) / 80)
    raw = {
        "unet": stats.wilcoxon(B + LIFT, B + 0.05).pvalue,
        "segnet": stats.wilcoxon(B - LIFT / 2, B).pvalue,
    }
    low, high = sorted(raw, key=raw.get)
    holm = {low: min(1, 2 * raw[low])}
    holm[high] = min(1, max(holm[low], raw[high]))
    assert unet.p["map"] == pytest.approx(holm["unet"])
    assert segnet.p["map"] == pytest.approx(holm["segnet"])
    assert segnet.p["iou"] == 1.0  # identical pixels: no difference to test
    iou_raw = stats.wilcoxon(np.array(TP3) / 10, np.full(8, 0.8)).pvalue
    assert unet.p["iou"] == pytest.approx(min(1, 2 * min(iou_raw, 1.0)))


def test_table_spells_each_pair_as_binary_then_target(records):
    lines = target_table(records)
    assert lines[0] == "## Instance-aware targets against binary"
    unet = next(line for line in lines if line.startswith("| unet |"))
    lead = (B + LIFT).mean() - (B.mean() + 0.05)
    assert unet.startswith(
        "| unet | boundary3 | 0, 1 | distance_watershed → seeded_watershed "
        f"| {B.mean() + 0.05:.3f} → {(B + LIFT).mean():.3f} | {lead:+.3f} (p "
    )
    # merges: 4 odd images of 8 have one each, on both sides
    assert unet.endswith("| 4 → 4 | 8 → 8 |")


def test_a_study_with_one_target_has_no_section_and_the_report_places_it(records):
    binary_only = [r for r in records if r["config"]["target"] == "binary"]
    assert target_table(binary_only) == []
    assert "Instance-aware" not in render_postprocess_study("dsb2018", binary_only, [])
    text = render_postprocess_study("dsb2018", records, [])
    assert text.index("## Instance-aware targets") < text.index("## Scores per image type")
