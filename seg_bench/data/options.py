"""A datamodule from its registered name and options: an option it does not take is one line
naming those it does; and the checks the splits share (seeded fractions, slice-block gaps)."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from seg_bench.errors import UserError
from seg_bench.registry import DATASETS

log = logging.getLogger(__name__)


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


def check_split_gap(name: str, split_gap: Any) -> int:
    """The unused slices between two slice blocks, as an int: a whole number >= 0, where 0
    (blocks that touch) is allowed for tiny stacks but said to be leaky."""
    try:
        gap = float(split_gap)
    except (TypeError, ValueError):
        gap = -1.0
    if isinstance(split_gap, bool) or gap < 0 or not gap.is_integer():
        raise UserError(
            f"dataset {name}: split_gap {split_gap!r}; expected a whole number of slices "
            ">= 0 (the default 1 leaves one slice unused between train, val and test)"
        )
    if gap == 0:
        log.warning(
            "dataset %s: split_gap 0: the slice blocks touch, so a validation or test slice "
            "neighbours a training slice; the record's split says gap 0",
            name,
        )
    return int(gap)
