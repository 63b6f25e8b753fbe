"""`seg-bench export`: verified ONNX / TorchScript exports of every built-in architecture, a
bioimage.io package that validates (and passes bioimageio.core's test where installed), model
cards with the record's metrics and license, atomic writes, one-line user errors, --best."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import yaml

from seg_bench.cli import main
from seg_bench.errors import UserError
from seg_bench.inference import export as ex
from seg_bench.inference.bioimageio import scale_range
from seg_bench.inference.checkpoint import TrainedModel
from seg_bench.inference.model_card import best_record, worst_images
from seg_bench.io import current_umask
from seg_bench.registry import MODELS

pytest.importorskip("onnxruntime", reason="needs the [export] extra")
pytest.importorskip("onnxscript", reason="needs the [export] extra")


def make_checkpoint(path, model="unet", width=0.25, classes=2, seed=0):
    torch.manual_seed(seed)
    hp = {"model": model, "in_channels": 1, "num_classes": classes, "width": width, "window": 64}
    net = TrainedModel(hp)
    # Non-trivial batch-norm statistics, so a wrong train/eval mode in an export would show.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    torch.save({"hyper_parameters": hp, "state_dict": net.state_dict()}, path)
    return path


HIST = {"hist_pos": [1, 4], "hist_neg": [85, 5]}


def ncmir_record(checkpoint) -> dict:
    per_image = [
        {"id": "images.010", "confmat": [[90, 2], [3, 5]], **HIST},  # IoU 0.5
        {"id": "images.011", "confmat": [[80, 10], [10, 0]], **HIST},  # IoU 0: the worst
        {"id": "images.012", "confmat": [[95, 0], [0, 5]], **HIST},  # IoU 1
    ]
    return {
        "dataset": "ncmir",
        "model": "unet",
        "seed": 2,
        "labels": "manual",
        "profile": "cpu",
        "checkpoint": str(checkpoint),
        "best_val": {"val/iou": 0.7},
        "params": 123,
        "commit": "abc1234",
        "data": {"splits": {"train": [1, 2], "val": [3], "test": [4, 5, 6]}},
        "metrics": {"overall": {"iou": 0.625, "dice": 0.77}, "per_image": per_image},
        "ci": {"iou": [0.41, 0.83]},
    }


def tiny(name: str) -> TrainedModel:
    width = 1.0 if name.startswith("smp-") else 0.125
    return TrainedModel({"model": name, "in_channels": 1, "num_classes": 2, "width": width})


def layer_types(net: torch.nn.Module) -> set[str]:
    return {type(m).__qualname__ for m in net.modules()}


def built_in() -> list[str]:
    """The registered names that ship with seg-bench (other tests register toy models)."""
    return [n for n in MODELS.names() if MODELS.get(n).__module__.startswith("seg_bench.")]


def one_per_network_class() -> list[str]:
    """The smallest registered name of each network class: FC-DenseNet56, 67 and 103 (and the
    alias ``tiramisu``) are one class at other depths, and exporting 103 alone took a minute."""
    chosen: dict[type, tuple[int, str]] = {}
    for name in [*built_in(), "smp-unet-resnet18"]:
        net = tiny(name).model
        size = sum(p.numel() for p in net.parameters())
        chosen[type(net)] = min(chosen.get(type(net), (size, name)), (size, name))
    return sorted(name for _, name in chosen.values())


# Written out, so collecting the tests builds no network; the next test proves the list.
ARCHITECTURES = ["resunet", "segnet", "smp-unet-resnet18", "tiramisu56", "unet"]


def test_names_left_out_of_the_export_test_are_its_networks_at_other_depths():
    """What makes the export test's choice safe: a name it skips builds the same class from the
    same layer types as the name it exports, so the exporters meet the same operators."""
    assert ARCHITECTURES == one_per_network_class()
    nets = [tiny(name).model for name in ARCHITECTURES]
    exported = {type(net): layer_types(net) for net in nets}
    for name in built_in():
        net = tiny(name).model
        assert layer_types(net) == exported[type(net)], name


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_architecture_exports_or_names_the_blocking_op(tmp_path, name):
    task = tiny(name)
    net = task.model.eval()
    geo = ex.geometry(net)
    meta = {"hparams": dict(task.hparams), "geometry": geo}
    inputs = ex.example_inputs(1, geo)
    onnx = ex.export_onnx(net, tmp_path / "m.onnx", inputs, meta)
    script = ex.export_torchscript(net, tmp_path / "m.pt", inputs, meta)
    # A third size, not used by the exporter's own check: batch 3, non-square.
    m = geo["multiple"]
    x = torch.randn(
        3, 1, max(64, m) + 3 * m, max(64, m) + m, generator=torch.Generator().manual_seed(1)
    )
    with torch.inference_mode():
        ref = ex.to_probabilities(net(x).numpy())
    assert onnx.error is None and onnx.max_abs_diff <= ex.TOLERANCE
    from seg_bench.inference.onnx_engine import session_runner

    got = ex.to_probabilities(session_runner(tmp_path / "m.onnx")(x.numpy()))
    assert np.abs(got - ref).max() <= ex.TOLERANCE
    if name == "segnet":  # tracing cannot keep max_unpool2d's output-size check symbolic
        assert script.error and "max_unpool2d" in script.error and "\n" not in script.error
    else:
        assert script.error is None and script.max_abs_diff <= ex.TOLERANCE
        with torch.inference_mode():
            traced = torch.jit.load(str(tmp_path / "m.pt"))(x).numpy()
        assert np.abs(ex.to_probabilities(traced) - ref).max() <= ex.TOLERANCE


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    pytest.importorskip("bioimageio.spec", reason="needs the [export] extra")
    root = tmp_path_factory.mktemp("pkg")
    ckpt = make_checkpoint(root / "unet.ckpt")
    out = root / "out"
    results = ex.export_checkpoint(ckpt, out, list(ex.FORMATS), record=ncmir_record(ckpt))
    return ckpt, out, results


def test_package_holds_verified_weights_test_tensors_and_states_tolerance(package):
    _, out, results = package
    by_format = {r.format: r for r in results}
    assert by_format["onnx"].max_abs_diff <= ex.TOLERANCE
    assert by_format["torchscript"].max_abs_diff <= ex.TOLERANCE
    rdf = yaml.safe_load((out / "rdf.yaml").read_text())
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript", "onnx"}
    assert rdf["weights"]["onnx"]["opset_version"] == ex.OPSET
    assert rdf["config"]["seg_bench"]["tolerance"] == ex.TOLERANCE
    pre = rdf["inputs"][0]["preprocessing"][0]
    assert pre["id"] == "scale_range"
    assert (pre["kwargs"]["min_percentile"], pre["kwargs"]["max_percentile"]) == (1.0, 99.8)
    assert rdf["outputs"][0]["postprocessing"] == [{"id": "sigmoid"}]
    assert rdf["inputs"][0]["axes"][2]["size"]["step"] == 16  # unet depth 4
    pinned = [*rdf["weights"].values(), rdf["weights"]["pytorch_state_dict"]["architecture"]]
    pinned += [rdf["inputs"][0]["test_tensor"], rdf["outputs"][0]["test_tensor"]]
    for entry in pinned:
        assert entry["sha256"] == hashlib.sha256((out / entry["source"]).read_bytes()).hexdigest()
    x, y = np.load(out / "test_input.npy"), np.load(out / "test_output.npy")
    assert x.shape[2] % 16 == 0 and y.shape == (1, 1, *x.shape[2:])
    assert 0.0 <= y.min() and y.max() <= 1.0
    manifest = json.loads((out / ex.MANIFEST).read_text())
    assert manifest["formats"]["onnx"]["max_abs_diff"] <= ex.TOLERANCE
    # The folder gets the umask's mode like its files (it was mkdtemp's private 0700).
    assert out.stat().st_mode & 0o777 == 0o777 & ~current_umask()


def test_package_passes_bioimageio_spec_validation(package):
    from bioimageio.spec import load_description

    descr = load_description(package[1] / "rdf.yaml", perform_io_checks=True)
    assert descr.validation_summary.status in ("passed", "valid-format"), descr.validation_summary


@pytest.mark.slow
def test_package_passes_bioimageio_core_model_test(package):
    core = pytest.importorskip("bioimageio.core", reason="bioimageio.core is not installed")
    summary = core.test_model(package[1] / "rdf.yaml")
    assert summary.status == "passed", summary.format()


def test_research_only_data_license_travels_with_package_and_card(package):
    _, out, _ = package
    rdf = yaml.safe_load((out / "rdf.yaml").read_text())
    card = (out / "MODEL_CARD.md").read_text()
    assert rdf["license"] == "CC-BY-NC-4.0" and "Research use only" in rdf["description"]
    assert "Research use only" in card and "commercial use needs permission from UCSD" in card
    assert "10.1038/s41592-018-0106-z" in card  # CDeep3M paper
    assert "10.1007/978-3-319-24574-4_28" in (out / "README.md").read_text()  # U-Net paper


def test_model_card_reports_record_metrics_ci_and_worst_images(package):
    card = (package[1] / "MODEL_CARD.md").read_text()
    assert "| iou | 0.6250 | [0.4100, 0.8300] |" in card
    assert "`images.011` (IoU 0.000)" in card
    assert "seg-bench bench --dataset ncmir --models unet --seeds 3 --profile cpu" in card
    readme = (package[1] / "README.md").read_text()
    assert "## Validation" in readme and "[0.4100, 0.8300]" in readme


def test_the_card_tells_other_tools_to_flip_a_bright_background_where_training_did():
    from seg_bench.inference.model_card import _architecture

    geo = {"multiple": 16, "min_size": 16, "pad_mode": "reflect"}
    hp = {"model": "unet", "in_channels": 1}
    plain = "\n".join(_architecture({"hparams": hp, "geometry": geo}, None))
    hp_dsb = {**hp, "input_options": {"invert_bright": True}}
    dsb = "\n".join(_architecture({"hparams": hp_dsb, "geometry": geo}, None))
    assert "flipping the intensities" in dsb and "flipping" not in plain


def test_a_distance_model_is_packaged_with_a_sigmoid_per_channel_and_the_flip_is_stated(
    tmp_path,
):
    # It was packaged with a softmax over its two independent sigmoid maps, and the bright-
    # background flip of its training images was dropped from the package.
    pytest.importorskip("bioimageio.spec", reason="needs the [export] extra")
    ckpt = make_checkpoint(tmp_path / "d.ckpt")
    state = torch.load(ckpt, weights_only=True)
    hp = {**state["hyper_parameters"], "target": "distance"}
    hp["input_options"] = {"invert_bright": True}
    net = TrainedModel(hp).eval()
    torch.save({"hyper_parameters": hp, "state_dict": net.state_dict()}, ckpt)
    bright = np.full((96, 96), 220, np.uint8)
    bright[30:50, 30:50] = 40  # a dark nucleus on a bright background
    out = tmp_path / "out"
    ex.export_checkpoint(ckpt, out, ["bioimageio"], sample=bright)
    rdf = yaml.safe_load((out / "rdf.yaml").read_text())
    output = rdf["outputs"][0]
    assert output["postprocessing"] == [{"id": "sigmoid"}]
    assert output["axes"][1]["channel_names"] == ["foreground", "distance"]
    x, y = np.load(out / "test_input.npy"), np.load(out / "test_output.npy")
    assert np.median(x) < 128  # the test input went through the flip the package cannot do
    with torch.inference_mode():
        logits = net(torch.from_numpy(scale_range(x)))
    np.testing.assert_allclose(y, torch.sigmoid(logits).numpy(), atol=1e-5)
    assert "max - x" in rdf["description"] and "max - x" in (out / "README.md").read_text()


def test_worst_images_are_ranked_by_iou_from_confusion_matrices():
    record = ncmir_record("x")
    assert worst_images(record, 2) == [("images.011", 0.0), ("images.010", 0.5)]


def test_output_holding_another_model_is_refused_unless_force(package, tmp_path):
    ckpt, out, _ = package
    other = make_checkpoint(tmp_path / "other.ckpt", seed=1)
    with pytest.raises(UserError, match="holds another model.*--force"):
        ex.export_checkpoint(other, out, ["torchscript"])
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a seg-bench export"):
        ex.export_checkpoint(other, stray, ["torchscript"])
    ex.export_checkpoint(other, stray, ["torchscript"], force=True)
    assert sorted(p.name for p in stray.iterdir()) == [
        "MODEL_CARD.md",
        ex.MANIFEST,
        ex.TORCHSCRIPT_FILE,
    ]


def test_failed_export_leaves_neither_output_nor_temporary_folder(tmp_path, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "unet.ckpt")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ex, "write_json", broken)
    with pytest.raises(RuntimeError):
        ex.export_checkpoint(ckpt, tmp_path / "out", ["torchscript"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet.ckpt"]


def test_unknown_format_is_one_line_naming_the_choices(capsys, tmp_path):
    assert (
        main(
            [
                "export",
                "--checkpoint",
                "x.ckpt",
                "--format",
                "onnx,tflite",
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tflite" in err and "onnx, torchscript, bioimageio" in err


def test_foreign_checkpoint_is_one_line_error(capsys, tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    assert main(["export", "--checkpoint", str(path), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a seg-bench checkpoint" in err
    assert not (tmp_path / "o").exists()


def test_missing_optional_package_names_the_extra(monkeypatch, tmp_path):
    real = ex.importlib.import_module

    def no_onnxruntime(name, *args):
        if name == "onnxruntime":
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(ex.importlib, "import_module", no_onnxruntime)
    with pytest.raises(UserError, match=r"'onnxruntime'.*pip install 'seg-bench\[export\]'"):
        ex.export_checkpoint(tmp_path / "never-read.ckpt", tmp_path / "o", ["onnx"])


def test_blocking_op_names_the_aten_operator_of_an_exporter_error():
    err = RuntimeError("Unsupported FX nodes: {'call_function': ['aten.max_unpool2d.default']}")
    assert ex.blocking_op(err) == "aten::max_unpool2d"


def _record(model, seed, val, test):
    return {
        "model": model,
        "seed": seed,
        "labels": "manual",
        "best_val": {"val/iou": val},
        "metrics": {"overall": {"iou": test}},
        "checkpoint": f"{model}-{seed}.ckpt",
    }


def test_best_is_chosen_on_validation_never_on_test():
    records = [
        _record("unet", 0, 0.80, 0.99),
        _record("unet", 1, 0.70, 0.99),  # mean val 0.75
        _record("segnet", 0, 0.78, 0.10),
        _record("segnet", 1, 0.76, 0.10),  # mean val 0.77
        {**_record("resunet", 0, 0.99, 0.99), "labels": "floodfill"},  # weak labels: not ranked
    ]
    best = best_record(records, "ncmir")
    assert (best["model"], best["seed"]) == ("segnet", 0)


def test_best_without_records_says_how_to_make_them():
    with pytest.raises(UserError, match="seg-bench bench --dataset epfl"):
        best_record([], "epfl")


def test_export_best_reads_the_checkpoint_path_from_the_record(tmp_path, capsys):
    pytest.importorskip("bioimageio.spec")
    (tmp_path / "somewhere").mkdir()
    ckpt = make_checkpoint(tmp_path / "somewhere" / "weights.ckpt")
    record = {
        **ncmir_record(ckpt),
        "version": 1,
        "metrics": {
            "overall": {"iou": 0.5},
            "per_image": ncmir_record(ckpt)["metrics"]["per_image"],
        },
    }
    folder = tmp_path / "results" / "ncmir"
    folder.mkdir(parents=True)
    (folder / "unet__seed2.json").write_text(json.dumps(record))
    code = main(
        [
            "export",
            "--best",
            "--dataset",
            "ncmir",
            "--results-dir",
            str(tmp_path / "results"),
            "--format",
            "torchscript",
            "--output",
            str(tmp_path / "best"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "best" / ex.MANIFEST).read_text())
    assert manifest["checkpoint"] == str(ckpt)
    assert "IoU 0.000" in (tmp_path / "best" / "MODEL_CARD.md").read_text()
