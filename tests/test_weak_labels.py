"""Weak labels from click points: flood fill, region growing, click simulation, I/O."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from region_growing_reference import region_growing_reference as _region_growing_reference

from seg_bench.errors import UserError
from seg_bench.labels import (
    click_points_from_instances,
    flood_fill_labels,
    label_quality,
    read_points_csv,
    region_growing_labels,
    validate_points,
    weak_labels,
)


def make_blobs(shape=(120, 120), grid=3, noise=0.1, seed=0):
    """Discs on a grid (one per cell, well separated) on a noisy background.

    Returns image, instance labels (disc k = label k) and the disc centres as (x, y).
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    ch, cw = h / grid, w / grid
    yy, xx = np.mgrid[:h, :w]
    inst = np.zeros(shape, np.int32)
    img = np.full(shape, 0.15)
    centres = []
    for k in range(grid * grid):
        i, j = divmod(k, grid)
        r = rng.uniform(0.25, 0.35) * min(ch, cw)
        cy = (i + 0.5) * ch + rng.uniform(-2, 2)
        cx = (j + 0.5) * cw + rng.uniform(-2, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        inst[disc] = k + 1
        img[disc] = rng.uniform(0.7, 0.9)
        centres.append((round(cx), round(cy)))
    return img + rng.normal(0, noise, shape), inst, np.array(centres)


def per_object_iou(labels, inst):
    out = []
    for k in range(1, inst.max() + 1):
        a, b = labels == k, inst == k
        out.append((a & b).sum() / (a | b).sum())
    return np.array(out)


@pytest.fixture(scope="module")
def blobs():
    return make_blobs()


# ----------------------------------------------------------------------- recovering shapes


@pytest.mark.parametrize(
    "method, kw",
    [
        ("floodfill", {}),
        ("floodfill", {"gap_radius": 0}),
        ("region", {}),
        ("region", {"relative": True}),
        ("region", {"threshold": 0.35}),
    ],
)
def test_methods_recover_blobs(blobs, method, kw):
    img, inst, pts = blobs
    labels = weak_labels(img, pts, method, **kw)
    assert labels.dtype == np.int32 and labels.shape == img.shape
    assert label_quality(labels, inst)["iou"] >= 0.9
    # label k comes from point k, which sits in object k
    assert per_object_iou(labels, inst).min() >= 0.85


def test_floodfill_dark_objects(blobs):
    img, inst, pts = blobs
    labels = flood_fill_labels(1.0 - img, pts, bright_objects=False)
    assert label_quality(labels, inst)["iou"] >= 0.9
    assert per_object_iou(labels, inst).min() >= 0.85


def test_rgb_is_converted_with_luminance(blobs):
    img, inst, pts = blobs
    rgb = np.stack([img * 0.5, img, img * 2.0], axis=-1)
    grey = rgb @ np.array([0.2125, 0.7154, 0.0721])
    for method in ("floodfill", "region"):
        np.testing.assert_array_equal(weak_labels(rgb, pts, method), weak_labels(grey, pts, method))


@pytest.mark.parametrize("shape", [(20, 20, 4), (20, 20, 2), (20,), (2, 20, 20, 3)])
def test_bad_channel_counts_are_rejected(shape):
    with pytest.raises(UserError, match="img.png"):
        weak_labels(np.zeros(shape), [[1, 1]], image_name="img.png")


@pytest.mark.parametrize("method", ["floodfill", "region"])
def test_no_points_gives_empty_labels(blobs, method):
    img = blobs[0]
    for pts in (None, [], np.zeros((0, 2))):
        labels = weak_labels(img, pts, method)
        assert labels.dtype == np.int32 and labels.shape == img.shape and not labels.any()
    labels, used = weak_labels(img, [], method, return_used=True)
    assert used.shape == (0,)


# --------------------------------------------------------------------------- flood fill


def ring_image(gap: int):
    """A bright ring (radii 14..17) around a dark centre, cut by a `gap`-pixel slot."""
    yy, xx = np.mgrid[:64, :64]
    rr = np.hypot(yy - 32, xx - 32)
    ring = ((rr >= 14) & (rr <= 17)).astype(float)
    if gap:
        ring[31 : 31 + gap, 40:] = 0
    return ring, rr


@pytest.mark.parametrize("gap_radius", [2, 3])
def test_floodfill_closes_ring_gap(gap_radius):
    ring, rr = ring_image(gap=2)
    labels, used = flood_fill_labels(
        ring, [[32, 32]], threshold=0.5, gap_radius=gap_radius, return_used=True
    )
    assert used.tolist() == [True]
    inside = labels == 1
    assert inside[rr < 13].all()  # the whole dark centre
    assert not inside[rr > 17.5].any()  # nothing outside the ring


def test_floodfill_leak_without_gap_closing_is_discarded():
    ring, _ = ring_image(gap=2)
    with pytest.warns(UserWarning, match="leaks"):
        labels, used = flood_fill_labels(
            ring, [[32, 32]], threshold=0.5, gap_radius=0, return_used=True
        )
    assert used.tolist() == [False] and not labels.any()
    # a closed ring needs no gap closing
    closed, rr = ring_image(gap=0)
    labels = flood_fill_labels(closed, [[32, 32]], threshold=0.5, gap_radius=0)
    assert (labels == 1)[rr < 13].all() and not (labels == 1)[rr > 17.5].any()


def test_floodfill_max_area_discards_big_fills(blobs):
    img, inst, pts = blobs
    small = int(np.bincount(inst.ravel())[1:].min())
    with pytest.warns(UserWarning, match="max_area"):
        labels, used = flood_fill_labels(img, pts, max_area=small + 1, return_used=True)
    assert 1 <= used.sum() < len(pts)
    assert np.bincount(labels.ravel())[1:].max() <= small + 1


@pytest.mark.parametrize("gap_radius", [0, 2])
def test_floodfill_keeps_bright_object_cut_by_border(gap_radius):
    img = np.zeros((40, 40))
    img[:15, 10:25] = 1.0
    img[25:, 30:] = 1.0  # in a corner
    labels = flood_fill_labels(img, [[17, 5], [35, 35]], threshold=0.5, gap_radius=gap_radius)
    top = (img > 0.5) & (np.arange(40)[:, None] < 20)
    assert label_quality(labels == 1, top)["iou"] >= 0.95
    assert label_quality(labels, img > 0.5)["iou"] >= 0.95


def test_floodfill_click_on_edge_is_snapped_or_skipped():
    img = np.zeros((40, 40))
    img[10:30, 10:30] = 1.0  # square: its outermost pixels are edge pixels
    img[5, 2:38] = 1.0  # a 1-pixel line: all edge, nothing to fill
    labels, used = flood_fill_labels(
        img, [[20, 10], [20, 5]], threshold=0.5, gap_radius=0, min_size=0, return_used=True
    )
    assert used.tolist() == [True, False]
    square = np.zeros_like(img)
    square[10:30, 10:30] = 1
    assert label_quality(labels == 1, square)["iou"] > 0.95
    with pytest.warns(UserWarning, match=r"click\(s\) \[1\]"):
        flood_fill_labels(img, [[20, 10], [20, 5]], threshold=0.5, gap_radius=0, min_size=0)


# ------------------------------------------------------------------------- region growing


def test_region_growing_max_area_stops_leak():
    rng = np.random.default_rng(1)
    img = np.full((60, 60), 0.2)
    img[20:40, 20:40] = 0.8
    img[29:31, 40:] = 0.7  # a bridge, a little darker than the object,
    img[:, 55:] = 0.7  # ... into a band: within the threshold, so growth leaks
    img += rng.normal(0, 0.03, img.shape)
    obj = np.zeros(img.shape, bool)
    obj[20:40, 20:40] = True
    labels = region_growing_labels(img, [[30, 30]], threshold=0.15, max_area=None)
    assert (labels == 1).sum() > 450  # leaks through the bridge
    with pytest.warns(UserWarning, match="max_area=410"):
        capped = region_growing_labels(img, [[30, 30]], threshold=0.15, max_area=410)
    assert (capped == 1).sum() == 410
    assert label_quality(capped, obj)["iou"] > 0.9  # the cap cuts the leak, not the object
    ref = _region_growing_reference(img, [[30, 30]], threshold=0.15, max_area=410)
    assert (ref == 1).sum() == 410


def test_the_default_threshold_grows_objects_on_a_flat_background():
    # A clipped background makes most neighbour differences 0: the noise estimate (and so the
    # default threshold) was 0, and the region stayed its click pixel.
    rng = np.random.default_rng(0)
    img = np.zeros((64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 <= 144
    img[disc] = rng.integers(150, 201, disc.sum())
    labels = region_growing_labels(img, [[32, 32]])
    assert label_quality(labels, disc)["iou"] > 0.9


def test_fast_region_growing_agrees_with_reference(blobs):
    img, inst, pts = blobs
    for kw in ({}, {"relative": True}, {"threshold": 0.3}):
        fast = region_growing_labels(img, pts, **kw)
        ref = _region_growing_reference(img, pts, **kw)
        assert label_quality(fast, ref)["iou"] >= 0.99
        assert per_object_iou(fast, ref).min() >= 0.97


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    n=st.integers(0, 4),
    threshold=st.floats(0.0, 2.0),
    relative=st.booleans(),
    max_area=st.one_of(st.none(), st.integers(1, 200)),
)
def test_zero_batch_tolerance_is_exactly_the_strict_definition(
    seed, h, w, n, threshold, relative, max_area
):
    rng = np.random.default_rng(seed)
    img = rng.normal(0, 1, (h, w)) + (rng.random((h, w)) > 0.5)
    pts = np.stack([rng.integers(0, w, n), rng.integers(0, h, n)], axis=1)
    kw = {"threshold": threshold, "relative": relative, "max_area": max_area}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_area warnings
        fast = region_growing_labels(img, pts, batch_tolerance=0.0, **kw)
    ref = _region_growing_reference(img, pts, **kw)
    np.testing.assert_array_equal(fast, ref)


# ----------------------------------------------------------------------------- overlaps


def voronoi_expected(mask, pts):
    """Label each mask pixel with its nearest point (1-based), ties to the lower index."""
    yy, xx = np.nonzero(mask)
    d2 = (yy[:, None] - pts[None, :, 1]) ** 2 + (xx[:, None] - pts[None, :, 0]) ** 2
    out = np.zeros(mask.shape, np.int32)
    out[yy, xx] = np.argmin(d2, axis=1) + 1  # argmin: first (lowest index) on ties
    return out


@pytest.mark.parametrize("method", ["floodfill", "region", "reference"])
def test_overlaps_go_to_nearest_seed(method):
    img = np.zeros((30, 40))
    img[5:25, 5:35] = 1.0
    obj = img > 0.5
    pts = np.array([[12, 15], [26, 15], [20, 8]])  # x 12 and 26: pixels at x=19 are ties
    fn = {
        "floodfill": lambda p: flood_fill_labels(img, p, threshold=0.5, gap_radius=0),
        "region": lambda p: region_growing_labels(img, p, threshold=0.5),
        "reference": lambda p: _region_growing_reference(img, p, threshold=0.5),
    }[method]
    labels = fn(pts)
    np.testing.assert_array_equal(labels, voronoi_expected(obj, pts))
    np.testing.assert_array_equal(fn(pts), labels)  # deterministic
    # a duplicate click loses everything to the earlier one
    labels = fn(np.array([[12, 15], [12, 15]]))
    assert set(np.unique(labels)) == {0, 1}


# ------------------------------------------------------------------- points and dispatch


def test_points_outside_image_raise_naming_image_and_point(blobs):
    img = blobs[0]
    with pytest.raises(UserError, match=r"point 1 \(x=120, y=3\).*a\.png"):
        weak_labels(img, [[5, 5], [120, 3]], "region", image_name="a.png")
    with pytest.raises(UserError, match="point 0"):
        weak_labels(img, [[-1, 5]], "floodfill")
    with pytest.raises(UserError, match="outside"):
        region_growing_labels(img, [[5, 500]])


def test_validate_points():
    assert validate_points([[1.4, 2.6]], (5, 5), "x").tolist() == [[1, 3]]
    df = pd.DataFrame({"y": [1], "x": [4], "label": [9]})
    assert validate_points(df, (5, 5, 3), "x").tolist() == [[4, 1]]
    for bad in ([[1, 2, 3]], [[np.nan, 1]], [["a", "b"]], pd.DataFrame({"x": [1]})):
        with pytest.raises(UserError, match="b.tif"):
            validate_points(bad, (5, 5), "b.tif")


def test_unknown_method_and_bad_options(blobs):
    img, _, pts = blobs
    with pytest.raises(UserError, match="watershed.*floodfill, region"):
        weak_labels(img, pts, "watershed")
    with pytest.raises(UserError, match="threshold"):
        flood_fill_labels(img, pts, threshold="mean")
    with pytest.raises(UserError, match="max_area"):
        region_growing_labels(img, pts, max_area=0)
    with pytest.raises(UserError, match="batch_tolerance"):
        region_growing_labels(img, pts, batch_tolerance=-1)
    with pytest.raises(UserError, match="NaN"):
        region_growing_labels(np.full((5, 5), np.nan), [[1, 1]])


# ------------------------------------------------------------------------------- CSV


def test_read_points_csv(tmp_path):
    f = tmp_path / "clicks.csv"
    f.write_text("image,x,y,who\na.png,3,4,me\nb.png,1.5,2,me\na.png, 5 ,6,me\n")
    pts = read_points_csv(f)
    assert sorted(pts) == ["a.png", "b.png"]
    assert pts["a.png"].tolist() == [[3, 4], [5, 6]] and pts["b.png"].shape == (1, 2)


@pytest.mark.parametrize(
    "text, match",
    [
        ("image,x\na.png,3\n", r"lacks column\(s\) y"),
        ("name,x,y\na.png,3,4\n", r"lacks column\(s\) image"),
        ("image,x,y\na.png,3,4\na.png,three,4\n", "row 2: x='three' is not a number"),
        ("image,x,y\na.png,3,\n", "row 1: y='' is not a number"),
        ("image,x,y\na.png,3,nan\n", "row 1: y='nan'"),
        ("image,x,y\n,3,4\n", "row 1: the image name is empty"),
        ("", "is empty"),
    ],
)
def test_read_points_csv_errors_name_file_and_row(tmp_path, text, match):
    f = tmp_path / "clicks.csv"
    f.write_text(text)
    with pytest.raises(UserError, match=match) as err:
        read_points_csv(f)
    assert "clicks.csv" in str(err.value)


def test_read_points_csv_missing_file(tmp_path):
    with pytest.raises(UserError, match="nope.csv does not exist"):
        read_points_csv(tmp_path / "nope.csv")


# ---------------------------------------------------------------------- click simulation


def c_shape_instances():
    inst = np.zeros((60, 60), np.int32)
    yy, xx = np.mgrid[:60, :60]
    rr = np.hypot(yy - 20, xx - 20)
    inst[(rr >= 8) & (rr <= 14) & (xx <= 26)] = 3  # a C: its centroid is in the gap
    inst[40:55, 40:55] = 5
    inst[40:50, 5:12] = 7
    inst[2:5, 40:58] = 9
    return inst


def test_centroid_clicks_lie_inside_every_object(blobs):
    for inst in (c_shape_instances(), blobs[1]):
        df = click_points_from_instances(inst)
        assert list(df.columns) == ["x", "y", "label"]
        assert df["label"].tolist() == sorted(set(np.unique(inst)) - {0})
        assert (inst[df["y"], df["x"]] == df["label"]).all()


def test_random_clicks_inside_drop_fraction_and_determinism(blobs):
    inst = blobs[1]  # 9 objects
    df = click_points_from_instances(inst, mode="random", seed=3)
    assert len(df) == 9 and (inst[df["y"], df["x"]] == df["label"]).all()
    pd.testing.assert_frame_equal(df, click_points_from_instances(inst, mode="random", seed=3))
    assert not df.equals(click_points_from_instances(inst, mode="random", seed=4))
    for frac, kept in ((0.0, 9), (0.3, 6), (0.5, 5), (1.0, 0)):
        out = click_points_from_instances(inst, drop_fraction=frac, seed=1)
        assert len(out) == kept and out["label"].is_unique
    a = click_points_from_instances(inst, drop_fraction=0.5, seed=1)
    pd.testing.assert_frame_equal(a, click_points_from_instances(inst, drop_fraction=0.5, seed=1))


def test_jitter_moves_points_but_stays_in_image(blobs):
    inst = blobs[1]
    plain = click_points_from_instances(inst)
    jit = click_points_from_instances(inst, jitter=3.0, seed=2)
    assert (plain[["x", "y"]].to_numpy() != jit[["x", "y"]].to_numpy()).any()
    far = click_points_from_instances(inst, jitter=500.0, seed=2)
    assert far["x"].between(0, inst.shape[1] - 1).all()
    assert far["y"].between(0, inst.shape[0] - 1).all()
    validate_points(far, inst.shape, "inst")


def test_click_generator_bad_input():
    with pytest.raises(UserError, match="mode"):
        click_points_from_instances(np.ones((4, 4), int), mode="middle")
    with pytest.raises(UserError, match="drop_fraction"):
        click_points_from_instances(np.ones((4, 4), int), drop_fraction=1.5)
    with pytest.raises(UserError, match="instances"):
        click_points_from_instances(np.ones((4, 4)))


def test_clicks_feed_the_methods(blobs):
    img, inst, _ = blobs
    df = click_points_from_instances(inst, drop_fraction=1 / 3, seed=0)
    labels, used = weak_labels(img, df, "region", return_used=True)
    assert used.all() and labels.max() == len(df) == 6
    # label k + 1 covers the object clicked by row k
    for k, lab in enumerate(df["label"]):
        assert label_quality(labels == k + 1, inst == lab)["iou"] > 0.9


# ----------------------------------------------------------------------------- quality


def test_label_quality():
    weak = np.array([[0, 2], [3, 3]])
    truth = np.array([[0, 1], [0, 1]])
    q = label_quality(weak, truth)
    assert q["iou"] == pytest.approx(2 / 3) and q["dice"] == pytest.approx(0.8)
    # po = 3/4, pe = (3*2 + 1*2) / 16 = 1/2 -> kappa = 1/2
    assert q["kappa"] == pytest.approx(0.5)
    assert label_quality(np.zeros((3, 3)), np.zeros((3, 3))) == {
        "iou": 1.0,
        "dice": 1.0,
        "kappa": 1.0,
    }
    with pytest.raises(UserError, match="same shape"):
        label_quality(np.zeros((3, 3)), np.zeros((3, 4)))


def test_label_quality_without_foreground_follows_the_metrics_zero_division_rules():
    """The convention of seg_bench.metrics.pixel_metrics, which label_quality uses."""
    empty = np.zeros((4, 4), int)
    one = empty.copy()
    one[1, 1] = 5
    full = np.ones((4, 4), int)
    # No foreground anywhere: weak labels and truth agree that there is nothing.
    assert label_quality(empty, empty) == {"iou": 1.0, "dice": 1.0, "kappa": 1.0}
    # Foreground on one side only: no overlap, and kappa 0 (po = pe = 15/16), either way round.
    assert label_quality(empty, one) == {"iou": 0.0, "dice": 0.0, "kappa": 0.0}
    assert label_quality(one, empty) == {"iou": 0.0, "dice": 0.0, "kappa": 0.0}
    # Foreground everywhere on both: perfect agreement again (chance agreement is total).
    assert label_quality(full, full * 3) == {"iou": 1.0, "dice": 1.0, "kappa": 1.0}
    with pytest.raises(UserError, match=r"empty images \(shape \(0, 3\)\)"):
        label_quality(np.zeros((0, 3)), np.zeros((0, 3)))


@pytest.mark.parametrize("seed", range(5))
def test_label_quality_matches_scikit_learn(seed):
    from sklearn.metrics import cohen_kappa_score, f1_score, jaccard_score

    rng = np.random.default_rng(seed)
    weak = rng.integers(0, 4, (12, 9)) * (rng.random((12, 9)) < 0.4)
    truth = rng.random((12, 9)) < 0.3
    a, b = truth.ravel(), weak.ravel() > 0
    q = label_quality(weak, truth)
    assert q["iou"] == pytest.approx(jaccard_score(a, b))
    assert q["dice"] == pytest.approx(f1_score(a, b))
    assert q["kappa"] == pytest.approx(cohen_kappa_score(a, b))


def test_docstring_examples():
    import doctest

    from seg_bench.labels import floodfill, points, quality, region, source

    modules = (floodfill, points, quality, region, source)
    results = [doctest.testmod(m, extraglobs={"np": np}) for m in modules]
    assert sum(r.failed for r in results) == 0 and sum(r.attempted for r in results) >= 7
