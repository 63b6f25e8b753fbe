"""An exported ONNX model run by ONNX Runtime, looking like a PyTorch network to the rest of
inference: ``OnnxRuntimeModel(x)`` maps a float B,C,H,W tensor to logits B,K,H,W for any H and
W, so ``predict_logits`` (sliding window, blending, TTA) uses it unchanged.

The exported graph takes sizes that are multiples of the network's ``multiple`` (see
``inference/export.py``); this wrapper pads with the network's own ``pad_to_multiple`` and crops
back, which is what the PyTorch network does inside its ``forward``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from seg_bench.errors import UserError
from seg_bench.models.base import pad_to_multiple, unpad

INSTALL_HINT = "pip install 'seg-bench[export]'"


def _session(path: Path, threads: int | None = None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(
            f"--engine onnxruntime needs the Python package 'onnxruntime': {INSTALL_HINT}"
        ) from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types for a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"{path} is not a readable ONNX model ({first})") from None


def session_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A plain numpy -> numpy function for a graph (sizes as the graph accepts them)."""
    session = _session(path)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


class OnnxRuntimeModel(nn.Module):
    """A seg-bench ONNX export as a logits function for ``predict_logits`` (CPU, float32)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        path = resolve_onnx(path)
        self.session = _session(path, threads)
        self.input_name = self.session.get_inputs()[0].name
        raw = self.session.get_modelmeta().custom_metadata_map.get("seg_bench")
        if raw is None:
            raise UserError(f"{path} is not a seg-bench export (no 'seg_bench' metadata)")
        meta: dict[str, Any] = json.loads(raw)
        self.hparams: dict[str, Any] = meta["hparams"]
        geo = meta["geometry"]
        self.multiple, self.min_size, self.pad_mode = (
            geo["multiple"],
            geo["min_size"],
            geo["pad_mode"],
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = pad_to_multiple(x.float(), self.multiple, self.pad_mode, self.min_size)
        logits = self.session.run(None, {self.input_name: x.cpu().contiguous().numpy()})[0]
        return unpad(torch.from_numpy(logits), padding)


def resolve_onnx(path: str | Path) -> Path:
    """``model.onnx`` itself, or the export folder that holds it."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.onnx"
    if not path.is_file():
        raise UserError(
            f"--checkpoint {path} not found: --engine onnxruntime needs a model.onnx from "
            "`seg-bench export --format onnx` (or its folder)"
        )
    return path
