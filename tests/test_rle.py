"""Kaggle DSB run-length encoding: hand-worked, round trips, malformed input, real CSV."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from seg_bench.data.rle import (
    read_rle_csv,
    rle_decode,
    rle_encode,
    rle_encode_labels,
    write_submission_csv,
)
from seg_bench.errors import DataError, UserError

DATA = Path(
    os.environ.get("SEG_BENCH_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
)
DSB = DATA / "dsb2018"
needs_dsb = pytest.mark.skipif(
    not (DSB / "stage1_train_labels.csv").is_file(),
    reason=f"DSB 2018 sample not found at {DSB} (set SEG_BENCH_DATA to the shared data folder)",
)


def test_hand_worked_column_major():
    mask = np.array([[0, 1, 1], [1, 1, 0]])
    # column-major pixel order: (0,0)=1 (1,0)=2 (0,1)=3 (1,1)=4 (0,2)=5 (1,2)=6
    assert rle_encode(mask) == "2 4"
    np.testing.assert_array_equal(rle_decode("2 4", (2, 3)), mask.astype(bool))
    assert rle_encode(np.zeros((3, 3))) == ""
    assert not rle_decode("", (3, 3)).any()
    assert rle_encode(np.ones((2, 2), bool)) == "1 4"
    np.testing.assert_array_equal(rle_decode("1 1 4 1", (2, 2)), [[1, 0], [0, 1]])


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_round_trip(mask):
    rle = rle_encode(mask)
    np.testing.assert_array_equal(rle_decode(rle, mask.shape), mask)
    if rle:
        pairs = np.array(rle.split(), int).reshape(-1, 2)
        assert np.all(pairs[1:, 0] > pairs[:-1, 0] + pairs[:-1, 1])  # sorted, separated runs


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 10), st.integers(1, 10)), elements=st.integers(0, 4))
)
def test_encode_labels_matches_per_label_encode(labels):
    encoded = rle_encode_labels(labels)
    assert list(encoded) == [int(v) for v in np.unique(labels) if v != 0]
    for k, rle in encoded.items():
        assert rle == rle_encode(labels == k)


@pytest.mark.parametrize(
    "rle, match",
    [
        ("1 2 3", "odd number of tokens"),
        ("1 x", "length of pair 1 is 'x'"),
        ("1.5 2", "start of pair 1 is '1.5'"),
        ("0 2", "pair 1 has start 0"),
        ("-3 2", "pair 1 has start -3"),
        ("1 0", "pair 1 has length 0"),
        ("5 3 7 1", r"pair 2 \(start 7\) overlaps pair 1, which covers pixels 5..7"),
        ("7 1 1 2", "runs must be sorted"),
        ("8 2", r"run 1 \(start 8, length 2\) ends at pixel 9, past the last pixel 8"),
    ],
)
def test_malformed_input_gives_clear_errors(rle, match):
    with pytest.raises(UserError, match=match):
        rle_decode(rle, (2, 4), where="row 3")


def test_decode_error_names_where_and_bad_shape():
    with pytest.raises(UserError, match="^row 17:"):
        rle_decode("1 2 3", (2, 2), where="row 17")
    with pytest.raises(UserError, match="shape"):
        rle_decode("1 1", (0, 2))


def test_read_csv_with_solution_columns_and_empty_rows(tmp_path):
    p = tmp_path / "solution.csv"
    p.write_text(
        "ImageId,EncodedPixels,Height,Width,Usage\n"
        "a,1 2,4,4,Public\n"
        "a,9 3,4,4,Public\n"
        "b,,4,4,Private\n"
    )
    assert read_rle_csv(p) == {"a": ["1 2", "9 3"], "b": []}


def test_read_csv_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_rle_csv(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("Id,Pixels\na,1 2\n")
    with pytest.raises(DataError, match="missing column"):
        read_rle_csv(bad)
    bad.write_text("ImageId,EncodedPixels\na,1 2\nb,3 4 5\n")
    with pytest.raises(DataError, match=r"line 3 \(ImageId b\): odd number"):
        read_rle_csv(bad)


def test_write_submission_round_trip_and_atomic(tmp_path):
    rng = np.random.default_rng(0)
    preds = {
        "img1": rng.integers(0, 5, (7, 9)),
        "empty": np.zeros((4, 4), int),
        "img2": np.array([[0, 3], [3, 0]]),
    }
    out = tmp_path / "sub.csv"
    write_submission_csv(out, preds)
    assert sorted(os.listdir(tmp_path)) == ["sub.csv"]  # no temporary file left
    rows = read_rle_csv(out)
    assert list(rows) == list(preds)
    assert rows["empty"] == []
    for image_id, labels in preds.items():
        decoded = np.zeros(labels.shape, int)
        for k, rle in enumerate(rows[image_id], start=1):
            m = rle_decode(rle, labels.shape)
            assert not (decoded[m] > 0).any()  # objects never overlap
            decoded[m] = k
        # same partition, labels renumbered 1..n in increasing order
        ids = [v for v in np.unique(labels) if v != 0]
        np.testing.assert_array_equal(decoded, np.searchsorted([0, *ids], labels))
    with open(out) as fh:
        assert fh.readline() == "ImageId,EncodedPixels\n"

    # A failure while writing leaves the previous file untouched and no temporary file.
    before = out.read_text()
    with pytest.raises(UserError, match="img3"):
        write_submission_csv(out, {"img1": preds["img1"], "img3": np.zeros((2, 2, 2), int)})
    assert out.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["sub.csv"]


def test_write_submission_errors(tmp_path):
    with pytest.raises(UserError, match="ImageId"):
        write_submission_csv(tmp_path / "x.csv", {"a,b": np.zeros((2, 2), int)})
    with pytest.raises(UserError, match="mapping"):
        write_submission_csv(tmp_path / "x.csv", [np.zeros((2, 2), int)])


@pytest.mark.data
@needs_dsb
def test_real_labels_csv_decodes_to_the_mask_pngs():
    from PIL import Image

    rows = read_rle_csv(DSB / "stage1_train_labels.csv")
    with open(DSB / "image_types.csv") as fh:
        types = list(csv.DictReader(fh))
    picked = [r["ImageId"] for r in types if r["type"] == "histology"][:1]
    picked += [r["ImageId"] for r in types if r["type"] == "fluorescence"][:2]
    for image_id in picked:
        files = sorted((DSB / "stage1_train" / image_id / "masks").glob("*.png"))
        assert len(rows[image_id]) == len(files)  # rows are sorted by mask file name
        for rle, f in zip(rows[image_id], files, strict=True):
            mask = np.asarray(Image.open(f)) > 0
            np.testing.assert_array_equal(rle_decode(rle, mask.shape), mask)
            assert rle_encode(mask) == rle


def test_write_submission_crash_before_replace_keeps_old_file(tmp_path, monkeypatch):
    out = tmp_path / "sub.csv"
    write_submission_csv(out, {"a": np.ones((2, 2), int)})
    before = out.read_text()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_submission_csv(out, {"b": np.ones((3, 3), int)})
    assert out.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["sub.csv"]
