"""Profile files: a key given twice is refused, not silently dropped as PyYAML would."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import yaml

from seg_bench.commands import parse_set
from seg_bench.config import resolve_config
from seg_bench.config_files import load_yaml
from seg_bench.errors import UserError
from seg_bench.protocol.records import record_key
from seg_bench.training.run_dir import config_key

SHIPPED = sorted(p.name for p in (resources.files("seg_bench") / "profiles").iterdir())


def test_a_key_given_twice_names_the_file_the_key_and_both_lines(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "profiles:\n"
        "  cpu:\n"
        "    models: {segnet: {lr: 0.004}}\n"
        "    width: 0.25\n"
        "    models: {tiramisu56: {model_options: {dropout: 0.0}}}\n"
    )
    with pytest.raises(UserError) as err:
        resolve_config("synthetic", "segnet", "cpu", config_file=str(path))
    message = str(err.value)
    assert str(path) in message and "key 'models' given twice, lines 3 and 5" in message
    assert "\n" not in message


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_gives_each_key_once_and_reads_as_plain_yaml(name):
    text = (resources.files("seg_bench") / "profiles" / name).read_text()
    assert load_yaml(text) == yaml.safe_load(text)


def test_a_merged_mapping_may_still_be_overridden_key_by_key():
    spec = load_yaml("base: &b {lr: 0.1, width: 1}\nmine: {<<: *b, lr: 0.2}\n")
    assert spec["mine"] == {"lr": 0.2, "width": 1}


def test_the_synthetic_quick_profile_keeps_segnets_rate_beside_tiramisus_dropout():
    # Both once sat under two models: keys, and YAML kept only the second.
    assert resolve_config("synthetic", "segnet", "quick").lr == 0.004
    tiramisu = resolve_config("synthetic", "tiramisu56", "quick")
    assert (tiramisu.lr, tiramisu.model_options) == (0.002, {"dropout": 0.0})


def test_a_set_value_that_is_not_yaml_is_one_line_naming_the_item():
    assert parse_set(["lr=0.001", "models={a: 1}"]) == {"lr": 0.001, "models": {"a": 1}}
    with pytest.raises(UserError, match=r"^--set width=\[0.5: the value is not valid YAML"):
        parse_set(["width=[0.5"])
    with pytest.raises(UserError, match="key 'a' given twice"):
        parse_set(["models={a: 1, a: 2}"])


def test_a_rate_in_exponent_notation_is_a_number_as_in_yaml_1_2(tmp_path):
    assert parse_set(["lr=1e-3", "x=-2E+2", "name=v1e3"]) == {
        "lr": 0.001,
        "x": -200.0,
        "name": "v1e3",
    }
    path = tmp_path / "mine.yaml"
    path.write_text("common: {lr: 5e-4}\n")
    assert resolve_config("synthetic", "unet", "smoke", config_file=str(path)).lr == 0.0005


@pytest.mark.parametrize(
    "override, message",
    [
        ({"lr": "fast"}, "lr 'fast': not a number"),
        ({"patch_size": 96.5}, "patch_size 96.5: not a whole number"),
        ({"batch_size": True}, "batch_size True: not a whole number"),
    ],
)
def test_a_number_option_given_as_text_is_one_line_naming_it(override, message):
    with pytest.raises(UserError, match=message):
        resolve_config("synthetic", "unet", "smoke", **override)
    assert resolve_config("synthetic", "unet", "smoke", max_steps=None, width=1).width == 1


def test_a_users_file_may_extend_a_shipped_dataset_and_change_one_thing(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: epfl\ncommon: {lr: 0.0005}\n")
    mine = resolve_config("folder", "tiramisu56", "cpu", config_file=str(path))
    epfl = resolve_config("epfl", "tiramisu56", "cpu")
    assert mine.lr == 0.0005 and epfl.lr == 0.001
    same = {"lr": 0.001, "dataset": "epfl", "config_file": None}
    assert {**mine.to_dict(), **same} == epfl.to_dict()
    assert (mine.foreground_bias, mine.model_options, mine.max_steps) == (
        0.5,
        {"dropout": 0.0},
        1024,
    )


def test_a_models_entry_applies_by_full_name_or_by_the_smp_family(tmp_path):
    # ISBI 2012's smp-unet-resnet18: {lr: 0.003} was once looked up as "smp" and never applied.
    assert resolve_config("isbi2012", "smp-unet-resnet18", "cpu").lr == 0.003
    assert resolve_config("epfl", "smp-unet-resnet18", "cpu").lr == 0.001
    path = tmp_path / "mine.yaml"
    path.write_text("extends: epfl\nprofiles:\n  cpu:\n    models: {smp: {lr: 0.01}}\n")
    mine = resolve_config("folder", "smp-fpn-resnet34", "cpu", config_file=str(path))
    assert mine.lr == 0.01
    assert resolve_config("folder", "unet", "cpu", config_file=str(path)).lr == 0.001
    path.write_text("extends: epfl\nprofiles:\n  cpu:\n    models: {unett: {lr: 0.01}}\n")
    with pytest.raises(UserError, match="profile cpu of folder: models.unett names no registered"):
        resolve_config("folder", "unet", "cpu", config_file=str(path))


def test_extends_names_an_unknown_profile_or_a_loop_in_one_line(tmp_path, monkeypatch):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: epfll\n")
    with pytest.raises(
        UserError, match=r"mine.yaml: extends: epfll is not a profile; known: .*epfl"
    ):
        resolve_config("folder", "unet", "cpu", config_file=str(path))
    (tmp_path / "a.yaml").write_text("extends: b\n")
    (tmp_path / "b.yaml").write_text("extends: a\n")
    monkeypatch.setenv("SEG_BENCH_CONFIGS", str(tmp_path))
    with pytest.raises(UserError, match="extends: a leads back to itself"):
        resolve_config("folder", "unet", "cpu", config_file=str(tmp_path / "a.yaml"))


RECORDS = sorted((Path(__file__).parents[1] / "leaderboards" / "records").glob("*/*.json"))


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_shipped_profiles_still_make_each_committed_records_configuration(path):
    # Else a bench retrains what the leaderboard already holds: a profile change that means to
    # do so must say so by moving the records it replaces out of leaderboards/records.
    record = json.loads(path.read_text())
    config = record["config"]
    cfg = resolve_config(
        record["dataset"],
        record["model"],
        config["profile"],
        seed=config["seed"],
        target=config.get("target"),
        target_options=config.get("target_options") or None,
        tta=config.get("tta", False),
    )
    assert config_key(cfg) == record_key(record)


@pytest.mark.parametrize(
    "text, message",
    [
        ("extends: default\nlr: 0.5\n", "top-level key 'lr' is not read; put run settings under"),
        ("extends: default\nprofiles:\n  cpu_fast: {lr: 0.5}\n", "profiles: cpu_fast is not a"),
    ],
)
def test_a_profile_file_key_that_would_never_be_read_is_refused(tmp_path, text, message):
    # Both resolved to the defaults (lr 0.001), silently.
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as err:
        resolve_config("synthetic", "unet", "cpu", config_file=str(path))
    assert str(path) in str(err.value)


def test_set_null_is_refused_rather_than_keeping_the_profiles_value(tmp_path, capsys, monkeypatch):
    from seg_bench.cli import main

    monkeypatch.setenv("SEG_BENCH_RUNS", str(tmp_path))
    argv = ["train", "--dataset", "synthetic", "--profile", "smoke", "--set", "schedule=null"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--set schedule=null: a null cannot clear the profile's schedule" in err
    assert err.count("\n") == 1
