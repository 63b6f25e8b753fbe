"""A datamodule from its registered name and options: an option it does not take is one line
naming those it does; and the check every seeded train/val/test split shares."""

from __future__ import annotations

import inspect
from typing import Any

from seg_bench.errors import UserError
from seg_bench.registry import DATASETS


def create_datamodule(name: str, **kwargs: Any) -> Any:
    """The datamodule ``name``; an option it does not take is one line naming those it does."""
    if name in DATASETS:  # an unknown name gets the registry's own one-line error below
        cls = DATASETS.get(name)
        accepted = {
            p
            for c in type.mro(cls)
            if "__init__" in vars(c)
            for p in inspect.signature(c.__init__).parameters
            if p not in ("self", "args", "kwargs")
        }
        if unknown := sorted(set(kwargs) - accepted):
            raise UserError(
                f"dataset {name}: unknown option {unknown[0]!r}; it takes "
                f"{', '.join(sorted(accepted))} (dataset_options in the profile, or --root)"
            )
    return DATASETS.create(name, **kwargs)


def check_fractions(name: str, val_fraction: float, test_fraction: float) -> None:
    """Seeded splits: val and test must each get a share and leave training images."""
    if not (val_fraction > 0 and test_fraction > 0 and val_fraction + test_fraction < 1):
        raise UserError(
            f"dataset {name}: val_fraction {val_fraction:g} and test_fraction "
            f"{test_fraction:g}; expected each above 0 and their sum below 1 "
            "(e.g. 0.15 and 0.15)"
        )
