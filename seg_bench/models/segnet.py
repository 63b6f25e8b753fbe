"""SegNet (Badrinarayanan, Kendall, Cipolla 2017, "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation").

Encoder: the 13 convolutions of VGG16-BN. Decoder: the mirror image, which upsamples with the
max-pooling indices remembered by the encoder (no learnt upsampling, no skip features). As in
the authors' Caffe model the last decoder conv outputs the class scores directly, so there are
26 convs in all. Full width, 3 in / 1 out: 29,443,585 parameters (the ~29.4 M usually
quoted).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from seg_bench.models.base import PaddedModel, scaled
from seg_bench.registry import MODELS

# Channels of the convs in each of the five VGG16 stages.
VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)


def conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    # Keeps the conv bias, as VGG16-BN does, so ImageNet VGG weights map one to one.
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
    )


class EncoderStage(nn.Module):
    """Convs, then a 2x2 max-pool that also returns where each maximum came from."""

    def __init__(self, in_ch: int, chs: tuple[int, ...]):
        super().__init__()
        self.convs = nn.Sequential(
            *(conv_bn_relu(a, b) for a, b in zip((in_ch, *chs[:-1]), chs, strict=True))
        )
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Size]:
        x = self.convs(x)
        size = x.shape
        x, indices = self.pool(x)
        return x, indices, size


class DecoderStage(nn.Module):
    """Max-unpool with the encoder's indices, then convs; ``last`` leaves the final conv bare."""

    def __init__(self, chs: tuple[int, ...], last: bool = False):
        super().__init__()
        self.unpool = nn.MaxUnpool2d(2, stride=2)
        layers = [conv_bn_relu(a, b) for a, b in zip(chs[:-1], chs[1:], strict=True)]
        if last:
            # The classifier: raw logits, no BN/ReLU.
            layers[-1] = nn.Conv2d(chs[-2], chs[-1], 3, padding=1)
        self.convs = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, indices: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return self.convs(self.unpool(x, indices, output_size=size))


class SegNet(PaddedModel):
    """VGG-style encoder with pooling indices handed to a mirrored decoder."""

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 1,
        stages: tuple[tuple[int, ...], ...] = VGG16_STAGES,
        pad_mode: str = "reflect",
    ):
        super().__init__(pad_mode)
        self.multiple = 2 ** len(stages)
        ins = (in_channels, *(s[-1] for s in stages[:-1]))
        self.encoder = nn.ModuleList(EncoderStage(i, s) for i, s in zip(ins, stages, strict=True))
        # Decoder stage k mirrors encoder stage k: same convs read backwards, ending at the
        # channel count that entered that encoder stage (or ``classes`` for the first one).
        outs = (classes, *(s[-1] for s in stages[:-1]))
        self.decoder = nn.ModuleList(
            DecoderStage((*reversed(s), o), last=(k == 0))
            for k, (s, o) in enumerate(zip(stages, outs, strict=True))
        )

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for stage in self.encoder:
            x, indices, size = stage(x)
            pooled.append((indices, size))
        for stage, (indices, size) in zip(reversed(self.decoder), reversed(pooled), strict=True):
            x = stage(x, indices, size)
        return x


@MODELS.register("segnet", "SegNet (Badrinarayanan et al. 2017), VGG16-BN encoder, index unpooling")
def segnet(in_channels: int = 1, classes: int = 1, width: float = 1.0, **kwargs: Any) -> SegNet:
    stages = tuple(tuple(scaled(c, width) for c in s) for s in VGG16_STAGES)
    return SegNet(in_channels, classes, stages, **kwargs)
