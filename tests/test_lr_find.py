"""Learning-rate range test: the rule that turns a curve into a learning rate (hand-worked
cases), and `seg-bench lr-find` end to end on the generated data (a file per dataset and
profile that keeps earlier models)."""

from __future__ import annotations

import json
import math

import pytest

from seg_bench import cli
from seg_bench.hardware import cpu_name
from seg_bench.training.lr_find import choose_lr, round_down_nice


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.1, 0.1), (0.099, 0.05), (0.0049, 0.002), (3e-4, 2e-4), (1.99e-3, 1e-3), (7.0, 5.0)],
)
def test_round_down_nice_gives_the_largest_1_2_5_value_not_above(value, expected):
    assert math.isclose(round_down_nice(value), expected)


def test_round_down_nice_refuses_non_positive():
    with pytest.raises(ValueError, match="> 0"):
        round_down_nice(0.0)


def test_choose_lr_takes_a_tenth_of_the_minimum_after_the_settling_points():
    lrs = [10.0 ** (-6 + k / 4) for k in range(25)]  # 1e-6 .. 1
    # Lowest at index 2 (skipped: the smoothing has not settled), then a valley at index 16
    # (lr 1e-2), then divergence and a NaN.
    losses = [1.0, 0.9, 0.1] + [1.0 - 0.05 * k for k in range(14)] + [0.5] * 7 + [math.nan]
    losses[16] = 0.2
    at_min, chosen = choose_lr(lrs, losses)
    assert math.isclose(at_min, 1e-2)
    assert math.isclose(chosen, 1e-3)


def test_choose_lr_without_a_finite_loss_is_an_error():
    with pytest.raises(ValueError, match="no finite loss"):
        choose_lr([1e-3] * 12, [math.nan] * 12)


def test_lr_find_writes_curves_keeps_earlier_models_and_prints_profile_lines(tmp_path, capsys):
    out = tmp_path / "lr"
    base = ["lr-find", "--dataset", "synthetic", "--profile", "smoke", "--steps", "12"]
    assert cli.main([*base, "--models", "unet", "--output", str(out)]) == 0
    assert cli.main([*base, "--models", "segnet", "--output", str(out)]) == 0
    saved = json.loads((out / "synthetic_smoke.json").read_text())
    assert sorted(saved["models"]) == ["segnet", "unet"]
    # Each model names the machine it was measured on (a kept model may come from another).
    assert {m["machine"] for m in saved["models"].values()} == {cpu_name()}
    unet = saved["models"]["unet"]
    # 12 steps of an exponential ramp from 1e-6 to 1 (Lightning's range test).
    assert len(unet["lrs"]) == len(unet["losses"]) == 12
    assert unet["lrs"] == sorted(unet["lrs"]) and unet["lrs"][0] == pytest.approx(1e-6)
    assert unet["chosen_lr"] == choose_lr(unet["lrs"], unet["losses"])[1]
    assert (out / "synthetic_smoke.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert f"unet: {{lr: {unet['chosen_lr']:g}}}" in printed


@pytest.mark.parametrize("option", [["--tta"], ["--project", "mine"], ["--log-model"]])
def test_lr_find_refuses_options_it_would_ignore(option, tmp_path, capsys):
    argv = ["lr-find", "--profile", "smoke", "--output", str(tmp_path), *option]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert option[0] in err and "no effect" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())  # refused before any model was tested
