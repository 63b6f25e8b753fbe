"""U-Net (Ronneberger, Fischer, Brox 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation"), in the form most code uses today: same-padded convolutions with batch norm, so
the output has the input's size and no overlap-tile cropping is needed. The paper's dropout at
the end of the contracting path is left out, as batch norm regularises (and as most
implementations do).

Full width (base 64, depth 4, transposed-conv upsampling, 3 in / 2 out) has 31,037,698
parameters, the "31.0 M" usually quoted.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from seg_bench.models.base import PaddedModel, scaled
from seg_bench.registry import MODELS


class DoubleConv(nn.Sequential):
    """(3x3 conv, BN, ReLU) twice. Convs carry no bias: the BN right after would cancel it."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max-pool, then a double conv that changes the channel count."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_ch, out_ch))


class Up(nn.Module):
    """Upsample x2 halving the channels, concatenate the skip, double conv."""

    def __init__(self, in_ch: int, out_ch: int, bilinear: bool = False):
        super().__init__()
        if bilinear:
            # Parameter-free upsampling avoids the checkerboard artefacts of transposed convs;
            # the 1x1 conv still halves the channels so the skip concatenation is balanced.
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_ch, out_ch, 1),
            )
        else:
            self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv = DoubleConv(2 * out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(PaddedModel):
    """Encoder of ``depth`` max-pools (``base * 2**i`` channels at level i), mirrored decoder."""

    def __init__(
        self,
        in_channels: int = 1,
        classes: int = 1,
        base: int = 64,
        depth: int = 4,
        bilinear: bool = False,
        pad_mode: str = "reflect",
    ):
        super().__init__(pad_mode)
        chs = [base * 2**i for i in range(depth + 1)]
        self.multiple = 2**depth  # every pool halves H and W
        self.stem = DoubleConv(in_channels, chs[0])
        self.downs = nn.ModuleList(Down(chs[i], chs[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(Up(chs[i + 1], chs[i], bilinear) for i in reversed(range(depth)))
        self.head = nn.Conv2d(chs[0], classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(x)
        for up, skip in zip(self.ups, reversed(skips), strict=True):
            x = up(x, skip)
        return self.head(x)


@MODELS.register(
    "unet", "U-Net (Ronneberger et al. 2015) with BN; options depth=4, base=64, bilinear=False"
)
def unet(
    in_channels: int = 1,
    classes: int = 1,
    width: float = 1.0,
    depth: int = 4,
    base: int = 64,
    bilinear: bool = False,
    **kwargs: Any,
) -> UNet:
    return UNet(
        in_channels, classes, base=scaled(base, width), depth=depth, bilinear=bilinear, **kwargs
    )
