"""`seg-bench score` with Kaggle DSB CSVs: object ids kept as given, sizes from the solution,
Usage Ignored, and one clear line for each kind of bad row (findings of a review pass)."""

import numpy as np
import pytest
import tifffile

from seg_bench.data.rle import rle_encode
from seg_bench.errors import UserError
from seg_bench.evaluation.score import score


def two_nuclei():
    truth = np.zeros((4, 6), np.uint8)
    truth[0:2, 0:2] = 1
    truth[0:2, 4:6] = 1
    left, right = truth.copy(), truth.copy()
    left[:, 3:] = 0
    right[:, :3] = 0
    return truth, left, right


def solution(path, rows, header="ImageId,EncodedPixels,Height,Width,Usage"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def test_one_predicted_object_covering_two_nuclei_is_a_merge_not_two_hits(tmp_path):
    both, left, right = two_nuclei()
    truth = solution(
        tmp_path / "truth.csv",
        [("a", rle_encode(left), 4, 6, "Public"), ("a", rle_encode(right), 4, 6, "Public")],
    )
    merged = solution(tmp_path / "pred.csv", [("a", rle_encode(both))], "ImageId,EncodedPixels")
    # One prediction covering both: IoU 1/2 with each, never above 0.5: no hit at any threshold.
    assert score(merged, truth)["overall"]["dsb_map"] == 0.0
    assert score(truth, truth)["overall"]["dsb_map"] == 1.0
    # A one-nucleus truth whose nucleus is in two pieces stays one object.
    pieces = solution(tmp_path / "pieces.csv", [("a", rle_encode(both), 4, 6, "Public")])
    assert score(merged, pieces)["overall"]["dsb_map"] == 1.0


def test_a_solution_csv_is_scored_as_instances_even_with_one_nucleus_per_image(tmp_path):
    _, left, _ = two_nuclei()
    truth = solution(tmp_path / "truth.csv", [("a", rle_encode(left), 4, 6, "Public")])
    result = score(truth, truth)
    assert result["kind"] == "instance" and result["overall"]["dsb_map"] == 1.0


def test_the_solutions_size_decides_and_a_transposed_prediction_is_named(tmp_path):
    _, left, _ = two_nuclei()
    truth = solution(tmp_path / "truth.csv", [("a", rle_encode(left), 4, 6, "Public")])
    (tmp_path / "p").mkdir()
    tifffile.imwrite(tmp_path / "p" / "a_instances.tif", left.T.copy())
    with pytest.raises(UserError, match=r"'a': prediction is \(6, 4\) but truth is \(4, 6\)"):
        score(tmp_path / "p", truth)


def test_images_the_solution_ignores_are_neither_scored_nor_required(tmp_path):
    _, left, right = two_nuclei()
    truth = solution(
        tmp_path / "truth.csv",
        [("a", rle_encode(left), 4, 6, "Private"), ("b", rle_encode(right), 4, 6, "Ignored")],
    )
    only_a = solution(tmp_path / "a.csv", [("a", rle_encode(left))], "ImageId,EncodedPixels")
    result = score(only_a, truth)
    assert result["images"] == 1 and result["overall"]["dsb_map"] == 1.0
    with_b = solution(
        tmp_path / "ab.csv", [("a", rle_encode(left)), ("b", "")], "ImageId,EncodedPixels"
    )
    assert score(with_b, truth)["overall"]["dsb_map"] == 1.0  # b listed, still not scored


def test_a_submitted_image_the_solution_does_not_hold_is_refused(tmp_path):
    _, left, _ = two_nuclei()
    truth = solution(tmp_path / "truth.csv", [("a", rle_encode(left), 4, 6, "Public")])
    extra = solution(
        tmp_path / "pred.csv",
        [("a", rle_encode(left)), ("zzz", "1 99999")],
        "ImageId,EncodedPixels",
    )
    with pytest.raises(UserError, match=r"pred.csv: 1 image\(s\) not in the truth, e.g. 'zzz'"):
        score(extra, truth)


@pytest.mark.parametrize(
    "rows,message",
    [
        ([("a", "1 2", "", 6, "Public")], r"truth.csv: line 2: Height,Width '','6'"),
        ([("a", "1 2", -4, 6, "Public")], r"truth.csv: line 2: Height,Width '-4','6'"),
        ([("a", "1 2", 0, 6, "Public")], r"line 2: Height,Width '0','6'; expected two whole"),
        (
            [("a", "1 2", 4, 6, "Public"), ("a", "9 2", 5, 6, "Public")],
            r"line 3 gives image a the size \(5, 6\), line 2 gave \(4, 6\)",
        ),
        ([("a", "1 2", 4, 6, "Public"), ("a", "2 2", 4, 6, "Public")], r"line 3 \(a\): overlaps"),
        ([("a", "20 9", 4, 6, "Public")], r"truth.csv: line 2 \(a\)"),
    ],
)
def test_bad_solution_rows_are_one_line_naming_the_file_and_line(tmp_path, rows, message):
    truth = solution(tmp_path / "truth.csv", rows)
    with pytest.raises(UserError, match=message) as info:
        score(truth, truth)
    assert "\n" not in str(info.value)


def test_a_byte_order_mark_is_read_and_a_missing_imageid_column_is_named(tmp_path):
    _, left, _ = two_nuclei()
    bom = tmp_path / "bom.csv"
    bom.write_text(f"ImageId,EncodedPixels,Height,Width\na,{rle_encode(left)},4,6\n", "utf-8-sig")
    assert score(bom, bom)["overall"]["dsb_map"] == 1.0
    bad = solution(tmp_path / "bad.csv", [("1 2", 4, 6)], "EncodedPixels,Height,Width")
    with pytest.raises(UserError, match=r"bad.csv: missing column\(s\) \['ImageId'\]"):
        score(bad, bad)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(UserError, match="binary.csv: not a readable CSV"):
        score(binary, binary)


def test_reading_runs_alone_ignores_size_columns_the_scorer_would_refuse(tmp_path):
    from seg_bench.data.rle import read_rle_csv

    odd = solution(
        tmp_path / "odd.csv",
        [("a", "1 2", "", 4, "Public"), ("a", "5 1", "4.0", "NA", "Public"), ("b", "", 0, 0, "")],
    )
    assert read_rle_csv(odd) == {"a": ["1 2", "5 1"], "b": []}


def test_labels_from_rows_numbers_objects_by_row_and_names_an_overlap():
    from seg_bench.data.rle import RleRow, labels_from_rows
    from seg_bench.errors import DataError

    # 3x3, column-major: row 2 covers pixels 1-2 (column 0, top two), row 4 pixel 9.
    rows = [RleRow(2, "1 2"), RleRow(3, ""), RleRow(4, "9 1")]
    labels = labels_from_rows(rows, (3, 3), "s.csv", "img")
    assert labels.tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 2]]
    with pytest.raises(DataError, match=r"s\.csv: line 5 \(img\): overlaps the object of line 2"):
        labels_from_rows([*rows, RleRow(5, "2 2")], (3, 3), "s.csv", "img")
    with pytest.raises(DataError, match=r"s\.csv: line 2 \(img\): .*past the last pixel 9"):
        labels_from_rows([RleRow(2, "8 5")], (3, 3), "s.csv", "img")
