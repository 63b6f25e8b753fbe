"""Deep residual U-Net (Zhang, Liu, Wang 2018, "Road Extraction by Deep Residual U-Net").

Pre-activation residual units (BN-ReLU-conv, He et al. 2016) replace the plain double convs of
U-Net; the encoder downsamples with stride-2 convs instead of pooling. Table 1 of the paper:
filters 64, 128, 256 | bridge 512 | 256, 128, 64, then a 1x1 conv.

Parameter count: the paper's 7.8 M is the 15 conv layers of its Table 1 (its 14 3x3 convs
hold 7,780,032 weights, 7,780,096 with the 1x1 head, at 3 in / 1 out). The shortcuts that
change the channel count or stride need a projection, which the table leaves out; like the
reference implementations we use 1x1 conv + BN, which (with biases and BN) brings the
full-width network to 8,223,809 parameters, 5.4 % above 7.8 M.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from seg_bench.models.base import PaddedModel, scaled
from seg_bench.registry import MODELS


def bn_relu_conv(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    """Pre-activation 3x3 conv."""
    return nn.Sequential(
        nn.BatchNorm2d(in_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1),
    )


def projection(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    """Shortcut that matches channels and stride of the residual branch."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride), nn.BatchNorm2d(out_ch))


class ResidualUnit(nn.Module):
    """x + F(x) with F = two BN-ReLU-3x3 convs; the first conv carries the stride."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(bn_relu_conv(in_ch, out_ch, stride), bn_relu_conv(out_ch, out_ch))
        self.shortcut = projection(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class StemUnit(ResidualUnit):
    """First unit: the input is raw pixels, so the first conv comes before any BN-ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(in_ch, out_ch)
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1), bn_relu_conv(out_ch, out_ch)
        )


class UpUnit(nn.Module):
    """Nearest x2 upsampling, concatenation with the encoder skip, residual unit."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.unit = ResidualUnit(in_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.unit(torch.cat([self.up(x), skip], dim=1))


class ResUNet(PaddedModel):
    """Residual U-Net: ``filters[:-1]`` for the encoder levels, ``filters[-1]`` for the bridge."""

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 1,
        filters: tuple[int, ...] = (64, 128, 256, 512),
        pad_mode: str = "reflect",
    ):
        super().__init__(pad_mode)
        self.multiple = 2 ** (len(filters) - 1)  # one stride-2 conv per level below the first
        self.encoder = nn.ModuleList([StemUnit(in_channels, filters[0])])
        self.encoder.extend(
            ResidualUnit(filters[i - 1], filters[i], 2) for i in range(1, len(filters) - 1)
        )
        self.bridge = ResidualUnit(filters[-2], filters[-1], 2)
        self.decoder = nn.ModuleList(
            UpUnit(filters[i + 1], filters[i], filters[i])
            for i in reversed(range(len(filters) - 1))
        )
        self.head = nn.Conv2d(filters[0], classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for unit in self.encoder:
            x = unit(x)
            skips.append(x)
        x = self.bridge(x)
        for up, skip in zip(self.decoder, reversed(skips), strict=True):
            x = up(x, skip)
        return self.head(x)


@MODELS.register("resunet", "Deep residual U-Net (Zhang et al. 2018), filters 64-128-256-512")
def resunet(in_channels: int = 1, classes: int = 1, width: float = 1.0, **kwargs: Any) -> ResUNet:
    filters = tuple(scaled(f, width) for f in (64, 128, 256, 512))
    return ResUNet(in_channels, classes, filters, **kwargs)
