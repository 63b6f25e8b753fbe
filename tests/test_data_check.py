"""``check_dataset`` / ``check_main`` on tiny layouts, and on the real samples (marker ``data``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import REAL_DATA, write_dsb

from seg_bench.data.base import Sample, SegmentationDataModule
from seg_bench.data.check import check_datamodule, check_dataset, check_main, format_summary

pytest_plugins = ["data_fixtures"]  # the tiny-layout fixtures (dsb_root, ...)


def test_check_dsb_counts_nuclei(dsb_root):
    counts = write_dsb(dsb_root)
    summary = check_dataset("dsb2018", root=dsb_root)
    assert sum(s.images for s in summary.splits.values()) == 5
    assert summary.total.instances_total == sum(counts.values())
    assert summary.total.instances_min == 1 and summary.total.instances_max == 4
    assert summary.in_channels == 3 and summary.splits["train"].channels == [3]
    assert 0 < summary.total.foreground < 1
    text = format_summary(summary)
    for word in ("dsb2018", "train", "val", "test", "all", "nucleus", "uint8"):
        assert word in text


@pytest.mark.parametrize(
    "name,fixture",
    [
        ("isbi2012", "isbi2012_root"),
        ("isbi2013", "isbi2013_root"),
        ("ncmir", "ncmir_root"),
        ("epfl", "epfl_root"),
    ],
)
def test_check_volumes_and_slices(name, fixture, request):
    summary = check_dataset(name, root=request.getfixturevalue(fixture))
    assert set(summary.splits) == {"train", "val", "test"}
    assert all(s.images >= 1 and s.instances_total >= s.images for s in summary.splits.values())
    assert summary.to_dict()["dataset"] == name


def test_check_main_exit_codes(isbi2012_root, tmp_path, capsys):
    assert check_main("isbi2012", isbi2012_root) == 0
    assert "membrane" in capsys.readouterr().out
    assert check_main("isbi2012", tmp_path / "absent") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "train-volume.tif" in err and err.count("\n") == 1
    assert check_main("no-such-dataset", tmp_path) == 1


class _Leaky(SegmentationDataModule):
    name = "leaky"

    def __init__(self, bad: str):
        super().__init__()
        self.bad = bad

    def load_split(self, split):
        img = np.zeros((8, 8), np.uint8)
        mask = np.zeros((8, 8), np.uint8)
        if self.bad == "values" and split == "val":
            mask[0, 0] = 5
        if self.bad == "shape" and split == "test":
            mask = np.zeros((8, 9), np.uint8)
        sid = "same" if self.bad == "leak" and split != "val" else split
        return [Sample(sid, img, mask, None, {"path": f"/data/{split}.png"})]


@pytest.mark.parametrize(
    "bad,fragments",
    [
        ("leak", ["/data/test.png", "in both train and test", "disjoint"]),
        ("values", ["/data/val.png", "mask values 0..5", "class ids 0..1"]),
        ("shape", ["/data/test.png", "same height and width"]),
    ],
)
def test_check_catches_leaks_and_bad_masks(bad, fragments):
    from seg_bench.errors import DataError

    with pytest.raises(DataError) as e:
        check_datamodule(_Leaky(bad))
    for f in fragments:
        assert f in str(e.value)


# --- the real samples --------------------------------------------------------------------------
def _real_root() -> Path:
    return Path(os.environ.get("SEG_BENCH_DATA", REAL_DATA))


@pytest.fixture(scope="module")
def real():
    """Checks each real dataset once per module (DSB reads 6,209 mask PNGs), on demand."""
    base = _real_root()
    if not base.is_dir():
        pytest.skip(f"real data not found: set SEG_BENCH_DATA or place it at {REAL_DATA}")
    cache = {}

    def get(name: str, subdir: str):
        if not (base / subdir).is_dir():
            pytest.skip(f"{base / subdir} not found")
        if name not in cache:
            cache[name] = check_dataset(name, root=base / subdir)
        return cache[name]

    return get


@pytest.mark.data
def test_real_dsb2018(real):
    s = real("dsb2018", "dsb2018")
    t = s.total
    assert t.images == 155 and t.instances_total == 6209
    assert (t.instances_min, t.instances_max) == (1, 369)
    assert t.channels == [3] and t.dtypes == ["uint8"] and t.sizes["1024x1024"] == 5
    assert 0.05 < t.foreground < 0.25
    assert [s.splits[k].images for k in ("train", "val", "test")] == [108, 23, 24]


@pytest.mark.data
def test_real_isbi2012(real):
    s = real("isbi2012", "isbi2012")
    assert s.total.images == 22 and s.total.sizes == {"512x512": 22}  # 2 slices in the gaps
    assert abs(s.total.foreground - 0.225) < 0.005  # membrane
    assert s.split_info["slices"] == {"train": [0, 14], "val": [16, 17], "test": [19, 23]}
    assert s.total.instances_min > 50  # cells per slice


@pytest.mark.data
def test_real_ncmir(real):
    s = real("ncmir", "ncmir_mito")
    # 20 slices 010-029 in blocks; 022 and 026 fall in the gaps
    assert s.total.images == 18 and s.total.sizes == {"1024x1024": 18}
    assert abs(s.total.foreground - 0.088) < 0.003


@pytest.mark.data
def test_real_epfl(real):
    s = real("epfl", "epfl_mito")
    assert s.total.images == 26 and s.total.sizes == {"768x1024": 26}  # slice 90 in a gap
    assert 0.035 < s.total.foreground_min and s.total.foreground_max < 0.115
    assert s.split_info["split"].startswith("contiguous blocks, gap 1: train 0-89, val 91-135")
