"""Named post-processing methods (seg_bench/inference/instances.py) on hand-made images whose
answers are known: two touching discs are one object for the labelling methods and two for
the watershed methods; each foreground rule keeps exactly the pixels it promises."""

import numpy as np
import pytest
from skimage.filters import threshold_otsu

from seg_bench.errors import UserError
from seg_bench.inference import instances
from seg_bench.inference.instances import (
    PEAK_H,
    POSTPROCESSORS,
    clear_seed_peaks,
    methods_for,
    run_method,
    seed_peaks,
)
from seg_bench.inference.tuning import grid_points, grown_grid, tune
from seg_bench.metrics.instance import dsb_average_precision
from seg_bench.training.targets import distance_target

LABELLING = ["threshold_cc", "otsu_bfs", "hysteresis"]
WATERSHEDS = ["kmeans_watershed", "distance_watershed", "seeded_watershed"]


def touching_discs(shape=(40, 60), r=10, centres=((20, 20), (20, 37))):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centres, start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = k
    return lab


def prob_of(lab, inside=0.9, outside=0.05):
    return np.where(lab > 0, inside, outside).astype(np.float32)


def seeds_for(name, lab):
    return distance_target(lab) if POSTPROCESSORS[name].needs_seeds else None


def test_the_six_methods_of_the_seeds_are_registered():
    assert set(POSTPROCESSORS) == set(LABELLING + WATERSHEDS)


@pytest.mark.parametrize("name", LABELLING)
def test_labelling_methods_keep_two_touching_discs_as_one_object(name):
    lab = touching_discs()
    out = run_method(name, prob_of(lab), seeds_for(name, lab))
    assert out.max() == 1
    assert ((out > 0) == (lab > 0)).all()


@pytest.mark.parametrize("name", WATERSHEDS)
def test_watershed_methods_split_two_touching_discs(name):
    lab = touching_discs()
    out = run_method(name, prob_of(lab), seeds_for(name, lab))
    assert out.max() == 2
    ap = dsb_average_precision(lab, out)[1]
    assert ap[0] == 1.0  # both discs matched at IoU > 0.5


def test_otsu_finds_objects_a_fixed_threshold_of_one_half_misses():
    lab = touching_discs(centres=((10, 10), (28, 45)), r=6)
    prob = prob_of(lab, inside=0.35, outside=0.1)  # a weak but clean network output
    assert run_method("threshold_cc", prob, threshold=0.5).max() == 0
    out = run_method("otsu_bfs", prob)
    assert out.max() == 2
    assert ((out > 0) == (prob > threshold_otsu(prob))).all()


def test_hysteresis_keeps_weak_pixels_only_when_connected_to_strong_ones():
    prob = np.full((10, 20), 0.05, np.float32)
    prob[2:6, 2:6] = 0.5  # weak object with a strong core
    prob[3, 3] = 0.9
    prob[2:6, 12:16] = 0.5  # weak object alone
    out = run_method("hysteresis", prob, low=0.3, high=0.8)
    assert out.max() == 1
    assert (out[2:6, 2:6] == 1).all() and (out[2:6, 12:16] == 0).all()


def test_kmeans_separates_two_intensity_levels_without_a_threshold():
    lab = touching_discs(centres=((10, 10), (28, 45)), r=6)
    prob = prob_of(lab, inside=0.3, outside=0.1)
    out = run_method("kmeans_watershed", prob)
    assert out.max() == 2 and ((out > 0) == (lab > 0)).all()


def test_seeded_watershed_follows_the_seeds_not_the_shape():
    # One square of foreground with two seed plateaus: two objects, split between them.
    prob = np.zeros((10, 20), np.float32)
    prob[2:8, 2:18] = 0.9
    seeds = np.zeros_like(prob)
    seeds[4:6, 4:6] = 1.0
    seeds[4:6, 14:16] = 1.0
    out = run_method("seeded_watershed", prob, seeds)
    assert out.max() == 2
    assert out[5, 3] != out[5, 16] and (out[2:8, 2:18] > 0).all()


def _big_and_small(big_r: int, small_r: int):
    """A big disc at (24, 24) and a smaller one just right of it, touching; the seed map a
    distance network gives, with the small nucleus' peak under 0.5 (0.4: its seed missed)."""
    lab = touching_discs(shape=(48, 64), centres=((24, 24),), r=big_r)
    yy, xx = np.mgrid[:48, :64]
    cx = 24 + big_r + small_r - 1
    lab[((yy - 24) ** 2 + (xx - cx) ** 2 < small_r**2) & (lab == 0)] = 2
    seeds = distance_target(lab)
    seeds[lab == 2] *= 0.4
    return lab, seeds


def test_seeded_watershed_with_grow_keeps_a_seedless_small_nucleus_apart():
    """The plain watershed floods the small nucleus from the big one's seed (a merge); with
    grow 4 the small nucleus' own peak, beyond 4 px of the big seed, is a marker, and both
    nuclei come out whole."""
    lab, seeds = _big_and_small(10, 5)
    prob = prob_of(lab)
    flooded = run_method("seeded_watershed", prob, seeds, seed_threshold=0.5)
    assert flooded.max() == 1
    kept = run_method("seeded_watershed", prob, seeds, seed_threshold=0.5, grow=4)
    assert kept.max() == 2
    assert dsb_average_precision(lab, kept)[1][5] == 1.0  # both matched at IoU > 0.75


def test_seeded_watershed_grow_leaves_the_neighbours_rim_to_the_neighbour():
    """A bigger seeded disc (r 14) touching a seedless one (r 6): the extra marker is the small
    disc's peak, not the whole far region, so the big disc's rim stays with it."""
    lab, seeds = _big_and_small(14, 6)
    out = run_method("seeded_watershed", prob_of(lab), seeds, seed_threshold=0.5, grow=4)
    assert out.max() == 2
    assert (out[lab == 1] == out[24, 24]).mean() > 0.97


@pytest.mark.parametrize("grow", [0, 4, 8, 12])
@pytest.mark.parametrize("seed_threshold", [0.5, 0.7, 0.85])
def test_seeded_watershed_keeps_one_large_nucleus_whole_for_any_grow(grow, seed_threshold):
    """Its flank beyond grow px of the seed rises towards the seed: no peak, no extra marker."""
    lab = touching_discs(centres=((20, 30),), r=18)
    out = run_method(
        "seeded_watershed",
        prob_of(lab),
        distance_target(lab),
        seed_threshold=seed_threshold,
        grow=grow,
    )
    assert out.max() == 1 and ((out > 0) == (lab > 0)).all()


def test_seed_peaks_are_skimages_h_maxima_and_follow_a_changed_map():
    from skimage.morphology import h_maxima

    clear_seed_peaks()
    seeds = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    first = seed_peaks(seeds)
    np.testing.assert_array_equal(first, h_maxima(seeds, PEAK_H).astype(bool))
    assert seed_peaks(seeds.copy()) is first  # an equal map is served the kept peaks
    assert not first.flags.writeable  # so no caller can change what others are served
    seeds[5:10, 5:10] = 2.0  # changed in place: a plateau that is a peak of its own
    np.testing.assert_array_equal(seed_peaks(seeds), h_maxima(seeds, PEAK_H).astype(bool))
    assert seed_peaks(seeds)[7, 7] and not first[7, 7]


def test_tuning_finds_the_same_point_with_and_without_kept_peaks(monkeypatch):
    images = []
    for big_r, small_r in ((10, 5), (14, 6), (12, 4)):
        lab, seeds = _big_and_small(big_r, small_r)
        images.append((prob_of(lab), seeds, lab))

    def score(truth, pred):
        return dsb_average_precision(truth, pred)[0]

    clear_seed_peaks()
    kept = tune("seeded_watershed", images, score)
    monkeypatch.setattr(instances, "PEAK_CACHE_BYTES", 0)  # every peak forgotten at once
    clear_seed_peaks()
    assert tune("seeded_watershed", images, score) == kept
    assert len(instances._peak_cache) == 0 and kept[0]["grow"] > 0


def test_fill_holes_and_min_size_are_options_of_every_method():
    prob = np.full((20, 20), 0.05, np.float32)
    prob[2:12, 2:12] = 0.9
    prob[6, 6] = 0.05  # a hole
    prob[16, 16] = 0.9  # a one-pixel speck
    plain = run_method("threshold_cc", prob)
    assert plain.max() == 2 and plain[6, 6] == 0
    cleaned = run_method("threshold_cc", prob, fill_holes=True, min_size=2)
    assert cleaned.max() == 1 and cleaned[6, 6] == 1 and cleaned[16, 16] == 0


def test_seeded_method_without_seeds_names_the_method_and_the_fix():
    with pytest.raises(UserError, match="seeded_watershed needs a seed map.*target=boundary3"):
        run_method("seeded_watershed", prob_of(touching_discs()))


def test_a_three_class_output_given_to_a_single_map_method_is_refused():
    prob3 = np.stack([prob_of(touching_discs())] * 3)
    with pytest.raises(UserError, match=r"threshold_cc takes one \(H, W\).*\(3, 40, 60\)"):
        run_method("threshold_cc", prob3)


def test_unknown_method_and_option_are_named():
    with pytest.raises(UserError, match="unknown post-processing method 'snake'"):
        run_method("snake", prob_of(touching_discs()))
    with pytest.raises(UserError, match=r"otsu_bfs: unknown option\(s\) \['threshold'\]"):
        run_method("otsu_bfs", prob_of(touching_discs()), threshold=0.5)


def test_methods_for_an_output_without_seeds_leave_out_the_seeded_one():
    assert "seeded_watershed" not in methods_for(False)
    assert methods_for(True) == list(POSTPROCESSORS)


def test_grid_points_cover_the_product_and_skip_inverted_hysteresis():
    assert len(grid_points("threshold_cc")) == 3 * 3
    assert all(p["low"] <= p["high"] for p in grid_points("hysteresis"))


def test_tune_picks_the_grid_point_that_removes_a_false_object():
    lab = touching_discs(centres=((10, 10), (28, 45)), r=6)
    prob = prob_of(lab)
    prob[30:33, 5:8] = 0.55  # a 9-pixel false object between the thresholds 0.5 and 0.6
    images = [(prob, None, lab)]
    params, value = tune("threshold_cc", images, lambda t, p: dsb_average_precision(t, p)[0])
    assert value == 1.0
    # The first grid point found best is kept: threshold 0.4 with min_size 15 removes it too.
    assert params == {"threshold": 0.4, "min_size": 15}


def test_grown_grid_adds_one_step_past_a_binding_end_within_the_limits():
    grid = {"threshold": (0.4, 0.5, 0.6), "min_size": (0, 15, 30)}
    assert grown_grid(grid, {"threshold": 0.6, "min_size": 30}) == {
        "threshold": (0.4, 0.5, 0.6, 0.7),
        "min_size": (0, 15, 30, 45),
    }
    # Inside values leave the axis alone; min_size cannot go below 0.
    assert grown_grid(grid, {"threshold": 0.5, "min_size": 0}) == grid
    assert grown_grid(grid, {"threshold": 0.4, "min_size": 15})["threshold"] == (0.3, 0.4, 0.5, 0.6)
    # Probabilities stop at 0.95: one clipped step, then none.
    top = {"threshold": (0.8, 0.9), "min_size": (15,)}
    assert grown_grid(top, {"threshold": 0.9, "min_size": 15})["threshold"] == (0.8, 0.9, 0.95)
    top = {"threshold": (0.9, 0.95), "min_size": (15,)}
    assert grown_grid(top, {"threshold": 0.95, "min_size": 15}) == top


def test_tune_grows_min_size_past_the_grid_when_its_end_is_best():
    """False objects of 9, 20 and 42 pixels: min_size 15 and 30 (the shipped grid's top)
    remove only some, 45 (one step beyond) removes all three and scores 1.0."""
    lab = touching_discs(shape=(60, 60), centres=((12, 12), (12, 45)), r=7)
    prob = prob_of(lab)
    for (y, x), (h, w) in {(30, 5): (3, 3), (30, 20): (4, 5), (45, 30): (6, 7)}.items():
        prob[y : y + h, x : x + w] = 0.9
    images = [(prob, None, lab)]
    params, value = tune("threshold_cc", images, lambda t, p: dsb_average_precision(t, p)[0])
    assert value == 1.0
    assert params["min_size"] == 45
    # The shipped grid alone tops out below 1: two true objects and one false one.
    shipped_top = run_method("threshold_cc", prob, min_size=30)
    assert dsb_average_precision(lab, shipped_top)[0] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- evaluation


class _Sample:
    def __init__(self, image, instances, kind):
        self.id, self.image, self.instances = f"img-{kind}", image, instances
        self.mask = (instances > 0).astype(np.uint8)
        self.meta = {"type": kind}


class _DSB:
    """The part of a DataModule that evaluate reads."""

    name, instance_metric, patch_size = "dsb2018", "dsb", 64

    def __init__(self, samples):
        self._samples = samples

    def samples(self, split):
        return self._samples


def _distance_model():
    """A 1x1 convolution that reads channel 0 as the foreground and channel 1 as the distance
    (logits +-10 around 0.5): a perfect 'distance' network for images built from the truth."""
    import torch

    conv = torch.nn.Conv2d(2, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = conv.weight[1, 1, 0, 0] = 20.0
        conv.bias.fill_(-10.0)
    return conv.eval()


def test_evaluation_scores_every_method_per_image_with_validation_tuned_parameters():
    from seg_bench.config import RunConfig
    from seg_bench.evaluation.evaluate import evaluate

    lab = touching_discs()
    image = np.stack([(lab > 0).astype(np.float32), distance_target(lab)], axis=-1)
    cfg = RunConfig(dataset="dsb2018", target="distance", accelerator="cpu").validate()
    result = evaluate(_distance_model(), _DSB([_Sample(image, lab, "fluorescence")]), cfg)
    rec = result["per_image"][0]
    assert set(rec["methods"]) == set(POSTPROCESSORS) and rec["type"] == "fluorescence"
    cc, seeded = rec["methods"]["threshold_cc"], rec["methods"]["seeded_watershed"]
    # One blob over both discs: a merge; disc 2 (which kept the shared pixels) is the larger,
    # so the blob's IoU with it is above 1/2 and it still counts as found.
    assert (lab == 2).sum() > (lab == 1).sum()
    assert (cc["tp"], cc["fp"], cc["fn"], cc["merges"], cc["splits"]) == (1, 0, 1, 1, 0)
    assert (seeded["tp"], seeded["fp"], seeded["fn"], seeded["merges"]) == (2, 0, 0, 0)
    assert seeded["ap50"] == 1.0 and seeded["map"] > 0.9
    tuned = result["postprocess_methods"]
    assert set(tuned["seeded_watershed"]["params"]) == {
        "threshold",
        "seed_threshold",
        "grow",
        "min_size",
    }
    assert tuned["seeded_watershed"]["val_map"] == seeded["map"]  # val = test image here
    assert result["postprocess"]["method"] == "seeded_watershed"
    assert result["overall"]["dsb_map"] == seeded["map"] and result["target"] == "distance"


def test_three_class_post_processing_of_a_binary_checkpoint_is_one_line_naming_it():
    from seg_bench.config import RunConfig
    from seg_bench.inference.instances import check_target_postprocess
    from seg_bench.inference.postprocess import PostprocessConfig

    three = PostprocessConfig(three_class=True)
    with pytest.raises(UserError, match="^runs/a.ckpt: postprocess three_class reads a back"):
        check_target_postprocess("binary", three, "runs/a.ckpt")
    check_target_postprocess("boundary3", three, "runs/b.ckpt")  # what it is made for
    with pytest.raises(UserError, match="postprocess.three_class reads a 3-class output"):
        RunConfig(target="distance", postprocess={"three_class": True}).validate()


def test_instances_from_logits_follow_the_target():
    import torch

    from seg_bench.inference.instances import instances_from_logits
    from seg_bench.inference.postprocess import PostprocessConfig, boundary_targets

    lab = touching_discs()
    onehot = np.eye(3, dtype=np.float32)[boundary_targets(lab)].transpose(2, 0, 1)
    logits = torch.from_numpy(onehot * 20 - 10)
    fg, seeded = instances_from_logits(logits, "boundary3", PostprocessConfig())
    assert seeded.max() == 2 and ((fg > 0.5) == (lab > 0)).all()
    _, by_classes = instances_from_logits(logits, "boundary3", PostprocessConfig(three_class=True))
    assert dsb_average_precision(lab, by_classes)[0] == 1.0
    binary = torch.from_numpy(((lab > 0) * 20 - 10).astype(np.float32))[None]
    assert instances_from_logits(binary, "binary", PostprocessConfig())[1].max() == 1
    # The seeded watershed takes the threshold it is given: 1 (an int, as YAML reads it)
    # leaves no foreground; it was replaced by 0.5 without a word.
    assert instances_from_logits(logits, "boundary3", PostprocessConfig(threshold=1))[1].max() == 0
    with pytest.raises(UserError, match="seeded watershed at a fixed threshold"):
        instances_from_logits(logits, "distance", PostprocessConfig(threshold="otsu"))


def test_kmeans_finds_no_foreground_in_a_map_without_two_populations():
    rng = np.random.default_rng(0)
    flat = (0.6 + rng.normal(0, 0.002, (64, 64))).astype(np.float32)  # an untrained network
    assert run_method("kmeans_watershed", flat).max() == 0
    lab = touching_discs(centres=((10, 10), (28, 45)), r=6)
    just_apart = prob_of(lab, inside=0.22, outside=0.1)  # cluster means 0.12 apart
    assert run_method("kmeans_watershed", just_apart).max() == 2
