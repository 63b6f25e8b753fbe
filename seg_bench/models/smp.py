"""Every segmentation-models-pytorch architecture with every encoder: ``smp-<arch>-<encoder>``.

``<arch>`` is a lower-case smp architecture (``smp_architectures()``: unet, unetplusplus,
deeplabv3plus, segformer, ...) and ``<encoder>`` an smp encoder (``smp_encoders()``: resnet34,
efficientnet-b0, mit_b0, ...) or ``tu-<timm model>``. Encoder names contain ``-`` and ``_``,
so a name is split by matching the architecture first, e.g. ``smp-deeplabv3plus-efficientnet-b0``.

Encoders start from random weights (``encoder_weights=None``), as this suite cannot assume
network access; pass ``encoder_weights="imagenet"`` (``True`` for ``tu-`` encoders) to download.
``width`` is accepted for a uniform interface but only 1.0 is meaningful: smp encoders have fixed
channel counts, so any other value is ignored (with a warning). Any other keyword goes to the
smp constructor (``encoder_depth``, ``decoder_channels``, ...).

segmentation_models_pytorch takes seconds to import, so it is imported only when an ``smp-``
name is used.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn as nn

from seg_bench.errors import UserError
from seg_bench.models.base import PaddedModel
from seg_bench.registry import MODELS

PREFIX = "smp-"

# Decoders that downsample the deepest encoder map further, so inputs must divide by more than
# the encoder's output stride: PAN's feature pyramid attention max-pools it 3 more times; DPT
# reassembles ViT tokens into a pyramid whose coarsest level has twice the patch stride.
EXTRA_DOWNSAMPLING = {"pan": 8, "dpt": 2}
MIN_SIZE = 32


def smp_architectures() -> list[str]:
    """Lower-case names of the architectures smp provides."""
    import segmentation_models_pytorch as smp

    return sorted(smp.MODEL_ARCHITECTURES_MAPPING)


def smp_encoders() -> list[str]:
    """smp's own encoder names; any ``tu-<timm model>`` works as well."""
    import segmentation_models_pytorch as smp

    return list(smp.encoders.get_encoder_names())


def split_name(name: str) -> tuple[str, str] | None:
    """``smp-<arch>-<encoder>`` -> (arch, encoder), or None if either part is unknown."""
    if not name.startswith(PREFIX):
        return None
    rest = name[len(PREFIX) :]
    # Longest first, so that "deeplabv3plus-..." is not read as "deeplabv3" + "plus-...".
    for arch in sorted(smp_architectures(), key=len, reverse=True):
        if rest.startswith(arch + "-"):
            encoder = rest[len(arch) + 1 :]
            return (arch, encoder) if _known_encoder(encoder) else None
    return None


def _known_encoder(encoder: str) -> bool:
    if encoder.startswith("tu-"):
        import timm

        return timm.is_model(encoder[3:])
    return encoder in smp_encoders()


class SmpModel(PaddedModel):
    """An smp model that accepts any H, W: pads to the encoder's output stride, crops back."""

    # At least 32 pixels: below that, dilated encoders (DeepLab, PSPNet) and transformer
    # encoders (mit_b*, whose attention pools the stride-4 map by 8) shrink maps below their
    # kernel sizes even when the stride divides the input.
    min_size = MIN_SIZE

    def __init__(self, model: nn.Module, arch: str, pad_mode: str = "reflect"):
        super().__init__(pad_mode)
        self.model = model
        # Skips line up only if H and W divide by the total downsampling (32 for most
        # encoders, 16 for a ViT with 16-pixel patches, 8 for dilated DeepLab encoders).
        stride = int(getattr(model.encoder, "output_stride", 32))
        self.multiple = stride * EXTRA_DOWNSAMPLING.get(arch, 1)
        self.arch = arch

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        # With aux_params, smp adds image-level class logits, which the base leaves uncropped.
        out = self.model(x)
        logits = out[0] if isinstance(out, tuple) else out
        if logits.shape[-2:] != x.shape[-2:]:  # e.g. FPN with encoder_depth < 5 upsamples 2-4x
            raise UserError(
                f"smp {self.arch} with these options gives {tuple(logits.shape[-2:])} logits for "
                f"a {tuple(x.shape[-2:])} input; choose other model_options (FPN needs "
                "encoder_depth 5)"
            )
        return out


def create_smp_model(
    name: str,
    in_channels: int = 1,
    classes: int = 1,
    width: float = 1.0,
    encoder_weights: str | bool | None = None,
    pad_mode: str = "reflect",
    **kwargs: Any,
) -> SmpModel:
    """Build ``smp-<arch>-<encoder>``; keywords other than ours go to smp."""
    import segmentation_models_pytorch as smp

    parts = split_name(name)
    if parts is None:
        raise UserError(
            f"unknown smp model '{name}': expected smp-<arch>-<encoder> with arch one of "
            f"{', '.join(smp_architectures())} and encoder an smp encoder or tu-<timm model>"
        )
    arch, encoder = parts
    if width != 1.0:
        warnings.warn(
            f"{name}: smp encoders have fixed channel counts; width={width} is ignored",
            stacklevel=2,
        )
    if arch == "dpt":
        # ViT encoders are built for one input size; benchmark images come in many.
        kwargs.setdefault("dynamic_img_size", True)
    try:
        model = smp.create_model(
            arch,
            encoder_name=encoder,
            encoder_weights=encoder_weights,
            in_channels=in_channels,
            classes=classes,
            **kwargs,
        )
    except (KeyError, ValueError, TypeError) as err:
        # smp rejects pairs such as dpt with a CNN encoder, or a keyword its class lacks.
        raise UserError(f"{name}: {err}") from err
    return SmpModel(model, arch, pad_mode)


MODELS.register_family(
    prefix=PREFIX,
    factory=create_smp_model,
    description=(
        "segmentation-models-pytorch: smp-<arch>-<encoder>, random encoder weights by default"
    ),
    examples=("smp-unet-resnet34", "smp-deeplabv3plus-efficientnet-b0", "smp-segformer-mit_b0"),
    accepts=lambda name: split_name(name) is not None,
)
