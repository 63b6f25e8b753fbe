"""DSB 2018 imaging types: from image_types.csv where it lists an image, else from a rule on
the pixels (colour -> histology, bright background -> brightfield, else fluorescence) that
agrees with image_types.csv on the real training images."""

import csv
import json
import os

import numpy as np
import pytest
from conftest import real_data
from data_fixtures import png, write_dsb, write_dsb_test

import seg_bench.data.datasets.dsb2018 as dsb
from seg_bench.data.check import check_dataset, format_summary
from seg_bench.data.datasets.dsb2018 import DSB2018, image_type, types_from_pixels
from seg_bench.data.io import read_image
from seg_bench.errors import DataError


def test_rule_on_hand_made_images():
    dark = np.full((20, 20, 3), 15, np.uint8)
    dark[5:10, 5:10] = 200  # bright nuclei on a dark background
    bright = 255 - dark
    pink = np.dstack([np.full((20, 20), 230), np.full((20, 20), 160), np.full((20, 20), 210)])
    pink[5:10, 5:10] = (90, 40, 140)  # purple nuclei on pink tissue
    assert image_type(dark) == "fluorescence"
    assert image_type(bright) == "brightfield"
    assert image_type(pink.astype(np.uint8)) == "histology"
    assert image_type(dark[..., 0]) == "fluorescence"  # grey 2-D images too


def test_official_test_images_without_types_are_typed_by_their_pixels(tmp_path):
    root = tmp_path / "dsb2018"
    write_dsb(root, n_images=6, grey_bright=2)
    write_dsb_test(root, n_images=2)
    with open(root / "image_types.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageId", "type"])
        for i, d in enumerate(sorted((root / "stage1_train").iterdir())):
            w.writerow([d.name, "brightfield" if i < 2 else "fluorescence"])
    dm = DSB2018(root=root, val_fraction=0.2)
    test = dm.load_split("test")
    assert {s.meta["type"] for s in test} == {"fluorescence"}  # dark background, grey
    assert {s.meta["type_from"] for s in test} == {"pixels"}
    train = dm.load_split("train") + dm.load_split("val")
    assert {s.meta["type_from"] for s in train} == {"image_types.csv"}
    summary = check_dataset("dsb2018", root=root, val_fraction=0.2)
    assert summary.splits["test"].types == {"fluorescence": 2}
    assert summary.total.types == {"brightfield": 2, "fluorescence": 6}
    assert "image types:\n" in format_summary(summary)
    assert "  test: fluorescence 2" in format_summary(summary)


def test_an_unknown_type_in_image_types_csv_is_one_line_naming_the_file(tmp_path):
    root = tmp_path / "dsb2018"
    write_dsb(root, n_images=4)
    with open(root / "image_types.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageId", "type"])
        for d in sorted((root / "stage1_train").iterdir()):
            w.writerow([d.name, "phase-contrast"])
    with pytest.raises(DataError, match=r"image_types.csv: image \w+ has type 'phase-contrast'"):
        DSB2018(root=root).layout()


def test_a_colour_image_without_a_csv_row_is_histology(tmp_path):
    root = tmp_path / "dsb2018"
    write_dsb(root, n_images=3, grey_bright=0)
    first = sorted((root / "stage1_train").iterdir())[0]
    image_path = first / "images" / f"{first.name}.png"
    rgba = read_image(image_path)
    tinted = np.dstack(
        [rgba[..., 0], rgba[..., 1] // 2, rgba[..., 2], np.full(rgba.shape[:2], 255)]
    )
    png(image_path, tinted.astype(np.uint8), "RGBA")
    dm = DSB2018(root=root, test_fraction=0.34)
    types = {s.id: s.meta["type"] for k in ("train", "val", "test") for s in dm.load_split(k)}
    assert types[first.name] == "histology"


@pytest.mark.data
def test_rule_agrees_with_image_types_csv_on_the_real_training_images():
    root = real_data("dsb2018")
    with open(root / "image_types.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    agree = [
        image_type(
            read_image(root / "stage1_train" / r["ImageId"] / "images" / f"{r['ImageId']}.png")
        )
        == r["type"]
        for r in rows
    ]
    share = float(np.mean(agree))
    print(f"image type rule agrees with image_types.csv on {sum(agree)}/{len(agree)} = {share:.1%}")
    assert len(rows) == 155
    assert share >= 0.95


def test_pixel_types_are_cached_per_file_and_redone_where_a_file_or_the_rule_changed(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("SEG_BENCH_CACHE", str(tmp_path / "cache"))
    write_dsb(tmp_path / "dsb", n_images=4, grey_bright=2)
    images = {
        d.name: d / "images" / f"{d.name}.png"
        for d in sorted((tmp_path / "dsb" / "stage1_train").iterdir())
    }
    expected = {i: image_type(read_image(p)) for i, p in images.items()}
    assert set(expected.values()) == {"brightfield", "fluorescence"}
    assert types_from_pixels(images) == expected
    typed = []
    monkeypatch.setattr(dsb, "image_type", lambda im: typed.append(1) or image_type(im))
    assert types_from_pixels(images) == expected and typed == []  # all from the cache
    first = next(iter(images.values()))
    os.utime(first, ns=(1, 1))  # a replaced file: its type is read again
    assert types_from_pixels(images) == expected and len(typed) == 1
    monkeypatch.setattr(dsb, "TYPE_RULE", "another rule")
    assert types_from_pixels(images) == expected and len(typed) == 5
    cache = tmp_path / "cache" / "dsb2018_types.json"
    assert json.loads(cache.read_text())["rule"] == "another rule"
    cache.write_text("{not json")
    assert types_from_pixels(images) == expected and len(typed) == 9
