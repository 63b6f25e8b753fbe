"""Whole-image prediction: full-resolution sliding window, Gaussian blending, D4 test-time
augmentation.

``predict_logits(model, image, window=None, overlap=0.25, batch_size=4, tta=False)`` maps float
images B,C,H,W of any size to logits B,K,H,W at full resolution (nothing is resized).

* ``window=None``: one pass of the model over each whole image (``batch_size`` images at a time).
* ``window=int | (h, w)``: tiles of that size, placed so that neighbours overlap by at least
  ``overlap`` (a fraction of the window in [0, 1)), evenly spread with the first tile flush with
  the top/left border and the last flush with the bottom/right border, so every pixel is covered
  (nnU-Net's placement). An image smaller than the window is padded (reflect where the image is
  large enough, else zeros), centred, and the padding is cropped off the result. Tiles go
  through the model ``batch_size`` at a time.
* Blending: each tile's logits are weighted by a Gaussian (sigma = window / 8 per axis, as nnU-Net;
  peak 1, never below ``MIN_WEIGHT`` so no pixel ever gets zero weight) and the weighted
  sums divided by the summed weights.

**We blend logits, not probabilities.** The function's contract is logits, and the model's head is
not known here (one sigmoid channel, a K-way softmax, or something else entirely): blending
probabilities would force a guess at the activation and then an inverse (``logit`` for a sigmoid,
``log`` up to a constant for a softmax) that is lossy where probabilities saturate at 0/1 in
float32.
Blending logits needs no such guess, and where overlapping tiles agree (the usual case away from
tile borders) both give the same answer. Its one known difference from
nnU-Net: a tile that is very confident at its border pulls the blend further than it would in
probability space; the Gaussian weights (~5e-4 of the centre weight at an edge) make that small.
TTA averages logits for the same reasons.

* ``tta=True``: the 8 transforms of the dihedral group D4 (4 rotations x optional horizontal flip)
  are applied to each tile (or whole image), predicted, un-transformed and their logits averaged
  before blending. Averaging per tile keeps blending linear, so the result equals the average of the
  8 transformed whole-image predictions wherever tiling itself is exact. Rotating a non-square tile
  swaps its height and width; the model must accept both.

Runs with ``model.eval()`` under ``torch.inference_mode()``; every submodule's ``training`` flag is
put back afterwards (also when the model raises). Tiles are moved to the model's device (its first
parameter or buffer; cpu if it has neither) and accumulated in float32 there; the result is float32
on the input image's device. Besides the model's own activations, the sliding window holds one
float32 B,K,H,W logit sum and one H,W weight sum on the device. ``precision="bf16"`` (or
``"16"``) runs the model under ``torch.autocast`` on that device.

``predict_volume(model, volume, **kw)`` predicts a Z,H,W or Z,H,W,C numpy stack slice by slice and
returns float32 probabilities Z,K,H,W (sigmoid for K = 1, softmax over K otherwise).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from seg_bench.errors import UserError

__all__ = [
    "MIN_WEIGHT",
    "SIGMA_SCALE",
    "d4_transforms",
    "gaussian_weight",
    "predict_logits",
    "predict_volume",
    "tile_positions",
    "tile_starts",
]

SIGMA_SCALE = 1.0 / 8  # sigma of the blending Gaussian, as a fraction of the window (nnU-Net)
# Smallest blending weight, relative to the Gaussian's peak of 1. With sigma = window / 8 the
# Gaussian itself never drops below exp(-16) ~ 1.1e-7 (a tile corner), so the floor only guards
# against zero weights for narrower sigmas. A larger floor would be harmful: along the image
# border every tile contributes with its low edge weight, and clamping those to a common value
# would erase their ratios and let a tile's border (the worst part of its prediction) count as
# much as another tile's centre line.
MIN_WEIGHT = 1e-8

_PRECISIONS: dict[str, torch.dtype | None] = {
    "32": None,
    "fp32": None,
    "32-true": None,
    "bf16": torch.bfloat16,
    "bf16-mixed": torch.bfloat16,
    "16": torch.float16,
    "fp16": torch.float16,
    "16-mixed": torch.float16,
}

Transform = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


# --------------------------------------------------------------------------------------------
# Validation


def _check_window(window) -> tuple[int, int] | None:
    if window is None:
        return None
    if isinstance(window, numbers.Integral) and not isinstance(window, bool):
        pair = (int(window), int(window))
    elif (
        isinstance(window, Sequence)
        and not isinstance(window, str)
        and len(window) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in window)
    ):
        pair = (int(window[0]), int(window[1]))
    else:
        raise UserError(
            f"window must be None, a positive int or a pair (h, w) of them, got {window!r}"
        )
    if min(pair) < 1:
        raise UserError(f"window must be positive, got {window!r}")
    return pair


def _check_overlap(overlap) -> float:
    if not isinstance(overlap, numbers.Real) or isinstance(overlap, bool):
        raise UserError(f"overlap must be a number in [0, 1), got {overlap!r}")
    value = float(overlap)
    if not (0.0 <= value < 1.0):  # also rejects nan
        raise UserError(f"overlap must be in [0, 1), got {overlap!r}")
    return value


def _check_batch_size(batch_size) -> int:
    if (
        not isinstance(batch_size, numbers.Integral)
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        raise UserError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def _check_precision(precision) -> torch.dtype | None:
    if precision is None:
        return None
    key = str(precision).lower()
    if key not in _PRECISIONS:
        raise UserError(
            f"precision must be None or one of {', '.join(sorted(_PRECISIONS))}, got {precision!r}"
        )
    return _PRECISIONS[key]


# --------------------------------------------------------------------------------------------
# Tiling and weights


def tile_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start offsets of tiles of length ``window`` along an axis of length ``size`` (>= window).

    As few tiles as keep the step between neighbours at most ``window * (1 - overlap)`` (and at
    least one pixel), spread evenly: the first starts at 0, the last ends at ``size``.
    """
    if size <= window:
        return [0]
    span = size - window
    step = max(1.0, window * (1.0 - overlap))
    n = math.ceil(span / step - 1e-9) + 1
    # Evenly spread, rounded half up with integer arithmetic (no banker's rounding).
    return sorted({(2 * i * span + (n - 1)) // (2 * (n - 1)) for i in range(n)})


def tile_positions(
    shape: tuple[int, int], window: int | tuple[int, int], overlap: float = 0.25
) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of the tiles ``predict_logits`` uses on an H,W image.

    Coordinates are in the padded frame of ``max(H, h), max(W, w)`` when the image is smaller
    than the window.
    """
    wh, ww = _check_window(window)
    overlap = _check_overlap(overlap)
    h, w = max(int(shape[0]), wh), max(int(shape[1]), ww)
    return [(y, x) for y in tile_starts(h, wh, overlap) for x in tile_starts(w, ww, overlap)]


def gaussian_weight(
    window: int | tuple[int, int],
    sigma_scale: float = SIGMA_SCALE,
    min_weight: float = MIN_WEIGHT,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """h,w float32 Gaussian centred on the tile, peak 1, never below ``min_weight``."""
    wh, ww = _check_window(window)
    axes = []
    for n in (wh, ww):
        coords = torch.arange(n, dtype=torch.float64) - (n - 1) / 2  # symmetric under flips
        sigma = max(n * sigma_scale, 1e-6)
        axes.append(torch.exp(-0.5 * (coords / sigma) ** 2))
    weight = torch.outer(axes[0], axes[1])
    weight = (weight / weight.max()).clamp_min(min_weight)
    return weight.to(device=device, dtype=torch.float32)


def d4_transforms() -> list[Transform]:
    """The 8 (forward, inverse) pairs of D4 on the last two axes; the first is the identity."""

    def make(k: int, flip: bool) -> Transform:
        def forward(x: torch.Tensor) -> torch.Tensor:
            if flip:
                x = x.flip(-1)
            return torch.rot90(x, k, dims=(-2, -1)) if k else x

        def inverse(y: torch.Tensor) -> torch.Tensor:
            if k:
                y = torch.rot90(y, -k, dims=(-2, -1))
            return y.flip(-1) if flip else y

        return forward, inverse

    return [make(k, flip) for flip in (False, True) for k in range(4)]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _pad_axis(image: torch.Tensor, axis: int, before: int, after: int) -> torch.Tensor:
    if before == 0 and after == 0:
        return image
    pad = (0, 0, before, after) if axis == -2 else (before, after, 0, 0)
    # torch's reflect needs the pad to be smaller than the axis; otherwise fall back to zeros.
    if max(before, after) < image.shape[axis]:
        return F.pad(image, pad, mode="reflect")
    return F.pad(image, pad, mode="constant", value=0.0)


def _pad_to_window(image: torch.Tensor, wh: int, ww: int) -> tuple[torch.Tensor, int, int]:
    """Pad H and W up to the window where smaller, centred; returns (padded, top, left)."""
    h, w = image.shape[-2:]
    ph, pw = max(wh - h, 0), max(ww - w, 0)
    top, left = ph // 2, pw // 2
    image = _pad_axis(image, -2, top, ph - top)
    image = _pad_axis(image, -1, left, pw - left)
    return image, top, left


# --------------------------------------------------------------------------------------------
# Model plumbing


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    tensors = [*model.parameters(), *model.buffers()]
    if not tensors:
        return torch.device("cpu"), None
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), None)
    return tensors[0].device, dtype


def _forward(model: nn.Module, x: torch.Tensor, transforms: list[Transform]) -> torch.Tensor:
    """float32 logits n,K,h,w for inputs n,C,h,w, averaged over ``transforms``."""
    n, _, h, w = x.shape
    total = None
    for forward, inverse in transforms:
        y = model(forward(x))
        if not isinstance(y, torch.Tensor):
            raise UserError(
                f"predict_logits needs a model returning a logits tensor, got {type(y).__name__}"
            )
        y = inverse(y)
        if y.ndim != 4 or y.shape[0] != n or tuple(y.shape[-2:]) != (h, w):
            raise UserError(
                f"model returned shape {tuple(y.shape)} for input {tuple(x.shape)}; predict_logits "
                f"needs logits N,K,H,W of the input's size (pick a window the model accepts)"
            )
        # Out of place throughout: a model may hand back its input (a view of the caller's image)
        # or a buffer of its own, and neither may be written to or returned as is.
        total = y.to(torch.float32, copy=True) if total is None else total + y.float()
    return total / len(transforms) if len(transforms) > 1 else total


def _single_pass(model, image, batch_size, transforms, device, dtype) -> torch.Tensor:
    outs = []
    for i in range(0, image.shape[0], batch_size):
        x = image[i : i + batch_size].to(device=device, dtype=dtype)
        outs.append(_forward(model, x, transforms))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def _sliding_window(model, image, wh, ww, overlap, batch_size, transforms, device, dtype):
    b, _, h, w = image.shape
    padded, top, left = _pad_to_window(image, wh, ww)
    hp, wp = padded.shape[-2:]
    ys, xs = tile_starts(hp, wh, overlap), tile_starts(wp, ww, overlap)

    gauss = gaussian_weight((wh, ww), device=device)
    weight_sum = torch.zeros(hp, wp, dtype=torch.float32, device=device)
    for y in ys:
        for x in xs:
            weight_sum[y : y + wh, x : x + ww] += gauss

    jobs = [(i, y, x) for i in range(b) for y in ys for x in xs]
    out = None
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        tiles = torch.stack([padded[i, :, y : y + wh, x : x + ww] for i, y, x in chunk])
        logits = _forward(model, tiles.to(device=device, dtype=dtype), transforms)
        logits.mul_(gauss)  # _forward's result is always a fresh tensor
        if out is None:
            out = torch.zeros(b, logits.shape[1], hp, wp, dtype=torch.float32, device=device)
        for (i, y, x), tile in zip(chunk, logits, strict=True):
            out[i, :, y : y + wh, x : x + ww] += tile
    out.div_(weight_sum)
    if (hp, wp) != (h, w):
        out = out[:, :, top : top + h, left : left + w].contiguous()
    return out


# --------------------------------------------------------------------------------------------
# Public API


def predict_logits(
    model: nn.Module,
    image: torch.Tensor,
    window: int | tuple[int, int] | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    tta: bool = False,
    *,
    precision: str | None = None,
) -> torch.Tensor:
    """float32 logits B,K,H,W for float images B,C,H,W of any size (see the module docstring).

    window: None for one pass over the whole image, else the tile size (int or (h, w)).
    overlap: fraction of the window that neighbouring tiles share at least, in [0, 1).
    batch_size: tiles (or whole images, when window is None) per model call.
    tta: average over the 8 flips/rotations of D4.
    precision: None/"32" (no autocast), "bf16" or "16": autocast on the model's device.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise UserError(f"image must be a B,C,H,W tensor, got {shape}")
    win = _check_window(window)
    overlap = _check_overlap(overlap)
    batch_size = _check_batch_size(batch_size)
    autocast_dtype = _check_precision(precision)
    if not image.is_floating_point():
        image = image.float()

    device, param_dtype = _model_device_dtype(model)
    # Feed the model its own float dtype (e.g. a .half() model); autocast handles mixed precision.
    dtype = param_dtype if param_dtype is not None else image.dtype
    transforms = d4_transforms() if tta else [(_identity, _identity)]
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )

    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.inference_mode(), autocast:
            if win is None:
                out = _single_pass(model, image, batch_size, transforms, device, dtype)
            else:
                out = _sliding_window(
                    model, image, win[0], win[1], overlap, batch_size, transforms, device, dtype
                )
    finally:
        for module, flag in flags:
            module.training = flag
    return out.to(image.device)


def predict_volume(
    model: nn.Module, volume: np.ndarray, *, slice_batch: int = 1, **kwargs
) -> np.ndarray:
    """float32 probabilities Z,K,H,W for a Z,H,W or Z,H,W,C stack, predicted slice by slice.

    ``slice_batch`` slices go through ``predict_logits`` at a time (``kwargs`` are passed on:
    window, overlap, batch_size, tta, precision); only their logits are held, and the result is
    written into one preallocated float32 array. Probabilities are a sigmoid when the model has one
    output channel, a softmax over the channels otherwise. The volume is used as given: normalise
    it the way the model was trained (e.g. ``seg_bench.data.base.normalize_percentile``) first.
    """
    arr = np.asarray(volume)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise UserError(f"volume must be Z,H,W or Z,H,W,C, got shape {np.shape(volume)}")
    if arr.shape[0] == 0:
        raise UserError("volume has no slices")
    slice_batch = _check_batch_size(slice_batch)
    z = arr.shape[0]
    out = None
    for z0 in range(0, z, slice_batch):
        chunk = np.ascontiguousarray(
            arr[z0 : z0 + slice_batch].transpose(0, 3, 1, 2), dtype=np.float32
        )
        logits = predict_logits(model, torch.from_numpy(chunk), **kwargs)
        probs = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
        if out is None:
            out = np.empty((z, probs.shape[1], *probs.shape[-2:]), dtype=np.float32)
        out[z0 : z0 + chunk.shape[0]] = probs.cpu().numpy()
    return out
