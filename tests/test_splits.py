"""Leak-free splits: contiguous slice blocks with a gap for serial sections, and the DSB 2018
seeded split stratified by image type."""

from __future__ import annotations

import csv
from collections import Counter

import pytest
from conftest import real_data
from data_fixtures import write_dsb
from hypothesis import given, settings
from hypothesis import strategies as st

from seg_bench.data.base import seeded_split
from seg_bench.data.datasets import dsb2018, epfl
from seg_bench.data.io import (
    contiguous_split,
    contiguous_val_split,
    describe_blocks,
    read_image,
    unused_slices,
)
from seg_bench.data.splits import stratified_counts
from seg_bench.errors import DataError, UserError

pytest_plugins = ["data_fixtures"]

# The slices of the EPFL sample in /work/shared/data (27 of the 165 training slices).
EPFL_SAMPLE = [0, 1, 2, 3, 13, 17, 24, 28, 42, 45, 46, 47, 48, 61, 62, 63, 75, 89, 90, 91, 105]
EPFL_SAMPLE += [118, 135, 161, 162, 163, 164]


def assert_leak_free(slices: list[int], blocks: dict[str, list[int]], gap: int) -> None:
    """Every block non-empty, in slice order train | val [| test], and no slice of one
    within ``gap`` of a slice of another; every slice used once or left in a gap."""
    parts = [blocks[k] for k in ("train", "val", "test") if k in blocks]
    assert all(parts) and len(parts) >= 2
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            assert max(a) < min(b) and min(abs(x - y) for x in a for y in b) > gap
    used = [z for p in parts for z in p]
    assert sorted(used) == sorted(set(used)) and set(used) <= set(slices)
    assert sorted(used + unused_slices(slices, blocks)) == sorted(slices)


# --- contiguous blocks -----------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(5, 300),
    gap=st.integers(0, 3),
    val=st.floats(0.05, 0.3),
    test=st.floats(0.05, 0.3),
)
def test_no_slice_of_one_block_within_gap_of_another(n, gap, val, test):
    if n < 3 + 2 * gap:
        with pytest.raises(DataError, match="too few for train/val/test blocks with gap"):
            contiguous_split(n, val, test, "vol.tif", gap)
        return
    blocks = contiguous_split(n, val, test, "vol.tif", gap)
    assert_leak_free(list(range(n)), blocks, gap)
    assert blocks == contiguous_split(n, val, test, "vol.tif", gap)  # reproducible
    # Consecutive slices: exactly `gap` slices are left out at each of the two boundaries.
    assert len(unused_slices(range(n), blocks)) == 2 * gap
    if n >= 40:  # no shrinking for tiny stacks: the held-out blocks keep their rounded share
        assert len(blocks["test"]) == round(test * n) and len(blocks["val"]) == round(val * n)


@settings(max_examples=200, deadline=None)
@given(
    slices=st.sets(st.integers(0, 400), min_size=3, max_size=80),
    gap=st.integers(0, 5),
)
def test_gaps_are_measured_in_slice_indices_when_slices_are_not_consecutive(slices, gap):
    try:
        blocks = contiguous_split(sorted(slices, reverse=True), 0.15, 0.15, "vol.tif", gap)
    except DataError as e:
        assert "too few" in str(e)
        return
    assert_leak_free(sorted(slices), blocks, gap)


@settings(max_examples=200, deadline=None)
@given(
    slices=st.sets(st.integers(0, 400), min_size=2, max_size=80),
    gap=st.integers(0, 5),
    val=st.floats(0.05, 0.3),
)
def test_a_volume_with_its_own_test_set_gets_a_leak_free_validation_block(slices, gap, val):
    order = sorted(slices)
    try:
        blocks = contiguous_val_split(order[::-1], val, "training.tif", gap)
    except DataError as e:
        assert "too few for train/val blocks" in str(e)
        assert order[-1] - order[0] <= gap  # every other slice is within gap of the last
        return
    assert_leak_free(order, blocks, gap)
    assert blocks["val"] == order[-len(blocks["val"]) :]  # the last block, never a draw
    if order[-1] - order[0] > 3 * (gap + 1) and len(order) >= 40:
        assert len(blocks["val"]) == max(1, round(val * len(order)))


def test_isbi2012_volume_of_24_slices():
    blocks = contiguous_split(24, 0.1, 0.2, "train-volume.tif")
    assert blocks == {
        "train": list(range(0, 15)),
        "val": [16, 17],
        "test": [19, 20, 21, 22, 23],
    }
    assert (
        describe_blocks(blocks, 1) == "contiguous blocks, gap 1: train 0-14, val 16-17, test 19-23"
    )


def test_epfl_sample_blocks_follow_slice_order_and_use_its_natural_gaps():
    blocks = contiguous_split(EPFL_SAMPLE, 0.15, 0.15, "training.tif")
    assert blocks["test"] == [161, 162, 163, 164]
    assert blocks["val"] == [91, 105, 118, 135]
    assert blocks["train"] == EPFL_SAMPLE[:18]  # 0 ... 89; slice 90 touches val's 91
    assert unused_slices(EPFL_SAMPLE, blocks) == [90]
    text = "contiguous blocks, gap 1: train 0-89, val 91-135, test 161-164"
    assert describe_blocks(blocks, 1) == text


def test_without_gap_blocks_cover_every_slice():
    assert contiguous_split(30, 0.1, 0.2, "vol.tif", gap=0) == {
        "train": list(range(21)),
        "val": [21, 22, 23],
        "test": list(range(24, 30)),
    }


def test_tiny_stacks_shrink_held_out_blocks_before_failing():
    assert contiguous_split(5, 0.2, 0.4, "vol.tif") == {"train": [0], "val": [2], "test": [4]}
    with pytest.raises(DataError, match=r"vol\.tif: 4 labelled slices are too few .* gap 1"):
        contiguous_split(4, 0.1, 0.2, "vol.tif")
    with pytest.raises(DataError, match="vol.tif: 2 labelled slices are too few"):
        contiguous_split(2, 0.1, 0.2, "vol.tif", gap=0)
    with pytest.raises(DataError, match="split gap -1 is negative"):
        contiguous_split(10, 0.1, 0.2, "vol.tif", gap=-1)


@pytest.mark.data
def test_real_epfl_sample_is_split_leak_free():
    dm = epfl.EPFL(root=real_data("epfl_mito"))
    slices = {k: [int(s.id.split("_")[1]) for s in dm.load_split(k)] for k in ("train", "val")}
    slices["test"] = [int(s.id.split("_")[1]) for s in dm.load_split("test")]
    assert_leak_free(EPFL_SAMPLE, slices, 1)
    info = dm.split_info()
    assert info["split"].startswith("contiguous blocks, gap 1: train 0-89, val 91-135, test 161")
    assert info["unused_slices"] == [90]


# --- seeded and stratified -------------------------------------------------------------------
def test_unstratified_seeded_split_is_unchanged():
    ids = [f"img{i:02d}" for i in range(20)]
    split = seeded_split(ids, {"train": 0.7, "val": 0.15, "test": 0.15}, 0)
    # Recorded from the implementation before stratification was added.
    assert split["val"] == ["img14", "img17", "img18"]
    assert split["test"] == ["img01", "img09", "img15"]
    assert len(split["train"]) == 14


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
    val=st.floats(0.05, 0.3),
    test=st.floats(0.05, 0.3),
)
def test_stratified_split_keeps_each_type_within_one_image_of_its_share(sizes, seed, val, test):
    types = {f"{g}-{i:03d}": f"type{g}" for g, size in enumerate(sizes) for i in range(size)}
    ids = sorted(types)
    if len(ids) < 3:
        return
    fractions = {"train": 1 - val - test, "val": val, "test": test}
    split = seeded_split(ids, fractions, seed, types)
    plain = seeded_split(ids, fractions, seed)
    assert {k: len(v) for k, v in split.items()} == {k: len(v) for k, v in plain.items()}
    assert sorted(i for v in split.values() for i in v) == ids  # a partition
    n = len(ids)
    for members in split.values():
        per_type = Counter(types[i] for i in members)
        for g, size in enumerate(sizes):
            assert abs(per_type[f"type{g}"] - size * len(members) / n) <= 1
    assert split == seeded_split(ids, fractions, seed, types)  # reproducible


def test_stratified_counts_round_the_dsb_sample_table_to_nearest_cells():
    # 155 images (110 fluorescence, 40 histology, 5 brightfield) into 108/23/24: exact shares
    # brightfield 3.48/0.74/0.77, fluorescence 76.6/16.3/17.0, histology 27.9/5.9/6.2.
    table = stratified_counts(
        {"brightfield": 5, "fluorescence": 110, "histology": 40},
        {"train": 108, "val": 23, "test": 24},
    )
    assert table == {
        "brightfield": {"train": 3, "val": 1, "test": 1},
        "fluorescence": {"train": 77, "val": 16, "test": 17},
        "histology": {"train": 28, "val": 6, "test": 6},
    }


def write_types(root, types: dict[str, str]) -> None:
    with open(root / "image_types.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "type", "height", "width", "n_nuclei"])
        writer.writerows([i, t, 64, 64, 1] for i, t in types.items())


def test_dsb_split_is_stratified_by_image_types_csv(tmp_path):
    ids = sorted(write_dsb(tmp_path, n_images=12))
    types = {i: ("histology" if k < 4 else "fluorescence") for k, i in enumerate(ids)}
    write_types(tmp_path, types)
    dm = dsb2018.DSB2018(root=tmp_path, val_fraction=0.25, test_fraction=0.25)
    info = dm.split_info()
    assert info["split"] == "seeded, stratified by image type (image_types.csv)"
    # 12 images into 6/3/3: histology 4 -> 2/1/1, fluorescence 8 -> 4/2/2, exactly.
    assert info["strata"] == {
        "fluorescence": {"train": 4, "val": 2, "test": 2},
        "histology": {"train": 2, "val": 1, "test": 1},
    }
    for split, entries in dm.layout().items():
        found = Counter(types[i] for i, _ in entries)
        assert found == Counter({t: row[split] for t, row in info["strata"].items()})


def test_dsb_without_image_types_stratifies_by_the_types_the_pixels_give(tmp_path, caplog):
    """A fresh download has no image_types.csv: each image is typed by image_type, and the
    split is the one the file with those same types would give."""
    ids = sorted(write_dsb(tmp_path, n_images=8))
    types = {
        i: dsb2018.image_type(read_image(tmp_path / "stage1_train" / i / "images" / f"{i}.png"))
        for i in ids
    }
    with caplog.at_level("WARNING"):
        dm = dsb2018.DSB2018(root=tmp_path)
        layout = {k: [i for i, _ in v] for k, v in dm.layout().items()}
    assert "image_types.csv not found" in caplog.text and "the pixels give" in caplog.text
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    assert layout == seeded_split(ids, fractions, 0, types)
    info = dm.split_info()
    assert info["split"] == "seeded, stratified by image type (the pixels, image_type)"
    assert sum(sum(row.values()) for row in info["strata"].values()) == 8


def test_dsb_with_half_the_official_test_set_names_the_missing_file(tmp_path):
    write_dsb(tmp_path, n_images=5)
    (tmp_path / "stage1_solution.csv").write_text("ImageId,EncodedPixels\n")
    with pytest.raises(DataError, match=r"stage1_test: not found, but stage1_solution\.csv is"):
        dsb2018.DSB2018(root=tmp_path).layout()


@pytest.mark.parametrize("val, test", [(0.5, 0.5), (-0.1, 0.2), (0.2, 0.0)])
def test_split_fractions_that_would_drop_a_split_are_one_line(val, test):
    with pytest.raises(UserError, match=rf"val_fraction {val:g} and test_fraction {test:g}"):
        dsb2018.DSB2018(val_fraction=val, test_fraction=test)


def test_an_option_the_dataset_does_not_take_is_one_line_naming_those_it_does():
    from seg_bench.data.options import create_datamodule

    with pytest.raises(
        UserError,
        match="dataset dsb2018: unknown option 'split_gap'; it takes .*split_seed.*val_fraction",
    ):
        create_datamodule("dsb2018", split_gap=2)


def test_dsb_image_types_csv_missing_an_image_names_file_and_image(tmp_path):
    ids = sorted(write_dsb(tmp_path, n_images=5))
    write_types(tmp_path, {i: "fluorescence" for i in ids[1:]})
    with pytest.raises(DataError, match=rf"image_types\.csv: no type for image {ids[0]} \(1 of 5"):
        dsb2018.DSB2018(root=tmp_path).layout()


@pytest.mark.data
def test_real_dsb2018_split_keeps_type_shares():
    dm = dsb2018.DSB2018(root=real_data("dsb2018"))
    strata = dm.split_info()["strata"]
    counts = dm.split_info()["counts"]
    for split, size in counts.items():
        for row in strata.values():
            total = sum(row.values())
            assert abs(row[split] - total * size / 155) <= 1
    assert counts == {"train": 108, "val": 23, "test": 24}


@pytest.mark.parametrize("bad", [1.5, -1, "two", True])
def test_a_split_gap_that_is_not_a_whole_number_of_slices_is_one_line(tmp_path, bad):
    from seg_bench.data.datasets.isbi2012 import ISBI2012
    from seg_bench.errors import UserError

    with pytest.raises(UserError, match=rf"dataset isbi2012: split_gap {bad!r}; expected a whole"):
        ISBI2012(root=tmp_path, split_gap=bad)


def test_split_gap_zero_is_allowed_but_said_to_let_blocks_touch(tmp_path, caplog):
    from seg_bench.data.datasets.isbi2012 import ISBI2012

    assert ISBI2012(root=tmp_path, split_gap="2").split_gap == 2
    with caplog.at_level("WARNING"):
        assert ISBI2012(root=tmp_path, split_gap=0).split_gap == 0
    assert "split_gap 0: the slice blocks touch" in caplog.text
