"""Whether a run's learning curve has flattened: the leaderboard's Plateaued column and
budget note."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

from seg_bench.config import planned_steps
from seg_bench.errors import UserError

# Plateau test of a run's validation curve: the least-squares slope of val IoU against the
# step over the last PLATEAU_TAIL of the steps. The run has plateaued when that slope, per
# step, is below PLATEAU_GAIN / (steps of the run): going on at that rate for as many steps
# again would add less than PLATEAU_GAIN IoU, the criterion benchmarks/bench_convergence.py
# applies to doubling a budget. A steeper slope marks the run "not converged" only when it is
# above zero beyond the scatter of the validations (one-sided test at PLATEAU_ALPHA): a tail of
# 8 validations scattered by 0.01 IoU cannot pin the slope to better than about 0.05 IoU per
# 1000 steps, and such a run is "unclear", not "not converged".
PLATEAU_GAIN = 0.01
PLATEAU_TAIL = 0.2
PLATEAU_ALPHA = 0.05
PLATEAU_MIN_POINTS = 3  # fewer validations in the tail cannot tell a slope from noise


def tail_fit(curve: list[dict]):
    """linregress of val IoU on the step over the last fifth (None: too few validations):
    its slope is val IoU per step."""
    if not curve:
        return None
    last = curve[-1]["step"]
    tail = [p for p in curve if p["step"] >= (1 - PLATEAU_TAIL) * last]
    if len({p["step"] for p in tail}) < PLATEAU_MIN_POINTS:
        return None
    steps = [float(p["step"]) for p in tail]
    ious = [float(p["val_iou"]) for p in tail]
    with np.errstate(divide="ignore", invalid="ignore"):  # an exact line has no residuals
        return stats.linregress(steps, ious, alternative="greater")


def tail_verdict(curve: list[dict]) -> str | None:
    """'yes' (flat), 'rising' (significantly, by more than the gain), 'unclear' (rising by
    the fitted slope, within the scatter), None (too few validations)."""
    fit = tail_fit(curve)
    if fit is None:
        return None
    if fit.slope * curve[-1]["step"] < PLATEAU_GAIN:
        return "yes"
    return "rising" if fit.pvalue < PLATEAU_ALPHA else "unclear"


def plateaued(curve: list[dict]) -> bool | None:
    """Whether a run's validation IoU has stopped rising (None: cannot tell)."""
    return {"yes": True, "rising": False}.get(tail_verdict(curve))


def convergence_verdict(records: list[dict]) -> str | None:
    """'not converged' when any seed still rises, 'yes' when every seed's curve is flat,
    'unclear' when the rest rise within the scatter of their validations."""
    verdicts = [tail_verdict(r.get("curve") or []) for r in records]
    if "rising" in verdicts:
        return "not converged"
    if verdicts and all(v == "yes" for v in verdicts):
        return "yes"
    return "unclear" if "unclear" in verdicts else None


def optimizer_steps(record: dict) -> int | None:
    """The optimizer steps a run trained: the last step of its validation curve, else what its
    configuration sets (None where its epochs went over the whole training set)."""
    curve = record.get("curve") or []
    if curve:
        return int(curve[-1]["step"])
    return planned_steps(record.get("config") or {})


def budget_lines(records: list[dict]) -> list[str]:
    """The header's warning for profiles whose budget is too short to converge."""
    notes = sorted({(r["profile"], r["config"].get("budget_note")) for r in records})
    return [f"**Budget of profile {p}: {note}.**" for p, note in notes if note]


PLATEAU_NOTE = (
    f"Plateaued: the val IoU slope over the last {PLATEAU_TAIL:.0%} of the steps would add "
    f"under {PLATEAU_GAIN} IoU in as many steps again (yes: every seed); not converged: a seed "
    f"rises faster, beyond the scatter of its validations (one-sided p < {PLATEAU_ALPHA}); "
    "unclear: faster by the fitted slope, within that scatter."
)


# benchmarks/bench_convergence.py --leaderboard-dir writes its study here, in the leaderboard's
# folder of the dataset; the leaderboard of the same profile shows it per model.
STUDY_FILE = "convergence.json"


def load_study(folder: Path, profile: str | None) -> dict | None:
    """The doubling study of ``folder``/convergence.json, if it is one of ``profile``."""
    path = Path(folder) / STUDY_FILE
    if not path.is_file():
        return None
    try:
        study = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        study = err
    if not isinstance(study, dict) or not isinstance(study.get("per_model", {}), dict):
        problem = study if isinstance(study, Exception) else "no per_model table"
        msg = f"{path}: not a convergence study ({problem}); rerun bench_convergence.py"
        raise UserError(msg)
    return study if study.get("profile") == profile else None


def with_doubling(rows: list[dict], study: dict | None) -> list[dict]:
    """Each row's doubling verdict at its own budget (``doubling``: the study's comparison),
    where the study has one."""
    for row in rows:
        found = [
            c
            for c in (study or {}).get("per_model", {}).get(row["model"], [])
            if c.get("steps") == row.get("steps") and c.get("converged") is not None
        ]
        if found:
            row["doubling"] = found[0]
    return rows


def doubling_cell(row: dict) -> str:
    c = row.get("doubling")
    if c is None:
        return "–"
    return f"{c['change']:+.3f} ({'within' if c['converged'] else 'beyond'} {c['tolerance']:.3f})"


def rank_cell(row: dict) -> str:
    """A model the doubling study found still gaining at this budget gets no rank."""
    converged = row.get("doubling", {}).get("converged", True)
    return str(row["rank"]) if converged else "– (not converged)"


def doubling_note(rows: list[dict]) -> str:
    doubled = sorted({r["doubling"]["doubled"] for r in rows if "doubling" in r})
    return (
        f"Doubling: the change of the mean final validation IoU (over seeds) when the budget is "
        f"doubled to {', '.join(map(str, doubled))} steps (`benchmarks/bench_convergence.py`); "
        f"tolerance max({PLATEAU_GAIN}, a third of the seed range). A model beyond it has not "
        "converged at this budget and gets no rank."
    )
