"""Which device inference runs on."""

from __future__ import annotations

import torch

from seg_bench.errors import UserError


def uses_gpu(accelerator: str = "auto") -> bool:
    """Whether a run with this Lightning ``accelerator`` is meant for a CUDA GPU."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def inference_device(accelerator: str = "auto") -> torch.device:
    """The device to run a trained model on: the GPU when ``accelerator`` asks for one (``auto``
    included) and one is present, else the CPU. Lightning hands the model back on the CPU after
    ``fit``, so without this a GPU run would test on the CPU."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{accelerator}' asked for, but no CUDA GPU is visible; use 'cpu'")
    return torch.device("cuda" if uses_gpu(accelerator) else "cpu")
