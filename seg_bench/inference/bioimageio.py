"""A BioImage Model Zoo (bioimage.io, model format 0.5) package of a seg-bench network, for
deepImageJ, ilastik, napari or bioimageio.core: ``rdf.yaml`` with the preprocessing the network
was trained with (``scale_range``, 1 and 99.8 percentiles per channel: seg-bench's
``normalize_percentile``), its output activation, axes with size step and halo, weights as
``pytorch_state_dict`` (+ ``architecture.py``), ``torchscript`` and ``onnx`` (those that export),
test tensors, a cover, and a README with the validation metrics and the data's license.

The package is validated with ``bioimageio.spec`` before ``export`` reports it done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import yaml
from PIL import Image

from seg_bench.data.intensity import invert_if_bright
from seg_bench.errors import UserError
from seg_bench.inference.export import ONNX_FILE, OPSET, TORCHSCRIPT_FILE, Exported, sha256
from seg_bench.inference.model_card import (
    citation_lines,
    citations,
    data_section,
    dataset_info,
    validation_section,
)
from seg_bench.io import atomic_write

TEST_TILE = 256  # largest side of the test tensors (cropped from the sample image)
EPS = 1e-6  # scale_range's eps, the same 1e-6 floor normalize_percentile uses
ARCHITECTURE = '''"""The network of this package's pytorch_state_dict weights (needs seg-bench:
pip install seg-bench)."""

from seg_bench.models import create_model


def build(model, in_channels, classes, width, options=None):
    return create_model(
        model, in_channels=in_channels, classes=classes, width=width, **(options or {})
    )
'''


def default_sample(record: dict[str, Any] | None, in_channels: int) -> np.ndarray:
    """The first test image of the record's dataset when it can be read, else a synthetic one."""
    from seg_bench.data.options import create_datamodule

    if record and record.get("dataset"):
        try:
            root = record.get("data", {}).get("root")
            dm = create_datamodule(record["dataset"], root=root, num_workers=0)
            return next(s.image for s in dm.load_split("test") if s.image is not None)
        except (UserError, OSError, StopIteration, ValueError):
            pass  # data not on this machine: the synthetic image still tests the package
    image = create_datamodule("synthetic", num_workers=0).load_split("test")[0].image
    return image if in_channels == 1 else np.repeat(image[..., None], in_channels, -1)


def test_tile(image: np.ndarray, in_channels: int, multiple: int, least: int) -> np.ndarray:
    """A centred crop as float32 1,C,H,W with H, W multiples of ``multiple`` (reflect-padded
    up to ``least`` for images smaller than that)."""
    image = np.asarray(image, dtype=np.float32)
    image = image[..., None] if image.ndim == 2 else image
    if image.shape[-1] != in_channels:
        image = np.repeat(image.mean(-1, keepdims=True), in_channels, -1)
    largest = max(least, TEST_TILE // multiple * multiple)
    sizes = [min(max(n // multiple * multiple, least), largest) for n in image.shape[:2]]
    pad = [
        ((s - n) // 2, s - n - (s - n) // 2) if s > n else (0, 0)
        for s, n in zip(sizes, image.shape[:2], strict=True)
    ]
    image = np.pad(image, [*pad, (0, 0)], mode="reflect")
    top, left = ((n - s) // 2 for s, n in zip(sizes, image.shape[:2], strict=True))
    tile = image[top : top + sizes[0], left : left + sizes[1]]
    return np.ascontiguousarray(tile.transpose(2, 0, 1)[None])


def scale_range(x: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """bioimage.io's ``scale_range`` over (y, x) per channel:
    (x - p_low) / (p_high - p_low + eps)."""
    lo = np.percentile(x, low, axis=(2, 3), keepdims=True)
    hi = np.percentile(x, high, axis=(2, 3), keepdims=True)
    return ((x - lo) / (hi - lo + EPS)).astype(np.float32)


def write_cover(path: Path, raw: np.ndarray, prob: np.ndarray) -> None:
    """2:1 cover: the test input beside it with the predicted foreground in red."""
    grey = raw[0].mean(0)
    lo, hi = np.percentile(grey, [1, 99.8])
    grey = (np.clip((grey - lo) / max(hi - lo, EPS), 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, -1)
    overlay = rgb.copy()
    fg = prob > 0.5
    overlay[fg] = (0.5 * overlay[fg] + [127, 0, 0]).astype(np.uint8)
    with atomic_write(path, "wb") as f:
        Image.fromarray(np.concatenate([rgb, overlay], axis=1)).save(f, format="PNG")


def _axes(n_channels: int, names: list[str], size: dict[str, Any] | None, halo: int | None):
    axes: list[dict[str, Any]] = [
        {"type": "batch"},
        {"type": "channel", "channel_names": names[:n_channels]},
    ]
    for axis in ("y", "x"):
        if size is None:
            ref = {"tensor_id": "raw", "axis_id": axis}
            axes.append({"type": "space", "id": axis, "size": ref, "halo": halo})
        else:
            axes.append({"type": "space", "id": axis, "size": size})
    return axes


def _weights(hp: dict[str, Any], done: dict[str, Exported], out_channels: int) -> dict:
    """The state dict (with the code that builds its network) and the verified exports."""
    weights: dict[str, Any] = {
        "pytorch_state_dict": {
            "source": "weights.pt",
            "architecture": {
                "source": "architecture.py",
                "callable": "build",
                "kwargs": {
                    "model": hp["model"],
                    "in_channels": int(hp.get("in_channels", 1)),
                    "classes": out_channels,
                    "width": float(hp.get("width", 1.0)),
                    "options": hp.get("model_options") or {},
                },
            },
            "pytorch_version": torch.__version__.split("+")[0],
        }
    }
    if "torchscript" in done:
        weights["torchscript"] = {
            "source": TORCHSCRIPT_FILE,
            "pytorch_version": torch.__version__.split("+")[0],
            "parent": "pytorch_state_dict",
        }
    if "onnx" in done:
        weights["onnx"] = {
            "source": ONNX_FILE,
            "opset_version": OPSET,
            "parent": "pytorch_state_dict",
        }
    return weights


def _input_spec(hp: dict[str, Any], least: int, multiple: int) -> dict[str, Any]:
    """The raw input: its axes and sizes, and the percentile normalisation of training."""
    channels = int(hp.get("in_channels", 1))
    scale = {"axes": ["y", "x"], "min_percentile": 1.0, "max_percentile": 99.8, "eps": EPS}
    return {
        "id": "raw",
        "axes": _axes(
            channels, [f"c{i}" for i in range(channels)], {"min": least, "step": multiple}, None
        ),
        "test_tensor": {"source": "test_input.npy"},
        "data": {"type": "float32"},
        "preprocessing": [{"id": "scale_range", "kwargs": scale}],
    }


def rdf(meta, results, record, out_channels: int, least: int) -> dict[str, Any]:
    hp, geo = meta["hparams"], meta["geometry"]
    multiple = geo["multiple"]
    # A tiler should discard a border of about a quarter of the smallest valid tile.
    halo = max(1, least // 4)
    target = hp.get("target", "binary")
    classes = OUTPUT_NAMES.get(target) or (
        ["foreground"] if out_channels == 1 else [f"class{k}" for k in range(out_channels)]
    )
    softmax = out_channels > 1 and target != "distance"  # distance: two sigmoid maps
    post = [{"id": "softmax", "kwargs": {"axis": "channel"}}] if softmax else None
    info = dataset_info(record.get("dataset") if record else None)
    done = {r.format: r for r in results if not r.error}
    dataset = record.get("dataset", "unknown data") if record else "unknown data"
    weights = _weights(hp, done, out_channels)
    from bioimageio.spec.model.v0_5 import ModelDescr

    return {
        "type": "model",
        "format_version": ModelDescr.implemented_format_version,
        "name": f"seg-bench {hp['model']} {dataset}"[:128],
        "description": (
            f"{hp['model']} trained with seg-bench on {dataset} for binary/semantic "
            f"segmentation. Data license: {info['license']}."
            + (" Research use only." if info["research_only"] else "")
            + (f" {INVERT_NOTE}" if inverts_bright(hp) else "")
        ),
        "authors": [{"name": "seg-bench"}],
        "cite": [
            {"text": text, **({"url": ref} if ref.startswith("http") else {"doi": ref})}
            for text, ref in citations(meta, record)
        ]
        or [{"text": "seg-bench", "url": "https://github.com/"}],
        "license": "CC-BY-NC-4.0" if info["research_only"] else "MIT",
        "documentation": {"source": "README.md"},
        "covers": [{"source": "cover.png"}],
        "tags": ["segmentation", "2d", "seg-bench", hp["model"], dataset],
        "inputs": [_input_spec(hp, least, multiple)],
        "outputs": [
            {
                "id": "probability",
                "axes": _axes(out_channels, classes, None, halo),
                "test_tensor": {"source": "test_output.npy"},
                "data": {"type": "float32"},
                "postprocessing": post or [{"id": "sigmoid"}],
            }
        ],
        "weights": weights,
        "config": {
            "seg_bench": {
                "tolerance": meta["tolerance"],
                "geometry": geo,
                "training_window": hp.get("window"),
                "overlap": hp.get("overlap", 0.25),
                "checkpoint_sha256": meta["checkpoint_sha256"],
                "max_abs_diff": {k: r.max_abs_diff for k, r in done.items()},
            }
        },
    }


# Output channel names per training target (seg_bench/training/targets.py).
OUTPUT_NAMES = {
    "boundary3": ["background", "interior", "boundary"],
    "distance": ["foreground", "distance"],
}
INVERT_NOTE = (
    "Input step the bioimage.io format cannot express, so tools running this package skip it: "
    "an image whose median is above half its range (a bright background: brightfield, H&E) "
    "must be inverted (max - x) before normalisation, as every training image was; the range "
    "tops at 255 for 8-bit images, at the image's own maximum for wider types."
)


def inverts_bright(hp: dict[str, Any]) -> bool:
    return bool((hp.get("input_options") or {}).get("invert_bright"))


def readme(meta, results, record) -> str:
    geo = meta["geometry"]
    target = meta["hparams"].get("target", "binary")
    activation = (
        "a sigmoid on each channel (foreground, distance)"
        if target == "distance"
        else "the sigmoid (one channel) or softmax"
    )
    lines = [
        f"# seg-bench {meta['model']}",
        "",
        "Exported by `seg-bench export`. Run it without seg-bench: the ONNX weights with ONNX "
        "Runtime, the TorchScript weights with PyTorch, or the package in deepImageJ, ilastik, "
        "napari or bioimageio.core. Normalise each image's channels so their 1st/99.8th "
        f"percentiles map to 0/1, pad H and W to multiples of {geo['multiple']} "
        f"({geo['pad_mode']}), apply the model, crop back, then {activation}.",
        *(["", INVERT_NOTE] if inverts_bright(meta["hparams"]) else []),
        "",
        *validation_section(record),
        *data_section(meta, record),
        "## Export check",
        "",
        *[f"- {r.line()}" for r in results],
        "",
        *citation_lines(meta, record),
    ]
    return "\n".join(lines)


def write_package(net: nn.Module, folder: Path, meta, results, record, sample) -> Exported:
    """Write the package files into ``folder`` (which already holds the other exports)."""
    hp, geo = meta["hparams"], meta["geometry"]
    channels = int(hp.get("in_channels", 1))
    m = geo["multiple"]
    least = m * max(1, -(-max(m, geo["min_size"], 32) // m))
    image = sample if sample is not None else default_sample(record, channels)
    if inverts_bright(hp):  # the test pair runs the package's steps, which cannot invert
        image, _ = invert_if_bright(image)
    raw = test_tile(image, channels, m, least)
    with torch.inference_mode():
        logits = net(torch.from_numpy(scale_range(raw))).numpy()
    from seg_bench.inference.export import to_probabilities

    target = hp.get("target", "binary")
    prob = to_probabilities(logits, target).astype(np.float32)
    np.save(folder / "test_input.npy", raw)
    np.save(folder / "test_output.npy", prob)
    foreground = prob[0, 0] if prob.shape[1] == 1 or target == "distance" else 1 - prob[0, 0]
    write_cover(folder / "cover.png", raw, foreground)
    torch.save(net.state_dict(), folder / "weights.pt")
    (folder / "architecture.py").write_text(ARCHITECTURE)
    (folder / "README.md").write_text(readme(meta, results, record))
    description = with_sha256(rdf(meta, results, record, int(logits.shape[1]), least), folder)
    (folder / "rdf.yaml").write_text(yaml.safe_dump(description, sort_keys=False))
    status = validate(folder / "rdf.yaml")
    return Exported("bioimageio", file="rdf.yaml", details={"bioimageio.spec": status})


def with_sha256(description: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The SHA-256 of every file the spec lets a package pin (weights, architecture code, test
    tensors), so a tool that downloads the package can tell a damaged or altered file."""
    weights = list(description["weights"].values())
    files = weights + [w["architecture"] for w in weights if "architecture" in w]
    files += [t["test_tensor"] for t in description["inputs"] + description["outputs"]]
    for entry in files:
        entry["sha256"] = sha256(folder / entry["source"])
    return description


def validate(path: Path) -> str:
    """``bioimageio.spec`` validation of the written package: 'valid-format' or a user error."""
    from bioimageio.spec import load_description

    descr = load_description(path, perform_io_checks=True)
    summary = descr.validation_summary
    if summary.status not in ("passed", "valid-format"):
        errors = [f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in summary.errors]
        raise UserError(f"bioimageio package {path.parent} is invalid: {'; '.join(errors[:3])}")
    return str(summary.status)
