"""Tracking: logger factory, redaction, W&B offline runs read back from disk, CSV fallback."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from wandb_offline import read_offline_run

from seg_bench import tracking
from seg_bench.errors import UserError
from seg_bench.tracking import redaction

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"
DB_PASSWORD = "s3cr3t-Pa55"


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """W&B offline, with a (fake) API key in the environment that must never be written."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_X_DISABLE_STATS", "true")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    yield
    import wandb

    if wandb.run is not None:
        wandb.finish()


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink())


# --- redaction ---------------------------------------------------------------------------------
def test_redact_masks_urls_pairs_and_secret_keys(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    cfg = {
        "storage": f"postgresql://bench:{DB_PASSWORD}@db.example:5432/optuna",
        "nested": {
            "api_key": "k-123",
            "auth_token": "t-456",
            "db_password": "p-789",
            "keys_seen": 3,
        },
        "dsn": f"host=db user=bench password={DB_PASSWORD} dbname=x",
        "note": f"key is {FAKE_KEY}",
        "lr": 1e-3,
        "tags": ["unet", "sqlite:///x.db", ("postgresql://u:pw2@h/db",)],
        "empty_token": "",
    }
    out = tracking.redact(cfg)
    text = repr(out)
    for secret in (DB_PASSWORD, "k-123", "t-456", "p-789", FAKE_KEY, "pw2"):
        assert secret not in text
    assert out["storage"] == "postgresql://bench:***@db.example:5432/optuna"
    assert out["nested"]["keys_seen"] == 3 and out["lr"] == 1e-3  # non-strings stay
    assert out["tags"][1] == "sqlite:///x.db" and out["empty_token"] == ""
    assert cfg["nested"]["api_key"] == "k-123"  # the input is not modified
    # once seen in a URL, the password is masked on its own too (e.g. inside a driver error)
    assert DB_PASSWORD not in tracking.redact_text(f'FATAL: password "{DB_PASSWORD}" rejected')


def test_resolve_kind(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert tracking.resolve_kind("auto") == "wandb"
    assert tracking.resolve_kind(None) == "wandb"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.resolve_kind("auto") == "csv"
    assert tracking.resolve_kind("none") == "none"
    with pytest.raises(UserError, match="unknown logger 'mlflow'"):
        tracking.resolve_kind("mlflow")
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert tracking.wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    assert tracking.wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert tracking.wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")  # was offline, or online with a key
    assert tracking.wandb_mode() == "disabled"


def test_a_password_after_a_user_holding_an_at_sign_is_masked():
    # Azure's user@server form: SQLAlchemy splits at the last '@'; the password was shown.
    url = f"postgresql://bob@myserver:{DB_PASSWORD}@127.0.0.1:1/optuna"
    assert tracking.redact_text(url) == "postgresql://bob@myserver:***@127.0.0.1:1/optuna"
    assert tracking.redact_text("postgresql://bob@host:5432/db") == "postgresql://bob@host:5432/db"


def test_throughput_leaves_out_the_validation_run_inside_the_epoch(monkeypatch):
    from seg_bench.tracking.callbacks import Throughput

    clock = iter([0.0, 1.0, 9.0, 10.0])  # epoch start, val start, val end, epoch end
    monkeypatch.setattr(tracking.callbacks.time, "perf_counter", lambda: next(clock))
    logged = {}

    class Module:
        def log(self, name, value, **kw):
            logged[name] = value

    class Trainer:
        world_size = 1

    t = Throughput()
    t.on_train_epoch_start(Trainer(), Module())
    t.on_train_batch_end(Trainer(), Module(), None, {"image": [0] * 8}, 0)
    t.on_validation_start(Trainer(), Module())
    t.on_validation_end(Trainer(), Module())
    t.on_train_epoch_end(Trainer(), Module())
    assert logged["train/samples_per_s"] == 4.0  # 8 samples in 2 s of training, not 10 s


def test_a_resumed_run_keeps_its_csv_metrics_and_its_wandb_run(tmp_path, offline_wandb):
    # Lightning's CSV writer deleted the metrics.csv it found; W&B started a second run of the
    # same name, which the dashboard then pooled as another seed.
    for step in (10, 20):
        csv_logger = tracking.build_logger("csv", tmp_path / "run")
        csv_logger.log_metrics({"train/loss": step / 100}, step=step)
        csv_logger.save()
    parts = sorted((tmp_path / "run" / "logs").glob("csv*/metrics.csv"))
    assert [p.parent.name for p in parts] == ["csv", "csv-part2"]
    assert ["10", "20"] == [next(csv.DictReader(p.open()))["step"] for p in parts]
    ids = []
    for _ in range(2):
        logger = tracking.build_logger("wandb", tmp_path / "run", config={"dataset": "synthetic"})
        ids.append(logger.experiment.id)
        logger.experiment.finish()
    assert ids[0] == ids[1]


def test_csv_logger_config_is_redacted(tmp_path):
    logger = tracking.build_logger(
        "csv",
        tmp_path / "run",
        group="g",
        name="n",
        tags=["unet"],
        config={
            "dataset": "synthetic",
            "storage": f"postgresql://u:{DB_PASSWORD}@h/db",
            "api_key": "abc123",
        },
    )
    logger.save()
    hparams = (tmp_path / "run" / "logs" / "csv" / "hparams.yaml").read_text()
    assert "synthetic" in hparams and "postgresql://u:***@h/db" in hparams
    assert DB_PASSWORD not in hparams and "abc123" not in hparams
    assert tracking.build_logger("none", tmp_path / "run2") is False


def test_wandb_failure_falls_back_to_csv_and_warns_once(
    tmp_path, offline_wandb, monkeypatch, capsys
):
    import wandb

    def broken_init(*args, **kwargs):
        raise RuntimeError(f"network unreachable (key {FAKE_KEY})")

    monkeypatch.setattr(wandb, "init", broken_init)
    monkeypatch.setattr(redaction, "_warned", set())
    first = tracking.build_logger("wandb", tmp_path / "a", config={"dataset": "synthetic"})
    second = tracking.build_logger("auto", tmp_path / "b", config={"dataset": "synthetic"})
    assert type(first).__name__ == type(second).__name__ == "CSVLogger"
    err = capsys.readouterr().err
    assert err.count("W&B logging unavailable") == 1 and "CSV" in err
    assert FAKE_KEY not in err


# --- W&B offline, read back --------------------------------------------------------------------
def test_offline_wandb_run_has_config_history_summary_and_overlays(tmp_path, offline_wandb):
    from seg_bench.config import resolve_config
    from seg_bench.training.trainer import train

    cfg = resolve_config("synthetic", "unet", "smoke", logger="auto", max_epochs=2)
    run_dir = tmp_path / "run"
    with tracking.tracked_run(
        cfg,
        run_dir,
        group="bench-synthetic-smoke",
        name="unet-seed0",
        tags=["unet", "smoke"],
        extra={"storage": f"postgresql://u:{DB_PASSWORD}@h/db"},
        log_model=True,
    ) as tracked:
        result = train(
            cfg, run_dir, logger=tracked.logger, callbacks=tracked.callbacks, progress=False
        )
        tracked.summary({"test/iou": 0.625})
        tracked.log_checkpoint(result.best_checkpoint, {"val/iou": result.best_val["val/iou"]})
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, "one offline run, in the run directory (so `wandb sync` finds it)"

    run = read_offline_run(run_dir)
    assert run["exited"]
    assert run["run"]["project"] == "seg-bench-synthetic"
    assert run["run"]["group"] == "bench-synthetic-smoke" and run["run"]["name"] == "unet-seed0"
    assert {"unet", "smoke"} <= set(run["run"]["tags"])
    # the full run config, also offline, redacted
    assert run["config"]["model"] == "unet" and run["config"]["lr"] == cfg.lr
    assert run["config"]["dataset_options"]["n_train"] == cfg.dataset_options["n_train"]
    assert run["config"]["storage"] == "postgresql://u:***@h/db"
    # metric history: per-step loss, per-epoch validation, learning rate, throughput
    keys = set().union(*run["history"])
    assert {
        "train/loss_step",
        "train/loss_epoch",
        "val/iou",
        "val/dice",
        "train/samples_per_s",
    } <= keys
    assert any(k.startswith("lr-") for k in keys)
    ious = [row["val/iou"] for row in run["history"] if "val/iou" in row]
    assert len(ious) == 2 and all(0.0 <= v <= 1.0 for v in ious)
    # overlays: image plus prediction and ground-truth masks (keys are flattened)
    assert any(m.endswith(".png") and "/mask/" not in m and "overlay" in m for m in run["media"])
    assert sum(m.endswith(".mask.png") for m in run["media"]) >= 2
    overlay_rows = [row for row in run["history"] if "val/overlay/all_masks" in row]
    assert len(overlay_rows) == 2  # every epoch of this 2-epoch run
    assert set(overlay_rows[-1]["val/overlay/all_masks"][0]) == {"prediction", "ground_truth"}
    # final metrics in the summary, and the best checkpoint as an artifact
    assert run["summary"]["test/iou"] == 0.625
    assert any(a["type"] == "model" for a in run["artifacts"])
    # neither the API key nor the database password reaches the run's files
    everything = _all_bytes(run_dir)
    assert FAKE_KEY.encode() not in everything and DB_PASSWORD.encode() not in everything


def test_offline_wandb_config_redacted_and_leaderboard_table(tmp_path, offline_wandb):
    logger = tracking.build_logger(
        "wandb",
        tmp_path / "r",
        project="p",
        group="g",
        name="n",
        config={
            "storage": f"postgresql://u:{DB_PASSWORD}@h/db",
            "wandb_api_key": FAKE_KEY,
            "lr": 0.1,
        },
    )
    assert tracking.is_wandb(logger)
    tracking.TrackedRun(logger).finish()
    run = read_offline_run(tmp_path / "r")
    assert run["config"]["storage"] == "postgresql://u:***@h/db"
    assert run["config"]["wandb_api_key"] == "***" and run["config"]["lr"] == 0.1
    assert DB_PASSWORD.encode() not in _all_bytes(tmp_path / "r")
    assert FAKE_KEY.encode() not in _all_bytes(tmp_path / "r")

    board = tmp_path / "synthetic.csv"
    with open(board, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "iou"])
        w.writerows([["unet", 0.8], ["segnet", 0.7]])
    tracking.log_leaderboard(
        "synthetic", board, "wandb", "bench-synthetic-smoke", run_dir=tmp_path / "lb"
    )
    table_run = read_offline_run(tmp_path / "lb")
    assert table_run["run"]["job_type"] == "leaderboard"
    rows = [row for row in table_run["history"] if "leaderboard/_type" in row]
    assert (
        rows and rows[0]["leaderboard/_type"] == "table-file" and rows[0]["leaderboard/nrows"] == 2
    )


def test_logger_kind_goes_by_class_not_by_class_name(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    class WandbLogger(CSVLogger):  # a CSV logger that merely shares W&B's class name
        pass

    impostor = WandbLogger(save_dir=str(tmp_path), name="logs", version="csv")
    assert not tracking.is_wandb(impostor)
    assert tracking.logger_kind(impostor) == "csv"
    assert tracking.TrackedRun(impostor).kind == "csv"
    assert tracking.TrackedRun(False).kind == "none"


def test_runs_of_a_label_or_target_study_get_names_of_their_own():
    from seg_bench.config import resolve_config
    from seg_bench.protocol.bench import run_name

    def name(**options):
        return run_name(resolve_config("synthetic", "unet", "smoke", seed=2, **options))

    assert name() == "unet-seed2"  # the manual-label binary run keeps its name
    assert name(labels="floodfill") == "unet-seed2-floodfill"
    assert name(target="boundary3") == "unet-seed2-boundary3"
    assert name(labels="region", target="distance") == "unet-seed2-region-distance"
