"""Running a search: trials until the study holds ``--trials`` finished ones.

``--trials N`` is a target, not an increment: trials run until the study holds N finished ones
(complete, pruned or failed; trials failed by Ctrl-C do not count), so rerunning an interrupted
search resumes it and rerunning a finished one does nothing. To add trials, raise N. Workers on
any number of machines can run the same command against one server study: they share the
target and count each other's running trials, so the study ends with N finished trials (at
most one more per worker when workers start a trial in the same instant); a killed worker's
trials are failed by the heartbeat (:mod:`~seg_bench.search.storage`).

The pruner (``median``: MedianPruner after 3 finished trials and 1 warm-up epoch;
``hyperband``; ``none``) stops poor trials early from the ``val/iou`` reported after every
validation. Ctrl-C marks the running trial FAIL (``fail_reason`` ``interrupted``) and stops;
every finished trial is already stored.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from seg_bench.errors import UserError
from seg_bench.search.display import (
    SearchResult,
    counts,
    describe_best,
    finished_count,
    summarize,
    trial_lines,
)
from seg_bench.search.objective import Objective, trial_config
from seg_bench.search.space import parse_space
from seg_bench.search.storage import (
    check_fixed,
    default_study_name,
    fail_stale_trials,
    is_sqlite,
    mask_url,
    open_study,
    storage_url,
    study_space,
)
from seg_bench.tracking.loggers import resolve_kind

PRUNERS = ("median", "hyperband", "none")


def build_pruner(kind: str, max_epochs: int) -> Any:
    """The Optuna pruner named by ``--pruner``; hyperband's budget is the trial's epochs."""
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(int(max_epochs), 1), reduction_factor=3
        )
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise UserError(f"unknown pruner '{kind}'. Known: {', '.join(PRUNERS)}")


def run_search(
    dataset: str,
    model: str,
    trials: int,
    profile: str | None = None,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    timeout: float | None = None,
    space: str | list[str] | dict | None = None,
    pruner: str = "median",
    overrides: dict[str, Any] | None = None,
    runs_dir: Path | str = Path("runs"),
    seed: int | None = None,
    heartbeat_s: int | None = None,
    project: str | None = None,
    log_model: bool = False,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> SearchResult:
    """Run trials until the study holds ``trials`` finished ones (see the module docstring)."""
    import optuna

    from seg_bench.config import default_profile

    echo = echo or _to_stderr
    _check_options(trials, timeout, pruner)
    profile = profile or default_profile()
    overrides = {k: v for k, v in dict(overrides or {}).items() if v is not None}
    spec = _searched_space(space, overrides, echo)
    base = trial_config(dataset, model, profile, overrides, {})  # fails early on bad options
    resolve_kind(base.logger)
    name = study_name or default_study_name(dataset, model, profile)
    url = storage_url(storage, runs_dir, name)
    with _optuna_verbosity(optuna.logging.WARNING):  # our own one line per trial instead
        study = open_study(
            name,
            url,
            spec,
            dataset=dataset,
            model=model,
            seed=base.seed if seed is None else seed,
            pruner=build_pruner(pruner, base.max_epochs),
            heartbeat_s=heartbeat_s,
            fixed=fixed_options(base, spec),
        )
        objective = Objective(
            name,
            mask_url(url),
            study_space(study),
            dataset,
            model,
            profile,
            overrides,
            trial_root=Path(runs_dir) / "search" / name,
            project=project,
            log_model=log_model,
            progress=progress,
        )
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials: see trial_lines
        ran = _run_trials(study, objective, int(trials), timeout, not is_sqlite(url), echo)
    return summarize(study, mask_url(url), ran)


def tuned_parameters(
    dataset: str,
    models: list[str],
    trials: int,
    profile: str | None,
    overrides: dict[str, Any],
    runs_dir: Path | str,
    project: str | None,
    search_options: dict[str, Any] | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """``bench --trials N``: each model's search run to N finished trials, and its best
    parameters; a search without a completed trial stops the bench, since training the
    profile's defaults would pass for tuned."""
    from seg_bench.config import default_profile

    echo = echo or _to_stderr
    tuned = {}
    for m in models:
        found = run_search(
            dataset,
            m,
            trials,
            profile,
            overrides=overrides,
            runs_dir=runs_dir,
            project=project,
            **(search_options or {}),
        )
        echo(f"search {m}: {describe_best(found)}")
        if found.best_params is None:
            raise UserError(
                f"search {m}: {describe_best(found)}, so there is nothing tuned to train; "
                f"see `seg-bench search --dataset {dataset} --model {m} --profile "
                f"{profile or default_profile()} --show`, fix what failed, and rerun with more "
                "--trials"
            )
        tuned[m] = dict(found.best_params)
    return tuned


def fixed_options(base: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """The configuration fields every trial of a study shares: what no trial varies and what
    changes the network (test-only options do not)."""
    from seg_bench.config import TEST_ONLY
    from seg_bench.training.run_dir import key_fields

    return {k: v for k, v in key_fields(base).items() if k not in {*spec, *TEST_ONLY}}


def check_shown_options(
    study: Any, dataset: str, model: str, profile: str | None, overrides: dict[str, Any]
) -> None:
    """``search --show`` with run options: the study shown must be the one they would run, not
    another whose trials trained with other options."""
    from seg_bench.config import default_profile

    overrides = {k: v for k, v in overrides.items() if v is not None}
    space = study_space(study)
    if searched := sorted(set(overrides) & set(space)):
        raise UserError(
            f"study '{study.study_name}' searched {', '.join(searched)}, so its trials did not "
            f"train with the {', '.join(searched)} given here; drop it to show the study"
        )
    base = trial_config(dataset, model, profile or default_profile(), overrides, {})
    check_fixed(
        study,
        fixed_options(base, space),
        "drop them to show this study, or name the study those options ran with (--study)",
    )


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_options(trials: Any, timeout: float | None, pruner: str) -> None:
    if trials is None or int(trials) < 1:
        raise UserError(
            "--trials must be at least 1 (the number of finished trials the study should "
            f"hold), got {trials}"
        )
    if timeout is not None and timeout <= 0:
        raise UserError(f"--timeout must be positive seconds, got {timeout}")
    if pruner not in PRUNERS:
        raise UserError(f"unknown pruner '{pruner}'. Known: {', '.join(PRUNERS)}")


def _searched_space(
    space: Any, overrides: dict[str, Any], echo: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """The ``--space`` spec less the keys given explicitly on the command line (those are
    fixed, not searched)."""
    spec = parse_space(space)
    fixed = [k for k in spec if k in overrides]
    if fixed:
        echo(f"search: {', '.join(fixed)} given explicitly, so not searched")
    spec = {k: v for k, v in spec.items() if k not in fixed}
    if not spec:
        raise UserError(
            "nothing left to search: every --space parameter was fixed on the command line"
        )
    return spec


@contextlib.contextmanager
def _optuna_verbosity(level: int) -> Iterator[None]:
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(level)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def _run_trials(
    study: Any,
    objective: Objective,
    target: int,
    timeout: float | None,
    shared: bool,
    echo: Callable[[str], None],
) -> int:
    """One trial at a time until ``target`` trials are finished (or running elsewhere, in a
    ``shared`` study) or ``timeout`` seconds have passed; returns the trials run here."""
    start, ran = time.monotonic(), 0

    def report(study: Any, frozen: Any) -> None:
        for line in trial_lines(frozen):
            echo(line)

    try:
        while True:
            if shared:
                fail_stale_trials(study)
            c = counts(study)
            done, busy = finished_count(c), c["RUNNING"] if shared else 0
            if done + busy >= target:
                if ran == 0:  # say why nothing ran: a dead worker's trial counts too
                    echo(nothing_to_run(objective, done, busy, target))
                return ran
            if timeout is not None and time.monotonic() - start >= timeout:
                echo(f"search: --timeout {timeout:g}s reached after {ran} trial(s)")
                return ran
            if ran == 0:
                echo(
                    f"{study_line(objective)}{done} of {target} trials finished, running "
                    f"{target - done - busy} more"
                )
            study.optimize(
                objective, n_trials=1, catch=(Exception,), callbacks=[report], gc_after_trial=True
            )
            ran += 1
            if objective.abort:
                raise UserError(str(objective.abort[0]))
    except KeyboardInterrupt:
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # Lightning ignores further
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C while it stops
        raise


def study_line(objective: Objective) -> str:
    """How a worker's status line starts: the study and its storage (password masked)."""
    return f"search: study '{objective.study_name}' in {objective.masked_url}: "


def nothing_to_run(objective: Objective, done: int, busy: int, target: int) -> str:
    """Why this worker runs no trial."""
    where = study_line(objective)
    if not busy:
        return f"{where}{done} of {target} trials finished, so this one runs none: raise --trials"
    return (
        f"{where}{done} of {target} trials finished and {busy} running in other workers, so "
        "this one runs none; a worker killed without --heartbeat leaves its trial RUNNING for "
        "good (`seg-bench search --show` lists it): raise --trials to run more"
    )


__all__ = ["PRUNERS", "build_pruner", "run_search"]
