"""precision: auto is decided by timing training steps on the CPU, cached per machine/torch/model;
channels_last training when that wins."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from processes import ended

from seg_bench.config import resolve_config
from seg_bench.training import precision as prec
from seg_bench.training import step_timer as timing
from seg_bench.training.precision import PrecisionChoice, choose_precision, decide
from seg_bench.training.run_dir import run_precision


class FakeTimer:
    """Step times by candidate name, counting what was timed."""

    def __init__(self, ms: dict[str, float]):
        self.ms, self.timed = ms, []

    def __call__(self, name: str, limit_ms: float | None) -> list[float]:
        self.timed.append(name)
        return [self.ms[name] * f for f in (1.1, 1.0, 0.9)]  # median = ms[name]


def never_time(name, limit_ms):
    raise AssertionError(f"timed {name} although the measurement was cached")


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # smoke's shapes, with a budget long enough to be worth timing
    return resolve_config("synthetic", "unet", "smoke", accelerator="cpu", max_steps=1000)


@pytest.fixture
def model(cfg):
    from seg_bench.models import create_model

    return create_model(cfg.model, in_channels=1, classes=1, width=cfg.width)


MEASURED = {"fp32": 349.0, "fp32+cl": 340.0, "bf16": 226.0, "bf16+cl": 164.0}


def test_fastest_setting_wins_when_it_beats_float32_by_the_threshold(cfg, model, tmp_path):
    choice = choose_precision(cfg, model, 1, timer=FakeTimer(MEASURED), folder=tmp_path)
    assert (choice.precision, choice.channels_last, choice.setting) == (
        "bf16-mixed",
        True,
        "bf16+cl",
    )
    assert choice.ratio == pytest.approx(349 / 164)
    assert choice.ms_per_step == MEASURED


@pytest.mark.parametrize(
    ("bf16_ms", "expected"),
    [(100 / 1.19, "fp32"), (100 / 1.2, "bf16"), (100 / 1.5, "bf16"), (150.0, "fp32")],
)
def test_a_setting_must_be_at_least_1_2x_faster_than_float32(bf16_ms, expected):
    chosen, fastest, ratio = decide({"fp32": 100.0, "bf16": bf16_ms})
    assert chosen == expected
    assert ratio == pytest.approx(100.0 / min(100.0, bf16_ms))


def test_float32_is_kept_and_the_measured_ratio_still_recorded(cfg, model, tmp_path):
    ms = {"fp32": 100.0, "fp32+cl": 99.0, "bf16": 90.0, "bf16+cl": 95.0}
    choice = choose_precision(cfg, model, 1, timer=FakeTimer(ms), folder=tmp_path)
    assert (choice.precision, choice.channels_last, choice.setting) == ("32-true", False, "fp32")
    assert choice.ratio == pytest.approx(100 / 90)
    assert "float32 kept" in choice.reason


def test_a_cache_hit_reuses_the_measurement_without_timing(cfg, model, tmp_path):
    timer = FakeTimer(MEASURED)
    first = choose_precision(cfg, model, 1, timer=timer, folder=tmp_path)
    assert timer.timed == list(prec.CANDIDATES) * prec.ROUNDS  # in turn, round after round
    again = choose_precision(cfg, model, 1, timer=never_time, folder=tmp_path)
    assert again == first
    saved = json.loads(open(first.cache_file).read())
    assert saved["ms_per_step"] == MEASURED and saved["setting"] == "bf16+cl"


def test_the_cache_is_keyed_by_torch_version_and_shape(cfg, model, tmp_path, monkeypatch):
    choose_precision(cfg, model, 1, timer=FakeTimer(MEASURED), folder=tmp_path)
    bigger = dataclasses.replace(cfg, batch_size=8)
    timer = FakeTimer(MEASURED)
    choose_precision(bigger, model, 1, timer=timer, folder=tmp_path)
    assert timer.timed  # another batch size is another measurement
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    timer = FakeTimer(MEASURED)
    other = choose_precision(cfg, model, 1, timer=timer, folder=tmp_path)
    assert timer.timed and len(list((tmp_path / "precision").glob("*.json"))) == 3
    assert other.setting == "bf16+cl"


def test_a_patch_left_to_the_dataset_is_timed_and_cached_at_the_datasets_size(cfg, model, tmp_path):
    whole = dataclasses.replace(cfg, patch_size=None)
    for size in (256, 512):  # two datasets' default patches: two measurements, not one
        timer = FakeTimer(MEASURED)
        choose_precision(whole, model, 1, timer=timer, folder=tmp_path, patch_size=size)
        assert timer.timed
    choose_precision(whole, model, 1, timer=never_time, folder=tmp_path, patch_size=256)
    given = dataclasses.replace(cfg, patch_size=256)  # the same step as the config saying 256
    choose_precision(given, model, 1, timer=never_time, folder=tmp_path, patch_size=128)


def test_a_damaged_cache_file_is_measured_again(cfg, model, tmp_path):
    first = choose_precision(cfg, model, 1, timer=FakeTimer(MEASURED), folder=tmp_path)
    open(first.cache_file, "w").write("{not json")
    timer = FakeTimer(MEASURED)
    assert choose_precision(cfg, model, 1, timer=timer, folder=tmp_path) == first
    assert timer.timed


def test_an_unwritable_cache_still_decides_by_measurement(cfg, model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="not usable"):
        choice = choose_precision(cfg, model, 1, timer=FakeTimer(MEASURED), folder=blocker)
    assert choice.setting == "bf16+cl" and choice.cache_file is None


def test_gpus_keep_16_bit_and_an_explicit_precision_is_kept(cfg, model, monkeypatch):
    explicit = resolve_config("synthetic", "unet", "smoke", precision="32-true")
    assert choose_precision(explicit, model, 1, timer=never_time).precision == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # a one-GPU machine
    gpu = resolve_config("synthetic", "unet", "smoke")
    assert choose_precision(gpu, model, 1, timer=never_time).precision == "16-mixed"


def test_a_model_excluded_from_bf16_only_compares_float32_layouts(cfg, model, tmp_path):
    cfg.bf16_exclude = {"unet": "IoU 0.05 below float32"}
    timer = FakeTimer(MEASURED)
    choice = choose_precision(cfg, model, 1, timer=timer, folder=tmp_path)
    assert timer.timed == ["fp32", "fp32+cl"] * prec.ROUNDS
    assert choice.precision == "32-true" and "IoU 0.05 below float32" in choice.reason


def test_a_model_the_bf16_benchmark_never_proved_stays_in_float32(cfg, tmp_path):
    from seg_bench.models import create_model

    cfg = dataclasses.replace(cfg, model="tiramisu103")
    model = create_model("tiramisu103", in_channels=1, classes=1, width=0.25)
    timer = FakeTimer(MEASURED)
    choice = choose_precision(cfg, model, 1, timer=timer, folder=tmp_path)
    assert set(timer.timed) == {"fp32", "fp32+cl"} and choice.precision == "32-true"
    assert prec.BF16_BENCHMARK in choice.reason


def test_the_bf16_proven_models_are_the_benchmarks_within_rows():
    table = (Path(__file__).parents[1] / prec.BF16_BENCHMARK).read_text()
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ")]
    within = {r[0].strip() for r in rows[1:] if r[-1].strip() == "within"}
    assert within == set(prec.BF16_PROVEN)


def test_a_hopelessly_slow_candidate_is_abandoned_after_its_warm_up(cfg, model):
    times = timing.LocalTimer(cfg, model, 1)("bf16", limit_ms=0.0)
    assert len(times) == timing.WARMUP_STEPS  # the warm-up steps only
    full = timing.LocalTimer(cfg, model, 1)("fp32", limit_ms=None)
    assert len(full) == timing.TIMED_STEPS


def test_timing_leaves_the_model_and_the_random_stream_untouched(cfg, model):
    before = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    timing.LocalTimer(cfg, model, 1)("fp32+cl", limit_ms=None)
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


class SeesLayout(Callback):
    """Notes the memory format of the model's convolutions as training steps begin."""

    def __init__(self):
        self.nhwc = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        convs = [m for m in pl_module.modules() if isinstance(m, torch.nn.Conv2d)]
        # 1-channel tensors are both layouts at once: look at the convolutions with several.
        wide = [c.weight for c in convs if c.in_channels > 1]
        self.nhwc.append(all(w.is_contiguous(memory_format=torch.channels_last) for w in wide))


def test_channels_last_converts_each_training_batch_in_place():
    from seg_bench.training.callbacks import ChannelsLast

    batch = {"image": torch.rand(2, 3, 8, 8), "mask": torch.zeros(2, 8, 8)}
    ChannelsLast().on_train_batch_start(None, None, batch, 0)
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)
    assert not batch["image"].is_contiguous()


def test_channels_last_choice_trains_the_model_in_nhwc(cfg, tmp_path):
    from seg_bench.training.trainer import build_datamodule, build_task, build_trainer

    cfg = resolve_config("synthetic", "unet", "smoke", accelerator="cpu", precision="32-true")
    dm = build_datamodule(cfg)
    task = build_task(cfg, dm)
    sees = SeesLayout()
    choice = PrecisionChoice("32-true", channels_last=True, setting="fp32+cl")
    trainer, _, _ = build_trainer(cfg, tmp_path, callbacks=[sees], progress=False, precision=choice)
    L.seed_everything(0)
    trainer.fit(task, datamodule=dm)
    assert sees.nhwc and all(sees.nhwc)


class CrashesInChannelsLast(torch.nn.Module):
    """Kills its process when run in channels_last, as oneDNN does for some networks."""

    def __init__(self, hang: bool = False):
        super().__init__()
        self.hang = hang
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.out = torch.nn.Conv2d(4, 1, 1)

    def forward(self, x):
        h = self.conv(x)
        if h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous():
            if self.hang:  # as oneDNN does on an AVX2 CPU for residual U-Net
                time.sleep(3600)
            os.kill(os.getpid(), signal.SIGSEGV)
        return self.out(h)


def test_a_candidate_that_crashes_its_process_is_left_out_and_the_run_goes_on(cfg):
    timer = timing.isolated_timer(cfg, CrashesInChannelsLast(), 1)
    assert isinstance(timer, timing.ChildTimer)
    with pytest.warns(UserWarning, match="fp32\\+cl crashed"):
        ms = prec.measure(["fp32", "fp32+cl", "bf16"], timer)
    assert ms["fp32+cl"] is None and ms["fp32"] > 0 and ms["bf16"] > 0
    assert decide(ms)[1] in ("fp32", "bf16")


def test_a_candidate_that_hangs_is_given_up_after_its_own_wait_not_the_reference_one(
    cfg, monkeypatch
):
    monkeypatch.setattr(timing, "HANG_MARGIN_S", 5.0)  # the parent's wait; the child sleeps 1 h
    timer = timing.isolated_timer(cfg, CrashesInChannelsLast(hang=True), 1)
    with pytest.warns(UserWarning, match="fp32\\+cl crashed or hung"):
        ms = prec.measure(["fp32", "fp32+cl", "bf16"], timer)
    assert ms["fp32+cl"] is None and ms["fp32"] > 0 and ms["bf16"] > 0


def test_the_wait_for_a_candidate_is_a_margin_plus_its_steps_at_the_give_up_pace():
    assert timing.wait_limit_s(None) == timing.CHILD_TIMEOUT_S
    steps = timing.WARMUP_STEPS + timing.TIMED_STEPS
    assert timing.wait_limit_s(250.0) == pytest.approx(timing.HANG_MARGIN_S + steps * 0.25)


HANGS_AND_IS_KILLED = """
import sys, time
sys.path.insert(0, {tests!r})
from seg_bench.config import resolve_config
from seg_bench.training import precision as prec
from seg_bench.training import step_timer as timing
from test_precision import CrashesInChannelsLast

if __name__ == "__main__":
    cfg = resolve_config("synthetic", "unet", "smoke", accelerator="cpu")
    timer = timing.ChildTimer(cfg, CrashesInChannelsLast(hang=True), 1)
    print(timer.proc.pid, flush=True)
    timer("fp32+cl", None)
"""


def test_a_killed_run_leaves_no_timing_child_behind(tmp_path):
    script = tmp_path / "hangs.py"
    script.write_text(HANGS_AND_IS_KILLED.format(tests=str(Path(__file__).parent)))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(3)  # the child is in the hanging step by now (or on its way to it)
    assert not ended(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 20
    while not ended(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ended(child), "the timing child outlived its killed parent"


@pytest.mark.parametrize("target", ["boundary3", "distance"])
def test_timing_uses_the_targets_loss_and_its_per_pixel_target(target):
    cfg = resolve_config("synthetic", "unet", "smoke", accelerator="cpu", target=target)
    from seg_bench.training.task import output_channels

    model = CrashesInChannelsLast()
    model.out = torch.nn.Conv2d(4, output_channels(target, 2), 1)
    times = timing.LocalTimer(cfg, model, 1)("fp32", None)  # KeyError 'target' before
    assert len(times) == timing.TIMED_STEPS and all(t > 0 for t in times)


def test_when_every_candidate_crashes_float32_is_used_and_nothing_is_cached(cfg, model, tmp_path):
    def crashes(name, limit_ms):
        return [float("inf")]

    choice = choose_precision(cfg, model, 1, timer=crashes, folder=tmp_path)
    assert choice.precision == "32-true" and not choice.channels_last
    assert "timing failed for float32" in choice.reason
    assert not list(tmp_path.rglob("*.json"))  # the next run measures again


def test_when_only_float32_crashes_it_is_kept_since_nothing_can_be_compared(cfg, model, tmp_path):
    def float32_crashes(name, limit_ms):
        return [float("inf")] if name == "fp32" else [MEASURED[name]]

    choice = choose_precision(cfg, model, 1, timer=float32_crashes, folder=tmp_path)
    assert (choice.precision, choice.channels_last) == ("32-true", False)
    # Nothing else is timed: without float32 no time could be compared (and a hang would cost
    # minutes per candidate with no give-up pace).
    assert "timing failed for float32" in choice.reason and choice.ms_per_step["bf16"] is None
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize(
    ("ms", "chosen"),
    [
        # bf16 + channels_last is 1.25x float32 but only 1.125x its float32 layout: the gain
        # is the layout's, and the layout alone (1.11x) does not clear the threshold.
        ({"fp32": 100.0, "fp32+cl": 90.0, "bf16+cl": 80.0}, "fp32"),
        ({"fp32": 100.0, "fp32+cl": 80.0, "bf16+cl": 75.0}, "fp32+cl"),
        ({"fp32": 100.0, "fp32+cl": 95.0, "bf16+cl": 60.0}, "bf16+cl"),
    ],
)
def test_bf16_must_also_beat_the_faster_float32_layout(ms, chosen):
    assert decide(ms)[0] == chosen


def test_rounds_that_disagree_decide_this_run_but_are_not_cached(cfg, model, tmp_path):
    class Disturbed(FakeTimer):
        def __call__(self, name, limit_ms):
            first_round = len(self.timed) < len(prec.CANDIDATES)
            slow = 10.0 if first_round and name == "fp32" else 1.0  # tests ran beside it
            return [t * slow for t in super().__call__(name, limit_ms)]

    with pytest.warns(UserWarning, match="disagreed between rounds"):
        choice = choose_precision(cfg, model, 1, timer=Disturbed(MEASURED), folder=tmp_path)
    assert choice.ms_per_step["fp32"] == MEASURED["fp32"]  # the median round
    assert not list(tmp_path.rglob("*.json"))
    steady = FakeTimer(MEASURED)
    choose_precision(cfg, model, 1, timer=steady, folder=tmp_path)
    assert len(list(tmp_path.rglob("*.json"))) == 1


def test_the_cache_is_keyed_by_the_isa_torch_dispatches_to(cfg, model, tmp_path, monkeypatch):
    # Both ISAs set by hand: on an AVX2-only machine the real one is the second already.
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    choose_precision(cfg, model, 1, timer=FakeTimer(MEASURED), folder=tmp_path)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    timer = FakeTimer(MEASURED)  # one CPU name, another vector unit: measured again
    choose_precision(cfg, model, 1, timer=timer, folder=tmp_path)
    assert timer.timed


def test_an_accelerator_other_than_cpu_or_cuda_keeps_float32_untimed(cfg, model):
    mps = dataclasses.replace(cfg, accelerator="mps")
    choice = choose_precision(mps, model, 1, timer=never_time)
    assert choice.precision == "32-true" and "mps" in choice.reason


def test_a_resumed_run_keeps_the_precision_its_start_chose(cfg, model, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    folder = tmp_path / "cache"
    first = run_precision(cfg, model, 1, run_dir, False, timer=FakeTimer(MEASURED), folder=folder)
    assert first.setting == "bf16+cl"
    # Resumed where float32 wins (another machine, or the cache gone): the run stays in bf16.
    slow_bf16 = {"fp32": 100.0, "fp32+cl": 100.0, "bf16": 300.0, "bf16+cl": 300.0}
    again = run_precision(
        cfg, model, 1, run_dir, True, timer=FakeTimer(slow_bf16), folder=tmp_path / "other"
    )
    assert (again.precision, again.channels_last) == ("bf16-mixed", True)
    assert again.reason.endswith("kept on resuming")
    fresh = run_precision(
        cfg, model, 1, run_dir, False, timer=FakeTimer(slow_bf16), folder=tmp_path / "other"
    )
    assert fresh.precision == "32-true"  # a new run (not resuming) decides afresh


def test_a_setting_that_crashes_in_a_later_round_is_never_chosen_nor_cached(cfg, model, tmp_path):
    class CrashesLater(FakeTimer):
        def __call__(self, name, limit_ms):
            if name == "bf16+cl" and self.timed.count(name) >= 1:
                self.timed.append(name)
                return [float("inf")]  # oneDNN hangs at times: one lucky round is not enough
            return super().__call__(name, limit_ms)

    with pytest.warns(UserWarning, match="disagreed between rounds"):
        choice = choose_precision(cfg, model, 1, timer=CrashesLater(MEASURED), folder=tmp_path)
    assert choice.ms_per_step["bf16+cl"] is None and choice.setting == "bf16"
    assert not list(tmp_path.rglob("*.json"))


def test_the_give_up_judges_the_last_warm_up_step_not_the_first(cfg, model, monkeypatch):
    steps = iter([50.0, 1.0, 1.0, 1.0, 1.0])  # ms: a slow first step (oneDNN set-up), then fast
    clock = {"t": 0.0}

    def fake_counter():
        return clock["t"]

    def step_then_tick(*a, **k):
        clock["t"] += next(steps) / 1000

    timer = timing.LocalTimer(cfg, model, 1)
    monkeypatch.setattr(timing.time, "perf_counter", fake_counter)
    monkeypatch.setattr(
        torch.optim.Optimizer, "zero_grad", lambda self, set_to_none=True: step_then_tick()
    )
    times = timer("bf16", limit_ms=10.0)  # 50 ms > 10 ms on step 1 alone: not a reason to stop
    assert len(times) == timing.TIMED_STEPS


@pytest.mark.parametrize(("excluded", "candidates"), [(None, 4), ({"unet": "not proven"}, 2)])
def test_a_run_shorter_than_its_timing_keeps_float32_untimed(
    cfg, model, tmp_path, excluded, candidates
):
    """4 candidates x 3 rounds x (2 warm-up + 3 timed) = 60 timed steps; 30 without bf16."""
    cfg = dataclasses.replace(cfg, bf16_exclude=excluded)
    timing_steps = candidates * 3 * 5
    short = dataclasses.replace(cfg, max_steps=timing_steps - 1)
    choice = choose_precision(short, model, 1, timer=never_time, folder=tmp_path)
    assert (choice.precision, choice.channels_last, choice.ms_per_step) == ("32-true", False, {})
    assert f"{timing_steps - 1} steps are fewer than timing takes ({timing_steps})" in choice.reason
    assert not list(tmp_path.iterdir())  # nothing cached
    enough = dataclasses.replace(cfg, max_steps=timing_steps)
    timer = FakeTimer(MEASURED)
    assert choose_precision(enough, model, 1, timer=timer, folder=tmp_path).ratio is not None
    assert len(timer.timed) == candidates * 3


def test_the_smoke_profile_trains_in_float32_without_timing(model, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    smoke = resolve_config("synthetic", "unet", "smoke", accelerator="cpu")  # 1 epoch of 2 steps
    choice = choose_precision(smoke, model, 1, timer=never_time, folder=tmp_path)
    assert choice.precision == "32-true" and "the run's 2 steps" in choice.reason
