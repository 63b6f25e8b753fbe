"""Whether a run's learning curve has flattened: the leaderboard's Plateaued column and
budget note."""

from __future__ import annotations

import numpy as np

# Plateau test of a run's validation curve: the least-squares slope of val IoU against the
# step over the last PLATEAU_TAIL of the steps. The run has plateaued when that slope, per
# step, is below PLATEAU_GAIN / (steps of the run): going on at that rate for as many steps
# again would add less than PLATEAU_GAIN IoU, the criterion benchmarks/bench_convergence.py
# applies to doubling a budget. A curve still rising faster is "not converged".
PLATEAU_GAIN = 0.01
PLATEAU_TAIL = 0.2
PLATEAU_MIN_POINTS = 3  # fewer validations in the tail cannot tell a slope from noise


def plateau_slope(curve: list[dict]) -> float | None:
    """Val IoU per step over the last fifth of the run (None: too few validations there)."""
    if not curve:
        return None
    last = curve[-1]["step"]
    tail = [p for p in curve if p["step"] >= (1 - PLATEAU_TAIL) * last]
    if len({p["step"] for p in tail}) < PLATEAU_MIN_POINTS:
        return None
    steps = np.array([p["step"] for p in tail], dtype=float)
    ious = np.array([p["val_iou"] for p in tail], dtype=float)
    return float(np.polyfit(steps, ious, 1)[0])


def plateaued(curve: list[dict]) -> bool | None:
    """Whether a run's validation IoU has stopped rising (None: cannot tell)."""
    slope = plateau_slope(curve)
    return None if slope is None else bool(slope * curve[-1]["step"] < PLATEAU_GAIN)


def convergence_verdict(records: list[dict]) -> str | None:
    """'yes' when every seed's curve has plateaued, 'not converged' when any still rises."""
    verdicts = [plateaued(r.get("curve") or []) for r in records]
    if any(v is False for v in verdicts):
        return "not converged"
    if verdicts and all(v is True for v in verdicts):
        return "yes"
    return None


def budget_lines(records: list[dict]) -> list[str]:
    """The header's warning for profiles whose budget is too short to converge."""
    notes = sorted({(r["profile"], r["config"].get("budget_note")) for r in records})
    return [f"**Budget of profile {p}: {note}.**" for p, note in notes if note]


PLATEAU_NOTE = (
    f"Plateaued: val IoU slope over the last {PLATEAU_TAIL:.0%} of the steps is below "
    f"{PLATEAU_GAIN} IoU per run length (yes for every seed), else not converged."
)
