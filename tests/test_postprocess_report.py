"""`seg-bench leaderboard --by postprocess`: each (model, target) against each method, and
scores per imaging type, from the per-image method scores that DSB records keep."""

import csv
import json

import numpy as np
import pytest
from result_records import fake_record

from seg_bench.config import resolve_config
from seg_bench.errors import UserError
from seg_bench.evaluation.evaluate import image_record
from seg_bench.inference.postprocess import PostprocessConfig
from seg_bench.protocol.method_scores import method_scores
from seg_bench.protocol.postprocess_report import method_table, type_table


def scores(map_, tp, fp, fn, splits=0, merges=0):
    return {
        "map": map_,
        "ap50": min(1.0, map_ + 0.2),
        "ap75": map_ / 2,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "splits": splits,
        "merges": merges,
    }


def image(i, kind, methods):
    truth = np.zeros((8, 8), np.uint8)
    truth[2:5, 2:5] = 1
    rec, _ = image_record(truth * 0.9, truth, truth, "dsb", PostprocessConfig())
    return {"id": f"img{i}", **rec, "type": kind, "methods": methods}


@pytest.fixture
def records():
    images = [
        image(
            0,
            "fluorescence",
            {
                "threshold_cc": scores(0.5, 2, 0, 2, merges=2),
                "seeded_watershed": scores(0.8, 4, 1, 0, splits=1),
            },
        ),
        image(
            1,
            "histology",
            {
                "threshold_cc": scores(0.3, 1, 1, 1, merges=1),
                "seeded_watershed": scores(0.6, 2, 0, 0),
            },
        ),
    ]
    val = {"threshold_cc": 0.4, "seeded_watershed": 0.7}
    return [record("unet", "boundary3", 0, images, val)]


def test_method_scores_pool_the_object_counts(records):
    s = method_scores(records[0]["metrics"]["per_image"], "threshold_cc")
    assert s["map"] == pytest.approx(0.4)  # (0.5 + 0.3) / 2
    # TP 3, FP 1, FN 3 over both images: F1 = 6 / (6 + 1 + 3).
    assert s["f1"] == pytest.approx(0.6)
    assert (s["splits"], s["merges"], s["images"]) == (0, 3, 2)


def test_method_table_has_a_row_per_model_target_and_method(records):
    rows = method_table(records)
    assert "| unet | boundary3 | seeded_watershed | seed 0: min_size 15 | 0.700 | 0.900 |" in (
        "\n".join(rows)
    )
    # seeded: TP 6, FP 1, FN 0 -> F1 12/13; 1 split, 0 merges.
    assert rows[2].endswith(f"| {12 / 13:.3f} | 1 | 0 |")
    assert len(rows) == 2 + 2


def test_type_table_uses_the_method_best_on_validation(records):
    rows = type_table(records)
    assert rows[0].startswith("| Model | Target | Method (best on val) | mAP all | F1 all |")
    assert "mAP fluorescence (n) | F1 fluorescence | mAP histology (n)" in rows[0]
    assert rows[2] == (
        f"| unet | boundary3 | seeded_watershed | 0.700 | {12 / 13:.3f} | 0.800 (1) "
        f"| {8 / 9:.3f} | 0.600 (1) | 1.000 |"
    )


def test_leaderboard_by_postprocess_writes_and_returns_the_study(tmp_path, records):
    from seg_bench.protocol.records import RECORD_VERSION, record_path
    from seg_bench.protocol.report import write_leaderboard

    results, board = tmp_path / "results", tmp_path / "lb"
    for r in records:
        path = record_path(results, "dsb2018", r["model"], r["seed"], "manual")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**r, "version": RECORD_VERSION}))
    text = write_leaderboard("dsb2018", results, board, n_boot=10, by="postprocess")
    assert "tuned on the **validation split only**" in text
    assert (board / "dsb2018_postprocess.md").read_text() == text
    assert "## Scores per image type" in text
    leaderboard = (board / "dsb2018.md").read_text()
    assert "[dsb2018_postprocess.md](dsb2018_postprocess.md)" in leaderboard
    assert leaderboard.count("| unet |") == 1  # still one row per model


def postprocess_table_of(tmp_path, records):
    """The post-processing table written from ``records``, each under its configuration key."""
    from seg_bench.protocol.records import RECORD_VERSION, record_key, record_path
    from seg_bench.protocol.report import write_leaderboard

    results = tmp_path / "results"
    for r in records:
        path = record_path(results, "dsb2018", r["model"], r["seed"], "manual", record_key(r))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**r, "version": RECORD_VERSION}))
    return write_leaderboard("dsb2018", results, tmp_path / "lb", n_boot=10, by="postprocess")


def test_every_target_of_a_model_is_a_row_of_the_study(tmp_path, records):
    import copy

    binary = copy.deepcopy(records[0])
    binary["config"]["target"] = "binary"
    for m in binary["metrics"]["per_image"]:
        del m["methods"]["seeded_watershed"]
    del binary["metrics"]["postprocess_methods"]["seeded_watershed"]
    text = postprocess_table_of(tmp_path, [records[0], binary])
    assert "| unet | binary | threshold_cc |" in text
    assert "| unet | boundary3 | seeded_watershed |" in text
    assert "| unet | binary | seeded_watershed |" not in text  # no seeds without a seed map


def test_a_variant_of_a_target_is_a_row_of_its_own(tmp_path, records):
    import copy

    touching = copy.deepcopy(records[0])
    touching["config"]["target_options"] = {"reach": 2, "boundary": "touching"}
    text = postprocess_table_of(tmp_path, [records[0], touching])
    assert "| unet | boundary3 | seeded_watershed |" in text
    assert "| unet | boundary3 (boundary touching, reach 2) | seeded_watershed |" in text


def test_a_network_tested_with_tta_is_a_row_of_its_own(tmp_path, records):
    import copy

    tta = copy.deepcopy(records[0])
    tta["config"]["tta"] = True
    text = postprocess_table_of(tmp_path, [records[0], tta])
    assert "| unet | boundary3 | seeded_watershed |" in text
    assert "| unet | boundary3 + TTA | seeded_watershed |" in text


def test_records_without_method_scores_are_one_line(tmp_path, records):
    from seg_bench.protocol.records import RECORD_VERSION, record_path
    from seg_bench.protocol.report import write_leaderboard

    results, board = tmp_path / "results", tmp_path / "lb"
    r = records[0]
    for i in r["metrics"]["per_image"]:
        del i["methods"]
    path = record_path(results, "dsb2018", r["model"], r["seed"], "manual")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**r, "version": RECORD_VERSION}))
    with pytest.raises(UserError, match="no result record holds per-method scores"):
        write_leaderboard("dsb2018", results, board, n_boot=10, by="postprocess")
    assert not board.exists() or not any(board.glob("dsb2018*"))


def record(model, target, seed, per_image, val):
    methods = {m: {"params": {"min_size": 15}, "val_map": v} for m, v in val.items()}
    return fake_record(
        model,
        seed,
        per_image,
        config={"loss": "bce_dice", "target": target},
        metrics={"postprocess_methods": methods},
        dataset="dsb2018",
        train_time_s=1.0,
    )


def test_leaderboard_row_follows_validation_not_test(records):
    """Two targets of one model: boundary3's best method on validation is seeded_watershed
    (val 0.7; test mAP 0.7); binary's threshold_cc has the higher validation mAP (0.75) but the
    lower test mAP (0.4). The row must be binary + threshold_cc, scored on its test mAP."""
    import copy

    from seg_bench.protocol.instance_choice import choose_instance_rows

    binary = copy.deepcopy(records[0])
    binary["config"]["target"] = "binary"
    binary["config"]["lr"] = 0.002  # another configuration key
    binary["metrics"]["postprocess_methods"] = {
        "threshold_cc": {"params": {}, "val_map": 0.75},
        "seeded_watershed": {"params": {}, "val_map": 0.1},
    }
    before = copy.deepcopy(binary)
    rows = choose_instance_rows([records[0], binary])
    assert len(rows) == 1
    row = rows[0]
    assert row["instance_choice"] == {"target": "binary", "method": "threshold_cc", "val_map": 0.75}
    assert [i["dsb_map"] for i in row["metrics"]["per_image"]] == [0.5, 0.3]
    assert row["metrics"]["overall"]["dsb_map"] == pytest.approx(0.4)
    assert binary == before  # the loaded records are left as they were


def test_validation_ties_go_to_the_first_target_and_method_by_name(records):
    from seg_bench.protocol.instance_choice import choose_instance_rows

    records[0]["metrics"]["postprocess_methods"]["threshold_cc"]["val_map"] = 0.7  # = seeded
    (row,) = choose_instance_rows(records)
    assert row["instance_choice"]["method"] == "seeded_watershed"  # 's' < 't'
    assert row["metrics"]["overall"]["dsb_map"] == pytest.approx(0.7)


def test_written_leaderboard_scores_the_chosen_method(tmp_path, records):
    from seg_bench.protocol.records import RECORD_VERSION, record_path
    from seg_bench.protocol.report import write_leaderboard

    results, board = tmp_path / "results", tmp_path / "lb"
    r = records[0]
    path = record_path(results, "dsb2018", r["model"], r["seed"], "manual")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**r, "version": RECORD_VERSION}))
    text = write_leaderboard("dsb2018", results, board, n_boot=10)
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("| unet |"))
    assert "| 0.700 [" in row  # seeded_watershed's test mAP (0.8 + 0.6) / 2, not the main one
    head = next(line for line in lines if line.startswith("| Model |"))
    cells, titles = row.split(" | "), head.split(" | ")
    assert cells[titles.index("Target, method (val mAP)")] == "boundary3, seeded_watershed (0.700)"
    note = next(i for i, line in enumerate(lines) if line.startswith("**Instance scores**"))
    assert "chosen on the validation split only" in lines[note]
    assert note < lines.index(head)  # stated above the table, not under it
    csv_rows = list(csv.DictReader((board / "dsb2018.csv").read_text().splitlines()))
    assert (csv_rows[0]["target"], csv_rows[0]["method"]) == ("boundary3", "seeded_watershed")
    assert float(csv_rows[0]["dsb_map"]) == pytest.approx(0.7)
    assert float(csv_rows[0]["val_map"]) == pytest.approx(0.7)


def test_the_seed_mean_of_validation_chooses_and_paired_tests_score_the_choice(records):
    """binary: threshold_cc's val mAP is 0.9 on seed 0 but 0.1 on seed 1 (mean 0.5);
    boundary3: seeded_watershed 0.6 on both seeds (mean 0.6). A choice by the first or the
    best seed would take binary; the mean over seeds takes boundary3 + seeded_watershed."""
    import copy

    from seg_bench.protocol.instance_choice import choose_instance_rows
    from seg_bench.protocol.statistics import per_image_scores, primary_metric

    def seed(target, s, val):
        r = copy.deepcopy(records[0])
        r["seed"], r["config"]["target"] = s, target
        r["metrics"]["postprocess_methods"] = {
            m: {"params": {}, "val_map": v} for m, v in val.items()
        }
        return r

    seeds = [
        seed("binary", 0, {"threshold_cc": 0.9, "seeded_watershed": 0.2}),
        seed("binary", 1, {"threshold_cc": 0.1, "seeded_watershed": 0.2}),
        seed("boundary3", 0, {"threshold_cc": 0.3, "seeded_watershed": 0.6}),
        seed("boundary3", 1, {"threshold_cc": 0.3, "seeded_watershed": 0.6}),
    ]
    seeds[3]["metrics"]["per_image"][0]["methods"]["seeded_watershed"]["map"] = 0.4
    rows = choose_instance_rows(seeds)
    assert [(r["config"]["target"], r["seed"]) for r in rows] == [
        ("boundary3", 0),
        ("boundary3", 1),
    ]
    assert {r["instance_choice"]["method"] for r in rows} == {"seeded_watershed"}
    assert rows[0]["instance_choice"]["val_map"] == pytest.approx(0.6)
    # Seed 0 scores (0.8 + 0.6) / 2 = 0.7 on test, seed 1 (0.4 + 0.6) / 2 = 0.5.
    assert [r["metrics"]["overall"]["dsb_map"] for r in rows] == pytest.approx([0.7, 0.5])
    # The paired tests read per-image scores: the seed means of the chosen method's mAP.
    assert primary_metric(rows) == "dsb_map"
    assert per_image_scores(rows, "dsb_map") == pytest.approx({"img0": 0.6, "img1": 0.6})


def test_targets_are_compared_on_the_seeds_they_share(records):
    """binary has seeds 0-2 (val 0.50, 0.46, 0.47), boundary3 only seed 0 (0.49), as a
    seed-major bench leaves them mid-way: on seed 0, the seed both have, binary leads (0.50 >
    0.49), though boundary3's one seed beats binary's three-seed mean (0.477)."""
    import copy

    from seg_bench.protocol.instance_choice import choose_instance_rows

    def seed(target, s, val):
        r = copy.deepcopy(records[0])
        r["seed"], r["config"]["target"] = s, target
        r["metrics"]["postprocess_methods"] = {"threshold_cc": {"params": {}, "val_map": val}}
        return r

    seeds = [seed("binary", s, v) for s, v in enumerate((0.50, 0.46, 0.47))]
    rows = choose_instance_rows([*seeds, seed("boundary3", 0, 0.49)])
    assert [(r["config"]["target"], r["seed"]) for r in rows] == [
        ("binary", 0),
        ("binary", 1),
        ("binary", 2),
    ]
    assert rows[0]["instance_choice"]["val_map"] == pytest.approx(0.50)  # on the shared seed


def test_header_names_the_loss_of_every_target(records):
    import copy

    from seg_bench.protocol.header import provenance_lines

    binary = copy.deepcopy(records[0])
    binary["config"].update(target="binary", loss="bce_dice")
    records[0]["config"]["loss"] = "boundary3_ce_dice"
    budget = next(
        line for line in provenance_lines("dsb2018", records + [binary]) if "Budget" in line
    )
    assert "loss bce_dice, boundary3_ce_dice," in budget


def test_instance_rows_are_ordered_by_map_not_pixel_iou(records):
    import copy

    from seg_bench.protocol.report import summarise

    pixel_better = copy.deepcopy(records[0])
    pixel_better["model"] = "segnet"
    pixel_better["metrics"]["overall"].update(iou=0.9, dsb_map=0.3)
    records[0]["metrics"]["overall"].update(iou=0.5, dsb_map=0.6)
    assert all("dsb_map" in i for i in records[0]["metrics"]["per_image"])
    assert [r["model"] for r in summarise([pixel_better, records[0]], n_boot=10)] == [
        "unet",
        "segnet",
    ]


def test_parameters_shown_are_the_lowest_seeds_and_say_so(records):
    import copy

    later = copy.deepcopy(records[0])
    later["seed"] = 2
    later["metrics"]["postprocess_methods"]["threshold_cc"]["params"] = {"min_size": 30}
    rows = "\n".join(method_table([later, records[0]]))  # seed 2 first, as a folder may list
    assert "| threshold_cc | seed 0: min_size 15 |" in rows
    assert "| threshold_cc | seed 2: min_size 30 |" in "\n".join(method_table([later]))


def test_records_without_method_scores_keep_the_plain_leaderboard():
    from seg_bench.protocol.report import render_markdown, summarise, with_instance_choice

    truth = np.zeros((8, 8), np.uint8)
    truth[2:5, 2:5] = 1
    rec, _ = image_record(truth * 0.9, truth, truth, "dsb", PostprocessConfig())
    plain = [fake_record("unet", 0, [{"id": "a", **rec}, {"id": "b", **rec}])]
    kept = with_instance_choice(plain, plain)
    assert len(kept) == 1 and kept[0] is plain[0]  # the same record, not a rescored copy
    text = render_markdown("toy", summarise(kept, n_boot=10), kept)
    assert "Target, method" not in text and "**Instance scores**" not in text


def test_the_reproduce_line_covers_every_target_the_choice_compared(tmp_path, records):
    """The row is boundary3's; the binary record lost on validation but took part in the
    choice, so rerunning the table needs both benches."""
    import copy

    from seg_bench.protocol.records import RECORD_VERSION, record_path_for
    from seg_bench.protocol.report import write_leaderboard

    binary = copy.deepcopy(records[0])
    binary["config"]["target"] = "binary"
    binary["metrics"]["postprocess_methods"] = {"threshold_cc": {"params": {}, "val_map": 0.3}}
    for r in (records[0], binary):
        cfg = resolve_config("dsb2018", "unet", "cpu", target=r["config"]["target"])
        r["config"] = {**cfg.to_dict(), **{k: r["config"][k] for k in ("target", "loss")}}
        r["profile"] = "cpu"
        path = record_path_for(tmp_path / "results", cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**r, "version": RECORD_VERSION}))
    text = write_leaderboard("dsb2018", tmp_path / "results", tmp_path / "lb", n_boot=10)
    row = next(line for line in text.splitlines() if line.startswith("| unet |"))
    assert "boundary3, seeded_watershed" in row
    reproduce = next(line for line in text.splitlines() if line.startswith("- **Reproduce**"))
    assert "--set target=boundary3" in reproduce
    assert reproduce.count("make bench DATASET=dsb2018") == 2  # binary's command too
