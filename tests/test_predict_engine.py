"""`seg-bench predict --engine onnxruntime`: an exported model.onnx gives the PyTorch engine's
outputs (probabilities within the export tolerance, masks equal except at ties) with the same
sliding window and TTA, on sizes the graph itself does not accept."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from seg_bench.cli import main
from seg_bench.errors import UserError
from seg_bench.inference import export as ex
from seg_bench.inference.checkpoint import TrainedModel
from seg_bench.inference.predict import predict_path

pytest.importorskip("onnxruntime", reason="needs the [export] extra")
pytest.importorskip("onnxscript", reason="needs the [export] extra")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    torch.manual_seed(0)
    hp = {"model": "unet", "in_channels": 1, "num_classes": 2, "width": 0.25, "window": 64}
    torch.save(
        {"hyper_parameters": hp, "state_dict": TrainedModel(hp).state_dict()}, root / "unet.ckpt"
    )
    ex.export_checkpoint(root / "unet.ckpt", root / "export", ["onnx"])
    rng = np.random.default_rng(0)
    # 75 x 101: not a multiple of 16, larger than the 64 window (so several blended tiles).
    Image.fromarray((rng.random((75, 101)) * 255).astype(np.uint8)).save(root / "img.png")
    return root


@pytest.mark.parametrize("tta", [False, True])
def test_onnxruntime_engine_matches_torch_with_sliding_window(exported, tmp_path, tta):
    root = exported
    predict_path(root / "unet.ckpt", root / "img.png", tmp_path / "torch", tta=tta)
    predict_path(
        root / "export" / "model.onnx",
        root / "img.png",
        tmp_path / "ort",
        tta=tta,
        engine="onnxruntime",
    )
    p_torch = tifffile.imread(tmp_path / "torch" / "img_prob.tif")
    p_ort = tifffile.imread(tmp_path / "ort" / "img_prob.tif")
    assert p_ort.shape == p_torch.shape == (75, 101)
    assert np.abs(p_ort - p_torch).max() <= ex.TOLERANCE
    m_torch = np.array(Image.open(tmp_path / "torch" / "img_mask.png"))
    m_ort = np.array(Image.open(tmp_path / "ort" / "img_mask.png"))
    ties = np.abs(p_torch - 0.5) <= ex.TOLERANCE
    assert np.array_equal(m_torch[~ties], m_ort[~ties])


def test_cli_accepts_the_export_folder_as_checkpoint(exported, tmp_path, capsys):
    root = exported
    code = main(
        [
            "predict",
            "--engine",
            "onnxruntime",
            "--checkpoint",
            str(root / "export"),
            "--input",
            str(root / "img.png"),
            "--output",
            str(tmp_path / "o"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "o" / "img_prob.tif").is_file()


def test_onnxruntime_engine_on_a_torch_checkpoint_is_one_line_error(exported, tmp_path, capsys):
    code = main(
        [
            "predict",
            "--engine",
            "onnxruntime",
            "--checkpoint",
            str(exported / "unet.ckpt"),
            "--input",
            str(exported / "img.png"),
            "--output",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "not a readable ONNX model" in err


def test_onnx_without_seg_bench_metadata_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
    onnx.save(
        helper.make_model(helper.make_graph([node], "g", io[:1], io[1:])), tmp_path / "m.onnx"
    )
    from seg_bench.inference.onnx_engine import OnnxRuntimeModel

    with pytest.raises(UserError, match="not a seg-bench export"):
        OnnxRuntimeModel(tmp_path / "m.onnx")
