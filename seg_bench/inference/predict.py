"""`seg-bench predict`: a trained checkpoint applied to images, folders or TIFF stacks.

Writes, per input image ``<name>``: ``<name>_prob.tif`` (float32 foreground probability),
``<name>_mask.png`` (0/255), and with ``instances=True`` ``<name>_instances.tif`` (uint16/uint32
label image); with ``dsb_csv`` also a Kaggle DSB 2018 submission CSV of the instances.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

from seg_bench.data.base import normalize_percentile
from seg_bench.data.io import read_image, read_stack
from seg_bench.errors import UserError
from seg_bench.inference.checkpoint import load_checkpoint
from seg_bench.inference.device import inference_device
from seg_bench.inference.outputs import probabilities
from seg_bench.inference.postprocess import PostprocessConfig, postprocess
from seg_bench.inference.sliding_window import predict_logits
from seg_bench.io import atomic_write

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def iter_inputs(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, 2-D image) pairs from an image file, a folder of images, or a TIFF stack."""
    if not path.exists():
        raise UserError(f"--input {path} does not exist")
    files = (
        sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if path.is_dir()
        else [path]
    )
    if not files:
        raise UserError(f"--input {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    for f in files:
        if f.suffix.lower() in (".tif", ".tiff"):
            stack = read_stack(f) if _pages(f) > 1 else read_image(f)[None]
            for z, page in enumerate(stack):
                yield (f.stem if len(stack) == 1 else f"{f.stem}_z{z:04d}"), page
        else:
            yield f.stem, read_image(f)


def _pages(path: Path) -> int:
    try:
        with tifffile.TiffFile(path) as t:
            return len(t.pages)
    except Exception:
        return 1


def _match_channels(image: np.ndarray, channels: int, name: str) -> np.ndarray:
    image = image[..., None] if image.ndim == 2 else image
    if image.shape[-1] == channels:
        return image
    if channels == 1:
        return image.mean(-1, keepdims=True)  # colour into a grey-trained model
    if image.shape[-1] == 1:
        return np.repeat(image, channels, -1)
    raise UserError(f"{name}: has {image.shape[-1]} channels; the model expects {channels}")


def predict_path(
    checkpoint: str | Path,
    input_path: str | Path,
    output_dir: str | Path,
    tta: bool = False,
    instances: bool = False,
    overlap: float = 0.25,
    dsb_csv: str | Path | None = None,
    postprocess_options: dict | None = None,
    device: str = "auto",
    engine: str = "torch",
) -> list[str]:
    if engine == "onnxruntime":  # an exported model.onnx (inference/export.py) on the CPU
        from seg_bench.inference.onnx_engine import OnnxRuntimeModel

        net = OnnxRuntimeModel(checkpoint)
        hp = net.hparams
    elif engine == "torch":
        task = load_checkpoint(checkpoint)
        net = task.model.to(inference_device(device))
        hp = task.hparams
    else:
        raise UserError(f"--engine {engine!r}: choose torch or onnxruntime")
    post = PostprocessConfig.from_dict(
        {**(hp.get("postprocess") or {}), **(postprocess_options or {})}
    )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    names, submission = [], {}
    for name, image in iter_inputs(Path(input_path)):
        x = normalize_percentile(_match_channels(image, hp["in_channels"], name))
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
        logits = predict_logits(net, x, window=hp.get("window"), overlap=overlap, tta=tta)[0]
        prob = probabilities(logits)
        if prob.ndim == 3:  # multi-class: the probability of "not background"
            prob = 1.0 - prob[0]
        mask, labels = postprocess(prob, post)
        with atomic_write(out / f"{name}_prob.tif", "wb") as f:
            tifffile.imwrite(f, prob.astype(np.float32))
        with atomic_write(out / f"{name}_mask.png", "wb") as f:
            Image.fromarray((mask * 255).astype(np.uint8)).save(f, format="PNG")
        if instances:
            dtype = np.uint16 if labels.max() < 2**16 else np.uint32
            with atomic_write(out / f"{name}_instances.tif", "wb") as f:
                tifffile.imwrite(f, labels.astype(dtype))
        submission[name] = labels
        names.append(name)
    if dsb_csv:
        from seg_bench.data.rle import write_submission_csv

        write_submission_csv(dsb_csv, submission)
    return names
