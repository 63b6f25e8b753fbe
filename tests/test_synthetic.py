import numpy as np
import pytest
from scipy import ndimage as ndi

from seg_bench.data import create_datamodule
from seg_bench.data.datasets.synthetic import membrane_image, nuclei_image
from seg_bench.errors import UserError


def test_nuclei_are_deterministic_per_seed():
    a = nuclei_image(np.random.default_rng(3))
    b = nuclei_image(np.random.default_rng(3))
    c = nuclei_image(np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_nuclei_are_brighter_than_background_and_inverted_variant_darker():
    image, labels = nuclei_image(np.random.default_rng(0))
    assert image[labels > 0].mean() > image[labels == 0].mean() + 50
    image_inv, labels_inv = nuclei_image(np.random.default_rng(0), invert=True)
    assert image_inv[labels_inv > 0].mean() < image_inv[labels_inv == 0].mean() - 50


def test_some_nuclei_touch():
    touching = 0
    for seed in range(10):
        _, labels = nuclei_image(np.random.default_rng(seed))
        # Two different ids side by side means two nuclei touch.
        touching += np.any(
            (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
        )
    assert touching >= 3


def test_every_nucleus_is_one_connected_object():
    # Before, 4 ids in these 20 images were cut in two by a later nucleus, so a prediction
    # of exactly the visible objects lost AP on a "split" it did not make.
    for seed in range(20):
        _, labels = nuclei_image(np.random.default_rng(seed))
        ids = np.unique(labels)[1:]
        assert all(ndi.label(labels == k)[1] == 1 for k in ids), seed


def test_membranes_separate_cells():
    image, membrane, cells = membrane_image(np.random.default_rng(0))
    assert set(np.unique(membrane)) == {0, 1}
    assert np.all(cells[membrane == 1] == 0)
    # Every cell id is one connected region bounded by membrane.
    for cid in np.unique(cells)[1:6]:
        assert ndi.label(cells == cid)[1] >= 1
    assert image[membrane == 1].mean() < image[membrane == 0].mean() - 20


def test_datamodule_splits_are_disjoint_and_reproducible():
    dm = create_datamodule("synthetic", n_train=3, n_val=2, n_test=2, image_size=64, patch_size=32)
    dm2 = create_datamodule(
        "synthetic", n_train=3, n_val=2, n_test=2, image_size=64, patch_size=32, seed=5
    )
    train, test = dm.samples("train"), dm.samples("test")
    assert len(train) == 3 and len(test) == 2
    assert not np.array_equal(train[0].image, test[0].image)
    # The training seed does not change the data: seeds measure training variance only.
    assert np.array_equal(train[0].image, dm2.samples("train")[0].image)


def test_batches_follow_the_contract():
    dm = create_datamodule(
        "synthetic",
        n_train=2,
        n_val=1,
        n_test=1,
        image_size=64,
        patch_size=32,
        batch_size=2,
        num_workers=0,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 1, 32, 32) and batch["image"].dtype.is_floating_point
    assert batch["mask"].shape == (2, 32, 32) and set(batch["mask"].unique().tolist()) <= {0, 1}
    # Instances and mask agree after augmentation.
    assert ((batch["instances"] > 0) == (batch["mask"] > 0)).all()
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (1, 1, 64, 64)


def test_patch_larger_than_images_is_a_clear_error():
    dm = create_datamodule("synthetic", n_train=1, n_val=1, n_test=1, image_size=64, patch_size=128)
    with pytest.raises(UserError, match="--patch-size 128 is larger than .*\(64px\)"):
        dm.setup("fit")


def test_unknown_variant_and_dataset():
    with pytest.raises(UserError, match="variant"):
        create_datamodule("synthetic", variant="blobs")
    with pytest.raises(UserError, match="unknown dataset 'synth'.*synthetic"):
        create_datamodule("synth")
