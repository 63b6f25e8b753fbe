"""Instance-aware training targets: made from the augmented instances, learned by every
architecture with the right number of channels, scored as foreground IoU in validation."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seg_bench.config import RunConfig, resolve_config
from seg_bench.data.base import RandomPatchDataset, Sample, WholeImageDataset, _PreparedSample
from seg_bench.errors import UserError
from seg_bench.inference.outputs import foreground_classes, output_channels, target_maps
from seg_bench.inference.postprocess import boundary_targets
from seg_bench.registry import MODELS
from seg_bench.training.losses import bce_dice, soft_dice
from seg_bench.training.run_dir import config_key
from seg_bench.training.targets import (
    TargetTransform,
    build_loss,
    distance_target,
    make_target,
    target_transform,
    touching_boundary_targets,
)
from seg_bench.training.task import SegmentationTask


def two_touching_squares():
    lab = np.zeros((8, 12), np.int32)
    lab[1:6, 1:6] = 1
    lab[1:6, 6:11] = 2
    return lab


# --------------------------------------------------------------------------- the targets


def test_distance_target_peaks_once_in_each_touching_object():
    d = distance_target(two_touching_squares())
    # Row 3 crosses both 5x5 squares: distances 1,2,3,2,1 to each square's own boundary.
    assert d[3, 1:11].tolist() == pytest.approx([1 / 3, 2 / 3, 1, 2 / 3, 1 / 3] * 2)
    assert d[0].max() == 0 and d[:, 0].max() == 0 and d.dtype == np.float32


def test_distance_target_of_an_object_on_the_image_edge_still_falls_to_the_edge():
    lab = np.zeros((3, 5), np.int32)
    lab[:, :3] = 4  # touches three image borders
    assert distance_target(lab)[1, :3].tolist() == pytest.approx([0.5, 1.0, 0.5])


def test_boundary3_target_separates_touching_objects_with_boundary_pixels():
    t = make_target("boundary3", two_touching_squares())
    assert t.dtype == np.int64
    assert t[3].tolist() == [0, 2, 1, 1, 1, 2, 2, 1, 1, 1, 2, 0]


def test_touching_boundaries_mark_only_where_objects_meet():
    t = make_target("boundary3", two_touching_squares(), {"boundary": "touching", "reach": 1})
    assert t.dtype == np.int64
    assert t[3].tolist() == [0, 1, 1, 1, 1, 2, 2, 1, 1, 1, 1, 0]
    assert (t[1:6, 5:7] == 2).all() and (t == 2).sum() == 10  # one column each, 5 rows
    alone = two_touching_squares() * (two_touching_squares() == 1)
    assert not (touching_boundary_targets(alone) == 2).any()  # no rim: all interior


def test_touching_reach_spans_a_gap_between_objects():
    lab = np.zeros((5, 9), np.int32)
    lab[:, 1:4], lab[:, 5:8] = 1, 2  # one background column between them
    assert (touching_boundary_targets(lab, reach=1) == 2).sum() == 0
    assert touching_boundary_targets(lab, reach=2)[2].tolist() == [0, 1, 1, 2, 0, 2, 1, 1, 0]


def _near_another_object(lab, reach):
    """Brute force: an object pixel whose (2 reach + 1)^2 window holds another object's pixel."""
    out = np.zeros(lab.shape, bool)
    for y, x in zip(*np.nonzero(lab), strict=True):
        window = lab[max(y - reach, 0) : y + reach + 1, max(x - reach, 0) : x + reach + 1]
        out[y, x] = bool(((window != 0) & (window != lab[y, x])).any())
    return out


@pytest.mark.parametrize("reach", [1, 2, 3])
def test_touching_boundaries_match_a_brute_force_search(reach):
    from skimage.draw import disk

    rng = np.random.default_rng(reach)
    lab = np.zeros((48, 48), np.int32)
    for k in range(1, 13):  # later discs overlap earlier ones: many touching pairs
        centre = rng.integers(4, 44, 2)
        lab[disk(tuple(centre), rng.integers(3, 8), shape=lab.shape)] = k
    t = touching_boundary_targets(lab, reach)
    assert ((t == 2) == _near_another_object(lab, reach)).all()
    assert ((t == 1) == ((lab > 0) & ~_near_another_object(lab, reach))).all()
    assert (t == 2).any() and (t == 1).any()


def test_boundary_options_are_checked_in_one_line():
    ok = RunConfig(target="boundary3", target_options={"boundary": "touching", "reach": 3})
    assert ok.validate().target_options == {"boundary": "touching", "reach": 3}
    assert config_key(ok) != config_key(RunConfig(target="boundary3"))
    bad = [
        ({"boundary": "touch"}, "did you mean 'touching'"),
        ({"reach": 2}, "reach applies to boundary: touching"),
        ({"boundary": "touching", "reach": 0}, "reach 0: give a whole number of pixels >= 1"),
        ({"boundary": "touching", "reach": 1.5}, "reach 1.5: give a whole number"),
    ]
    for options, message in bad:
        with pytest.raises(UserError, match=message):
            RunConfig(target="boundary3", target_options=options).validate()


def test_the_runs_target_options_reach_the_data_pipeline():
    transform = target_transform("boundary3", FakeData("dsb2018"), {"boundary": "touching"})
    item = transform({"instances": torch.from_numpy(two_touching_squares())})
    assert torch.equal(
        item["target"],
        torch.from_numpy(
            make_target("boundary3", two_touching_squares(), {"boundary": "touching"})
        ),
    )
    assert item["target"][3, 1].item() == 1  # the outer rim stays interior


def test_target_transform_uses_the_augmented_instances():
    lab = two_touching_squares()
    lab[1:6, 6:11] = 0  # one square only, on the left
    image = np.zeros((8, 12, 1), np.uint8)
    sample = _PreparedSample(Sample("a", image, (lab > 0).astype(np.uint8), lab))

    def flip(image, mask, instances):
        return {"image": image[:, ::-1], "mask": mask[:, ::-1], "instances": instances[:, ::-1]}

    ds = RandomPatchDataset([sample], 8, 1, flip, target_transform=TargetTransform("boundary3"))
    item = ds[0]
    # The flipped square sits on the right: its target is made there, never on the left.
    assert (item["target"].numpy() == boundary_targets(item["instances"].numpy())).all()
    assert item["target"][:, 6:].any() and not item["target"][:, :2].any()
    whole = WholeImageDataset([sample], TargetTransform("distance"))[0]
    assert torch.equal(whole["target"], torch.from_numpy(distance_target(lab)))


class FakeData:
    def __init__(self, name, num_classes=2, instance_metric="dsb", positive="nucleus"):
        self.name, self.num_classes = name, num_classes
        self.instance_metric, self.positive_class = instance_metric, positive


def test_which_datasets_may_use_which_target():
    assert target_transform("binary", FakeData("isbi2012", instance_metric="em")) is None
    assert target_transform("distance", FakeData("epfl", instance_metric=None)) is not None
    with pytest.raises(UserError, match="target=boundary3: isbi2012's instances are the cells"):
        target_transform("boundary3", FakeData("isbi2012", 2, "em", "membrane"))
    with pytest.raises(UserError, match="target=distance: multi has 4 classes"):
        target_transform("distance", FakeData("multi", num_classes=4))


def test_a_target_the_dataset_cannot_make_stops_before_the_run_folder_exists(tmp_path):
    from data_fixtures import write_isbi2012

    from seg_bench.training.run_dir import prepare_run

    write_isbi2012(tmp_path / "isbi2012")
    cfg = resolve_config(
        "isbi2012", "unet", "smoke", root=str(tmp_path / "isbi2012"), target="distance"
    )
    with pytest.raises(UserError, match="^--set target=distance: isbi2012's instances are the"):
        prepare_run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- config


def test_target_is_a_run_option_with_a_one_line_error():
    assert RunConfig(target="distance").validate().loss == "distance_bce_mse"
    assert RunConfig(target="boundary3").validate().loss == "boundary3_ce_dice"
    assert RunConfig().validate().loss == "bce_dice"
    with pytest.raises(UserError, match="target=contour: unknown target; known: binary"):
        RunConfig(target="contour").validate()
    with pytest.raises(UserError, match="needs --set target=boundary3"):
        RunConfig(loss="boundary3_ce_dice").validate()
    with pytest.raises(UserError, match=r"\['boundary_weight'\] do not apply to target distance"):
        RunConfig(target="distance", target_options={"boundary_weight": 3}).validate()
    with pytest.raises(UserError, match="W must be > 0"):
        RunConfig(target="boundary3", target_options={"boundary_weight": 0}).validate()


def test_set_target_reaches_the_config():
    cfg = resolve_config("synthetic", "unet", "smoke", target="boundary3")
    assert cfg.target == "boundary3" and cfg.to_dict()["target"] == "boundary3"


def test_binary_runs_keep_their_config_key():
    cfg = RunConfig().validate()
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("target", "target_options")}
    assert config_key(cfg) == config_key(old)
    assert config_key(dataclasses.replace(cfg, target="distance")) != config_key(cfg)


# --------------------------------------------------------------------------- losses


def test_boundary3_loss_is_weighted_cross_entropy_plus_dice():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 6)
    target = torch.randint(0, 3, (2, 6, 6))
    batch = {"target": target, "mask": (target > 0).long()}
    loss = build_loss("boundary3", "boundary3_ce_dice", {"boundary_weight": 4.0})(logits, batch)
    ce = F.cross_entropy(logits, target, weight=torch.tensor([1.0, 1.0, 4.0]))
    assert loss.item() == pytest.approx((ce + soft_dice(logits, {"mask": target})).item())


def test_boundary_weight_makes_missed_boundaries_cost_more():
    logits = torch.zeros(1, 3, 4, 4)
    logits[:, 1] = 5.0  # says "interior" everywhere
    target = torch.full((1, 4, 4), 2)  # all boundary
    batch = {"target": target, "mask": torch.ones(1, 4, 4, dtype=torch.long)}
    low = build_loss("boundary3", "boundary3_ce_dice", {"boundary_weight": 1.0})(logits, batch)
    target[0, :2] = 1  # half interior: the weight now shifts the mean towards the boundaries
    high = build_loss("boundary3", "boundary3_ce_dice", {"boundary_weight": 9.0})(logits, batch)
    even = build_loss("boundary3", "boundary3_ce_dice", {"boundary_weight": 1.0})(logits, batch)
    assert high > even and low > even


def test_distance_loss_is_foreground_bce_dice_plus_distance_mse():
    torch.manual_seed(1)
    logits = torch.randn(2, 2, 5, 5)
    mask = torch.randint(0, 2, (2, 5, 5))
    dist = torch.rand(2, 5, 5) * mask
    batch = {"mask": mask, "target": dist}
    loss = build_loss("distance", "distance_bce_mse")(logits, batch)
    mse = F.mse_loss(torch.sigmoid(logits[:, 1]), dist)
    assert loss.item() == pytest.approx((bce_dice(logits[:, :1], batch) + mse).item())


# --------------------------------------------------------------------------- outputs


def test_output_channels_follow_the_target():
    assert [output_channels(t, 2) for t in ("binary", "boundary3", "distance")] == [1, 3, 2]
    assert output_channels("binary", 4) == 4


def test_validation_scores_the_foreground_of_every_target():
    logits = torch.tensor([[[[5.0, 0, 0]], [[0, 5.0, 0]], [[0, 0, 5.0]]]])  # bg, interior, bnd
    assert foreground_classes(logits, "boundary3").tolist() == [[[0, 1, 1]]]
    dist = torch.tensor([[[[-2.0, 3.0]], [[9.0, -9.0]]]])  # foreground from channel 0 only
    assert foreground_classes(dist, "distance").tolist() == [[[0, 1]]]
    with pytest.raises(ValueError, match="boundary3 needs 3 logit channels, got 2"):
        foreground_classes(dist, "boundary3")


def test_target_maps_give_foreground_and_seeds():
    logits = torch.log(torch.tensor([[[0.7]], [[0.2]], [[0.1]]]))
    fg, seeds = target_maps(logits, "boundary3")
    assert fg.item() == pytest.approx(0.3) and seeds.item() == pytest.approx(0.2)
    fg, seeds = target_maps(torch.zeros(1, 2, 2), "binary")
    assert seeds is None and fg.tolist() == [[0.5, 0.5], [0.5, 0.5]]
    fg, seeds = target_maps(torch.tensor([[[0.0]], [[100.0]]]), "distance")
    assert fg.item() == 0.5 and seeds.item() == pytest.approx(1.0)


# The built-in architectures (tests elsewhere register toys, e.g. one that turns NaN on purpose);
# the two largest Tiramisus are left out for time: tiramisu56 has the same blocks.
BUILT_IN = sorted(
    n
    for n in MODELS.names()
    if MODELS.get(n).__module__.startswith("seg_bench.models")
    and n not in ("tiramisu103", "tiramisu67")
)


@pytest.mark.parametrize("target", ["binary", "boundary3", "distance"])
@pytest.mark.parametrize("model", BUILT_IN)
def test_every_architecture_learns_every_target(model, target):
    torch.manual_seed(0)
    task = SegmentationTask(model=model, in_channels=1, width=0.25, target=target)
    lab = np.zeros((32, 32), np.int32)
    lab[4:14, 4:14], lab[4:14, 14:24], lab[20:28, 8:16] = 1, 2, 3
    two = [lab, lab.T]  # a batch of two: the deepest nets pool 32 px to 1 x 1 (batch norm)
    batch = {
        "image": torch.from_numpy(np.stack([np.where(x > 0, 0.8, 0.1) for x in two]))[:, None],
        "mask": torch.from_numpy(np.stack([x > 0 for x in two]).astype(np.int64)),
        "instances": torch.from_numpy(np.stack(two)),
    }
    if target != "binary":
        batch["target"] = torch.from_numpy(np.stack([make_target(target, x) for x in two]))
    logits = task(batch["image"].float())
    assert logits.shape == (2, output_channels(target, 2), 32, 32)
    batch["image"] = batch["image"].float()
    loss = task.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    grads = [p.grad for p in task.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
