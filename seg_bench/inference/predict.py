"""`seg-bench predict`: a trained checkpoint applied to images, folders or TIFF stacks.

Writes, per input image ``<name>``: ``<name>_prob.tif`` (float32 foreground probability),
``<name>_mask.png`` (0/255), and with ``instances=True`` ``<name>_instances.tif`` (uint16/uint32
label image); with ``dsb_csv`` also a Kaggle DSB 2018 submission CSV of the instances. The pages
of a TIFF stack are images ``<stem>_z0000``...; with ``stack=True`` they go into one multi-page
``<stem>_prob.tif``, ``<stem>_mask.tif`` (and ``<stem>_instances.tif``) instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

from seg_bench.data.base import normalize_percentile
from seg_bench.data.intensity import invert_if_bright
from seg_bench.data.io import read_image, read_stack
from seg_bench.errors import UserError
from seg_bench.inference.checkpoint import load_checkpoint
from seg_bench.inference.device import inference_device
from seg_bench.inference.instances import (
    check_method,
    check_target_postprocess,
    instances_by_method,
    instances_from_logits,
)
from seg_bench.inference.postprocess import PostprocessConfig
from seg_bench.inference.sliding_window import predict_logits
from seg_bench.io import atomic_write

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class Predictions:
    """What ``predict_path`` did: the image names (stack pages as ``<stem>_z0000``), the files."""

    names: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def input_files(path: Path) -> list[Path]:
    """The image files behind ``--input``: the file itself or a folder's images, sorted."""
    if not path.exists():
        raise UserError(f"--input {path} does not exist")
    files = (
        sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if path.is_dir()
        else [path]
    )
    if not files:
        raise UserError(f"--input {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if files[0].suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(
            f"--input {path}: not an image; expected one of {', '.join(IMAGE_SUFFIXES)}"
        )
    return files


def read_pages(f: Path) -> np.ndarray | list[np.ndarray]:
    """The 2-D images of one file: every page of a TIFF stack, else the one image."""
    if f.suffix.lower() in TIFF_SUFFIXES and _pages(f) > 1:
        return read_stack(f)
    return [read_image(f)]


def iter_inputs(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, 2-D image) pairs from an image file, a folder of images, or a TIFF stack."""
    for f in input_files(path):
        pages = read_pages(f)
        for z, page in enumerate(pages):
            yield (f.stem if len(pages) == 1 else f"{f.stem}_z{z:04d}"), page


def _pages(path: Path) -> int:
    try:
        with tifffile.TiffFile(path) as t:
            return len(t.pages)
    except Exception:
        return 1  # not a readable TIFF: read_image names the file and the problem


def _match_channels(image: np.ndarray, channels: int, name: str) -> np.ndarray:
    image = image[..., None] if image.ndim == 2 else image
    if image.shape[-1] == channels:
        return image
    if channels == 1 and image.shape[-1] == 3:
        warnings.warn(
            "colour input for a model trained on grey images: the channels are averaged",
            stacklevel=2,
        )
        return image.mean(-1, keepdims=True)
    if image.shape[-1] == 1 and channels == 3:
        warnings.warn(
            "grey input for a model trained on colour (RGB) images: the grey channel is "
            "repeated into 3; expect lower accuracy than on colour images",
            stacklevel=2,
        )
        return np.repeat(image, channels, -1)
    raise UserError(f"{name}: has {image.shape[-1]} channels; the model expects {channels}")


def _check_outputs(output_dir: Path, dsb_csv: str | Path | None, overlap: float) -> None:
    """Refuse bad output places and settings before the (slow) checkpoint load."""
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output {output_dir}: is a file; give a folder (created if missing)")
    if dsb_csv is not None and Path(dsb_csv).is_dir():
        raise UserError(f"--dsb-csv {dsb_csv}: is a folder; give the CSV file to write")
    if dsb_csv is not None and not Path(dsb_csv).absolute().parent.is_dir():
        raise UserError(
            f"--dsb-csv {dsb_csv}: folder {Path(dsb_csv).absolute().parent} does not exist; "
            "create it or give another path"
        )
    if not 0 <= overlap < 1:
        raise UserError(f"--overlap must be in [0, 1), got {overlap}")


def _check_names(files: list[Path], dsb_csv: str | Path | None) -> None:
    """Outputs are named by the input's stem: two inputs of one stem would overwrite each
    other's (a.png, a.tif); a comma cannot be an ImageId of the submission CSV."""
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise UserError(
                f"{seen[f.stem]} and {f}: one name, so their outputs would overwrite each "
                "other; rename one or predict them separately"
            )
        seen[f.stem] = f
        if dsb_csv is not None and "," in f.stem:
            raise UserError(f"{f}: a comma in its name cannot be a --dsb-csv ImageId; rename it")


def _write_tiff(path: Path, array: np.ndarray, written: list[Path]) -> None:
    with atomic_write(path, "wb") as f:
        tifffile.imwrite(f, array, photometric="minisblack")  # grey pages, never RGB
    written.append(path)


def _label_dtype(labels: np.ndarray) -> type:
    return np.uint16 if labels.max(initial=0) < 2**16 else np.uint32


def _load_network(checkpoint, engine: str, device: str):
    """The network and its hyper-parameters, from a checkpoint (torch) or an ONNX file."""
    if engine == "onnxruntime":
        from seg_bench.inference.onnx_engine import OnnxRuntimeModel

        net = OnnxRuntimeModel(checkpoint)
        return net, net.hparams
    if engine == "torch":
        task = load_checkpoint(checkpoint)
        return task.model.to(inference_device(device)), task.hparams
    raise UserError(f"--engine {engine!r}: choose torch or onnxruntime")


def model_input(image: np.ndarray, hp: dict, where: str) -> np.ndarray:
    """An image as the network saw its training images: channels matched, a bright background
    flipped where the dataset did so (DSB's brightfield and H&E), percentile-normalised."""
    if (hp.get("input_options") or {}).get("invert_bright"):
        image, _ = invert_if_bright(image)  # on the file's own pixels, as the dataset decides
    return normalize_percentile(_match_channels(image, hp["in_channels"], where))


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
    stack: bool = False,
    engine: str = "torch",
    method: dict | None = None,
) -> Predictions:
    """Predict every image; ``stack=True`` writes a TIFF stack's pages as one multi-page file;
    ``engine="onnxruntime"`` runs an exported model.onnx (inference/export.py) on the CPU;
    ``method`` (``{"method": name, **params}``): instances by that post-processing method of
    the study, e.g. the one validation chose for the leaderboard, instead of the checkpoint's
    ``postprocess``."""
    out = Path(output_dir)
    _check_outputs(out, dsb_csv, overlap)
    files = input_files(Path(input_path))
    _check_names(files, dsb_csv)
    net, hp = _load_network(checkpoint, engine, device)
    post = PostprocessConfig.from_dict(
        {**(hp.get("postprocess") or {}), **(postprocess_options or {})}
    )
    target = hp.get("target", "binary")
    check_target_postprocess(target, post, str(checkpoint))
    if method:
        check_method(method, target, f"--method {method.get('method')} on {checkpoint}")
    out.mkdir(parents=True, exist_ok=True)
    done, submission = Predictions(), {}
    for f in files:
        pages = read_pages(f)
        results = []
        for z, image in enumerate(pages):
            name = f.stem if len(pages) == 1 else f"{f.stem}_z{z:04d}"
            if name in submission:  # a stack's page beside a file of that name
                raise UserError(f"{f}: its output {name} is also another input's; rename one")
            x = model_input(image, hp, str(f))
            x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
            logits = predict_logits(net, x, window=hp.get("window"), overlap=overlap, tta=tta)[0]
            if method:
                prob, labels = instances_by_method(logits, target, method)
            else:
                prob, labels = instances_from_logits(logits, target, post)
            mask = labels > 0
            results.append((name, prob.astype(np.float32), (mask * 255).astype(np.uint8), labels))
            submission[name] = labels
            done.names.append(name)
        if stack and len(pages) > 1:
            _write_stack(out / f.stem, results, instances, done.files)
        else:
            for name, prob, mask, labels in results:
                _write_image(out / name, prob, mask, labels if instances else None, done.files)
    if dsb_csv:
        from seg_bench.data.rle import write_submission_csv

        write_submission_csv(dsb_csv, submission)
        done.files.append(Path(dsb_csv))
    return done


def _write_image(base: Path, prob, mask, labels, written: list[Path]) -> None:
    _write_tiff(base.with_name(f"{base.name}_prob.tif"), prob, written)
    path = base.with_name(f"{base.name}_mask.png")
    with atomic_write(path, "wb") as f:
        Image.fromarray(mask).save(f, format="PNG")
    written.append(path)
    if labels is not None:
        _write_tiff(
            base.with_name(f"{base.name}_instances.tif"),
            labels.astype(_label_dtype(labels)),
            written,
        )


def _write_stack(base: Path, results: list, instances: bool, written: list[Path]) -> None:
    """One multi-page TIFF per output kind, a page per input page (as the input stack)."""
    _write_tiff(base.with_name(f"{base.name}_prob.tif"), np.stack([r[1] for r in results]), written)
    _write_tiff(base.with_name(f"{base.name}_mask.tif"), np.stack([r[2] for r in results]), written)
    if instances:
        labels = np.stack([r[3] for r in results])
        _write_tiff(
            base.with_name(f"{base.name}_instances.tif"),
            labels.astype(_label_dtype(labels)),
            written,
        )
