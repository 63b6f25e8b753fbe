"""Where studies live: storage URLs (masked whenever shown), opening an Optuna RDB storage with
one-line errors, opening a study tied to its space, dataset and model, the heartbeat that fails
a killed worker's trials, and the list of studies a storage holds.

The default storage is one SQLite file per study, ``<runs>/search/<study>.db``; ``--storage``
names another (``postgresql://user:pass@host/db`` needs ``pip install seg-bench[postgres]``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

from seg_bench.config import TEST_ONLY
from seg_bench.errors import UserError
from seg_bench.paths import study_storage_url
from seg_bench.search.space import MONITOR, same_space
from seg_bench.tracking.redaction import redact_text, register_secret

EXAMPLE_URLS = "postgresql://USER:PASSWORD@HOST:5432/DB or sqlite:///file.db"
DEFAULT_HEARTBEAT_S = 60


def default_study_name(dataset: str, model: str, profile: str) -> str:
    return f"{dataset}-{model}-{profile}"


def mask_url(url: str) -> str:
    """``url`` with its password shown as ``***``."""
    return redact_text(str(url))


def default_storage_dir(runs_dir: Path | str) -> Path:
    """The folder of the per-study SQLite files used when ``--storage`` is not given."""
    return Path(runs_dir) / "search"


def storage_url(storage: str | None, runs_dir: Path | str, study: str) -> str:
    """The database URL of ``--storage`` (a URL or a bare ``.db`` path), or of the study's own
    SQLite file under ``runs_dir`` when it is not given; a SQLite file's folder is made."""
    url = study_storage_url(storage, runs_dir, study)
    if (path := sqlite_path(url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, else None."""
    return Path(url.split(":///", 1)[1]) if is_sqlite(url) and ":///" in url else None


def first_line(error: BaseException) -> str:
    """The first line of a (SQLAlchemy) error, redacted: what a one-line UserError quotes."""
    text = str(getattr(error, "orig", None) or error).strip()
    return redact_text(text.splitlines()[0] if text else type(error).__name__)


def open_storage(url: str, heartbeat_s: int | None = None) -> Any:
    """An Optuna RDBStorage, or a one-line UserError saying what to do. Non-SQLite storages get
    a heartbeat (``heartbeat_s``, default 60 s), so a killed worker's trials fail later."""
    import optuna

    parsed = _parse_url(url)
    sqlite = parsed.drivername.startswith("sqlite")
    kwargs: dict[str, Any] = {"engine_kwargs": _engine_kwargs(parsed.drivername)}
    if not sqlite:
        kwargs |= heartbeat_kwargs(heartbeat_s)
    try:
        return _create_storage(optuna.storages.RDBStorage, _driver_url(parsed, url), kwargs)
    except ImportError as e:  # optuna turns the driver's ModuleNotFoundError into an ImportError
        raise _missing_driver(e, parsed.drivername, mask_url(url)) from None
    except Exception as e:  # noqa: BLE001 - sqlalchemy raises many kinds; all mean "cannot open"
        raise _cannot_open(e, mask_url(url)) from None


def _parse_url(url: str) -> Any:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as e:  # noqa: BLE001
        raise UserError(
            f"malformed --storage URL '{mask_url(url)}' ({first_line(e)}); "
            f"expected e.g. {EXAMPLE_URLS}"
        ) from None
    if parsed.password:
        register_secret(str(parsed.password))  # masked from here on, in errors and logs
    return parsed


def _driver_url(parsed: Any, url: str) -> str:
    """SQLAlchemy 2.1 reads plain ``postgresql://`` as psycopg 3; we ship psycopg2."""
    has = importlib.util.find_spec
    if parsed.drivername == "postgresql" and has("psycopg") is None and has("psycopg2"):
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


def _engine_kwargs(drivername: str) -> dict[str, Any]:
    if drivername.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}  # workers on one file wait for its lock
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if drivername.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 10}
    return kwargs


def heartbeat_kwargs(heartbeat_s: int | None) -> dict[str, int]:
    """RDBStorage options: a trial whose worker stops beating for 3 intervals is stale."""
    beat = DEFAULT_HEARTBEAT_S if heartbeat_s is None else int(heartbeat_s)
    return {"heartbeat_interval": beat, "grace_period": beat * 3} if beat else {}


def fail_stale_trials(study: Any) -> None:
    """Mark FAIL the running trials of workers whose heartbeat stopped (killed machines)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeat is an "experimental" Optuna feature
        optuna.storages.fail_stale_trials(study)


def _create_storage(factory: Any, url: str, kwargs: dict[str, Any]) -> Any:
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeat is an "experimental" Optuna feature
                return factory(url, **kwargs)
        except Exception as e:  # noqa: BLE001
            # Workers started together on an empty database race to create Optuna's tables;
            # the loser sees 'already exists' / 'duplicate key' and finds them on a retry.
            text = str(e).lower()
            if attempt == 5 or not ("already exists" in text or "duplicate key" in text):
                raise
            time.sleep(0.3 + 0.4 * attempt)
    raise AssertionError("unreachable")


def _missing_driver(error: ImportError, drivername: str, shown: str) -> UserError:
    cause = error if isinstance(error, ModuleNotFoundError) else (error.__cause__ or error)
    missing = getattr(cause, "name", None) or "the driver"
    hint = (
        "pip install 'seg-bench[postgres]' (psycopg2-binary)"
        if drivername.startswith("postgresql")
        else f"install {missing}"
    )
    return UserError(
        f"--storage {shown} needs a database driver ({missing} is not installed): {hint}"
    )


def _cannot_open(error: Exception, shown: str) -> UserError:
    if type(error).__name__ in ("ArgumentError", "NoSuchModuleError", "ValueError"):
        return UserError(
            f"malformed --storage URL '{shown}' ({first_line(error)}); expected e.g. {EXAMPLE_URLS}"
        )
    return UserError(
        f"cannot open the study storage {shown}: {first_line(error)}; check that the database "
        "server is running and reachable and the user, password and database exist, or leave "
        "--storage out to use a local SQLite file"
    )


def sampler_for(url: str, seed: int, trials_so_far: int = 0) -> Any:
    """A seeded TPE sampler. Workers sharing a server study each get their own seed and the
    constant liar, so they do not draw the same parameters. A SQLite study resumed with
    ``trials_so_far`` trials draws from a seed mixed with that count: the run's own seed again
    would repeat the first trials' random start (a fresh study stays reproducible)."""
    import optuna

    if is_sqlite(url):
        if trials_so_far:
            token = f"{seed}:{trials_so_far}".encode()
            seed = int(hashlib.sha256(token).hexdigest()[:8], 16)
        return optuna.samplers.TPESampler(seed=seed)
    token = f"{seed}:{socket.gethostname()}:{os.getpid()}".encode()
    worker_seed = int(hashlib.sha256(token).hexdigest()[:8], 16)
    return optuna.samplers.TPESampler(seed=worker_seed, constant_liar=True)


def open_study(
    name: str,
    url: str,
    spec: dict[str, dict[str, Any]],
    *,
    dataset: str,
    model: str,
    seed: int = 0,
    pruner: Any = None,
    heartbeat_s: int | None = None,
    fixed: dict[str, Any] | None = None,
) -> Any:
    """The study ``name`` in ``url``, created (maximising :data:`MONITOR`) if missing. A study
    is tied to its space, dataset, model and ``fixed`` (the configuration fields no trial
    varies): another one under its name is a UserError, since its trials could not be compared.
    ``pruner`` is an Optuna pruner (None: Optuna's default)."""
    import optuna

    storage = open_storage(url, heartbeat_s)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler_for(url, seed),
            pruner=pruner,
            direction="maximize",
            load_if_exists=True,
        )
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot open study '{name}' in {mask_url(url)}: {first_line(e)}") from None
    where = f"study '{name}' in {mask_url(url)}"
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise UserError(
            f"{where} minimises its objective; seg-bench studies maximise {MONITOR}. "
            "Use another --study name"
        )
    _tie_to(study, spec, {"dataset": dataset, "model": model})
    _tie_fixed(study, fixed)
    if is_sqlite(url) and (so_far := len(study.get_trials(deepcopy=False))):
        study.sampler = sampler_for(url, seed, so_far)
    return study


def _tie_fixed(study: Any, fixed: dict[str, Any] | None) -> None:
    """Store the fixed configuration with a study (studies from before this have none, and
    take it from their next run); refuse another, naming the fields that differ."""
    if fixed is None:
        return
    if study.user_attrs.get("fixed_config") is None:
        study.set_user_attr("fixed_config", json.dumps(fixed, sort_keys=True))
        return
    check_fixed(study, fixed, "give the same options to continue it, or --study NEW_NAME")


def check_fixed(study: Any, fixed: dict[str, Any], what_to_do: str) -> None:
    """Refuse ``fixed`` options that differ from those the study's trials ran with (a study from
    before they were stored passes)."""
    have = study.user_attrs.get("fixed_config")
    if have is None:
        return
    have = json.loads(have)  # studies from before TEST_ONLY was left out still hold it
    keys = (have.keys() | fixed.keys()) - TEST_ONLY.keys()
    differ = sorted(k for k in keys if have.get(k) != fixed.get(k))
    if differ:
        shown = "; ".join(f"{k} {have.get(k)!r} there, {fixed.get(k)!r} now" for k in differ[:3])
        raise UserError(
            f"study '{study.study_name}' ran its trials with other fixed options ({shown}); "
            + what_to_do
        )


def _tie_to(study: Any, spec: dict[str, dict[str, Any]], owner: dict[str, str]) -> None:
    """Store the space and owner with a new study; check them against an existing one."""
    attrs = study.user_attrs
    if "search_space" not in attrs:
        want = {"search_space": json.dumps(spec), **owner, "objective": f"max {MONITOR}"}
        for key, value in want.items():
            study.set_user_attr(key, value)
        return
    if not same_space(study_space(study), spec):
        have = ",".join(study_space(study))
        raise UserError(
            f"study '{study.study_name}' was created with search space [{have}], not "
            f"[{','.join(spec)}] (or other ranges); use --space {have} to continue it, "
            "or --study NEW_NAME for a new study"
        )
    for key, value in owner.items():
        if attrs.get(key) not in (None, value):
            raise UserError(
                f"study '{study.study_name}' belongs to {key} '{attrs[key]}', not '{value}'; "
                "use --study NEW_NAME"
            )


def study_space(study: Any) -> dict[str, dict[str, Any]]:
    """The spec a study was created with: its trials keep drawing from exactly this space."""
    return json.loads(study.user_attrs["search_space"])


def load_study(name: str, url: str) -> Any:
    """The existing study ``name`` in ``url``; KeyError when the storage has no such study."""
    import optuna

    return optuna.load_study(study_name=name, storage=open_storage(url))


def study_summaries(urls: list[str]) -> list[tuple[str, Any]]:
    """(masked url, Optuna StudySummary) of every study in these storages; one that cannot
    be opened is skipped."""
    import optuna

    found = []
    for url in urls:
        try:
            summaries = optuna.get_all_study_summaries(open_storage(url), include_best_trial=True)
        except UserError:  # not a study database: nothing to list from it
            continue
        found += [(mask_url(url), summary) for summary in summaries]
    return found


__all__ = [
    "default_storage_dir",
    "check_fixed",
    "default_study_name",
    "fail_stale_trials",
    "heartbeat_kwargs",
    "is_sqlite",
    "load_study",
    "mask_url",
    "open_storage",
    "open_study",
    "sqlite_path",
    "storage_url",
    "study_space",
    "study_summaries",
]
