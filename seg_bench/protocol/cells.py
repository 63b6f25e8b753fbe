"""How a leaderboard cell shows its numbers."""

from __future__ import annotations

import numpy as np


def metric_cell(row: dict, key: str) -> str:
    """Mean ± std over seeds [bootstrap CI over test images]; "–" where the row lacks it."""
    if key not in row:
        return "–"
    lo, hi = row[f"{key}_ci"]
    ci = "" if np.isnan(lo) else f" [{lo:.3f}, {hi:.3f}]"
    std = row[f"{key}_std"]
    return f"{row[key]:.3f}{'' if np.isnan(std) else f' ± {std:.3f}'}{ci}"


def timing_cell(by_machine: dict[str, float], order: list[str], fmt: str) -> str:
    """One machine: its mean. Several: each machine's mean tagged with its number in the
    header's Hardware line, e.g. ``512 [1] · 230 [2]``."""
    assert by_machine.keys() <= set(order), "every machine of a row is in the header's order"
    if len(order) < 2:
        return format(next(iter(by_machine.values())), fmt)
    return " · ".join(
        f"{format(by_machine[m], fmt)} [{i}]" for i, m in enumerate(order, 1) if m in by_machine
    )
