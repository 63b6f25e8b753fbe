"""Reading a study back: trial counts, the summary of a search, the trials table, parameter
importances, ``seg-bench search --show``, and the best parameters that ``bench --trials`` uses.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seg_bench.errors import UserError
from seg_bench.search.space import MONITOR
from seg_bench.search.storage import (
    default_storage_dir,
    default_study_name,
    load_study,
    mask_url,
    sqlite_path,
    storage_url,
    study_summaries,
)
from seg_bench.tracking.redaction import redact_text

INTERRUPTED = "interrupted"  # the fail_reason of a trial stopped by Ctrl-C
# user attribute of a trial stopped by an error in the user's input (a missing dataset, say):
# like an interrupted one it does not count towards --trials, so the fixed rerun runs them all
ABORTED = "aborted"
SHOWN_STUDIES = 10  # a missing study's error names at most this many others


@dataclass
class SearchResult:
    study_name: str
    storage: str  # masked
    ran: int  # trials this call ran
    finished: int  # trials that count towards --trials
    counts: dict[str, int]
    best_value: float | None
    best_params: dict[str, Any] | None
    best_number: int | None
    study: Any = None


def counts(study: Any) -> dict[str, int]:
    """Trials per state; trials failed by Ctrl-C are counted as ``interrupted`` and those
    stopped by an input error as ``aborted``, not FAIL."""
    out = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0}
    out |= {INTERRUPTED: 0, ABORTED: 0}
    for t in study.get_trials(deepcopy=False):
        state = t.state.name
        if state == "FAIL" and t.user_attrs.get("fail_reason") == INTERRUPTED:
            out[INTERRUPTED] += 1
        elif state == "FAIL" and t.user_attrs.get(ABORTED):
            out[ABORTED] += 1
        elif state in out:
            out[state] += 1
    return out


def finished_count(c: dict[str, int]) -> int:
    return c["COMPLETE"] + c["PRUNED"] + c["FAIL"]


def finished_trials(study: Any) -> int:
    """Trials that count towards ``--trials``: complete, pruned, and failed (not by Ctrl-C or
    an input error)."""
    return finished_count(counts(study))


def best_trial(study: Any) -> Any:
    """The best complete trial, or None before the first one."""
    try:
        return study.best_trial
    except ValueError:
        return None


def summarize(study: Any, masked_url: str, ran: int = 0) -> SearchResult:
    c = counts(study)
    best = best_trial(study)
    return SearchResult(
        study_name=study.study_name,
        storage=masked_url,
        ran=ran,
        finished=finished_count(c),
        counts=c,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else None,
        best_number=best.number if best else None,
        study=study,
    )


def fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def trial_lines(frozen: Any) -> list[str]:
    """What a search prints when a trial finishes (a failure adds its traceback, if any)."""
    state, params = frozen.state.name, fmt_params(frozen.params)
    if state == "COMPLETE":
        return [f"trial {frozen.number}: {MONITOR} {frozen.value:.4f} ({params})"]
    if state == "PRUNED":
        steps = sorted(frozen.intermediate_values)
        at = f" after epoch {steps[-1]}" if steps else ""
        return [f"trial {frozen.number}: pruned{at} ({params})"]
    if state != "FAIL":
        return []
    reason = " ".join(str(frozen.user_attrs.get("fail_reason", "unknown error")).split())
    tb = frozen.user_attrs.get("fail_traceback")
    return [f"trial {frozen.number}: failed: {reason} ({params})", *([tb.rstrip()] if tb else [])]


def _duration(t: Any) -> str:
    if t.datetime_start is None or t.datetime_complete is None:
        return "-"
    return f"{(t.datetime_complete - t.datetime_start).total_seconds():.1f}s"


def _note(t: Any) -> str:
    note = ""
    if t.state.name == "PRUNED" and t.intermediate_values:
        last = max(t.intermediate_values)
        note = f"pruned after epoch {last} ({MONITOR} {t.intermediate_values[last]:.4f})"
    elif t.state.name == "FAIL":
        note = t.user_attrs.get("fail_reason", "")
    return " ".join(redact_text(note).split())[:100]


def trials_table(study: Any) -> str:
    """One row per trial: number, state, value, duration, parameters, why it stopped."""
    rows = [("#", "state", MONITOR, "duration", "params", "note")]
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        value = f"{t.value:.4f}" if t.value is not None and t.state.name == "COMPLETE" else "-"
        rows.append(
            (str(t.number), t.state.name, value, _duration(t), fmt_params(t.params), _note(t))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def importances_text(study: Any) -> str:
    """fANOVA importances of the parameters that vary among the complete trials."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return "parameter importances: need at least 2 completed trials"
    varying = [
        p
        for p in {k for t in complete for k in t.params}
        if len({repr(t.params.get(p)) for t in complete}) > 1
    ]
    if not varying:
        return "parameter importances: the completed trials do not vary their parameters"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(study, params=sorted(varying))
    except Exception as e:  # noqa: BLE001
        return f"parameter importances: not available ({type(e).__name__}: {e})"
    return "parameter importances: " + ", ".join(f"{k} {v:.2f}" for k, v in imp.items())


def show(study: Any, masked_url: str = "") -> str:
    """``search --show``: the counts, the trials table, the best trial and the importances."""
    c = counts(study)
    head = f"study '{study.study_name}'" + (f" in {masked_url}" if masked_url else "")
    head += f": {c['COMPLETE']} complete, {c['PRUNED']} pruned, {c['FAIL']} failed"
    if c[INTERRUPTED]:
        head += f", {c[INTERRUPTED]} interrupted"
    if c[ABORTED]:
        head += f", {c[ABORTED]} stopped by an input error"
    if c["RUNNING"]:
        head += f", {c['RUNNING']} running"
    lines = [head, trials_table(study)]
    best = best_trial(study)
    if best is not None:
        lines.append(
            f"best: trial {best.number}, {MONITOR} {best.value:.4f} ({fmt_params(best.params)})"
        )
    lines.append(importances_text(study))
    return "\n".join(lines)


def describe_best(result: SearchResult) -> str:
    """The last line of a search: the best trial, optimizer and lr first."""
    if result.best_params is None:
        c = result.counts
        return (
            f"study '{result.study_name}': no completed trial "
            f"({c['PRUNED']} pruned, {c['FAIL']} failed)"
        )
    p = result.best_params
    head = f"best: trial {result.best_number}, {MONITOR} {result.best_value:.4f}"
    if "optimizer" in p:
        head += f", optimizer {p['optimizer']}"
    if "lr" in p:
        head += f", lr {p['lr']:.3g}"
    rest = {k: v for k, v in p.items() if k not in ("optimizer", "lr")}
    return head + (f", {fmt_params(rest)}" if rest else "")


def load(
    dataset: str,
    model: str,
    profile: str | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    runs_dir: Path | str = Path("runs"),
) -> tuple[Any, str]:
    """(study, url) of an existing search. When it is missing, the one-line UserError names the
    studies that do exist (with their trials and best value) and how to show one."""
    from seg_bench.config import default_profile

    profile = profile or default_profile()
    name = study_name or default_study_name(dataset, model, profile)
    url = storage_url(storage, runs_dir, name)
    path = sqlite_path(url)
    if path is None or path.exists():
        try:
            return load_study(name, url), url
        except KeyError:
            pass
    others = study_summaries(_storages_to_list(storage, url, runs_dir))
    run_it = f"seg-bench search --dataset {dataset} --model {model} --profile {profile} --trials N"
    if others:
        where = "the search storage" if storage else str(default_storage_dir(runs_dir))
        raise UserError(
            f"no study '{name}' in {where}; it holds {_list_studies(others, storage)}: "
            f"show one with --study NAME, or run `{run_it}`"
        )
    if path is not None and not path.exists():
        raise UserError(
            f"no search for {dataset}/{model}/{profile} yet ({mask_url(url)} does not exist); "
            f"run `{run_it}` first"
        )
    raise UserError(f"no study '{name}' in {mask_url(url)}; run `{run_it}` first")


def _storages_to_list(storage: str | None, url: str, runs_dir: Path | str) -> list[str]:
    """Without --storage every study has its own SQLite file: list all of them."""
    if storage:
        path = sqlite_path(url)
        return [url] if path is None or path.exists() else []
    return [f"sqlite:///{p.resolve()}" for p in sorted(default_storage_dir(runs_dir).glob("*.db"))]


def _list_studies(found: list[tuple[str, Any]], storage: str | None) -> str:
    parts = []
    for url, s in found[:SHOWN_STUDIES]:
        best = s.best_trial
        score = f"best {MONITOR} {best.value:.4f}" if best is not None else "no completed trial"
        trials = f"{s.n_trials} trial{'s' if s.n_trials != 1 else ''}"
        path = sqlite_path(url)
        # without --storage, --study NAME finds a study only in its own NAME.db
        elsewhere = not storage and path is not None and path.stem != s.study_name
        parts.append(f"{s.study_name} ({trials}, {score}{f', in {url}' if elsewhere else ''})")
    more = len(found) - SHOWN_STUDIES
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def best_params(
    dataset: str,
    model: str,
    profile: str | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    runs_dir: Path | str = Path("runs"),
) -> dict[str, Any]:
    """The best trial's parameters (RunConfig field names) of a finished search."""
    study, url = load(dataset, model, profile, storage, study_name, runs_dir)
    best = best_trial(study)
    if best is None:
        raise UserError(
            f"study '{study.study_name}' in {mask_url(url)} has no completed trial yet; "
            "run more trials"
        )
    return dict(best.params)
