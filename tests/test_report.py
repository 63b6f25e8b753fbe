"""Leaderboard statistics: seed mean/std, bootstrap intervals over test images, Markdown and CSV."""

import csv
import io

import numpy as np
import pytest
from result_records import fake_record

from seg_bench.evaluation.evaluate import aggregate, image_record
from seg_bench.inference.postprocess import PostprocessConfig
from seg_bench.protocol.report import bootstrap_ci, render_csv, render_markdown, summarise


def per_image_stats(rng, n_images, noise):
    out = []
    for i in range(n_images):
        truth = (rng.random((32, 32)) < 0.3).astype(np.uint8)
        prob = np.clip(truth * 0.8 + rng.normal(0.1, noise, truth.shape), 0, 1)
        rec, _ = image_record(
            prob, truth, truth, None, PostprocessConfig.from_dict({"threshold": 0.5})
        )
        out.append({"id": f"img{i}", **rec})
    return out


@pytest.fixture
def records():
    rng = np.random.default_rng(0)
    good = [fake_record("good", s, per_image_stats(rng, 6, 0.15)) for s in range(3)]
    poor = [fake_record("poor", 0, per_image_stats(rng, 6, 0.4))]
    return good + poor


def test_seed_mean_and_sample_std_and_ranking(records):
    rows = summarise(records, n_boot=50)
    assert [r["model"] for r in rows] == ["good", "poor"]  # ranked by IoU
    ious = [r["metrics"]["overall"]["iou"] for r in records[:3]]
    assert rows[0]["iou"] == pytest.approx(np.mean(ious))
    assert rows[0]["iou_std"] == pytest.approx(np.std(ious, ddof=1))
    assert rows[0]["seeds"] == 3 and rows[0]["train_time_s"] == pytest.approx(11.0)
    assert np.isnan(rows[1]["iou_std"])  # one seed has no spread to report


def test_pooled_iou_interval_lies_between_the_worst_and_best_image(records):
    # Pooled IoU is a mediant of the per-image ratios, so any resample lies within their range.
    one = records[3]
    per = [aggregate([p])["iou"] for p in one["metrics"]["per_image"]]
    lo, hi = bootstrap_ci([one], "iou", n_boot=200)
    assert min(per) <= lo <= one["metrics"]["overall"]["iou"] <= hi <= max(per)
    assert lo < hi


def test_identical_images_collapse_the_interval():
    rng = np.random.default_rng(1)
    [img] = per_image_stats(rng, 1, 0.2)
    rec = fake_record("m", 0, [dict(img, id=f"i{k}") for k in range(5)])
    lo, hi = bootstrap_ci([rec], "dice", n_boot=100)
    assert lo == pytest.approx(hi) == pytest.approx(rec["metrics"]["overall"]["dice"])


def test_the_bootstrap_pairs_seeds_by_image_id_not_by_position(records):
    # One seed's images in another order resample the same images as before, not others.
    a, b = records[0], records[1]
    shuffled = dict(b, metrics={**b["metrics"], "per_image": b["metrics"]["per_image"][::-1]})
    assert bootstrap_ci([a, shuffled], "iou", n_boot=100) == bootstrap_ci([a, b], "iou", n_boot=100)


def test_markdown_shows_std_only_with_several_seeds_and_csv_round_trips(records):
    rows = summarise(records, n_boot=50)
    md = render_markdown("toy", rows, records)
    good = next(line for line in md.splitlines() if line.startswith("| good |"))
    poor = next(line for line in md.splitlines() if line.startswith("| poor |"))
    assert f"{rows[0]['iou']:.3f} ± {rows[0]['iou_std']:.3f}" in good
    assert "±" not in poor and f"{rows[1]['iou']:.3f} [" in poor
    assert "precision 32-true" in md and "SEEDS=3" in md
    parsed = list(csv.DictReader(io.StringIO(render_csv(rows))))
    assert [p["model"] for p in parsed] == ["good", "poor"]
    assert [p["steps"] for p in parsed] == ["4", "4"]  # 1 epoch of 8 patches, batch 2
    for p, r in zip(parsed, rows, strict=True):
        for key in ("iou", "kappa", "auroc", "fnr"):
            assert float(p[key]) == pytest.approx(r[key])
            assert (float(p[f"{key}_ci_low"]), float(p[f"{key}_ci_high"])) == pytest.approx(
                r[f"{key}_ci"]
            )


def test_timing_columns_split_by_machine_when_seeds_ran_on_several(records):
    # A mean train time over a 2-core EPYC and a Xeon would time neither machine.
    xeon = {"cpu": "Xeon", "cores": 2, "gpu": None, "isa": "amx_bf16"}
    records[1]["hardware"] = xeon
    records[1]["train_time_s"] = 5.0  # the others took 11 s
    records[1]["metrics"]["inference_mpix_per_s"] = 3.0
    records[2]["metrics"]["inference_mpix_per_s"] = 1.0
    gpu = {"cpu": "x", "cores": 16, "gpu": "NVIDIA H200"}
    records[3]["rescored"] = {"hardware": gpu}  # inference speed then comes from the GPU
    rows = summarise(records, n_boot=20)
    md = render_markdown("toy", rows, records)
    assert (
        "- **Hardware**: [1] 2 CPU cores (Xeon, amx_bf16); [2] 2 CPU cores (test, avx2); tested "
        "again from checkpoints on [3] NVIDIA H200"
    ) in md
    head = next(line for line in md.splitlines() if line.startswith("| Model |"))
    assert "Train time (s) [machine]" in head and "Inference (MPix/s) [machine]" in head
    good = next(line for line in md.splitlines() if line.startswith("| good |")).split(" | ")
    poor = next(line for line in md.splitlines() if line.startswith("| poor |")).split(" | ")
    # train times 10 + seed, seed 1's replaced: seeds 0 and 2 on [2] average 11
    assert good[2] == "5 [1] · 11 [2]" and poor[2] == "10 [2]"
    assert good[-1] == "3.00 [1] · 1.00 [2] |" and poor[-1] == "1.00 [3] |"
    assert rows[0]["train_time_s"] == pytest.approx(9.0)  # the CSV keeps the mean of all seeds
    # one machine: plain cells, no numbers
    for r in records:
        r["hardware"] = xeon
        r.pop("rescored", None)
    md = render_markdown("toy", summarise(records, n_boot=20), records)
    assert "[1]" not in md and "| Train time (s) |" in md


def test_weak_label_runs_never_rank_on_the_leaderboard(tmp_path, records):
    import json

    from seg_bench.protocol.records import RECORD_VERSION, record_path
    from seg_bench.protocol.report import write_leaderboard

    results, board = tmp_path / "results", tmp_path / "lb"
    (board).mkdir()
    (board / "synthetic.md").write_text("earlier leaderboard\n")
    for r in records[:3]:
        r = {**r, "version": RECORD_VERSION, "labels": "floodfill"}
        r["data"] = {
            **r["data"],
            "weak_label_quality": {"train": {"iou": 0.4, "dice": 0.57, "kappa": 0.5}},
        }
        path = record_path(results, "synthetic", r["model"], r["seed"], "floodfill")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))
    md = write_leaderboard("synthetic", results, board, n_boot=20)
    assert "kappa (floodfill)" in md and "| floodfill | 0.400 |" in md
    assert (board / "synthetic_labels.md").read_text() == md
    assert "`make bench DATASET=synthetic PROFILE=cpu SEEDS=3 MODELS=good LABELS=floodfill`" in md
    # Only weak-label runs on disk: the leaderboard of manual-mask runs is left as it was.
    assert (board / "synthetic.md").read_text() == "earlier leaderboard\n"
    assert not (board / "synthetic.csv").exists()


def test_leaderboard_ranks_models_by_paired_tests_and_names_them(tmp_path, records):
    import json

    from seg_bench.protocol.records import RECORD_VERSION, record_path
    from seg_bench.protocol.report import write_leaderboard

    results, board = tmp_path / "results", tmp_path / "lb"
    rng = np.random.default_rng(5)
    twin = [fake_record("twin", s, per_image_stats(rng, 6, 0.15)) for s in range(2)]
    for r in records + twin:
        path = record_path(results, "toy", r["model"], r["seed"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**r, "version": RECORD_VERSION}))
    md = write_leaderboard("toy", results, board, n_boot=20)
    assert "two-sided Wilcoxon signed-rank test on per-image IoU (6 test images" in md
    assert "Holm-corrected over 3 model pairs at alpha 0.05" in md
    # 6 images, 3 pairs: the smallest Holm p is 3 x 2/2^6 = 0.094, so nothing can separate.
    assert "(every difference of one sign) is 0.0312" in md and "too small for any" in md
    assert "| Model | Rank | Params (M) |" in md
    assert md.count("| 1 | 0.00 |") == 3  # every model shares rank 1
    parsed = list(csv.DictReader(io.StringIO((board / "toy.csv").read_text())))
    assert [p["rank"] for p in parsed] == ["1", "1", "1"]
    summary = (board / "README.md").read_text()
    assert "| good |" in summary and "too few results" in summary  # one dataset only


def test_budget_line_names_each_models_learning_rate_and_how_it_was_chosen():
    from seg_bench.protocol.header import learning_rates

    image = per_image_stats(np.random.default_rng(0), 2, 0.2)
    same = [fake_record("unet", 0, image), fake_record("segnet", 0, image)]
    assert learning_rates(same) == "adam lr 0.001"
    chosen = {"lr": 0.002, "lr_source": "seg-bench lr-find (benchmarks/lr_find/toy_cpu.json)"}
    mixed = [fake_record("unet", 0, image, config=chosen), *same[1:]]
    assert learning_rates(mixed) == (
        "segnet adam lr 0.001; unet adam lr 0.002 "
        "(learning rates: seg-bench lr-find (benchmarks/lr_find/toy_cpu.json))"
    )
    grid = {"lr_source": "a grid kept 1e-3"}
    pending = {"lr_source": "1e-3 until a second seed decides"}
    two = [
        fake_record(m, s, image, config=c)
        for m, c in [("unet", grid), ("segnet", grid), ("resunet", pending)]
        for s in (0, 1)
    ]
    assert learning_rates(two) == (
        "adam lr 0.001 (learning rates: resunet: 1e-3 until a second seed decides; "
        "segnet, unet: a grid kept 1e-3)"
    )


def test_budget_line_takes_todays_source_where_the_profile_still_gives_the_records_rate():
    from seg_bench.config import resolve_config
    from seg_bench.protocol.header import learning_rates

    today = resolve_config("synthetic", "unet", "cpu")
    image = per_image_stats(np.random.default_rng(0), 2, 0.2)
    old_note = {"lr": today.lr, "optimizer": today.optimizer, "lr_source": "search pending"}
    record = fake_record("unet", 0, image, config=old_note, profile="cpu")
    assert learning_rates([record], "synthetic").endswith(f"(learning rates: {today.lr_source})")
    other_rate = fake_record("unet", 0, image, config={**old_note, "lr": 0.5}, profile="cpu")
    assert learning_rates([other_rate], "synthetic").endswith("(learning rates: search pending)")
    assert learning_rates([record]).endswith("(learning rates: search pending)")  # no dataset


def test_header_names_the_evaluation_version_and_flags_a_mix():
    from seg_bench.protocol.header import evaluation_line

    v1 = {"dataset": "dsb2018", "metrics": {}}
    v2 = {"dataset": "dsb2018", "metrics": {"evaluation_version": 2}}
    assert evaluation_line([v2, v2]).startswith("evaluation v2 (**stale**: 2 record(s)")
    epfl = {"dataset": "epfl", "metrics": {"evaluation_version": 2}}  # no change reaches it
    assert evaluation_line([epfl]) == "evaluation v2"
    assert evaluation_line([v1]).startswith("evaluation v1 (**stale**")
    mixed = evaluation_line([v1, v2, v2])
    assert "mixed" in mixed and "v1 (1 records), v2 (2 records)" in mixed and "--rescore" in mixed
    # v2 changed only DSB's method study: EPFL records of v1 and v2 score alike, and say why.
    alike = evaluation_line([{**v1, "dataset": "epfl"}, {**v2, "dataset": "epfl"}])
    assert "mixed" not in alike and alike.startswith("evaluation v1 (1 records), v2 (1 records)")
    assert "score these records alike" in alike and "v2: post-processing grids" in alike
    assert "stale" not in alike  # no later change reaches EPFL either
    # EPFL runs that fill holes: v1 and v2 score them alike (v2 reached only DSB), v3 does not.
    split = {"dataset": "epfl", "config": {"postprocess": {"fill_holes": True}}}
    both = evaluation_line([{**split, "metrics": {}}, {**split, "metrics": v2["metrics"]}])
    assert "score these records alike" in both and "(**stale**: 2 record(s)" in both
    # DSB binary (v3 last reaches it) and boundary3 (v4) records of v4 beside v5 binary ones:
    # v5 reached only the official test split, so they score alike though their scoring
    # versions differ by target; a v3 boundary3 record among them is not alike (v4 reaches it).
    dsb = {"dataset": "dsb2018", "data": {"split": "seeded"}}
    seeded = {**dsb, "config": {"target": "boundary3"}}
    v4, v5 = {"evaluation_version": 4}, {"evaluation_version": 5}
    targets = [{**dsb, "metrics": v4}, {**seeded, "metrics": v4}, {**dsb, "metrics": v5}]
    assert "score these records alike" in evaluation_line(targets)
    older = {**seeded, "metrics": {"evaluation_version": 3}}
    assert "**evaluation versions mixed**" in evaluation_line([*targets, older])


def test_scoring_version_counts_only_changes_that_reach_the_record():
    from seg_bench.evaluation.evaluate import EVALUATION_VERSION, is_stale, scoring_version

    assert EVALUATION_VERSION == 5  # a new version needs its VERSION_CHANGES entry and a case here
    assert scoring_version({"dataset": "dsb2018", "metrics": {"evaluation_version": 2}}) == 2
    assert scoring_version({"dataset": "dsb2018", "metrics": {}}) == 1
    assert scoring_version({"dataset": "epfl", "metrics": {"evaluation_version": 2}}) == 1
    assert is_stale({"dataset": "dsb2018", "metrics": {}})
    assert not is_stale({"dataset": "dsb2018", "metrics": {"evaluation_version": 4}})
    # v4 (the seeded watershed's grow) reaches DSB models with a seed map only.
    seeded = {"config": {"target": "boundary3"}}
    assert is_stale({"dataset": "dsb2018", **seeded, "metrics": {"evaluation_version": 3}})
    assert not is_stale({"dataset": "dsb2018", "metrics": {"evaluation_version": 3}})
    binary = {"config": {"target": "binary"}}
    assert not is_stale({"dataset": "dsb2018", **binary, "metrics": {"evaluation_version": 3}})
    assert not is_stale({"dataset": "epfl", "metrics": {}})
    # v3 (the distance watershed's ridge markers) reaches DSB and every run that splits by
    # watershed (synthetic nuclei), not EPFL's threshold + components.
    assert is_stale({"dataset": "dsb2018", "metrics": {"evaluation_version": 2}})
    split = {"config": {"postprocess": {"watershed": True}}}
    assert is_stale({"dataset": "synthetic", **split, "metrics": {"evaluation_version": 2}})
    v3 = {"evaluation_version": 3}
    assert scoring_version({"dataset": "synthetic", **split, "metrics": v3}) == 3
    assert not is_stale({"dataset": "synthetic", **split, "metrics": v3})
    assert scoring_version({"dataset": "epfl", "metrics": {"evaluation_version": 3}}) == 1
    # v5 (Usage Ignored left out of the official stage-1 test) reaches official-split records.
    official = {"data": {"split": "official stage1_test; seeded, ... train/val from stage1_train"}}
    v4 = {"evaluation_version": 4}
    assert is_stale({"dataset": "dsb2018", **official, **binary, "metrics": v4})
    assert not is_stale({"dataset": "dsb2018", **seeded, "metrics": v4})  # the seeded split


def test_header_names_the_machine_a_rescore_tested_on():
    from seg_bench.protocol.header import provenance_lines

    rng = np.random.default_rng(1)
    gpu = {"hardware": {"cpu": "x", "cores": 16, "gpu": "NVIDIA H200"}, "commit": "def"}
    recs = [
        fake_record("a", 0, per_image_stats(rng, 2, 0.1)),
        fake_record("a", 1, per_image_stats(rng, 2, 0.1), rescored=gpu),
    ]
    hardware = next(line for line in provenance_lines("toy", recs) if "**Hardware**" in line)
    assert hardware == (
        "- **Hardware**: 2 CPU cores (test, avx2); tested again from checkpoints on NVIDIA H200"
    )
    numbered = provenance_lines("toy", recs, numbered=True)[3]  # a table with timing cells
    assert numbered == (
        "- **Hardware**: [1] 2 CPU cores (test, avx2); tested again from checkpoints on "
        "[2] NVIDIA H200"
    )
    code = next(line for line in provenance_lines("toy", recs) if "**Code**" in line)
    assert code == "- **Code**: commit abc; tested again (--rescore) at def; evaluation v1"
    recs[1]["rescored"] = {"hardware": recs[0]["hardware"]}  # same machine: nothing to add
    assert "tested again" not in next(
        line for line in provenance_lines("toy", recs) if "**Hardware**" in line
    )
    del recs[1]["rescored"]
    recs[1]["tested"] = {"from": "a__seed1__x.json", **gpu}  # a --tta variant tested on the GPU
    lines = provenance_lines("toy", recs)
    assert lines[2] == "- **Testing**: plain (no test-time augmentation)"
    assert lines[3].endswith("tested again from checkpoints on NVIDIA H200")
    assert lines[4] == "- **Code**: commit abc; test variant scored at def; evaluation v1"


def test_overlays_show_the_mask_each_run_was_scored_on_and_match_images_by_id(tmp_path):
    # They thresholded at 0.5 whatever the run's post-processing (EPFL removes objects under
    # 20 px), and paired models' previews by position, not by image.
    from seg_bench.protocol.figures import _same_image, predicted_mask

    prob = np.zeros((16, 16), np.float32)
    prob[1:3, 1:3] = 0.9  # 4 px: removed by min_size 10
    prob[8:14, 8:14] = 0.9
    mask = predicted_mask(prob, {"threshold": 0.5, "min_size": 10})
    assert not mask[1:3, 1:3].any() and mask[8:14, 8:14].all()
    assert predicted_mask(prob, {"no_such_option": 1})[1:3, 1:3].all()  # old record: threshold
    classes = np.stack([1 - prob, prob * 0.3, prob * 0.7])
    assert (predicted_mask(classes, None) == (prob > 0.5)).all()

    np.savez(tmp_path / "a.npz", id0="img-7", id1="img-2", prob0=prob, prob1=prob)
    np.savez(tmp_path / "b.npz", id0="img-2", id1="img-7", prob0=prob, prob1=prob)
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert _same_image(b, a, 0) == 1 and _same_image(b, a, 1) == 0
    np.savez(tmp_path / "c.npz", id0="img-9", prob0=prob)
    assert _same_image(np.load(tmp_path / "c.npz"), a, 0) is None


def test_header_names_every_split_the_records_used():
    from seg_bench.protocol.header import data_line

    rng = np.random.default_rng(2)
    recs = [fake_record(m, 0, per_image_stats(rng, 2, 0.1)) for m in ("a", "b", "c")]
    for r in recs:
        r["data"] |= {"root": "/data/epfl", "split": "train 0-89, val 91-135 (gap 1)"}
    assert data_line("toy", recs) == (
        "- **Data**: `toy` from `/data/epfl`; images per split: test 2; "
        "split: train 0-89, val 91-135 (gap 1)"
    )
    recs[2]["data"]["split"] = "train 0-90, val 91-135 (gap 0)"  # rerun with split_gap 0
    line = data_line("toy", recs)
    assert "**the records differ in their split**" in line
    assert "split train 0-89, val 91-135 (gap 1) (a, b)" in line
    assert "split train 0-90, val 91-135 (gap 0) (c)" in line


def test_thinned_em_scores_get_columns_and_a_note_only_where_records_have_them(records):
    def em(record, thinned):
        overall = dict(record["metrics"]["overall"], vrand=0.8, vinfo=0.85)
        if thinned:
            overall.update(vrand_thinned=0.9, vinfo_thinned=0.95)
        return dict(record, metrics=dict(record["metrics"], overall=overall))

    old = [em(r, thinned=False) for r in records]
    md = render_markdown("toy", summarise(old, n_boot=20), old)
    assert "V_rand |" in md and "V_rand thinned" not in md and "getMaximalVRand" not in md
    mixed = [em(r, thinned=r["model"] == "good") for r in records]
    md = render_markdown("toy", summarise(mixed, n_boot=20), mixed)
    assert "| V_rand | V_info | V_rand thinned | V_info thinned |" in md
    assert "getMaximalVRandAfterThinning" in md
    poor = next(line for line in md.splitlines() if line.startswith("| poor |"))
    good = next(line for line in md.splitlines() if line.startswith("| good |"))
    assert poor.split(" | ").count("–") == 2 and "0.900" in good  # the older record lacks them
