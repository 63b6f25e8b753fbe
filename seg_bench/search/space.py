"""What a search varies: the searchable parameters (RunConfig fields), ``--space`` parsing, and
drawing one trial's values.

A spec maps a parameter to ``{"choices": [...]}`` or ``{"low": a, "high": b, "log": bool}``
(integers when both bounds are integers). A study stores the spec it was created with, so its
trials keep drawing from the same space however the defaults change later.
"""

from __future__ import annotations

import json
from typing import Any

from seg_bench.errors import UserError

MONITOR = "val/iou"  # what every trial reports and the study maximises
DEFAULT_SPACE = ("optimizer", "lr")
# The losses that suit any binary or multi-class task; `ce` and `unet_weighted` need
# particular heads or weight maps, so a search does not try them blindly.
SEARCHED_LOSSES = ["bce_dice", "dice", "bce", "focal"]


def choices() -> dict[str, dict[str, Any]]:
    """Every searchable parameter with its default range (the optimizers are the registered
    ones)."""
    from seg_bench.registry import OPTIMIZERS

    return {
        "optimizer": {"choices": OPTIMIZERS.names()},
        "lr": {"low": 1e-5, "high": 1e-1, "log": True},
        "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
        "batch_size": {"choices": [2, 4, 8, 16]},
        "loss": {"choices": list(SEARCHED_LOSSES)},
    }


def parse_space(
    text: str | list[str] | tuple[str, ...] | dict | None,
) -> dict[str, dict[str, Any]]:
    """``"optimizer,lr"`` (or a list of names, or a ready spec) -> the spec stored with the
    study. ``None`` means :data:`DEFAULT_SPACE`."""
    if text is None:
        text = DEFAULT_SPACE
    if isinstance(text, dict):
        return {str(name): _checked_entry(name, entry) for name, entry in text.items()}
    known = choices()
    parts = text.split(",") if isinstance(text, str) else text
    names = [n.strip() for n in parts if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(
            f"unknown search parameter(s) {', '.join(unknown)} in --space. "
            f"Known: {', '.join(known)}"
        )
    if not names:
        raise UserError(f"--space is empty. Choose from: {', '.join(known)}")
    return {n: dict(known[n]) for n in dict.fromkeys(names)}


def _checked_entry(name: Any, entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict) or not ("choices" in entry or {"low", "high"} <= set(entry)):
        raise UserError(
            f"search space entry '{name}' needs 'choices' or 'low' and 'high', got {entry!r}"
        )
    return dict(entry)


def same_space(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> bool:
    """Equal specs, whatever the order of their parameters or of their choices."""
    return _canonical(a) == _canonical(b)


def _canonical(spec: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    spec = json.loads(json.dumps(spec))  # as stored: tuples become lists
    for entry in spec.values():
        if "choices" in entry:
            entry["choices"] = sorted(entry["choices"], key=repr)
    return spec


def suggest(trial: Any, spec: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One value per parameter of ``spec``, drawn by the Optuna ``trial``."""
    params = {}
    for name, entry in spec.items():
        if "choices" in entry:
            params[name] = trial.suggest_categorical(name, list(entry["choices"]))
            continue
        low, high, log = entry["low"], entry["high"], bool(entry.get("log"))
        if isinstance(low, int) and isinstance(high, int):
            params[name] = trial.suggest_int(name, low, high, log=log)
        else:
            params[name] = trial.suggest_float(name, float(low), float(high), log=log)
    return params


__all__ = ["DEFAULT_SPACE", "MONITOR", "choices", "parse_space", "same_space", "suggest"]
