"""Profile files: a key given twice is refused, not silently dropped as PyYAML would."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from seg_bench.commands import parse_set
from seg_bench.config import load_yaml, resolve_config
from seg_bench.errors import UserError

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
