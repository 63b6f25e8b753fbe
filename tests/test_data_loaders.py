"""Each dataset read in its original layout (tiny files written by the tests): targets, splits,
options, and the contract with the base DataModule."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from data_fixtures import write_dsb, write_dsb_test, write_folder, write_ncmir, write_snemi

from seg_bench.data import create_datamodule
from seg_bench.data.base import SPLITS, Sample, SegmentationDataModule, as_int32_ids
from seg_bench.data.datasets import dsb2018, epfl, folder, isbi2012, isbi2013, ncmir
from seg_bench.errors import DataError
from seg_bench.registry import DATASETS

BASE_KWARGS = dict(
    patch_size=32,
    batch_size=2,
    num_workers=0,
    augment="none",
    augment_params=None,
    samples_per_epoch=4,
    foreground_bias=0.5,
    seed=3,
)

pytest_plugins = ["data_fixtures"]  # the tiny-layout fixtures (dsb_root, ...)


def all_splits(dm: SegmentationDataModule) -> dict:
    return {s: dm.load_split(s) for s in SPLITS}


@pytest.mark.parametrize(
    "name,cls,attrs",
    [
        ("dsb2018", dsb2018.DSB2018, ("nucleus", "dsb")),
        ("isbi2012", isbi2012.ISBI2012, ("membrane", "em")),
        ("isbi2013", isbi2013.ISBI2013, ("boundary", "em")),
        ("ncmir", ncmir.NCMIR, ("mitochondrion", None)),
        ("epfl", epfl.EPFL, ("mitochondrion", None)),
        ("folder", folder.FolderDataset, ("foreground", None)),
    ],
)
def test_registered_with_contract_attributes(name, cls, attrs):
    assert DATASETS.get(name) is cls
    assert (cls.positive_class, cls.instance_metric) == attrs
    assert cls.num_classes == 2 and cls.default_patch_size >= 16


# --- dsb2018 -------------------------------------------------------------------------------
def test_dsb_masks_to_semantic_and_instances(dsb_root):
    counts = write_dsb(dsb_root)  # rewrite returns the counts (same seed, same files)
    dm = dsb2018.DSB2018(root=dsb_root, **BASE_KWARGS)
    splits = all_splits(dm)
    samples = [s for v in splits.values() for s in v]
    assert sorted(s.id for s in samples) == sorted(counts)
    for s in samples:
        assert s.image.ndim == 3 and s.image.shape[-1] == 3  # RGBA -> RGB
        assert s.instances.max() == counts[s.id] and len(np.unique(s.instances)) == counts[s.id] + 1
        assert set(np.unique(s.mask)) <= {0, 1} and (s.mask == (s.instances > 0)).all()
    info = dm.split_info()
    assert info["split"] == "seeded, stratified by image type (the pixels, image_type)"
    assert sum(info["counts"].values()) == 5
    # the split depends on split_seed, not on the training seed
    other = dsb2018.DSB2018(root=dsb_root, seed=99)
    assert other.layout().keys() == dm.layout().keys()
    assert [i for i, _ in other.layout()["test"]] == [i for i, _ in dm.layout()["test"]]


def test_dsb_grey_and_invert_bright(dsb_root):
    dm = dsb2018.DSB2018(root=dsb_root, grey=True, invert_bright=True)
    assert dm.in_channels == 1
    samples = [s for v in all_splits(dm).values() for s in v]
    bright = [s for s in samples if s.meta["inverted"]]
    assert len(bright) == 1  # only the brightfield-like image
    s = bright[0]
    assert s.image.ndim == 2
    assert s.image[s.mask > 0].mean() > s.image[s.mask == 0].mean()  # nuclei now bright


def test_predict_feeds_the_network_what_the_dataset_fed_it_in_training(dsb_root):
    from seg_bench.config import resolve_config
    from seg_bench.data.base import normalize_percentile
    from seg_bench.data.io import read_image
    from seg_bench.inference.predict import model_input
    from seg_bench.training.trainer import build_task

    dm = dsb2018.DSB2018(root=dsb_root, grey=True, invert_bright=True)
    samples = [s for v in all_splits(dm).values() for s in v]
    [bright] = [s for s in samples if s.meta["inverted"]]
    cfg = resolve_config("dsb2018", "unet", "smoke", width=0.0625)
    hp = build_task(cfg, dm).hparams  # what the checkpoint keeps
    assert hp["input_options"] == {"invert_bright": True}
    raw = read_image(dsb_root / "stage1_train" / bright.id / "images" / f"{bright.id}.png")
    seen = model_input(raw, hp, "x.png")
    np.testing.assert_allclose(seen, normalize_percentile(bright.image), atol=1e-6)
    # A checkpoint from before input_options: the colour image is only averaged, not flipped.
    old = model_input(raw, {"in_channels": 1}, "x.png")
    assert np.corrcoef(old.ravel(), seen.ravel())[0, 1] < -0.99


def test_dsb_official_test_from_rle(dsb_root):
    masks = write_dsb_test(dsb_root)
    dm = dsb2018.DSB2018(root=dsb_root)
    test = dm.load_split("test")
    assert {s.id for s in test} == set(masks)
    for s in test:
        for k, m in enumerate(masks[s.id], start=1):
            assert ((s.instances == k) == m).all()
    assert "official" in dm.split_info()["split"]
    assert {"train", "val"} <= set(dm.layout()) and len(dm.load_split("train")) + len(
        dm.load_split("val")
    ) == 5


def test_dsb_official_test_leaves_out_the_images_kaggle_ignored(tmp_path):
    write_dsb(tmp_path)
    masks = write_dsb_test(tmp_path, n_images=3, ignored=1)
    dm = dsb2018.DSB2018(root=tmp_path)
    assert [s.id for s in dm.load_split("test")] == sorted(masks)[:2]
    assert "(1 image(s) whose Usage is Ignored left out" in dm.split_info()["split"]
    assert dm.split_info()["counts"]["test"] == 2
    assert dm.split_info()["ignored_test"] == [sorted(masks)[2]]
    # An ignored image needs no folder (and still counts as left out); a scored one does.
    shutil.rmtree(tmp_path / "stage1_test" / sorted(masks)[2])
    dm = dsb2018.DSB2018(root=tmp_path)
    assert len(dm.load_split("test")) == 2 and "(1 image(s)" in dm.split_info()["split"]
    write_dsb_test(tmp_path, n_images=2, ignored=2)
    with pytest.raises(DataError, match="every image's Usage is Ignored"):
        dsb2018.DSB2018(root=tmp_path).load_split("test")


def test_dsb_rle_without_shape_columns(tmp_path):
    write_dsb(tmp_path)
    masks = write_dsb_test(tmp_path, with_shape=False)
    test = dsb2018.DSB2018(root=tmp_path).load_split("test")
    assert sum(int(s.instances.max()) for s in test) == sum(len(v) for v in masks.values())


# --- isbi2012 ------------------------------------------------------------------------------
def test_isbi2012_membrane_is_label_zero_and_blocks_are_contiguous(isbi2012_root):
    dm = isbi2012.ISBI2012(root=isbi2012_root, **BASE_KWARGS)
    splits = all_splits(dm)
    # 10 slices: test 8-9, val 6, train 0-4; slices 5 and 7 fall in the gaps
    assert [len(splits[s]) for s in SPLITS] == [5, 1, 2]
    assert [s.meta["slice"] for s in splits["test"]] == [8, 9]
    assert [s.meta["slice"] for s in splits["val"]] == [6]
    assert [s.meta["slice"] for s in splits["train"]] == [0, 1, 2, 3, 4]
    s = splits["train"][0]
    from tifffile import imread

    labels = imread(isbi2012_root / "train-labels.tif")
    assert (s.mask == (labels[0] == 0)).all()
    assert (
        s.instances.max() > 4 and (s.instances[s.mask == 1] == 0).all()
    )  # cells between membranes
    assert dm.split_info()["slices"]["test"] == [8, 9]
    assert dm.split_info()["unused_slices"] == [5, 7]
    text = "contiguous blocks, gap 1: train 0-4, val 6, test 8-9 of train-volume.tif"
    assert dm.split_info()["split"].startswith(text)


# --- isbi2013 ------------------------------------------------------------------------------
def test_isbi2013_boundaries_from_ids(isbi2013_root):
    dm = isbi2013.ISBI2013(root=isbi2013_root, **BASE_KWARGS)
    splits = all_splits(dm)
    assert [len(splits[s]) for s in SPLITS] == [2, 1, 1]  # 6 slices: 0-1 | 3 | 5
    s = splits["train"][1]
    ids = s.instances
    assert s.mask.dtype == np.uint8 and set(np.unique(s.mask)) == {0, 1}
    assert (s.mask[ids == 0] == 1).all()  # id 0 is boundary
    # a pixel between two different ids horizontally is boundary on both sides
    ys, xs = np.nonzero((ids[:, :-1] != ids[:, 1:]) & (ids[:, :-1] > 0) & (ids[:, 1:] > 0))
    assert (s.mask[ys, xs] == 1).all() and (s.mask[ys, xs + 1] == 1).all()
    # interior pixels (all 4 neighbours equal) are not boundary
    inner = np.zeros_like(s.mask, bool)
    c = ids[1:-1, 1:-1]
    inner[1:-1, 1:-1] = (
        (c == ids[:-2, 1:-1])
        & (c == ids[2:, 1:-1])
        & (c == ids[1:-1, :-2])
        & (c == ids[1:-1, 2:])
        & (c > 0)
    )
    assert (s.mask[inner] == 0).all() and inner.sum() > 0.5 * inner.size
    assert len(np.unique(ids)) > 10


def test_isbi2013_uint16_ids(tmp_path):
    write_snemi(tmp_path, z=4, size=32, dtype=np.uint16)
    s = isbi2013.ISBI2013(root=tmp_path, split_gap=0).load_split("train")[0]
    assert s.instances.dtype == np.int32


def test_isbi2013_huge_ids_relabelled():
    ids = np.array([[0, 2**40], [2**40, 5]], dtype=np.uint64)
    out = as_int32_ids(ids)
    assert out.dtype == np.int32 and out[0, 0] == 0 and len(np.unique(out)) == 3
    no_zero = as_int32_ids(np.array([[7, 2**40]], dtype=np.uint64))
    assert (no_zero > 0).all()


# --- ncmir ---------------------------------------------------------------------------------
def test_ncmir_palette_labels_and_contiguous_split(ncmir_root):
    dm = ncmir.NCMIR(root=ncmir_root, **BASE_KWARGS)
    splits = all_splits(dm)
    # slices 010-015 in blocks by slice number, one unused slice between blocks
    assert {k: [s.id for s in v] for k, v in splits.items()} == {
        "train": ["training/010", "training/011"],
        "val": ["training/013"],
        "test": ["training/015"],
    }
    for s in [s for v in splits.values() for s in v]:
        assert set(np.unique(s.mask)) == {0, 1} and s.mask.sum() == 12 * 14
    info = dm.split_info()
    assert info["split"] == "contiguous blocks, gap 1: train 10-11, val 13, test 15 of training/"
    assert info["unused_slices"] == [12, 14]


def test_ncmir_validation_folder_is_test(tmp_path):
    write_ncmir(tmp_path, numbers=range(10, 20), validation=(50, 51, 52))
    dm = ncmir.NCMIR(root=tmp_path)
    assert [s.id for s in dm.load_split("test")] == [
        "validation/050",
        "validation/051",
        "validation/052",
    ]
    # val is the last block of training/ (15 % of 10: 2 slices), one slice number apart
    assert [s.id for s in dm.load_split("val")] == ["training/018", "training/019"]
    assert [s.id for s in dm.load_split("train")] == [f"training/0{n}" for n in range(10, 17)]
    info = dm.split_info()
    assert info["split"] == (
        "test = validation/; contiguous blocks, gap 1: train 10-16, val 18-19 of the training "
        "slices"
    )
    assert info["unused_slices"] == [17]
    assert info["slices"] == {"train": [10, 16], "val": [18, 19], "test": [50, 52]}


@pytest.mark.parametrize("test_slices,near", [((20, 21), "val slice 19"), ((15,), "train slice")])
def test_ncmir_test_slices_next_to_training_slices_are_refused(tmp_path, test_slices, near):
    # validation/ next to (or inside) training/'s numbers would test on near-copies.
    write_ncmir(tmp_path, numbers=range(10, 20), validation=test_slices)
    with pytest.raises(
        DataError, match=f"test slice {test_slices[0]} lies within split_gap 1 of {near}"
    ):
        ncmir.NCMIR(root=tmp_path).load_split("test")


def test_ncmir_allow_empty_masks(tmp_path):
    from data_fixtures import palette_png

    write_ncmir(tmp_path, numbers=range(10, 13))
    palette_png(tmp_path / "training/labels/mitos_3D.011.png", np.zeros((64, 64), np.uint8))
    dm = ncmir.NCMIR(root=tmp_path, allow_empty_masks=True, split_gap=0)
    assert sum(len(dm.load_split(s)) for s in SPLITS) == 3


# --- epfl ----------------------------------------------------------------------------------
def test_epfl_official_test(epfl_root):
    dm = epfl.EPFL(root=epfl_root, **BASE_KWARGS)
    splits = all_splits(dm)
    assert len(splits["test"]) == 8 and all(s.id.startswith("testing_") for s in splits["test"])
    # val: the last training slices as one block, a slice apart from train (never a draw)
    val = [int(s.id.removeprefix("training_")) for s in splits["val"]]
    train = [int(s.id.removeprefix("training_")) for s in splits["train"]]
    assert val == list(range(val[0], val[0] + len(val))) and max(train) < val[0] - 1
    assert len(train) + len(val) == 7  # one slice left in the gap
    assert set(np.unique(splits["train"][0].mask)) == {0, 1}
    assert dm.split_info()["split"].startswith("official testing stack; contiguous blocks")


def test_epfl_without_testing_falls_back_and_warns(tmp_path, caplog):
    from data_fixtures import write_epfl

    write_epfl(tmp_path, testing=False)
    (tmp_path / "training_slices.csv").write_text(
        "page,original_slice\n" + "".join(f"{p},{p * 10}\n" for p in range(8))
    )
    dm = epfl.EPFL(root=tmp_path)
    with caplog.at_level("WARNING"):
        splits = all_splits(dm)
    assert "testing.tif not found" in caplog.text
    # original slices 0, 10, ..., 70 are 10 apart, so a gap of 1 leaves none out
    assert {k: [s.id for s in v] for k, v in splits.items()} == {
        "train": [f"training_{z:03d}" for z in range(0, 60, 10)],
        "val": ["training_060"],
        "test": ["training_070"],
    }
    assert dm.split_info()["split"].startswith("contiguous blocks, gap 1: train 0-50, val 60")
    # a gap wider than the spacing leaves the slices next to each boundary out
    wide = epfl.EPFL(root=tmp_path, split_gap=10)
    assert [s.id for s in wide.load_split("val")] == ["training_050"]
    assert wide.split_info()["unused_slices"] == [40, 60]


def test_epfl_subset_without_its_slice_numbers_says_pages_stand_for_slices(tmp_path, caplog):
    from data_fixtures import write_epfl

    write_epfl(tmp_path, testing=False)  # 8 pages, no training_slices.csv
    with caplog.at_level("WARNING"):
        epfl.EPFL(root=tmp_path).load_split("train")
    assert "has 8 pages, not the original 165" in caplog.text
    assert "page numbers, not the original slice indices" in caplog.text


# --- folder --------------------------------------------------------------------------------
def test_folder_binary_png_and_tiff(folder_root):
    dm = folder.FolderDataset(root=folder_root, **BASE_KWARGS)
    assert dm.in_channels == 1
    splits = all_splits(dm)
    assert sum(len(v) for v in splits.values()) == 6
    s = splits["train"][0]
    assert set(np.unique(s.mask)) == {0, 1} and s.instances is None


def test_folder_class_ids_16_bit_and_instances(tmp_path):
    write_folder(tmp_path, num_classes=3, instances=True, bits=16)
    dm = folder.FolderDataset(root=tmp_path, num_classes=3)
    s = dm.load_split("train")[0]
    assert dm.num_classes == 3 and set(np.unique(s.mask)) == {0, 1, 2}
    assert s.image.dtype == np.uint16 and set(np.unique(s.instances)) == {0, 1, 2}


def test_folder_instance_ids_beyond_int32_stay_distinct_and_positive(tmp_path):
    import tifffile

    write_folder(tmp_path, num_classes=3, instances=True, bits=16)
    dm = folder.FolderDataset(root=tmp_path, num_classes=3)
    stem = dm.layout()["train"][0]
    page = np.array(dm._load(stem).instances, np.uint32)
    page[page == 2] = 3_000_000_000  # a plain int32 cast wraps this to -1294967296
    (tmp_path / "instances" / f"{stem}.png").unlink()
    tifffile.imwrite(tmp_path / "instances" / f"{stem}.tif", page)
    s = folder.FolderDataset(root=tmp_path, num_classes=3)._load(stem)
    assert s.instances.min() == 0 and set(np.unique(s.instances)) == {0, 1, 2}
    np.testing.assert_array_equal(s.instances == 2, page == 3_000_000_000)


# --- the base machinery works on top of every loader --------------------------------------------
@pytest.mark.parametrize(
    "fixture",
    ["dsb_root", "isbi2012_root", "isbi2013_root", "ncmir_root", "epfl_root", "folder_root"],
)
def test_batches_through_the_base_datamodule(fixture, request):
    root = request.getfixturevalue(fixture)
    name = {"dsb_root": "dsb2018", "isbi2012_root": "isbi2012", "isbi2013_root": "isbi2013"}.get(
        fixture, fixture[:-5]
    )
    dm = DATASETS.create(name, root=root, **BASE_KWARGS)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, dm.in_channels, 32, 32)
    assert batch["mask"].shape == (2, 32, 32) and int(batch["mask"].max()) <= 1
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape[1] == dm.in_channels
    assert set(dm.describe()["splits"]) >= {"train", "val"}


# --- label sources ---------------------------------------------------------------------------
class InvertingSource:
    """A stand-in label source that swaps foreground and background, so its use is visible."""

    name = "inverted"

    def __init__(self):
        self.quality: dict = {}
        self.calls: list = []

    def __call__(self, samples, split, num_classes):
        self.calls.append((split, num_classes))
        self.quality[split] = {"iou": 0.0}
        return [
            Sample(s.id, s.image, (s.mask == 0).astype(np.uint8), None, s.meta) for s in samples
        ]


def test_a_label_source_relabels_train_and_val_but_never_test():
    kw = dict(n_train=2, n_val=1, n_test=2, image_size=64, patch_size=32)
    manual = create_datamodule("synthetic", **kw)
    source = InvertingSource()
    dm = create_datamodule("synthetic", label_source=source, **kw)
    dm.setup()
    for split in SPLITS:
        for mine, truth in zip(dm.samples(split), manual.samples(split), strict=True):
            assert mine.id == truth.id
            expected = 1 - truth.mask if split != "test" else truth.mask
            assert (mine.mask == expected).all(), split
    assert source.calls == [("train", 2), ("val", 2)]  # each split relabelled once
    record = dm.describe()
    assert record["labels"] == "inverted"
    assert record["weak_label_quality"] == {"train": {"iou": 0.0}, "val": {"iou": 0.0}}


def test_without_a_label_source_the_record_says_manual():
    dm = create_datamodule("synthetic", n_train=1, n_val=1, n_test=1, image_size=64, patch_size=32)
    dm.setup()
    assert dm.describe()["labels"] == "manual" and dm.describe()["weak_label_quality"] == {}
