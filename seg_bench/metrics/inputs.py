"""The checks every metric applies to its array inputs, written once.

Metrics accept numpy arrays, anything ``np.asarray`` takes, and torch tensors (detached and
copied to the CPU); a bad input is a one-line :class:`~seg_bench.errors.UserError` that names
the argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seg_bench.errors import UserError


def is_torch(x: Any) -> bool:
    """A torch tensor, told apart without importing torch."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def to_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` as a numpy array (a torch tensor is detached and copied to the CPU)."""
    if is_torch(x):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise UserError(f"{name} must be an array, got {type(x).__name__}") from exc


def check_same_shape(a: Any, b: Any, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise UserError(
            f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; "
            "they must match"
        )


def check_label_image(x: Any, name: str) -> np.ndarray:
    """A label image (0 = background, objects >= 1) as a numpy array; bool becomes uint8."""
    x = to_numpy(x, name)
    if x.dtype == bool:
        return x.astype(np.uint8)
    if not np.issubdtype(x.dtype, np.integer):
        raise UserError(
            f"{name} must be an integer label image (0 = background), got dtype {x.dtype}"
        )
    if x.ndim == 0:
        raise UserError(f"{name} must be a label image, got a scalar")
    if x.size and x.min() < 0:
        raise UserError(f"{name} holds negative label {int(x.min())}; labels must be >= 0")
    return x


def check_label_pair(a: Any, b: Any, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    """Two label images of the same shape (see :func:`check_label_image`)."""
    a, b = check_label_image(a, name_a), check_label_image(b, name_b)
    check_same_shape(a, b, name_a, name_b)
    return a, b
