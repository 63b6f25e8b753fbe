"""The leaderboard's comparison of TTA with plain testing, and the header's Testing line."""

from __future__ import annotations

import numpy as np
import pytest
from result_records import fake_record
from scipy import stats

from seg_bench.protocol.header import tta_line
from seg_bench.protocol.records import select_records
from seg_bench.protocol.tta_comparison import tta_pairs, tta_section


def image(i: int, tp: int, fp: int, fn: int) -> dict:
    confmat = [[1000 - tp - fp - fn, fp], [fn, tp]]
    return {"id": f"img{i}", "confmat": confmat, "hist_pos": [fn, tp], "hist_neg": [1, 1]}


def run(model: str, seed: int, tta: bool, n: int = 6, lr: float = 0.001) -> dict:
    """Plain: image i has tp 50, fp 10, fn 10 + i + seed; TTA recovers 4 + (i % 3) of the
    missed pixels on every image, so TTA's per-image IoU is higher on each."""
    gain = [4 + (i % 3) if tta else 0 for i in range(n)]
    per_image = [image(i, 50 + g, 10, 10 + i + seed - g) for i, g in enumerate(gain)]
    speed = {"inference_mpix_per_s": 0.5 if tta else 4.0}
    return fake_record(
        model, seed, per_image, config={"model": model, "tta": tta, "lr": lr}, metrics=speed
    )


def iou(tp: int, fp: int, fn: int) -> float:
    return tp / (tp + fp + fn)


@pytest.fixture
def records():
    recs = [run("unet", s, tta) for s in (0, 1) for tta in (False, True)]
    recs.append(run("unet", 2, False))  # no TTA twin: not compared
    recs.append(run("segnet", 0, True))  # no plain twin: not compared
    recs.append(run("segnet", 0, False, lr=0.01))  # another configuration, not its twin
    return recs


def test_tta_is_paired_with_its_plain_twin_on_shared_seeds_by_a_wilcoxon_over_images(records):
    [pair] = tta_pairs(records)
    assert (pair.model, pair.seeds) == ("unet", [0, 1])
    plain = [np.mean([iou(50, 10, 10 + i + s) for s in (0, 1)]) for i in range(6)]
    tta = [np.mean([iou(54 + i % 3, 10, 6 + i + s - i % 3) for s in (0, 1)]) for i in range(6)]
    assert pair.p == pytest.approx(stats.wilcoxon(tta, plain).pvalue)  # one model: no Holm
    assert pair.p == pytest.approx(2 / 2**6)  # every image favours TTA: the exact floor
    assert pair.tta_leads and pair.p_floor == pytest.approx(pair.p)
    pooled_plain = np.mean(
        [50 * 6 / (50 * 6 + 10 * 6 + sum(10 + i + s for i in range(6))) for s in (0, 1)]
    )
    assert pair.mean("plain", "iou") == pytest.approx(pooled_plain)
    assert pair.mean("tta", "inference") == 0.5


def test_section_shows_plain_then_tta_and_holm_over_models():
    records = [
        run(m, s, tta, n=7) for m in ("unet", "resunet") for s in (0, 1) for tta in (False, True)
    ]
    pairs = tta_pairs(records)
    assert [p.model for p in pairs] == ["resunet", "unet"]
    assert [p.p for p in pairs] == pytest.approx([2 * 2 / 2**7] * 2)  # Holm over 2 models
    text = tta_section(records)
    assert "## Test-time augmentation against plain testing" in text
    row = next(line for line in text.splitlines() if line.startswith("| unet |"))
    plain, tta = pairs[1].mean("plain", "iou"), pairs[1].mean("tta", "iou")
    assert f"{plain:.3f} → {tta:.3f} ({tta - plain:+.3f}), p 0.0312" in row
    assert "4.00 → 0.50" in row
    assert "Below 0.05 (Holm-adjusted) a difference counts." in text


def test_too_few_images_say_that_no_difference_can_be_significant(records):
    recs = [run("unet", 0, tta, n=4) for tta in (False, True)]
    text = tta_section(recs)
    assert "smallest attainable p-value after Holm over 1 model(s) is 0.125" in text
    records += [run("resunet", 0, tta) for tta in (False, True)]  # 6 images: 2 x 2/64
    assert "after Holm over 2 model(s) is 0.0625" in tta_section(records)
    assert tta_section([r for r in recs if not r["config"]["tta"]]) == ""


def test_tta_line_names_the_models_tested_each_way(records):
    plain = [r for r in records if not r["config"]["tta"]]
    assert tta_line(plain) == "- **Testing**: plain (no test-time augmentation)"
    only_tta = [r for r in records if r["config"]["tta"]]
    assert tta_line(only_tta).startswith("- **Testing**: D4 test-time augmentation")
    mixed = tta_line(only_tta[:1] + [run("resunet", 0, False)])
    assert mixed.endswith("`--tta`) for unet; plain for resunet")
    both = "plain and with TTA, as variants, for segnet, unet"
    assert tta_line(records) == "- **Testing**: " + both
    with_plain = tta_line(records + [run("resunet", 0, False)])
    assert with_plain == "- **Testing**: plain for resunet; " + both


@pytest.mark.parametrize("order", [1, -1])
def test_a_variant_tested_in_its_twins_second_is_the_newer_record(order):
    plain, tta = run("unet", 0, False), run("unet", 0, True)
    plain["created"] = tta["created"] = "2026-12-07T18:33:33+0000"
    tta["tested"] = {"from": "unet__seed0__plain.json"}
    chosen, left_out = select_records([plain, tta][::order], "cpu")
    assert chosen == [tta] and left_out == [plain]


def test_an_em_score_older_records_lack_shows_where_present_and_a_dash_elsewhere():
    def em(record, thinned):
        extra = {"vrand": 0.8 + 0.05 * record["config"]["tta"]}
        if thinned:
            extra["vrand_thinned"] = 0.9 + 0.03 * record["config"]["tta"]
        overall = dict(record["metrics"]["overall"], **extra)
        return dict(record, metrics=dict(record["metrics"], overall=overall))

    both = (False, True)
    recs = [em(run(m, 0, tta), thinned=m == "unet") for m in ("unet", "segnet") for tta in both]
    lines = tta_section(recs).splitlines()
    assert "| V_rand | V_rand thinned |" in next(x for x in lines if x.startswith("| Model"))
    unet = next(x for x in lines if x.startswith("| unet"))
    segnet = next(x for x in lines if x.startswith("| segnet"))
    assert "0.900 → 0.930 (+0.030)" in unet and "0.800 → 0.850 (+0.050)" in unet
    assert segnet.split(" | ").count("–") == 1 and "0.800 → 0.850" in segnet
    none = [em(run("unet", 0, tta), thinned=False) for tta in both]
    assert "V_rand thinned" not in tta_section(none)
