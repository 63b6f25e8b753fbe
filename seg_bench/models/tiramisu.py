"""FC-DenseNet, "The One Hundred Layers Tiramisu" (Jégou, Drozdzal, Vazquez, Romero, Bengio
2017).

A 3x3 stem conv, then dense blocks joined by transitions down (pooling) and up (transposed
convs). To keep the feature count in check the up path upsamples only the maps a block created,
not the block's input; skips bring the high-resolution maps back.

Parameters at full width, 3 in / 11 out (CamVid, the paper's setting): FC-DenseNet56 1,376,795
(paper 1.5 M), FC-DenseNet67 3,463,243 (3.5 M), FC-DenseNet103 9,322,091 (9.4 M). Faithful
re-implementations all land there (SimJeg/FC-DenseNet issue #31 reports 1.4 M and 9.2-9.3 M);
counting BN running statistics as well, as Lasagne's count_params does, gives 3.50 M and
9.43 M, but 56 still has 1.40 M, so its published 1.5 M stays unexplained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from seg_bench.models.base import PaddedModel, scaled
from seg_bench.registry import MODELS


class DenseLayer(nn.Sequential):
    """BN, ReLU, 3x3 conv to ``growth`` maps, dropout."""

    def __init__(self, in_ch: int, growth: int, dropout: float):
        super().__init__(
            nn.BatchNorm2d(in_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_ch, growth, 3, padding=1),
            nn.Dropout(dropout),
        )


class DenseBlock(nn.Module):
    """Each layer sees the concatenation of the block input and all earlier layers' outputs."""

    def __init__(self, in_ch: int, growth: int, n_layers: int, dropout: float, keep_input: bool):
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_ch + i * growth, growth, dropout) for i in range(n_layers)
        )
        self.keep_input = keep_input
        self.out_channels = n_layers * growth + (in_ch if keep_input else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features if self.keep_input else features[1:], dim=1)


class TransitionDown(nn.Sequential):
    """BN, ReLU, 1x1 conv (same channels), dropout, 2x2 max-pool."""

    def __init__(self, ch: int, dropout: float):
        super().__init__(
            nn.BatchNorm2d(ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 1),
            nn.Dropout(dropout),
            nn.MaxPool2d(2),
        )


class TransitionUp(nn.ConvTranspose2d):
    """3x3 transposed conv, stride 2, to exactly 2H (padding 1, output_padding 1). The paper's
    code keeps rows and columns 0..2H-1 of the full 2H+1 output; this keeps 1..2H, the same
    operation shifted by one pixel (even and odd outputs use swapped kernel taps)."""

    def __init__(self, ch: int):
        super().__init__(ch, ch, 3, stride=2, padding=1, output_padding=1)


class FCDenseNet(PaddedModel):
    """``layers`` lists the dense block sizes: down path, bottleneck, up path (2n+1 entries)."""

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 1,
        layers: Sequence[int] = (4,) * 11,
        growth: int = 12,
        stem: int = 48,
        dropout: float = 0.2,
        pad_mode: str = "reflect",
    ):
        super().__init__(pad_mode)
        if len(layers) % 2 != 1:
            raise ValueError(f"layers needs 2n+1 block sizes, got {len(layers)}")
        n_pool = len(layers) // 2
        self.multiple = 2**n_pool
        self.stem = nn.Conv2d(in_channels, stem, 3, padding=1)

        ch, skip_chs = stem, []
        self.down_blocks, self.transitions_down = nn.ModuleList(), nn.ModuleList()
        for n in layers[:n_pool]:
            self.down_blocks.append(DenseBlock(ch, growth, n, dropout, keep_input=True))
            ch = self.down_blocks[-1].out_channels
            skip_chs.append(ch)
            self.transitions_down.append(TransitionDown(ch, dropout))

        self.bottleneck = DenseBlock(ch, growth, layers[n_pool], dropout, keep_input=False)
        new = self.bottleneck.out_channels

        self.transitions_up, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        for i, n in enumerate(layers[n_pool + 1 :]):
            last = i == n_pool - 1  # the final block hands its whole stack to the classifier
            self.transitions_up.append(TransitionUp(new))
            self.up_blocks.append(
                DenseBlock(new + skip_chs[-1 - i], growth, n, dropout, keep_input=last)
            )
            new = self.up_blocks[-1].out_channels
        self.head = nn.Conv2d(new, classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for block, down in zip(self.down_blocks, self.transitions_down, strict=True):
            x = block(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x)
        for up, block, skip in zip(
            self.transitions_up, self.up_blocks, reversed(skips), strict=True
        ):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def _tiramisu(
    layers: Sequence[int], growth: int, in_channels: int, classes: int, width: float, **kwargs: Any
) -> FCDenseNet:
    # width scales the growth rate and the stem, hence every feature count in the network.
    return FCDenseNet(
        in_channels, classes, layers, scaled(growth, width), scaled(48, width), **kwargs
    )


@MODELS.register("tiramisu56", "FC-DenseNet56 (Jégou et al. 2017): growth 12, 4 layers per block")
def tiramisu56(
    in_channels: int = 1, classes: int = 1, width: float = 1.0, **kwargs: Any
) -> FCDenseNet:
    return _tiramisu((4,) * 11, 12, in_channels, classes, width, **kwargs)


@MODELS.register("tiramisu67", "FC-DenseNet67 (Jégou et al. 2017): growth 16, 5 layers per block")
def tiramisu67(
    in_channels: int = 1, classes: int = 1, width: float = 1.0, **kwargs: Any
) -> FCDenseNet:
    return _tiramisu((5,) * 11, 16, in_channels, classes, width, **kwargs)


@MODELS.register(
    "tiramisu103", "FC-DenseNet103 (Jégou et al. 2017): growth 16, 4-5-7-10-12-15 layers"
)
def tiramisu103(
    in_channels: int = 1, classes: int = 1, width: float = 1.0, **kwargs: Any
) -> FCDenseNet:
    return _tiramisu(
        (4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4), 16, in_channels, classes, width, **kwargs
    )


@MODELS.register("tiramisu", "Alias of tiramisu103, the paper's headline FC-DenseNet103")
def tiramisu(
    in_channels: int = 1, classes: int = 1, width: float = 1.0, **kwargs: Any
) -> FCDenseNet:
    return tiramisu103(in_channels, classes, width, **kwargs)
