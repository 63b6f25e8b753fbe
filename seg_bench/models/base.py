"""What every architecture shares: channel scaling and one forward pass that accepts any size.

Encoder-decoder networks pool ``n`` times, so they need H and W divisible by ``2**n`` for the
skips to line up. Rather than making callers care, :class:`PaddedModel` (like smp's
``SegmentationModel``) owns ``forward``: it pads the input once with :func:`pad_to_multiple`,
runs the subclass's :meth:`~PaddedModel.forward_padded` and crops the logits back with
:func:`unpad`. A subclass only builds its layers and says which multiple it needs.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# (left, right, top, bottom), the order F.pad expects for the last two dimensions.
Padding = tuple[int, int, int, int]


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1: the one place that applies the width multiplier."""
    return max(1, int(round(channels * width)))


def pad_to_multiple(
    x: torch.Tensor, multiple: int, mode: str = "reflect", min_size: int = 0
) -> tuple[torch.Tensor, Padding]:
    """Pad B,C,H,W so H and W are multiples of ``multiple`` and at least ``min_size``; return
    it and the padding used.

    The padding is split evenly between the two sides, so the image stays centred in the
    receptive fields. ``mode`` is ``reflect``, ``replicate`` or ``zeros``. ``reflect`` avoids
    the hard edge that zero padding adds, but it needs the padding to be smaller than the
    image; tiny images fall back to ``replicate``.
    """
    h, w = x.shape[-2:]
    # Smallest multiple of ``multiple`` that is >= max(size, min_size), minus the size.
    ph, pw = (-(-max(n, min_size) // multiple) * multiple - n for n in (h, w))
    padding: Padding = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph == 0 and pw == 0:
        return x, padding
    if mode == "reflect" and (padding[1] >= w or padding[3] >= h):
        mode = "replicate"
    if mode == "zeros":
        mode = "constant"
    return F.pad(x, padding, mode=mode), padding


def unpad(y: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` on an output with the same spatial size as the padded input."""
    left, right, top, bottom = padding
    h, w = y.shape[-2:]
    return y[..., top : h - bottom, left : w - right]


class PaddedModel(nn.Module):
    """A network that maps B,C,H,W to logits B,classes,H,W for any H and W.

    Subclasses build their layers and implement :meth:`forward_padded`, which only ever sees
    inputs whose H and W divide by ``multiple`` and are at least ``min_size``. ``multiple`` is
    a class attribute; a network whose depth is a constructor argument sets it per instance.
    """

    multiple: int = 1  # H and W must divide by this (2**n for n poolings)
    min_size: int = 0  # and be at least this large

    def __init__(self, pad_mode: str = "reflect"):
        super().__init__()
        self.pad_mode = pad_mode

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The network itself, on an input padded to ``multiple``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x, padding = pad_to_multiple(x, self.multiple, self.pad_mode, self.min_size)
        out = self.forward_padded(x)
        if isinstance(out, tuple):  # extra image-level outputs (smp's aux_params): nothing to crop
            return (unpad(out[0], padding), *out[1:])
        return unpad(out, padding)
