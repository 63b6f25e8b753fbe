"""`seg-bench predict` on a trained smoke checkpoint, and `seg-bench score` against hand-worked values."""

import numpy as np
import pytest
import tifffile
import torch
from conftest import real_data
from PIL import Image
from scipy import ndimage as ndi

from seg_bench.cli import main
from seg_bench.config import resolve_config
from seg_bench.errors import UserError
from seg_bench.evaluation.score import _dsb_layout, score
from seg_bench.inference.checkpoint import load_checkpoint
from seg_bench.inference.predict import predict_path
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
    names = predict_path(
        checkpoint, images, out, tta=True, instances=True, dsb_csv=tmp_path / "sub.csv"
    )
    assert names == ["a", "stack_z0000", "stack_z0001"]
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
