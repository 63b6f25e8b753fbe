"""`seg-bench export`: a checkpoint as ONNX, TorchScript and a BioImage Model Zoo package.

Every network pads its input to a size multiple inside ``forward`` (``models/base.py``). That
padding is shape-dependent Python, which neither exporter can keep for *any* size, so the
exported graphs take heights and widths that are multiples of the network's ``multiple`` (any
batch, any such size: verified at two sizes) and the caller pads first, exactly as the network
itself does: ``inference/onnx_engine.py`` for ``predict --engine onnxruntime``, the axis ``step``
for bioimage.io consumers. With the input already a multiple the in-model padding is a no-op,
so padded-then-exported and PyTorch predictions are the same computation.

An export is written only after it was checked against the PyTorch network: the largest
absolute difference of probabilities (sigmoid, or softmax over classes) must be at most
``TOLERANCE``. Everything is written into a temporary folder beside ``output`` and renamed into
place at the end, so an interrupted export leaves no partial package.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import re
import shutil
import tempfile
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from seg_bench.errors import UserError
from seg_bench.inference.checkpoint import load_checkpoint
from seg_bench.io import current_umask, write_json

FORMATS = ("onnx", "torchscript", "bioimageio")
TOLERANCE = 1e-4  # max |p_exported - p_torch| over the verification tensors (float32)
OPSET = 18
INSTALL_HINT = "pip install 'seg-bench[export]'"
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.torchscript.pt"
MANIFEST = "export.json"
META_KEY = "seg_bench"  # ONNX metadata_props key / TorchScript extra file holding the manifest
PACKAGES = {"onnx": ("onnx", "onnxruntime", "onnxscript"), "bioimageio": ("bioimageio.spec",)}


@dataclass
class Exported:
    """One format's outcome: the file and its verified difference, or why it could not be."""

    format: str
    file: str | None = None
    max_abs_diff: float | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        if self.error:
            return f"{self.format}: not exported: {self.error}"
        extra = "".join(f", {k} {v}" for k, v in self.details.items())
        if self.max_abs_diff is None:
            return f"{self.format}: {self.file}{extra}"
        diff = f"max |p - p_torch| {self.max_abs_diff:.2e} <= tolerance {TOLERANCE:g}"
        return f"{self.format}: {self.file}{extra}, {diff}"


def parse_formats(text: str) -> list[str]:
    """``"onnx,torchscript"`` -> ``["onnx", "torchscript"]``; unknown names are a user error."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise UserError(
            f"--format {text!r}: unknown format {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(FORMATS)} (comma-separated for several)"
        )
    return list(dict.fromkeys(names))


def require(module: str, purpose: str) -> Any:
    """Import an optional package or raise the one-line 'what to install' error."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"{purpose} needs the Python package '{module}', which is not installed: {INSTALL_HINT}"
        ) from None


def geometry(net: nn.Module) -> dict[str, Any]:
    """What a caller must do before calling an exported graph (see the module docstring)."""
    from seg_bench.models.smp import MIN_SIZE, SmpModel

    return {
        "multiple": int(getattr(net, "multiple", 1)),
        "min_size": MIN_SIZE if isinstance(net, SmpModel) else 0,
        "pad_mode": str(getattr(net, "pad_mode", "reflect")),
    }


def example_inputs(in_channels: int, geo: dict[str, Any], seed: int = 0) -> list[torch.Tensor]:
    """Two verification tensors of different batch, height and width, all valid multiples."""
    m = geo["multiple"]
    base = m * max(1, -(-max(64, geo["min_size"]) // m))
    gen = torch.Generator().manual_seed(seed)
    shapes = [(2, in_channels, base, base + m), (1, in_channels, base + 2 * m, base)]
    return [torch.randn(*s, generator=gen) for s in shapes]


def to_probabilities(logits: np.ndarray, target: str = "binary") -> np.ndarray:
    """N,K,H,W logits -> probabilities: a sigmoid for one channel or per channel (the
    ``distance`` target's foreground and distance maps), a softmax over K otherwise."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[1] == 1 or target == "distance":
        return 1.0 / (1.0 + np.exp(-logits))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def max_probability_difference(
    run: Callable[[np.ndarray], np.ndarray], net: nn.Module, inputs: list[torch.Tensor]
) -> float:
    """Largest |p_run - p_torch| over ``inputs`` (shape mismatches count as infinite)."""
    worst = 0.0
    for x in inputs:
        with torch.inference_mode():
            ref = to_probabilities(net(x).numpy())
        got = to_probabilities(run(x.numpy()))
        if got.shape != ref.shape:
            return float("inf")
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def blocking_op(exc: BaseException) -> str:
    """The operation that stopped an exporter: an aten op it names, else the outermost
    torch.nn.functional call in the traceback, else the deepest seg-bench source line."""
    match = re.search(r"aten(?:::|\.)(\w+)", str(exc))
    if match:
        return f"aten::{match.group(1)}"
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in frames:
        if frame.filename.replace("\\", "/").endswith("torch/nn/functional.py"):
            return f"torch.nn.functional.{frame.name}"
    ours = [f for f in frames if "/seg_bench/models/" in f.filename.replace("\\", "/")]
    if ours:
        return f"{Path(ours[-1].filename).name}:{ours[-1].lineno} `{ours[-1].line}`"
    return type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def _quiet() -> contextlib.ExitStack:
    """The exporters print progress and warn about every traced branch: keep the CLI readable."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def export_onnx(
    net: nn.Module, path: Path, inputs: list[torch.Tensor], meta: dict[str, Any]
) -> Exported:
    """ONNX (dynamo exporter, opset ``OPSET``) with dynamic batch and multiple-of-m H, W."""
    for module in PACKAGES["onnx"]:
        require(module, "--format onnx")
    import onnx

    from seg_bench.inference.onnx_engine import session_runner

    m = meta["geometry"]["multiple"]
    lo = max(1, -(-meta["geometry"]["min_size"] // m))
    dim = torch.export.Dim
    h, w = dim("h_blocks", min=lo, max=65536 // m), dim("w_blocks", min=lo, max=65536 // m)
    # Positional (a tuple), not keyed by name: a plug-in's forward may call its input anything.
    shapes = ({0: dim("batch", min=1, max=1024), 2: m * h, 3: m * w},)
    try:
        with _quiet():
            program = torch.onnx.export(
                net,
                (inputs[0],),
                None,
                dynamo=True,
                dynamic_shapes=shapes,
                opset_version=OPSET,
                input_names=["input"],
                output_names=["logits"],
                verbose=False,
            )
            program.save(str(path))
    except Exception as e:  # noqa: BLE001 - exporters raise anything; the op is what matters
        return Exported("onnx", error=f"stops at {blocking_op(e)} ({_first_line(e)})")
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {META_KEY: json.dumps(meta, default=str)})
    onnx.save(model, str(path))
    diff = max_probability_difference(session_runner(path), net, inputs)
    return _checked("onnx", path, diff, {"opset": OPSET})


def export_torchscript(
    net: nn.Module, path: Path, inputs: list[torch.Tensor], meta: dict[str, Any]
) -> Exported:
    """TorchScript by tracing (the models are not scriptable); the trace keeps H and W symbolic,
    which the verification at two sizes confirms."""
    extra = {META_KEY: json.dumps(meta, default=str)}
    try:
        # torch warns that TorchScript is deprecated on every save and load; the format is
        # still what bioimage.io consumers (deepImageJ, ilastik) read, so it is exported anyway.
        with _quiet(), torch.inference_mode():
            traced = torch.jit.trace(net, inputs[0], check_trace=False)
            torch.jit.save(traced, str(path), _extra_files=extra)
    except Exception as e:  # noqa: BLE001
        return Exported("torchscript", error=f"stops at {blocking_op(e)} ({_first_line(e)})")
    with _quiet():
        loaded = torch.jit.load(str(path), map_location="cpu")

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return loaded(torch.from_numpy(x)).numpy()

    diff = max_probability_difference(run, net, inputs)
    return _checked("torchscript", path, diff, {"pytorch": torch.__version__.split("+")[0]})


def _checked(fmt: str, path: Path, diff: float, details: dict[str, Any]) -> Exported:
    if not diff <= TOLERANCE:
        path.unlink(missing_ok=True)
        return Exported(fmt, error=f"differs from PyTorch by {diff:.2e} > {TOLERANCE:g}")
    return Exported(fmt, file=path.name, max_abs_diff=diff, details=details)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output(output: Path, checkpoint_sha: str, force: bool) -> None:
    """Refuse a folder that holds anything but an earlier export of this checkpoint."""
    if not output.exists():
        return
    if not output.is_dir():
        raise UserError(f"--output {output} is a file; give a folder (or remove the file)")
    if force or not any(output.iterdir()):
        return
    try:
        previous = json.loads((output / MANIFEST).read_text())["checkpoint_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        previous = None
    if previous != checkpoint_sha:
        what = "another model" if previous else "files that are not a seg-bench export"
        raise UserError(f"--output {output} holds {what}; choose another folder or add --force")


def export_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    formats: list[str],
    *,
    force: bool = False,
    record: dict[str, Any] | None = None,
    sample: np.ndarray | None = None,
) -> list[Exported]:
    """Export ``checkpoint`` into the folder ``output`` (see the module docstring).

    record: the run's result record (metrics, per-image scores with ``ci``) for the model card
    and the package's Validation section. sample: a raw H,W(,C) image for the package's test
    tensors and cover (default: a test image of the record's dataset, else a synthetic one).
    """
    for fmt in formats:
        for module in PACKAGES.get(fmt, ()):
            require(module, f"--format {fmt}")
    checkpoint, output = Path(checkpoint), Path(output)
    task = load_checkpoint(checkpoint)
    net = task.model.float().eval()
    checkpoint_sha = sha256(checkpoint)
    check_output(output, checkpoint_sha, force)
    hp = dict(task.hparams)
    meta = {
        "seg_bench_export": 1,
        "model": hp["model"],
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": checkpoint_sha,
        "hparams": hp,
        "geometry": geometry(net),
        "tolerance": TOLERANCE,
        "normalization": {"method": "percentile", "low": 1.0, "high": 99.8, "per": "channel"},
    }
    inputs = example_inputs(int(hp.get("in_channels", 1)), meta["geometry"])
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would hide the export from lab mates
    try:
        results = _write_all(net, tmp, formats, inputs, meta, record, sample)
        failed = [r for r in results if r.error and r.format in formats]
        if failed:
            raise UserError(f"{hp['model']}: {failed[0].line()}")
        _replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def _write_all(net, tmp, formats, inputs, meta, record, sample) -> list[Exported]:
    from seg_bench.inference.model_card import write_model_card

    results: list[Exported] = []
    want_onnx = "onnx" in formats or ("bioimageio" in formats and _importable("onnxruntime"))
    if want_onnx:
        results.append(export_onnx(net, tmp / ONNX_FILE, inputs, meta))
    if "torchscript" in formats or "bioimageio" in formats:
        results.append(export_torchscript(net, tmp / TORCHSCRIPT_FILE, inputs, meta))
    meta["formats"] = {r.format: asdict(r) for r in results}
    if "bioimageio" in formats:
        from seg_bench.inference.bioimageio import write_package

        results.append(write_package(net, tmp, meta, results, record, sample))
        meta["formats"]["bioimageio"] = asdict(results[-1])
    write_json(tmp / MANIFEST, meta)
    write_model_card(tmp / "MODEL_CARD.md", meta, results, record)
    return results


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def _replace(tmp: Path, output: Path) -> None:
    """Swap the finished temporary folder in for ``output`` (two renames on one file system)."""
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old-{tmp.name.rsplit('.', 2)[-2]}")
        output.rename(old)
    tmp.rename(output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
