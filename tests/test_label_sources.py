"""Label sources: which labels a run trains and validates on (--labels), chosen by name."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import jaccard_score

from seg_bench.cli import main
from seg_bench.config import RunConfig, resolve_config
from seg_bench.data import create_datamodule
from seg_bench.errors import UserError
from seg_bench.labels import ManualLabels, label_quality
from seg_bench.labels.source import METHODS
from seg_bench.registry import LABEL_SOURCES


@pytest.fixture(scope="module")
def train_samples():
    dm = create_datamodule("synthetic", n_train=3, n_val=1, n_test=1, image_size=64)
    return dm.load_split("train")


def test_the_registered_sources_are_manual_and_each_weak_label_method():
    assert LABEL_SOURCES.names() == sorted(["manual", *METHODS])
    assert LABEL_SOURCES.create("floodfill").name == "floodfill"
    assert LABEL_SOURCES.create("region", seed=4).seed == 4


def test_manual_labels_leave_the_samples_untouched_and_record_no_quality(train_samples):
    source = LABEL_SOURCES.create("manual", options={"jitter": 2.0}, seed=3)
    assert isinstance(source, ManualLabels) and source.name == "manual"
    assert source(train_samples, "train", 2) is train_samples
    assert source.quality == {}


@pytest.mark.parametrize("method", list(METHODS))
def test_weak_labels_replace_masks_and_record_their_mean_agreement(train_samples, method):
    source = LABEL_SOURCES.create(method, seed=1)
    weak = source(train_samples, "train", 2)
    assert [s.id for s in weak] == [s.id for s in train_samples]
    for w, s in zip(weak, train_samples, strict=True):
        assert w.image is s.image and w.meta is s.meta
        assert w.mask.dtype == np.uint8 and set(np.unique(w.mask)) <= {0, 1}
        assert w.instances.dtype == np.int32 and ((w.instances > 0) == (w.mask > 0)).all()
    assert not all((w.mask == s.mask).all() for w, s in zip(weak, train_samples, strict=True))
    # Oracle for the recorded IoU: scikit-learn's Jaccard index, averaged over the images.
    pairs = zip(weak, train_samples, strict=True)
    ious = [jaccard_score(s.mask.ravel() > 0, w.mask.ravel()) for w, s in pairs]
    assert source.quality["train"]["iou"] == pytest.approx(np.mean(ious))
    assert set(source.quality["train"]) == {"iou", "dice", "kappa"}
    assert 0.0 < source.quality["train"]["iou"] < 1.0  # weak labels overlap the truth, inexactly


def test_weak_labels_depend_on_the_seed_only_through_the_clicks(train_samples):
    def masks(seed, **options):
        source = LABEL_SOURCES.create("region", options=options, seed=seed)
        return [s.mask for s in source(train_samples, "train", 2)]

    same = masks(5, mode="random")
    assert all((a == b).all() for a, b in zip(same, masks(5, mode="random"), strict=True))
    assert any((a != b).any() for a, b in zip(same, masks(6, mode="random"), strict=True))
    # centroid clicks do not use the seed
    assert all((a == b).all() for a, b in zip(masks(5), masks(6), strict=True))


def test_click_options_reach_the_click_simulation(train_samples):
    source = LABEL_SOURCES.create("floodfill", options={"drop_fraction": 1.0})
    weak = source(train_samples, "val", 2)
    assert not any(s.mask.any() for s in weak)  # every object left without a click
    assert source.quality["val"] == {"iou": 0.0, "dice": 0.0, "kappa": 0.0}
    assert label_quality(weak[0].mask, train_samples[0].mask)["iou"] == 0.0


def test_method_options_reach_the_method(train_samples):
    capped = LABEL_SOURCES.create("region", options={"max_area": 5})(train_samples, "train", 2)
    counts = [np.bincount(s.instances.ravel())[1:] for s in capped]
    assert max(c.max() for c in counts) <= 5


def test_unknown_weak_label_option_names_the_option_and_the_known_ones():
    with pytest.raises(UserError, match=r"unknown option\(s\) \['gap'\] for --labels floodfill"):
        LABEL_SOURCES.create("floodfill", options={"gap": 2})
    with pytest.raises(UserError, match="known: mode, jitter, drop_fraction, threshold"):
        LABEL_SOURCES.create("region", options={"return_used": True})


def test_weak_labels_refuse_a_multiclass_dataset(train_samples):
    with pytest.raises(UserError, match="--labels region needs a binary dataset.*3 classes"):
        LABEL_SOURCES.create("region")(train_samples, "train", 3)


# --------------------------------------------------------------------- choosing by name


@pytest.mark.parametrize("labels", ["manual", "floodfill", "region"])
def test_config_accepts_every_registered_source(labels):
    assert resolve_config("synthetic", "unet", "smoke", labels=labels).labels == labels


def test_config_names_the_option_for_an_unknown_source():
    with pytest.raises(UserError) as err:
        RunConfig(labels="regoin").validate()
    message = str(err.value)
    assert message.startswith("--labels: unknown label source 'regoin'.")
    assert "Did you mean 'region'?" in message and "\n" not in message


def test_unknown_source_is_a_one_line_cli_error(capsys):
    assert main(["train", "--profile", "smoke", "--labels", "watershed"]) == 2
    err = capsys.readouterr().err
    assert "--labels: unknown label source 'watershed'" in err and err.count("\n") == 1
