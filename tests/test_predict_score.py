"""`seg-bench predict` on a trained smoke checkpoint; `seg-bench score` against hand-worked
values."""

import json

import numpy as np
import pytest
import tifffile
import torch
from conftest import real_data
from data_fixtures import png
from PIL import Image
from scipy import ndimage as ndi

from seg_bench.cli import main
from seg_bench.config import resolve_config
from seg_bench.errors import UserError
from seg_bench.evaluation.score import _dsb_layout, score
from seg_bench.inference.checkpoint import load_checkpoint
from seg_bench.inference.instances import run_method
from seg_bench.inference.predict import predict_path
from seg_bench.protocol.records import RECORD_VERSION
from seg_bench.training.trainer import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    cfg = resolve_config(
        "synthetic", "unet", "smoke", postprocess={"threshold": 0.4, "min_size": 3}
    )
    result = train(cfg, run, progress=False)
    return result.best_checkpoint


def test_predict_writes_probabilities_masks_instances_and_csv(checkpoint, tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (45, 70), dtype=np.uint8)).save(images / "a.png")
    tifffile.imwrite(images / "stack.tif", rng.integers(0, 255, (2, 40, 40), dtype=np.uint8))
    out = tmp_path / "out"
    done = predict_path(
        checkpoint, images, out, tta=True, instances=True, dsb_csv=tmp_path / "sub.csv"
    )
    assert done.names == ["a", "stack_z0000", "stack_z0001"]
    assert sorted(p.name for p in done.files) == sorted(
        [f"{n}_{kind}" for n in done.names for kind in ("prob.tif", "mask.png", "instances.tif")]
        + ["sub.csv"]
    )
    prob = tifffile.imread(out / "a_prob.tif")
    mask = np.array(Image.open(out / "a_mask.png"))
    inst = tifffile.imread(out / "a_instances.tif")
    assert prob.shape == mask.shape == inst.shape == (45, 70)  # full resolution, odd sizes kept
    assert prob.min() >= 0 and prob.max() <= 1 and set(np.unique(mask)) <= {0, 255}
    # The post-processing stored with the checkpoint is applied: threshold 0.4, objects >= 3 px.
    assert ((inst > 0) == (mask > 0)).all()
    sizes = np.bincount(inst.ravel())[1:]
    assert (sizes[sizes > 0] >= 3).all()
    assert ((prob > 0.4) | (inst == 0)).all()
    assert (tmp_path / "sub.csv").read_text().startswith("ImageId,EncodedPixels")


def test_checkpoint_faults_are_clear_errors(checkpoint, tmp_path):
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(UserError, match="not a readable seg-bench checkpoint"):
        load_checkpoint(truncated)
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["model"] = "segnet"  # another architecture's name on these weights
    torch.save(ckpt, tmp_path / "other.ckpt")
    with pytest.raises(UserError, match="does not match the model it names \\(segnet\\)"):
        load_checkpoint(tmp_path / "other.ckpt")
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["num_classes"] = 4
    torch.save(ckpt, tmp_path / "classes.ckpt")
    with pytest.raises(UserError, match="does not match"):
        load_checkpoint(tmp_path / "classes.ckpt")


def _write(folder, arrays):
    folder.mkdir()
    for name, a in arrays.items():
        tifffile.imwrite(folder / f"{name}.tif", a)


def test_score_semantic_by_hand(tmp_path):
    truth = np.zeros((4, 4), np.uint8)
    truth[:2] = 255
    pred = np.zeros((4, 4), np.uint8)
    pred[:1] = 1
    pred[3, 3] = 1
    _write(tmp_path / "t", {"x": truth})
    _write(tmp_path / "p", {"x_mask": pred})
    r = score(tmp_path / "p", tmp_path / "t")
    # TP 4, FP 1, FN 4: IoU 4/9, Dice 8/13, accuracy 11/16.
    assert r["kind"] == "semantic"
    assert r["overall"]["iou"] == pytest.approx(4 / 9)
    assert r["overall"]["dice"] == pytest.approx(8 / 13)
    assert r["overall"]["accuracy"] == pytest.approx(11 / 16)


def test_score_errors_name_the_problem(tmp_path):
    _write(tmp_path / "t", {"x": np.zeros((4, 4), np.uint8), "y": np.zeros((4, 4), np.uint8)})
    _write(tmp_path / "p", {"x": np.zeros((4, 5), np.uint8)})
    with pytest.raises(UserError, match="no prediction for 1 truth image.*'y'"):
        score(tmp_path / "p", tmp_path / "t")
    with pytest.raises(UserError, match="does not exist"):
        score(tmp_path / "nope", tmp_path / "t")


def test_score_dsb_truth_against_itself_and_eroded(tmp_path):
    root = real_data("dsb2018") / "stage1_train"
    sub = tmp_path / "truth"
    sub.mkdir()
    for d in sorted(root.iterdir())[:4]:
        (sub / d.name).symlink_to(d)
    truth = _dsb_layout(sub)
    eroded = {}
    expected = []
    for key, lab in truth.items():
        ero = np.zeros_like(lab)
        ratios = []
        for i in range(1, lab.max() + 1):
            e = ndi.binary_erosion(lab == i)
            ero[e] = i
            ratios.append(e.sum() / (lab == i).sum())  # IoU of a subset = area ratio
        ratios = np.array(ratios)
        n, m = len(ratios), int((ratios > 0).sum())  # m objects survive erosion
        ap = []
        for t in np.arange(0.5, 1.0, 0.05):
            tp = int((ratios > t).sum())
            ap.append(tp / (tp + (m - tp) + (n - tp)))  # unmatched survivors are FP, misses FN
        expected.append(np.mean(ap))
        eroded[key] = ero
    _write(tmp_path / "same", {f"{k}_instances": v.astype(np.uint16) for k, v in truth.items()})
    _write(tmp_path / "ero", {f"{k}_instances": v.astype(np.uint16) for k, v in eroded.items()})
    assert score(tmp_path / "same", sub)["overall"]["dsb_map"] == 1.0
    got = score(tmp_path / "ero", sub)
    assert got["kind"] == "instance"
    assert got["overall"]["dsb_map"] == pytest.approx(np.mean(expected), abs=1e-12)
    assert main(["score", "--pred", str(tmp_path / "ero"), "--truth", str(sub), "--json"]) == 0


def test_predict_stack_writes_one_multipage_tiff_and_says_what_it_wrote(
    checkpoint, tmp_path, capsys
):
    vol = np.random.default_rng(1).integers(0, 255, (3, 40, 48), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "vol.tif", vol, photometric="minisblack")
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "vol.tif")]
    assert main([*argv, "--output", str(out), "--stack", "--instances"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "vol_instances.tif",
        "vol_mask.tif",
        "vol_prob.tif",
    ]
    assert tifffile.imread(out / "vol_mask.tif").shape == (3, 40, 48)
    assert tifffile.imread(out / "vol_prob.tif").dtype == np.float32
    printed = capsys.readouterr().out
    assert f"wrote {out / 'vol_mask.tif'}" in printed and "predicted 3 image(s)" in printed


def test_predict_names_a_bad_input_file_by_its_path(checkpoint, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    argv = ["predict", "--checkpoint", str(checkpoint), "--input", str(bad)]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"seg-bench: error: {bad}:" in err and "BytesIO" not in err


def test_inputs_whose_outputs_would_collide_are_refused_before_anything_is_written(
    checkpoint, tmp_path
):
    # a.png and a.tif both wrote a_prob.tif...: one silently replaced the other's outputs.
    images = tmp_path / "in"
    images.mkdir()
    page = np.zeros((32, 32), np.uint8)
    png(images / "a.png", page)
    tifffile.imwrite(images / "a.tif", page)
    with pytest.raises(UserError, match=r"a\.png and .*a\.tif: one name"):
        predict_path(checkpoint, images, tmp_path / "out")
    (images / "a.tif").unlink()
    png(images / "b,c.png", page)
    with pytest.raises(UserError, match=r"b,c\.png: a comma in its name"):
        predict_path(checkpoint, images, tmp_path / "out", dsb_csv=tmp_path / "sub.csv")
    with pytest.raises(UserError, match=r"--dsb-csv .*nowhere/sub\.csv: folder .* does not exist"):
        predict_path(checkpoint, images, tmp_path / "out", dsb_csv=tmp_path / "nowhere/sub.csv")
    assert not (tmp_path / "out").exists()


def test_predict_cuts_instances_by_the_method_and_parameters_validation_chose(
    checkpoint, tmp_path, capsys
):
    # The leaderboard scores each method at its tuned parameters; predict used only the
    # checkpoint's postprocess, so its instances were not the ones scored.
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(3)
    png(images / "a.png", (rng.random((48, 48)) * 255).astype(np.uint8))
    tuned = {"threshold_cc": {"params": {"threshold": 0.3, "min_size": 5}, "val_map": 0.4}}
    chosen = {"method": "threshold_cc", "threshold": 0.3, "min_size": 5}
    record = {"version": RECORD_VERSION, "model": "unet", "seed": 0}
    record["metrics"] = {"postprocess": chosen, "postprocess_methods": tuned}
    (tmp_path / "r.json").write_text(json.dumps(record))
    argv = ["predict", "--checkpoint", str(checkpoint), "--input", str(images), "--instances"]
    assert (
        main([*argv, "--output", str(tmp_path / "out"), "--record", str(tmp_path / "r.json")]) == 0
    )
    prob = tifffile.imread(tmp_path / "out" / "a_prob.tif")
    labels = tifffile.imread(tmp_path / "out" / "a_instances.tif")
    expected = run_method("threshold_cc", prob, threshold=0.3, min_size=5)
    assert expected.max() > 0 and (labels == expected).all()
    for extra, message in [
        (["--method", "hysteresis"], "no tuned method hysteresis; it holds threshold_cc"),
        (["--method", "nope"], "--method nope: unknown; known: "),
        (["--method", "seeded_watershed"], "needs a seed map, but the model was trained with"),
    ]:
        record_args = ["--record", str(tmp_path / "r.json")] if "hysteresis" in extra else []
        assert main([*argv, "--output", str(tmp_path / "o2"), *extra, *record_args]) == 2
        assert message in capsys.readouterr().err


def test_grey_input_to_an_rgb_model_is_one_warning_line(checkpoint, tmp_path, capsys):
    ckpt = torch.load(checkpoint, weights_only=True)
    first = next(k for k, v in ckpt["state_dict"].items() if v.ndim == 4 and v.shape[1] == 1)
    ckpt["state_dict"][first] = ckpt["state_dict"][first].repeat(1, 3, 1, 1) / 3
    ckpt["hyper_parameters"]["in_channels"] = 3
    torch.save(ckpt, tmp_path / "rgb.ckpt")
    images = tmp_path / "in"
    images.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((32, 32), 99, np.uint8)).save(images / f"{name}.png")
    argv = ["predict", "--checkpoint", str(tmp_path / "rgb.ckpt"), "--input", str(images)]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "seg-bench: warning: grey input for a model trained on colour (RGB) images: the grey "
        "channel is repeated into 3; expect lower accuracy than on colour images"
    ]


def _isbi_like():
    """Raw ISBI 2012 labels (255 = cell, 0 = membrane) and a membrane prediction, by hand.

    Truth 4x4: the top row and the left column are membrane (7 pixels), the rest cell (9).
    The prediction marks the top row as membrane (4 pixels), so for the membrane class
    TP 4, FP 0, FN 3: IoU 4/7. Read naively (non-zero = positive) the cells are the positive
    class: TP 0 (the predicted pixels are all membrane), FP 4, FN 9: IoU 0.
    """
    truth = np.full((4, 4), 255, np.uint8)
    truth[0, :] = 0
    truth[:, 0] = 0
    pred = np.zeros((4, 4), np.uint8)
    pred[0, :] = 255
    return pred, truth


def test_score_with_dataset_isbi2012_scores_membranes_not_cell_interior(tmp_path):
    pred, truth = _isbi_like()
    # minisblack: two grey 4x4 pages (left to guess, tifffile writes 2 x 4 RGBA, a last axis of 4)
    tifffile.imwrite(tmp_path / "labels.tif", np.stack([truth, truth]), photometric="minisblack")
    tifffile.imwrite(tmp_path / "pred.tif", np.stack([pred, pred]), photometric="minisblack")
    naive = score(tmp_path / "pred.tif", tmp_path / "labels.tif")
    assert naive["overall"]["iou"] == 0.0 and naive["positive"]["truth"] == "non-zero"
    r = score(tmp_path / "pred.tif", tmp_path / "labels.tif", dataset="isbi2012")
    assert r["images"] == 2 and r["kind"] == "semantic"
    assert r["overall"]["iou"] == pytest.approx(4 / 7)
    assert r["overall"]["dice"] == pytest.approx(8 / 11)
    assert r["positive"] == {
        "class": "membrane",
        "truth": "label == 0",
        "prediction": "non-zero",
        "dataset": "isbi2012",
    }
    explicit = score(tmp_path / "pred.tif", tmp_path / "labels.tif", positive=0)
    assert explicit["overall"] == r["overall"]


def test_score_stack_truth_matches_the_per_page_files_predict_writes(tmp_path, capsys):
    pred, truth = _isbi_like()
    labels = np.stack([truth, truth, truth])
    tifffile.imwrite(tmp_path / "train-labels.tif", labels, photometric="minisblack")
    _write(tmp_path / "p", {f"train-volume_z{z:04d}_mask": pred for z in range(3)})
    argv = ["score", "--pred", str(tmp_path / "p"), "--truth", str(tmp_path / "train-labels.tif")]
    assert main([*argv, "--dataset", "isbi2012", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 3 and out["overall"]["iou"] == pytest.approx(4 / 7)
    assert out["positive"]["truth"] == "label == 0"


@pytest.mark.parametrize(
    "dataset, value", [("ncmir", 1), ("epfl", 255), ("isbi2012", 0), ("dsb2018", None)]
)
def test_each_dataset_states_the_raw_label_of_its_positive_class(dataset, value):
    from seg_bench.registry import DATASETS

    assert DATASETS.get(dataset).positive_label == value


def test_score_ncmir_palette_index_one_is_the_mitochondrion(tmp_path):
    truth = np.array([[0, 1], [1, 2]], np.uint8)  # 2: a value that is not the positive class
    pred = np.array([[0, 255], [0, 255]], np.uint8)
    _write(tmp_path / "t", {"x": truth})
    _write(tmp_path / "p", {"x_mask": pred})
    r = score(tmp_path / "p", tmp_path / "t", dataset="ncmir")
    # Positive truth pixels (0,1), (1,0); predicted (0,1), (1,1): TP 1, FP 1, FN 1.
    assert r["overall"]["iou"] == pytest.approx(1 / 3)
    assert r["positive"]["class"] == "mitochondrion"


def test_score_csv_against_csv_with_sizes_from_the_height_width_columns(tmp_path):
    from seg_bench.data.rle import rle_encode

    truth = np.zeros((3, 4), np.uint8)
    truth[0:2, 0:2] = 1  # one 2x2 object (column-major runs: 1 2, 4 2)
    pred = np.zeros((3, 4), np.uint8)
    pred[0:2, 0] = 1  # three of its four pixels
    pred[0, 1] = 1
    (tmp_path / "truth.csv").write_text(
        f"ImageId,EncodedPixels,Height,Width\nimg,{rle_encode(truth)},3,4\n"
    )
    (tmp_path / "pred.csv").write_text(f"ImageId,EncodedPixels\nimg,{rle_encode(pred)}\n")
    r = score(tmp_path / "pred.csv", tmp_path / "truth.csv", kind="instance")
    assert r["overall"]["iou"] == pytest.approx(3 / 4)
    # One object at IoU 3/4: a hit at the thresholds 0.50-0.70 (5 of 10), a miss at 0.75-0.95.
    assert r["overall"]["dsb_map"] == pytest.approx(0.5)
    (tmp_path / "bare.csv").write_text(f"ImageId,EncodedPixels\nimg,{rle_encode(truth)}\n")
    with pytest.raises(UserError, match="CSV against CSV needs the image sizes"):
        score(tmp_path / "pred.csv", tmp_path / "bare.csv")


def test_a_truth_csv_image_without_a_prediction_is_named_not_dropped(tmp_path):
    from seg_bench.data.rle import rle_encode

    obj = np.zeros((3, 4), np.uint8)
    obj[0:2, 0:2] = 1
    rows = "".join(f"{name},{rle_encode(obj)}\n" for name in ("a", "b"))
    (tmp_path / "truth.csv").write_text("ImageId,EncodedPixels\n" + rows)
    _write(tmp_path / "p", {"a": obj})  # no prediction for b, and no Height,Width to size it
    with pytest.raises(UserError, match=r"truth.csv: no size for image 'b'"):
        score(tmp_path / "p", tmp_path / "truth.csv")


def test_a_binary_prediction_is_scored_by_its_connected_components_as_instances(tmp_path):
    truth = np.zeros((8, 8), np.uint16)
    truth[1:3, 1:3], truth[5:7, 5:7] = 1, 2  # two separate objects
    _write(tmp_path / "t", {"x": truth})
    _write(tmp_path / "p", {"x_mask": ((truth > 0) * 255).astype(np.uint8)})
    r = score(tmp_path / "p", tmp_path / "t", kind="instance")
    assert r["overall"]["dsb_map"] == 1.0  # two components, each its object exactly
    # A 0/255 truth mask as well: it counted as one object, so a perfect prediction scored 0.
    _write(tmp_path / "t255", {"x": ((truth > 0) * 255).astype(np.uint8)})
    assert score(tmp_path / "p", tmp_path / "t255", kind="instance")["overall"]["dsb_map"] == 1.0


def test_a_compiled_networks_checkpoint_loads_for_rescoring_and_predict(tmp_path):
    from seg_bench.inference.checkpoint import TrainedModel

    hp = {"model": "unet", "in_channels": 1, "num_classes": 2, "width": 0.0625}
    net = TrainedModel(hp)
    names = list(net.state_dict())
    net.model.compile()  # how training compiles now: in place, the weights keep their names
    assert list(net.state_dict()) == names
    # How it compiled before: torch.compile's wrapper put _orig_mod. into every name.
    wrapped = {k.replace("model.", "model._orig_mod.", 1): v for k, v in net.state_dict().items()}
    torch.save({"hyper_parameters": hp, "state_dict": wrapped}, tmp_path / "old.ckpt")
    loaded = load_checkpoint(tmp_path / "old.ckpt")
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
