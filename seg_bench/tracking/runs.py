"""Experiment tracking: one factory for the Lightning logger of a run, the callbacks that feed
it, and the redaction every logged config goes through.

Kinds (``--logger`` / ``RunConfig.logger``):

``auto``        W&B, online when ``WANDB_API_KEY`` is set (or ``WANDB_MODE=online``), otherwise
                offline into the run directory (``<run_dir>/wandb/offline-run-*``; upload later
                with ``wandb sync <that dir>``). ``WANDB_MODE=disabled`` makes it CSV.
``wandb``       the same, chosen explicitly.
``csv``         ``<run_dir>/logs/csv/metrics.csv`` and ``hparams.yaml``.
``tensorboard`` ``<run_dir>/logs/tensorboard`` (needs the ``tensorboard`` package).
``none``        no logger.

A W&B failure (package missing, no network, bad key) never stops training: it warns once per
process and the run logs to CSV instead.

Naming: project ``seg-bench-<dataset>`` (``--project`` or ``WANDB_PROJECT`` override it), group
per benchmark (``bench-<dataset>-<profile>``) or per Optuna study (the study name), run name
``<model>-seed<k>`` or ``trial-<n>``, tags model, profile and dataset. What is logged: the full
config (redacted, also offline), per-step and per-epoch losses and metrics, the learning rate,
training throughput, validation overlays (prediction and ground truth as W&B masks) every few
epochs, final test metrics in the run summary, and with ``--log-model`` the best checkpoint as
a ``model`` artifact. ``bench`` also logs the leaderboard as a W&B table.

Secrets never reach a log: :func:`redact` masks passwords in URLs (``postgresql://u:***@h``),
``password=...`` style pairs, the W&B API key wherever it appears, and the values of mapping
keys named like ``*key*``, ``*token*``, ``*password*`` or ``*secret*``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor

from seg_bench.errors import UserError

KINDS = ("auto", "wandb", "csv", "tensorboard", "none")
MASK = "***"

# ---------------------------------------------------------------------------------------------
# Redaction

_SECRET_KEY = re.compile(r"(key|token|password|passwd|secret|credential)", re.IGNORECASE)
# scheme://user:password@host  ->  scheme://user:***@host
_URL_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<at>@)"
)
# password=..., api_key: ..., token=...  (libpq DSNs, query strings, log lines)
_PAIR = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|api[_-]?key|token|secret)\s*[=:]\s*)(?P<value>[^\s&;,'\"]+)",
    re.IGNORECASE,
)
_extra_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask this literal (and its URL-decoded form) wherever :func:`redact` meets it."""
    if value and len(value) >= 3:
        _extra_secrets.add(value)
        _extra_secrets.add(unquote(value))


def _secrets() -> list[str]:
    found = set(_extra_secrets)
    key = os.environ.get("WANDB_API_KEY")
    if key and len(key) >= 3:
        found.add(key)
    return sorted(found, key=len, reverse=True)


def redact_text(text: str) -> str:
    def _url(m: re.Match) -> str:
        register_secret(m.group("pw"))
        return f"{m.group('head')}{MASK}{m.group('at')}"

    text = _URL_PASSWORD.sub(_url, text)
    text = _PAIR.sub(lambda m: f"{m.group('head')}{MASK}", text)
    for secret in _secrets():
        text = text.replace(secret, MASK)
    return text


def redact(obj: Any) -> Any:
    """A copy of ``obj`` (dicts, lists, tuples, strings, nested) safe to log anywhere."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and _SECRET_KEY.search(k) and isinstance(v, (str, bytes)) and v:
                out[k] = MASK
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, (list, tuple, set)):
        items = [redact(v) for v in obj]
        return (
            items
            if isinstance(obj, list)
            else type(obj)(items)
            if isinstance(obj, tuple)
            else set(items)
        )
    if isinstance(obj, Path):
        return obj
    return obj


# ---------------------------------------------------------------------------------------------
# Logger factory

_warned: set[str] = set()


def warn_once(topic: str, message: str) -> None:
    if topic in _warned:
        return
    _warned.add(topic)
    print(f"seg-bench: warning: {redact_text(message)}", file=sys.stderr, flush=True)


def resolve_kind(kind: str | None) -> str:
    kind = (kind or "auto").lower()
    if kind not in KINDS:
        raise UserError(f"unknown logger '{kind}'. Known: {', '.join(KINDS)}")
    if kind == "auto":
        return "csv" if os.environ.get("WANDB_MODE", "").lower() == "disabled" else "wandb"
    return kind


def wandb_mode() -> str:
    """'online' when a key is configured (or WANDB_MODE asks for it), else 'offline'."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("online", "run"):
        return "online"
    if mode in ("offline", "dryrun"):
        return "offline"
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def default_project(dataset: str | None) -> str:
    return os.environ.get("WANDB_PROJECT") or f"seg-bench-{dataset or 'runs'}"


def _wandb_logger(run_dir: Path, project, group, name, tags, config, job_type=None):
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    if wandb.run is not None:  # a run left open would swallow this one (WandbLogger reuses it)
        wandb.finish()
    settings = wandb.Settings(
        console="off",  # Lightning's own output stays on the terminal, not in the run
        silent=True,
        save_code=False,
        init_timeout=float(os.environ.get("WANDB_INIT_TIMEOUT", 60)),
    )
    logger = WandbLogger(
        project=project,
        group=group,
        name=name,
        tags=list(tags or ()),
        job_type=job_type,
        save_dir=str(run_dir),
        config=config,
        mode=wandb_mode(),  # not WandbLogger(offline=...), which rewrites os.environ
        settings=settings,
        allow_val_change=True,
    )
    logger._wandb_init.pop("anonymous", None)  # deprecated in W&B; passing None still warns
    with _redacted_argv():
        _ = logger.experiment  # start now, so a failure surfaces here and not in the middle of fit
    return logger


@contextlib.contextmanager
def _redacted_argv() -> Iterator[None]:
    """W&B stores the command line (sys.argv) in each run's metadata, e.g. a --storage URL with
    its password: let it see a redacted copy while the run starts, and only then (Lightning's
    DDP launcher starts the other processes with the real sys.argv)."""
    saved = sys.argv
    sys.argv = [redact_text(a) for a in saved]
    try:
        yield
    finally:
        sys.argv = saved


def build_logger(
    kind: str | None,
    run_dir: Path | str,
    project: str | None = None,
    group: str | None = None,
    name: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    config: dict[str, Any] | None = None,
    job_type: str | None = None,
) -> Any:
    """A Lightning logger for one run, or ``False`` for kind ``none``. W&B problems fall back to
    CSV with one warning per process; the config is redacted before any logger sees it."""
    kind = resolve_kind(kind)
    if kind == "none":
        return False
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    safe = redact(dict(config or {}))
    project = project or default_project(safe.get("dataset"))
    if kind == "wandb":
        try:
            return _wandb_logger(run_dir, project, group, name, tags, safe, job_type)
        except Exception as e:  # noqa: BLE001 - any W&B failure must leave training alone
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            warn_once(
                "wandb",
                f"W&B logging unavailable ({type(e).__name__}: {reason}); logging to CSV under the run directory instead",
            )
            with contextlib.suppress(Exception):
                import wandb

                if wandb.run is not None:
                    wandb.finish(exit_code=1)
            kind = "csv"
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        logger = CSVLogger(save_dir=str(run_dir), name="logs", version="csv")
    else:
        from lightning.pytorch.loggers import TensorBoardLogger

        try:
            logger = TensorBoardLogger(
                save_dir=str(run_dir), name="logs", version="tensorboard", default_hp_metric=False
            )
        except ModuleNotFoundError as e:
            raise UserError(
                "--logger tensorboard needs the tensorboard package: pip install tensorboard"
            ) from e
    logger.log_hyperparams({**safe, "group": group, "name": name, "tags": list(tags or ())})
    return logger


def is_wandb(logger: Any) -> bool:
    return type(logger).__name__ == "WandbLogger"


# ---------------------------------------------------------------------------------------------
# Callbacks


class Throughput(Callback):
    """Training samples per second (all processes), logged once per epoch."""

    def __init__(self) -> None:
        self._start = 0.0
        self._samples = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._samples = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        image = batch.get("image") if isinstance(batch, dict) else None
        self._samples += len(image) if image is not None else 0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self._start
        if seconds > 0 and self._samples:
            rate = self._samples * trainer.world_size / seconds
            pl_module.log(
                "train/samples_per_s", float(rate), on_epoch=True, on_step=False, sync_dist=False
            )


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    x = image.detach().float().cpu()
    x = x.permute(1, 2, 0) if x.shape[0] == 3 else x[0]
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    return (x.numpy() * 255).astype(np.uint8)


def _overlay_rgb(gray: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    rgb = (
        np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
        if gray.ndim == 2
        else gray.astype(np.float32)
    )
    rgb[..., 0] = np.where(pred > 0, 0.5 * rgb[..., 0] + 127, rgb[..., 0])  # prediction: red
    rgb[..., 1] = np.where(truth > 0, 0.5 * rgb[..., 1] + 127, rgb[..., 1])  # truth: green
    return rgb.clip(0, 255).astype(np.uint8)


class ValidationOverlays(Callback):
    """Logs the first validation images with their predicted and true masks: on the first and
    last epoch and every ``every_n_epochs`` in between (W&B masks, or TensorBoard RGB overlays)."""

    def __init__(
        self, every_n_epochs: int = 5, max_images: int = 4, key: str = "val/overlay"
    ) -> None:
        self.every = max(1, int(every_n_epochs))
        self.max_images = max_images
        self.key = key

    def _due(self, trainer) -> bool:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        return epoch == 0 or last or (epoch + 1) % self.every == 0

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if (
            batch_idx != 0
            or dataloader_idx != 0
            or trainer.sanity_checking
            or not trainer.is_global_zero
        ):
            return
        if not self._due(trainer) or not isinstance(batch, dict) or "image" not in batch:
            return
        loggers = [
            lg for lg in trainer.loggers if is_wandb(lg) or type(lg).__name__ == "TensorBoardLogger"
        ]
        if not loggers:
            return
        try:
            self._log(trainer, pl_module, batch, loggers)
        except Exception as e:  # noqa: BLE001 - a picture is never worth a failed run
            warn_once("overlay", f"could not log validation overlays: {type(e).__name__}: {e}")

    @torch.no_grad()
    def _log(self, trainer, pl_module, batch, loggers) -> None:
        from seg_bench.inference.outputs import classes_from_logits
        from seg_bench.inference.sliding_window import predict_logits

        n = min(self.max_images, len(batch["image"]))
        image = batch["image"][:n]
        hp = getattr(pl_module, "hparams", {})
        logits = predict_logits(
            pl_module.model, image, window=hp.get("window"), overlap=hp.get("overlap", 0.25)
        )
        pred = classes_from_logits(logits).cpu().numpy().astype(np.uint8)
        truth = batch["mask"][:n].detach().cpu().numpy()
        truth = (truth[:, 0] if truth.ndim == 4 else truth).astype(np.uint8)
        images = [_to_uint8(x) for x in image]
        num_classes = int(hp.get("num_classes", 2))
        labels = {0: "background"} | (
            {1: "object"} if num_classes == 2 else {i: f"class {i}" for i in range(1, num_classes)}
        )
        ids = batch.get("id")
        captions = [str(i) for i in ids[:n]] if isinstance(ids, (list, tuple)) else None
        for lg in loggers:
            if is_wandb(lg):
                masks = [
                    {
                        "prediction": {"mask_data": p, "class_labels": labels},
                        "ground_truth": {"mask_data": t, "class_labels": labels},
                    }
                    for p, t in zip(pred, truth, strict=True)
                ]
                kwargs = {"caption": captions} if captions else {}
                lg.log_image(
                    key=self.key, images=images, step=trainer.global_step, masks=masks, **kwargs
                )
            else:
                rgb = np.stack(
                    [_overlay_rgb(g, p, t) for g, p, t in zip(images, pred, truth, strict=True)]
                )
                lg.experiment.add_images(self.key, rgb, trainer.global_step, dataformats="NHWC")


def tracking_callbacks(logger: Any, overlay_every: int = 5) -> list[Callback]:
    """Learning rate, throughput and overlays; nothing when there is no logger."""
    if not logger:
        return []
    return [
        LearningRateMonitor(logging_interval="epoch"),
        Throughput(),
        ValidationOverlays(overlay_every),
    ]


# ---------------------------------------------------------------------------------------------
# One tracked run


@dataclass
class TrackedRun:
    logger: Any
    callbacks: list[Callback] = field(default_factory=list)
    log_model: bool = False
    owned: bool = True
    finished: bool = False

    @property
    def kind(self) -> str:
        if not self.logger:
            return "none"
        return {"WandbLogger": "wandb", "CSVLogger": "csv", "TensorBoardLogger": "tensorboard"}.get(
            type(self.logger).__name__, type(self.logger).__name__
        )

    def summary(self, metrics: dict[str, Any]) -> None:
        """Final numbers: the W&B run summary, or one last row for CSV/TensorBoard."""
        if not self.logger or not metrics:
            return
        metrics = redact(dict(metrics))
        try:
            if is_wandb(self.logger):
                self.logger.experiment.summary.update(metrics)
            else:
                numeric = {
                    k: float(v)
                    for k, v in metrics.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                }
                if numeric:
                    self.logger.log_metrics(numeric)
                    self.logger.save()
        except Exception as e:  # noqa: BLE001
            warn_once("summary", f"could not write the run summary: {type(e).__name__}: {e}")

    def log_checkpoint(
        self, path: Path | str | None, metadata: dict[str, Any] | None = None
    ) -> None:
        """With --log-model: the best checkpoint as a W&B ``model`` artifact (aliases best, latest)."""
        if not (self.log_model and path and Path(path).exists() and is_wandb(self.logger)):
            return
        try:
            import wandb

            run = self.logger.experiment
            artifact = wandb.Artifact(
                name=f"model-{run.id}", type="model", metadata=redact(dict(metadata or {}))
            )
            artifact.add_file(str(path), name="best.ckpt")
            run.log_artifact(artifact, aliases=["best", "latest"])
        except Exception as e:  # noqa: BLE001
            warn_once("artifact", f"could not log the checkpoint artifact: {type(e).__name__}: {e}")

    def finish(self, exit_code: int = 0) -> None:
        if self.finished or not self.owned or not self.logger:
            self.finished = True
            return
        self.finished = True
        try:
            if is_wandb(self.logger):
                exp = self.logger._experiment
                if exp is not None:
                    exp.finish(exit_code=exit_code)
            else:
                self.logger.save()
        except Exception as e:  # noqa: BLE001
            warn_once("finish", f"could not close the {self.kind} run: {type(e).__name__}: {e}")


def run_config(cfg: Any, **extra: Any) -> dict[str, Any]:
    values = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    return redact({**values, **extra})


@contextlib.contextmanager
def tracked_run(
    cfg: Any,
    run_dir: Path | str,
    *,
    group: str | None,
    name: str | None,
    tags: list[str] | tuple[str, ...] = (),
    extra: dict[str, Any] | None = None,
    kind: str | None = None,
    project: str | None = None,
    log_model: bool = False,
    logger: Any = None,
) -> Iterator[TrackedRun]:
    """Build the logger and callbacks for ``cfg`` (``kind`` defaults to ``cfg.logger``), and
    close the run when the block ends: exit code 0 on success or an Optuna prune, 1 otherwise.
    Pass ``logger`` to use one you own instead (it is not closed here)."""
    if logger is None:
        logger = build_logger(
            kind or getattr(cfg, "logger", "auto"),
            run_dir,
            project=project,
            group=group,
            name=name,
            tags=[t for t in (*tags,) if t],
            config=run_config(cfg, **(extra or {})),
        )
        owned = True
    else:
        owned = False
    every = max(
        1, min(5, math.ceil((getattr(cfg, "max_epochs", 20) or 20) / 4))
    )  # >= 4 overlays a run
    run = TrackedRun(logger, tracking_callbacks(logger, every), log_model, owned)
    try:
        yield run
    except BaseException as e:
        run.finish(exit_code=0 if type(e).__name__ == "TrialPruned" else 1)
        raise
    run.finish(0)


def log_leaderboard(
    dataset: str,
    csv_path: Path | str,
    kind: str | None,
    group: str,
    project: str | None = None,
    run_dir: Path | str = "runs",
) -> None:
    """The leaderboard CSV as a W&B table, in a short run of its own (W&B kinds only)."""
    if resolve_kind(kind) != "wandb" or not Path(csv_path).exists():
        return
    try:
        import pandas as pd
        import wandb

        table = wandb.Table(dataframe=pd.read_csv(csv_path))
        logger = build_logger(
            "wandb",
            Path(run_dir),
            project or default_project(dataset),
            group,
            f"leaderboard-{dataset}",
            ["leaderboard"],
            {"dataset": dataset},
            job_type="leaderboard",
        )
        if not is_wandb(logger):
            return
        logger.experiment.log({"leaderboard": table})
        logger.experiment.finish()
    except Exception as e:  # noqa: BLE001
        warn_once("leaderboard", f"could not log the leaderboard table: {type(e).__name__}: {e}")


# ---------------------------------------------------------------------------------------------
# Reading an offline W&B run back (tests, and a look at a run before `wandb sync`)

_BLOCK = 32768
_HEADER = 7


def _records(path: Path) -> Iterator[bytes]:
    """The records of a ``.wandb`` transaction log: a 7-byte ':W&B' header, then LevelDB-log
    style chunks (4-byte CRC, 2-byte length, 1-byte type) in 32 KiB blocks."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        chunk = data[pos : pos + length]
        pos += length
        if kind == 0 and length == 0:
            pos += _BLOCK - pos % _BLOCK if pos % _BLOCK else 0
            continue
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""


def _item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _history_value(item, parse) -> Any:
    which = item.WhichOneof("value")  # newer W&B writes typed values, older ones JSON text
    if which is None or which == "json":
        return parse(item.json if which == "json" else item.value_json)
    return None if which == "none" else getattr(item, which)


def read_offline_run(path: Path | str, wait_s: float = 15.0) -> dict[str, Any]:
    """Config, metric history, summary and media of an offline W&B run. ``path`` is the
    ``offline-run-*`` directory, its ``.wandb`` file, or a run directory holding ``wandb/``.

    W&B's service writes the log a moment after ``finish()`` returns, so this waits up to
    ``wait_s`` seconds for the run's exit record (a crashed run has none: its partial log is
    returned after the wait)."""
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    if path.is_dir() and not path.name.startswith(("offline-run-", "run-")):
        runs = sorted((path / "wandb").glob("*run-*"))
        if not runs:
            raise FileNotFoundError(f"no W&B runs under {path / 'wandb'}")
        path = runs[-1]
    files = sorted(path.glob("*.wandb")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no .wandb file in {path}")
    out: dict[str, Any] = {
        "config": {},
        "history": [],
        "summary": {},
        "run": {},
        "files": [],
        "artifacts": [],
    }

    def _value(s: str) -> Any:
        try:
            return json.loads(s)
        except ValueError:
            return s

    deadline = time.monotonic() + wait_s
    while True:
        records = []
        for raw in _records(files[0]):
            rec = pb.Record()
            rec.ParseFromString(raw)
            records.append(rec)
        if (
            any(r.WhichOneof("record_type") == "exit" for r in records)
            or time.monotonic() > deadline
        ):
            break
        time.sleep(0.2)
    out["exited"] = any(r.WhichOneof("record_type") == "exit" for r in records)
    for rec in records:
        what = rec.WhichOneof("record_type")
        if what == "run":
            r = rec.run
            out["run"] = {
                "id": r.run_id,
                "project": r.project,
                "group": r.run_group,
                "name": r.display_name,
                "tags": list(r.tags),
                "job_type": r.job_type,
            }
            for item in r.config.update:
                out["config"][_item_key(item)] = _value(item.value_json)
        elif what == "config":
            for item in rec.config.update:
                out["config"][_item_key(item)] = _value(item.value_json)
        elif what == "history":
            out["history"].append(
                {_item_key(i): _history_value(i, _value) for i in rec.history.item}
            )
        elif what == "summary":
            for item in rec.summary.update:
                out["summary"][_item_key(item)] = _value(item.value_json)
        elif what == "files":
            out["files"].extend(f.path for f in rec.files.files)
        elif what == "artifact":
            out["artifacts"].append({"name": rec.artifact.name, "type": rec.artifact.type})
    # W&B stores config values as {"value": v}
    out["config"] = {
        k: (v["value"] if isinstance(v, dict) and set(v) == {"value"} else v)
        for k, v in out["config"].items()
    }
    run_root = files[0].parent
    out["media"] = (
        sorted(
            str(p.relative_to(run_root))
            for p in (run_root / "files" / "media").rglob("*")
            if p.is_file()
        )
        if (run_root / "files" / "media").exists()
        else []
    )
    return out
