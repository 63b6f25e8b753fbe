"""Bad input stops with one line naming the file and the expected form (files made in tmp_path)."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import (
    palette_png,
    png,
    stack,
    write_dsb,
    write_dsb_test,
    write_epfl,
    write_folder,
    write_isbi2012,
    write_ncmir,
    write_snemi,
)
from PIL import Image

from seg_bench.data.base import SPLITS
from seg_bench.data.datasets import dsb2018, epfl, folder, isbi2012, isbi2013, ncmir
from seg_bench.errors import DataError


def load_all(dm):
    return [dm.load_split(s) for s in SPLITS]


def expect(dm_factory, *fragments: str) -> str:
    """Building and loading every split raises a one-line DataError holding every fragment."""
    with pytest.raises(DataError) as info:
        load_all(dm_factory())
    msg = str(info.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# --- dsb2018 -------------------------------------------------------------------------------
def first_dsb(root):
    d = sorted((root / "stage1_train").iterdir())[0]
    return d, d / "images" / f"{d.name}.png", sorted((d / "masks").iterdir())


def test_dsb_missing_root_and_folder(tmp_path):
    expect(
        lambda: dsb2018.DSB2018(root=tmp_path / "nope"),
        "nope",
        "expected",
        "stage1_train/<id>/images/<id>.png",
        "download",
    )
    expect(lambda: dsb2018.DSB2018(root=tmp_path), "stage1_train", "folder not found")
    (tmp_path / "stage1_train").mkdir()
    expect(lambda: dsb2018.DSB2018(root=tmp_path), "stage1_train", "no image folders")


def test_dsb_image_without_masks_and_masks_without_image(tmp_path):
    write_dsb(tmp_path)
    d, image, masks = first_dsb(tmp_path)
    image.unlink()
    expect(lambda: dsb2018.DSB2018(root=tmp_path), str(image), "masks/ have no image", "images/")
    write_dsb(tmp_path)
    for m in masks:
        m.unlink()
    expect(
        lambda: dsb2018.DSB2018(root=tmp_path),
        str(d / "masks"),
        "no mask PNGs",
        "0/255 PNG per nucleus",
    )


def test_dsb_mask_size_mismatch(tmp_path):
    write_dsb(tmp_path)
    _, image, masks = first_dsb(tmp_path)
    png(masks[0], np.zeros((10, 10), np.uint8), "L")
    expect(lambda: dsb2018.DSB2018(root=tmp_path), str(masks[0]), "10x10", "same height and width")


def test_dsb_truncated_image(tmp_path):
    write_dsb(tmp_path)
    _, image, _ = first_dsb(tmp_path)
    truncate(image)
    expect(lambda: dsb2018.DSB2018(root=tmp_path), str(image), "cannot read image", "expected")


def test_dsb_mask_values_0_1_instead_of_0_255(tmp_path):
    write_dsb(tmp_path)
    _, _, masks = first_dsb(tmp_path)
    m = np.array(Image.open(masks[0]))
    png(masks[0], (m > 0).astype(np.uint8), "L")
    expect(
        lambda: dsb2018.DSB2018(root=tmp_path),
        str(masks[0]),
        "[0, 1]",
        "expected 0 (background) / 255 (nucleus)",
    )


def test_dsb_overlapping_and_empty_masks(tmp_path):
    write_dsb(tmp_path, n_images=4)
    d = sorted((tmp_path / "stage1_train").iterdir())[1]  # the one with 2 nuclei
    masks = sorted((d / "masks").iterdir())
    (d / "masks" / "zz.png").write_bytes(masks[0].read_bytes())  # a copy overlaps completely
    expect(
        lambda: dsb2018.DSB2018(root=tmp_path),
        "zz.png",
        f"overlaps mask {masks[0].name}",
        "non-overlapping",
    )
    shape = np.asarray(Image.open(masks[0])).shape
    png(d / "masks" / "zz.png", np.zeros(shape, np.uint8), "L")
    expect(lambda: dsb2018.DSB2018(root=tmp_path), "zz.png", "no nucleus pixel")


def test_dsb_too_few_images(tmp_path):
    write_dsb(tmp_path, n_images=2)
    expect(
        lambda: dsb2018.DSB2018(root=tmp_path),
        "stage1_train",
        "2 image folders are too few",
        "at least 3",
    )


def test_dsb_solution_problems(tmp_path):
    write_dsb(tmp_path)
    write_dsb_test(tmp_path)
    csv = tmp_path / "stage1_solution.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines + ["unknownid,1 3,40,52,Public"]) + "\n")
    expect(
        lambda: dsb2018.DSB2018(root=tmp_path),
        "stage1_solution.csv",
        "unknownid",
        "stage1_test/unknownid",
    )
    csv.write_text(
        "\n".join(lines[:1] + [lines[1].split(",")[0] + ",1 999999,40,52,Public"] + lines[2:])
        + "\n"
    )
    expect(
        lambda: dsb2018.DSB2018(root=tmp_path),
        "stage1_solution.csv",
        "line 2",
        "past the last pixel",
    )
    csv.write_text("Id,Pixels\n")
    expect(
        lambda: dsb2018.DSB2018(root=tmp_path),
        "stage1_solution.csv",
        "expected ImageId,EncodedPixels",
    )
    # A size that is no number was a bare ValueError naming neither file nor line.
    first = lines[1].split(",")
    csv.write_text("\n".join([lines[0], ",".join([*first[:2], "abc", *first[3:]])]) + "\n")
    expect(
        lambda: dsb2018.DSB2018(root=tmp_path),
        "stage1_solution.csv",
        "line 2: Height,Width 'abc'",
        "whole numbers",
    )


# --- isbi2012 ------------------------------------------------------------------------------
def test_isbi2012_missing_files(tmp_path):
    expect(
        lambda: isbi2012.ISBI2012(root=tmp_path),
        "train-volume.tif",
        "file not found",
        "download isbi2012",
    )
    write_isbi2012(tmp_path)
    (tmp_path / "train-labels.tif").unlink()
    expect(lambda: isbi2012.ISBI2012(root=tmp_path), "train-labels.tif", "255 = cell, 0 = membrane")


def test_isbi2012_labels_0_1_and_shape_mismatch(tmp_path):
    _, labels = write_isbi2012(tmp_path)
    stack(tmp_path / "train-labels.tif", (labels > 0).astype(np.uint8))
    expect(
        lambda: isbi2012.ISBI2012(root=tmp_path),
        "train-labels.tif",
        "{0, 1}",
        "0 (membrane) / 255 (cell interior)",
    )
    stack(tmp_path / "train-labels.tif", labels[:9])
    expect(
        lambda: isbi2012.ISBI2012(root=tmp_path),
        "train-labels.tif",
        "9x64x64",
        "one label page per image page",
    )


def test_isbi2012_truncated_and_too_few(tmp_path):
    write_isbi2012(tmp_path)
    truncate(tmp_path / "train-volume.tif")
    expect(lambda: isbi2012.ISBI2012(root=tmp_path), "train-volume.tif", "cannot read TIFF stack")
    write_isbi2012(tmp_path, z=2)
    expect(
        lambda: isbi2012.ISBI2012(root=tmp_path),
        "train-volume.tif",
        "2 labelled slices are too few",
    )


# --- isbi2013 ------------------------------------------------------------------------------
def test_isbi2013_binary_or_float_labels_are_not_ids(tmp_path):
    image, ids = write_snemi(tmp_path, z=3, size=32)
    stack(tmp_path / "train-labels.tif", np.where(ids > 0, 255, 0).astype(np.uint8))
    expect(
        lambda: isbi2013.ISBI2013(root=tmp_path),
        "train-labels.tif",
        "binary mask",
        "expected neuron ids",
    )
    stack(tmp_path / "train-labels.tif", ids.astype(np.float32))
    expect(
        lambda: isbi2013.ISBI2013(root=tmp_path),
        "train-labels.tif",
        "float32",
        "expected neuron ids",
    )
    (tmp_path / "train-input.tif").unlink()
    expect(lambda: isbi2013.ISBI2013(root=tmp_path), "train-input.tif", "file not found")


# --- ncmir ---------------------------------------------------------------------------------
def test_ncmir_image_without_label_and_label_without_image(tmp_path):
    write_ncmir(tmp_path)
    lab = tmp_path / "training/labels/mitos_3D.012.png"
    lab.unlink()
    expect(lambda: ncmir.NCMIR(root=tmp_path), "images.012.png", "image without label", str(lab))
    write_ncmir(tmp_path)
    (tmp_path / "training/images/images.013.png").unlink()
    expect(
        lambda: ncmir.NCMIR(root=tmp_path),
        "mitos_3D.013.png",
        "label without image",
        "images.013.png",
    )


def test_ncmir_one_slice_under_two_names_is_refused(tmp_path):
    # images.012.png and images.12.png were one slice number: one was silently dropped.
    write_ncmir(tmp_path)
    for sub, stem in (("images", "images"), ("labels", "mitos_3D")):
        old = tmp_path / "training" / sub / f"{stem}.012.png"
        (old.parent / f"{stem}.12.png").write_bytes(old.read_bytes())
    expect(lambda: ncmir.NCMIR(root=tmp_path), "training/012 and training/12 are both slice 12")


def test_ncmir_grey_0_255_mask_rejected(tmp_path):
    write_ncmir(tmp_path)
    p = tmp_path / "training/labels/mitos_3D.011.png"
    m = np.zeros((64, 64), np.uint8)
    m[10:20, 10:20] = 255
    png(p, m, "L")
    expect(lambda: ncmir.NCMIR(root=tmp_path), str(p), "{0, 255}", "palette", "1 = mitochondrion")


def test_ncmir_all_zero_mask_rejected_unless_allowed(tmp_path):
    write_ncmir(tmp_path)
    # Slice 010 is always read (the first training block); 014 now falls in the split's gap.
    p = tmp_path / "training/labels/mitos_3D.010.png"
    png(p, np.zeros((64, 64), np.uint8), "L")  # what convert('L') + threshold at 128 gives
    expect(
        lambda: ncmir.NCMIR(root=tmp_path),
        str(p),
        "no mitochondrion pixel",
        "convert('L')",
        "allow_empty_masks",
    )


def test_ncmir_rgb_mask_size_mismatch_and_names(tmp_path):
    write_ncmir(tmp_path)
    p = tmp_path / "training/labels/mitos_3D.010.png"
    png(p, np.zeros((64, 64, 3), np.uint8), "RGB")
    expect(lambda: ncmir.NCMIR(root=tmp_path), str(p), "(64, 64, 3)", "palette")
    palette_png(p, np.ones((32, 64), np.uint8))
    expect(lambda: ncmir.NCMIR(root=tmp_path), str(p), "32x64", "same height and width")
    write_ncmir(tmp_path)
    png(tmp_path / "training/images/slice10.png", np.zeros((4, 4), np.uint8))
    expect(
        lambda: ncmir.NCMIR(root=tmp_path), "slice10.png", "unexpected file name", "images.NNN.png"
    )


def test_ncmir_missing_and_too_few(tmp_path):
    expect(lambda: ncmir.NCMIR(root=tmp_path / "none"), "none", "training/images/images.NNN.png")
    write_ncmir(tmp_path, numbers=(10, 11))
    expect(
        lambda: ncmir.NCMIR(root=tmp_path),
        "training",
        "2 labelled slices are too few",
        "at least 3",
    )
    (tmp_path / "validation").mkdir()  # test = validation/: 2 slices are train and val blocks
    expect(lambda: ncmir.NCMIR(root=tmp_path), "2 labelled slices are too few for train/val")
    write_ncmir(tmp_path / "four", numbers=range(10, 14))
    (tmp_path / "four" / "validation").mkdir()
    expect(lambda: ncmir.NCMIR(root=tmp_path / "four"), "validation/images", "folder not found")


# --- epfl ----------------------------------------------------------------------------------
def test_epfl_half_testing_pair_and_bad_labels(tmp_path):
    write_epfl(tmp_path)
    (tmp_path / "testing_groundtruth.tif").unlink()
    expect(
        lambda: epfl.EPFL(root=tmp_path),
        "testing_groundtruth.tif",
        "testing.tif is there",
        "both testing stacks or neither",
    )
    write_epfl(tmp_path, testing=False)
    (tmp_path / "testing.tif").unlink()
    stack(tmp_path / "training_groundtruth.tif", np.ones((8, 48, 64), np.uint8))
    expect(
        lambda: epfl.EPFL(root=tmp_path),
        "training_groundtruth.tif",
        "{1}",
        "0 (background) / 255 (mitochondrion)",
    )
    (tmp_path / "training.tif").unlink()
    expect(lambda: epfl.EPFL(root=tmp_path), "training.tif", "file not found", "download epfl")


def test_epfl_bad_slice_table_and_too_few(tmp_path):
    write_epfl(tmp_path, testing=False)
    (tmp_path / "training_slices.csv").write_text("page,original_slice\n0,1\n")
    expect(
        lambda: epfl.EPFL(root=tmp_path), "training_slices.csv", "one row for each of the 8 pages"
    )
    (tmp_path / "training_slices.csv").unlink()
    write_epfl(tmp_path, z=2, testing=False)
    expect(lambda: epfl.EPFL(root=tmp_path), "training.tif", "2 slices are too few")


# --- folder --------------------------------------------------------------------------------
def test_folder_pairs(tmp_path):
    expect(lambda: folder.FolderDataset(root=tmp_path / "x"), "x", "images/ and masks/")
    write_folder(tmp_path)
    (tmp_path / "masks" / "img01.png").unlink()
    expect(
        lambda: folder.FolderDataset(root=tmp_path),
        "img01.png",
        "image without mask",
        "masks/img01",
    )
    write_folder(tmp_path)
    png(tmp_path / "masks" / "extra.png", np.zeros((40, 50), np.uint8))
    expect(
        lambda: folder.FolderDataset(root=tmp_path),
        "extra.png",
        "mask without image",
        "images/extra",
    )


def test_folder_size_channels_classes(tmp_path):
    write_folder(tmp_path)
    png(tmp_path / "masks" / "img01.png", np.zeros((20, 50), np.uint8))
    expect(
        lambda: folder.FolderDataset(root=tmp_path), "img01.png", "20x50", "same height and width"
    )
    write_folder(tmp_path, num_classes=3)
    expect(
        lambda: folder.FolderDataset(root=tmp_path, num_classes=2, in_channels=3),
        "channel(s); expected 3",
    )
    write_folder(tmp_path, num_classes=4)
    expect(
        lambda: folder.FolderDataset(root=tmp_path, num_classes=3),
        "masks/img0",
        "class id 3",
        "0..2",
    )


def test_folder_empty_duplicates_too_few(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    expect(lambda: folder.FolderDataset(root=tmp_path), "images", "no PNG or TIFF images")
    write_folder(tmp_path, n=2)
    expect(
        lambda: folder.FolderDataset(root=tmp_path), "2 labelled images are too few", "at least 3"
    )
    write_folder(tmp_path, n=4)
    png(tmp_path / "images" / "img00.png", np.zeros((40, 50), np.uint8))  # img00.tif exists too
    expect(lambda: folder.FolderDataset(root=tmp_path), "img00", "one file per stem")
