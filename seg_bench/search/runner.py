"""Hyperparameter search with Optuna: ``seg-bench search --dataset D --model M --trials N``.

What is searched
    ``--space`` picks from ``optimizer`` (sgd with momentum, adagrad, adam, adamw), ``lr``
    (log-uniform 1e-5..1e-1), ``weight_decay`` (log-uniform 1e-6..1e-2), ``batch_size``
    (2, 4, 8, 16) and ``loss`` (bce_dice, dice, bce, focal); the default is ``optimizer,lr``.
    A key also given explicitly on the command line (``--lr 1e-3``) is fixed, not searched.
    Everything else comes from the profile, as for ``train``, except that ``smoke`` search
    trials train 4 epochs of 32 samples (instead of 1 epoch of 8) so that pruning has
    distinct validation scores to compare (``--epochs`` / ``--set`` override it).

Objective and pruning
    Each trial trains with :func:`seg_bench.training.trainer.train` into
    ``<runs>/search/<study>/trial_<n>`` and returns its best ``val/iou`` (maximised). After
    every validation Optuna's ``PyTorchLightningPruningCallback`` reports ``val/iou``; the
    pruner (``median``: MedianPruner after 3 finished trials and 1 warm-up epoch; ``hyperband``;
    ``none``) stops poor trials early. The sampler is a seeded TPESampler (``--seed``), so a
    single worker on a fresh study is reproducible. A trial whose loss becomes NaN/inf, or that
    raises, is recorded FAIL with the reason in its user attribute ``fail_reason`` and the
    study goes on. Ctrl-C marks the running trial FAIL (``fail_reason`` ``interrupted``) and
    stops; every finished trial is already stored.

Storage, resuming, many workers
    The study lives in ``<runs>/search/<study>.db`` (SQLite) unless ``--storage URL`` names
    another (``postgresql://user:pass@host/db``, needs ``pip install seg-bench[postgres]``).
    The study name defaults to ``<dataset>-<model>-<profile>``. ``--trials N`` is a target,
    not an increment: the command runs trials until the study holds N finished ones (complete,
    pruned or failed; trials failed by Ctrl-C do not count), so rerunning an interrupted search
    resumes it and rerunning a finished one does nothing. To add trials, raise N.
    Workers on any number of machines can run the same command against one PostgreSQL study;
    they share the target, trial numbers are unique, and a worker counts the others' running
    trials, so the study ends with N finished trials (at most one more per worker when workers
    start a trial in the same instant). Non-SQLite storages get a heartbeat, so the trials of
    a killed worker are marked FAIL after a grace period, and their TPE samplers are seeded
    per worker (constant liar on) so that workers do not draw the same parameters. A study is
    tied to its search space, dataset and model: asking for another space under the same study
    name is an error, not a silent mix.

DDP inside a trial
    The supported way is one study process per machine that builds the Trainer per trial with
    ``--strategy ddp_spawn --devices N`` (``ddp_fork`` also works on Linux): the worker
    processes are spawned from the trial, so every rank trains with the parameters sampled
    for that trial, rank 0 reports to Optuna, and ``check_pruned()`` after ``fit`` turns a
    pruning decision made in a worker into a pruned trial. ``--strategy ddp`` is turned into
    ``ddp_spawn`` here, because the ``ddp`` launcher re-executes the command in every rank,
    and each rank would then run its own study. Multi-node DDP inside a trial is not
    supported; scale out with one worker per machine sharing a PostgreSQL study instead.

Results
    ``best_params(dataset, model, profile)`` returns the best trial's parameters (the keys are
    RunConfig fields); ``bench --trials N`` searches every model first and trains its seeds
    with them. ``seg-bench search ... --show`` prints the trials and parameter importances.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seg_bench.errors import UserError
from seg_bench.tracking.runs import redact, redact_text, register_secret, resolve_kind

MONITOR = "val/iou"
OPTIMIZER_CHOICES = ["sgd", "adagrad", "adam", "adamw"]
SPACE: dict[str, dict[str, Any]] = {
    "optimizer": {"choices": OPTIMIZER_CHOICES},
    "lr": {"low": 1e-5, "high": 1e-1, "log": True},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "batch_size": {"choices": [2, 4, 8, 16]},
    "loss": {"choices": ["bce_dice", "dice", "bce", "focal"]},
}
DEFAULT_SPACE = ("optimizer", "lr")
PRUNERS = ("median", "hyperband", "none")
# Search trials need several validations that differ for pruning to compare; smoke trains
# 1 epoch of 2 steps, after which every trial scores the same. Explicit options win.
SEARCH_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "smoke": {"max_epochs": 4, "samples_per_epoch": 32}
}
FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")
INTERRUPTED = "interrupted"


# ---------------------------------------------------------------------------------------------
# Space


def parse_space(text: str | list[str] | tuple[str, ...] | dict | None) -> dict[str, dict[str, Any]]:
    """``"optimizer,lr"`` (or a list of names, or a ready spec) -> the spec stored with the study.
    A spec entry is ``{"choices": [...]}`` or ``{"low": a, "high": b, "log": bool}``."""
    if text is None:
        text = DEFAULT_SPACE
    if isinstance(text, dict):
        spec = {}
        for name, entry in text.items():
            if not isinstance(entry, dict) or not (
                "choices" in entry or {"low", "high"} <= set(entry)
            ):
                raise UserError(
                    f"search space entry '{name}' needs 'choices' or 'low' and 'high', got {entry!r}"
                )
            spec[str(name)] = dict(entry)
        return spec
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in SPACE]
    if unknown:
        raise UserError(
            f"unknown search parameter(s) {', '.join(unknown)} in --space. Known: {', '.join(SPACE)}"
        )
    if not names:
        raise UserError(f"--space is empty. Choose from: {', '.join(SPACE)}")
    return {n: dict(SPACE[n]) for n in dict.fromkeys(names)}


def suggest(trial, spec: dict[str, dict[str, Any]]) -> dict[str, Any]:
    params = {}
    for name, entry in spec.items():
        if "choices" in entry:
            params[name] = trial.suggest_categorical(name, list(entry["choices"]))
        elif isinstance(entry["low"], int) and isinstance(entry["high"], int):
            params[name] = trial.suggest_int(
                name, entry["low"], entry["high"], log=bool(entry.get("log"))
            )
        else:
            params[name] = trial.suggest_float(
                name, float(entry["low"]), float(entry["high"]), log=bool(entry.get("log"))
            )
    return params


# ---------------------------------------------------------------------------------------------
# Storage


def default_study_name(dataset: str, model: str, profile: str) -> str:
    return f"{dataset}-{model}-{profile}"


def mask_url(url: str) -> str:
    return redact_text(str(url))


def storage_url(storage: str | None, runs_dir: Path | str, study: str) -> str:
    if not storage:
        path = (Path(runs_dir) / "search" / f"{study}.db").resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    storage = storage.strip()
    if "://" not in storage:
        if storage.endswith((".db", ".sqlite", ".sqlite3")):  # a bare file path
            path = Path(storage).expanduser().resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{path}"
        raise UserError(
            f"--storage '{mask_url(storage)}' is not a database URL; use postgresql://USER:PASSWORD@HOST:PORT/DB, "
            "sqlite:///path/to/file.db, or leave --storage out for a local SQLite file"
        )
    if storage.startswith("postgres://"):  # Heroku-style alias SQLAlchemy no longer accepts
        storage = "postgresql://" + storage[len("postgres://") :]
    return storage


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return redact_text(text.splitlines()[0] if text else type(e).__name__)


def open_storage(url: str, heartbeat_s: int | None = None):
    """An Optuna RDBStorage, or a one-line UserError saying what to do."""
    import optuna

    shown = mask_url(url)  # what the user typed, password masked
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.password:
            register_secret(str(parsed.password))
    except Exception as e:  # noqa: BLE001
        raise UserError(
            f"malformed --storage URL '{shown}' ({_first_line(e)}); expected e.g. postgresql://USER:PASSWORD@HOST:5432/DB or sqlite:///file.db"
        ) from None
    if (
        parsed.drivername == "postgresql"
    ):  # SQLAlchemy 2.1 means psycopg 3 by this; we ship psycopg2
        import importlib.util

        if (
            importlib.util.find_spec("psycopg") is None
            and importlib.util.find_spec("psycopg2") is not None
        ):
            url = parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    sqlite = parsed.drivername.startswith("sqlite")
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    )
    if parsed.drivername.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    heartbeat = None if sqlite else (heartbeat_s if heartbeat_s is not None else 60)
    kwargs: dict[str, Any] = {"engine_kwargs": engine_kwargs}
    if heartbeat:
        kwargs.update(heartbeat_interval=int(heartbeat), grace_period=int(heartbeat) * 3)
    try:
        import warnings

        for attempt in range(6):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # heartbeat is an "experimental" feature
                    return optuna.storages.RDBStorage(url, **kwargs)
            except Exception as e:  # noqa: BLE001
                # Workers started together on an empty database race to create Optuna's tables;
                # the loser sees 'already exists' / 'duplicate key' and finds them on a retry.
                text = str(e).lower()
                if attempt == 5 or not ("already exists" in text or "duplicate key" in text):
                    raise
                time.sleep(0.3 + 0.4 * attempt)
    except ImportError as e:  # optuna turns the driver's ModuleNotFoundError into an ImportError
        cause = e if isinstance(e, ModuleNotFoundError) else (e.__cause__ or e)
        missing = getattr(cause, "name", None) or "the driver"
        hint = (
            "pip install 'seg-bench[postgres]' (psycopg2-binary)"
            if parsed.drivername.startswith("postgresql")
            else f"install {missing}"
        )
        raise UserError(
            f"--storage {shown} needs a database driver ({missing} is not installed): {hint}"
        ) from None
    except Exception as e:  # noqa: BLE001 - sqlalchemy raises many kinds; all mean "cannot open it"
        name = type(e).__name__
        if name in ("ArgumentError", "NoSuchModuleError", "ValueError"):
            raise UserError(
                f"malformed --storage URL '{shown}' ({_first_line(e)}); expected e.g. "
                "postgresql://USER:PASSWORD@HOST:5432/DB or sqlite:///file.db"
            ) from None
        raise UserError(
            f"cannot open the study storage {shown}: {_first_line(e)}; check that the database server "
            "is running and reachable and the user, password and database exist, or leave --storage out "
            "to use a local SQLite file"
        ) from None


def _space_json(spec: dict) -> str:
    return json.dumps(spec)


def open_study(
    name: str,
    url: str,
    spec: dict[str, dict[str, Any]],
    *,
    dataset: str,
    model: str,
    seed: int = 0,
    pruner: str = "median",
    max_epochs: int = 1,
    create: bool = True,
    heartbeat_s: int | None = None,
):
    import optuna

    storage = open_storage(url, heartbeat_s)
    sqlite = _is_sqlite(url)
    if sqlite:
        sampler_seed = seed
    else:  # several workers share the study: do not let them draw the same random startup trials
        token = f"{seed}:{socket.gethostname()}:{os.getpid()}".encode()
        sampler_seed = int(hashlib.sha256(token).hexdigest()[:8], 16)
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=not sqlite)
    try:
        if create:
            study = optuna.create_study(
                study_name=name,
                storage=storage,
                sampler=sampler,
                pruner=build_pruner(pruner, max_epochs),
                direction="maximize",
                load_if_exists=True,
            )
        else:
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        raise UserError(
            f"no study '{name}' in {mask_url(url)}; run `seg-bench search --dataset {dataset} --model {model} --trials N` first"
        ) from None
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001
        raise UserError(
            f"cannot open study '{name}' in {mask_url(url)}: {_first_line(e)}"
        ) from None
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise UserError(
            f"study '{name}' in {mask_url(url)} minimises its objective; seg-bench studies maximise {MONITOR}. Use another --study name"
        )
    attrs = study.user_attrs
    want = {
        "search_space": _space_json(spec),
        "dataset": dataset,
        "model": model,
        "objective": f"max {MONITOR}",
    }
    if "search_space" in attrs:
        if json.loads(attrs["search_space"]) != json.loads(want["search_space"]):  # order-free
            have = ",".join(json.loads(attrs["search_space"]))
            raise UserError(
                f"study '{name}' was created with search space [{have}], not [{','.join(spec)}] (or other ranges); "
                f"use --space {have} to continue it, or --study NEW_NAME for a new study"
            )
        for key in ("dataset", "model"):
            if attrs.get(key) not in (None, want[key]):
                raise UserError(
                    f"study '{name}' belongs to {key} '{attrs[key]}', not '{want[key]}'; use --study NEW_NAME"
                )
    elif create:
        for key, value in want.items():
            study.set_user_attr(key, value)
    return study


def build_pruner(kind: str, max_epochs: int):
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


# ---------------------------------------------------------------------------------------------
# Counting


def _counts(study) -> dict[str, int]:
    out = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0, INTERRUPTED: 0}
    for t in study.get_trials(deepcopy=False):
        state = t.state.name
        if state == "FAIL" and t.user_attrs.get("fail_reason") == INTERRUPTED:
            out[INTERRUPTED] += 1
        elif state in out:
            out[state] += 1
    return out


def finished_trials(study) -> int:
    """Trials that count towards ``--trials``: complete, pruned, and failed (not by Ctrl-C)."""
    c = _counts(study)
    return c["COMPLETE"] + c["PRUNED"] + c["FAIL"]


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class SearchResult:
    study_name: str
    storage: str  # masked
    ran: int
    finished: int
    counts: dict[str, int]
    best_value: float | None
    best_params: dict[str, Any] | None
    best_number: int | None
    study: Any = None


def _search_config(dataset, model, profile, overrides, params):
    from seg_bench.config import resolve_config

    profile_defaults = SEARCH_PROFILE_DEFAULTS.get(profile, {})
    merged = {**profile_defaults, **overrides, **params}
    cfg = resolve_config(dataset, model, profile, **merged)
    if cfg.num_nodes > 1:
        raise UserError(
            "multi-node DDP inside a search trial is not supported; run one search worker per machine against a shared --storage instead"
        )
    if cfg.strategy == "ddp" or (cfg.strategy == "auto" and _more_than_one(cfg.devices)):
        cfg.strategy = (
            "ddp_spawn"  # see the module docstring: 'ddp' re-executes the command per rank
        )
    return cfg


def _more_than_one(devices) -> bool:
    """Would Lightning's 'auto' strategy launch several processes for these devices?"""
    text = str(devices).strip()
    if text in ("-1", "auto"):
        import torch

        return torch.cuda.device_count() > 1
    if text.isdigit():
        return int(text) > 1
    return "," in text.strip(",") or (isinstance(devices, (list, tuple)) and len(devices) > 1)


def _value_of(study, trial, result) -> float:
    """The trial's best val/iou: the best reported epoch (also right under ddp_spawn, where the
    checkpoint callback's best score stays in the worker), else the training result."""
    frozen = study._storage.get_trial(trial._trial_id)
    reported = [
        v for v in frozen.intermediate_values.values() if v is not None and math.isfinite(v)
    ]
    if reported:
        return float(max(reported))
    value = result.best_val.get(MONITOR)
    if value is None or not math.isfinite(value):
        raise RuntimeError(f"training finished without a finite {MONITOR}")
    return float(value)


def _fmt_params(params: dict[str, Any]) -> str:
    parts = []
    for k, v in params.items():
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


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
    echo=None,
) -> SearchResult:
    """Run trials until the study holds ``trials`` finished ones (see the module docstring)."""
    import optuna

    from seg_bench.config import default_profile
    from seg_bench.tracking.runs import tracked_run
    from seg_bench.training.task import NonFiniteLossError

    echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if trials is None or int(trials) < 1:
        raise UserError(
            f"--trials must be at least 1 (the number of finished trials the study should hold), got {trials}"
        )
    trials = int(trials)
    if timeout is not None and timeout <= 0:
        raise UserError(f"--timeout must be positive seconds, got {timeout}")
    if pruner not in PRUNERS:
        raise UserError(f"unknown pruner '{pruner}'. Known: {', '.join(PRUNERS)}")
    profile = profile or default_profile()
    overrides = {k: v for k, v in dict(overrides or {}).items() if v is not None}
    spec = parse_space(space)
    fixed = [k for k in spec if k in overrides]
    for k in fixed:
        del spec[k]
    if fixed:
        echo(f"search: {', '.join(fixed)} given explicitly, so not searched")
    if not spec:
        raise UserError(
            "nothing left to search: every --space parameter was fixed on the command line"
        )
    base = _search_config(dataset, model, profile, overrides, {})  # fails early on bad options
    resolve_kind(base.logger)
    seed = base.seed if seed is None else seed
    name = study_name or default_study_name(dataset, model, profile)
    url = storage_url(storage, runs_dir, name)
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own one line per trial instead
    try:
        study = open_study(
            name,
            url,
            spec,
            dataset=dataset,
            model=model,
            seed=seed,
            pruner=pruner,
            max_epochs=base.max_epochs,
            heartbeat_s=heartbeat_s,
        )
    except BaseException:
        optuna.logging.set_verbosity(previous)
        raise
    shared = not _is_sqlite(url)
    trial_root = Path(runs_dir) / "search" / name
    abort: list[BaseException] = []

    def objective(trial) -> float:
        from optuna_integration import PyTorchLightningPruningCallback

        from seg_bench.training.trainer import train

        params = suggest(trial, spec)
        run_dir = trial_root / f"trial_{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        try:
            cfg = _search_config(dataset, model, profile, overrides, params)
            if run_dir.exists():  # trial numbers are never reused, so this is a stale directory
                shutil.rmtree(run_dir)
            pruning = PyTorchLightningPruningCallback(trial, monitor=MONITOR)
            with tracked_run(
                cfg,
                run_dir,
                group=name,
                name=f"trial-{trial.number}",
                tags=[model, profile, dataset, "search"],
                extra={
                    "study": name,
                    "trial": trial.number,
                    "params": params,
                    "storage": mask_url(url),
                },
                project=project,
                log_model=log_model,
            ) as run:
                try:
                    result = train(
                        cfg,
                        run_dir,
                        logger=run.logger,
                        callbacks=[pruning, *run.callbacks],
                        progress=progress,
                    )
                except SystemExit as e:  # Lightning turns Ctrl-C inside fit into sys.exit(1)
                    raise KeyboardInterrupt from e
                pruning.check_pruned()  # a pruning decision taken in a DDP worker
                value = _value_of(study, trial, result)
                run.summary({f"best_{MONITOR}": value, "trial": trial.number, "state": "COMPLETE"})
                run.log_checkpoint(
                    result.best_checkpoint,
                    {MONITOR: value, "trial": trial.number, "params": params},
                )
            return value
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", INTERRUPTED)
            raise
        except NonFiniteLossError as e:
            trial.set_user_attr("fail_reason", redact_text(f"non-finite loss: {e}"))
            raise
        except UserError as e:  # a problem every trial would have: stop the search, say it once
            trial.set_user_attr("fail_reason", redact_text(f"{e}"))
            abort.append(e)
            trial.study.stop()
            raise
        except Exception as e:
            trial.set_user_attr("fail_reason", redact_text(f"{type(e).__name__}: {e}")[:2000])
            trial.set_user_attr("fail_traceback", redact_text(traceback.format_exc())[-4000:])
            raise

    def report(study, frozen) -> None:
        state = frozen.state.name
        if state == "COMPLETE":
            echo(
                f"trial {frozen.number}: {MONITOR} {frozen.value:.4f} ({_fmt_params(frozen.params)})"
            )
        elif state == "PRUNED":
            steps = sorted(frozen.intermediate_values)
            at = f" after epoch {steps[-1]}" if steps else ""
            echo(f"trial {frozen.number}: pruned{at} ({_fmt_params(frozen.params)})")
        elif state == "FAIL":
            reason = " ".join(str(frozen.user_attrs.get("fail_reason", "unknown error")).split())
            echo(f"trial {frozen.number}: failed: {reason} ({_fmt_params(frozen.params)})")
            tb = frozen.user_attrs.get("fail_traceback")
            if tb:
                echo(tb.rstrip())

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials: reported by `report`
    start = time.monotonic()
    ran = 0
    try:
        while True:
            if shared:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    optuna.storages.fail_stale_trials(study)
            c = _counts(study)
            done = c["COMPLETE"] + c["PRUNED"] + c["FAIL"]
            busy = c["RUNNING"] if shared else 0
            if done + busy >= trials:
                break
            if timeout is not None and time.monotonic() - start >= timeout:
                echo(f"search: --timeout {timeout:g}s reached after {ran} trial(s)")
                break
            if ran == 0:
                echo(
                    f"search: study '{name}' in {mask_url(url)}: {done} of {trials} trials finished, running {trials - done - busy} more"
                )
            study.optimize(
                objective, n_trials=1, catch=(Exception,), callbacks=[report], gc_after_trial=True
            )
            ran += 1
            if abort:
                raise UserError(str(abort[0]))
    except KeyboardInterrupt:
        with_handler = signal.getsignal(signal.SIGINT)
        if with_handler == signal.SIG_IGN:  # Lightning ignores further Ctrl-C while it shuts down
            signal.signal(signal.SIGINT, signal.default_int_handler)
        raise
    finally:
        optuna.logging.set_verbosity(previous)
    return summarize(study, mask_url(url), ran)


def summarize(study, masked_url: str, ran: int = 0) -> SearchResult:
    c = _counts(study)
    best = _best_trial(study)
    return SearchResult(
        study_name=study.study_name,
        storage=masked_url,
        ran=ran,
        finished=c["COMPLETE"] + c["PRUNED"] + c["FAIL"],
        counts=c,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else None,
        best_number=best.number if best else None,
        study=study,
    )


def _best_trial(study):
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def load(
    dataset: str,
    model: str,
    profile: str | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    runs_dir: Path | str = Path("runs"),
):
    from seg_bench.config import default_profile

    profile = profile or default_profile()
    name = study_name or default_study_name(dataset, model, profile)
    url = storage_url(storage, runs_dir, name)
    if _is_sqlite(url) and not Path(url.split(":///", 1)[1]).exists():
        raise UserError(
            f"no search for {dataset}/{model}/{profile} yet ({mask_url(url)} does not exist); run `seg-bench search --dataset {dataset} --model {model} --profile {profile} --trials N` first"
        )
    import optuna

    storage_obj = open_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage_obj)
    except KeyError:
        raise UserError(
            f"no study '{name}' in {mask_url(url)}; run `seg-bench search --dataset {dataset} --model {model} --profile {profile} --trials N` first"
        ) from None
    return study, url


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
    best = _best_trial(study)
    if best is None:
        raise UserError(
            f"study '{study.study_name}' in {mask_url(url)} has no completed trial yet; run more trials"
        )
    return dict(best.params)


# ---------------------------------------------------------------------------------------------
# Showing


def _duration(t) -> str:
    if t.datetime_start is None or t.datetime_complete is None:
        return "-"
    return f"{(t.datetime_complete - t.datetime_start).total_seconds():.1f}s"


def trials_table(study) -> str:
    rows = [("#", "state", MONITOR, "duration", "params", "note")]
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        value = f"{t.value:.4f}" if t.value is not None and t.state.name == "COMPLETE" else "-"
        note = ""
        if t.state.name == "PRUNED" and t.intermediate_values:
            last = max(t.intermediate_values)
            note = f"pruned after epoch {last} ({MONITOR} {t.intermediate_values[last]:.4f})"
        elif t.state.name == "FAIL":
            note = t.user_attrs.get("fail_reason", "")
        note = " ".join(redact_text(note).split())
        rows.append(
            (str(t.number), t.state.name, value, _duration(t), _fmt_params(t.params), note[:100])
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def importances_text(study) -> str:
    import warnings

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


def show(study, masked_url: str = "") -> str:
    c = _counts(study)
    head = f"study '{study.study_name}'" + (f" in {masked_url}" if masked_url else "")
    head += f": {c['COMPLETE']} complete, {c['PRUNED']} pruned, {c['FAIL']} failed"
    if c[INTERRUPTED]:
        head += f", {c[INTERRUPTED]} interrupted"
    if c["RUNNING"]:
        head += f", {c['RUNNING']} running"
    lines = [head, trials_table(study)]
    best = _best_trial(study)
    if best is not None:
        lines.append(
            f"best: trial {best.number}, {MONITOR} {best.value:.4f} ({_fmt_params(best.params)})"
        )
    lines.append(importances_text(study))
    return "\n".join(lines)


def describe_best(result: SearchResult) -> str:
    if result.best_params is None:
        return f"study '{result.study_name}': no completed trial ({result.counts['PRUNED']} pruned, {result.counts['FAIL']} failed)"
    p = result.best_params
    head = f"best: trial {result.best_number}, {MONITOR} {result.best_value:.4f}"
    if "optimizer" in p:
        head += f", optimizer {p['optimizer']}"
    if "lr" in p:
        head += f", lr {p['lr']:.3g}"
    rest = {k: v for k, v in p.items() if k not in ("optimizer", "lr")}
    return head + (f", {_fmt_params(rest)}" if rest else "")


__all__ = [
    "DEFAULT_SPACE",
    "SPACE",
    "SearchResult",
    "best_params",
    "describe_best",
    "load",
    "mask_url",
    "open_study",
    "parse_space",
    "redact",
    "run_search",
    "show",
]
