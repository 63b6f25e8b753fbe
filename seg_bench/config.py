"""Run configuration: one dataclass, filled from a profile file and then from the command line.

Resolution order (later wins): the dataclass defaults, the dataset's profile file
(``seg_bench/profiles/<dataset>.yaml`` shipped in the package, a file of the same name in
``$SEG_BENCH_CONFIGS``, or the file given with ``--config``) merged onto the file it names with
``extends:`` (the shipped ones extend ``default.yaml`` and hold only what differs), its
``common``, its ``profiles.<profile>`` section, that profile's ``models.<model>`` section,
and finally explicit overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from seg_bench.config_files import load_profile_file, merge
from seg_bench.errors import UserError
from seg_bench.hardware import check_hardware
from seg_bench.registry import AUGMENT_PRESETS, DATASETS, LABEL_SOURCES, LOSSES, OPTIMIZERS

PROFILES = ("smoke", "quick", "cpu", "paper")
# cosine: per epoch; plateau: halve on a stalled val IoU; warmup_cosine, onecycle: stepped
# every optimizer step, linear warm-up over ``warmup`` of the steps, ending at the last step.
SCHEDULES = (None, "cosine", "plateau", "warmup_cosine", "onecycle")
# Keys that set how many optimizer steps and patches a run trains on: a profile sets them
# for all its models alike, so that its leaderboard compares networks at equal budgets.
BUDGET_KEYS = ("max_steps", "max_epochs", "samples_per_epoch", "batch_size", "patch_size")
# Fields that change how a trained network is tested, never how it is trained, with the value
# that training runs carry (protocol/retest.py; a search's trials never test).
TEST_ONLY = {"tta": False}
# Lightning's precision names and short aliases (it lists them only privately, in
# lightning.fabric.connector._PRECISION_INPUT; tests/test_cli_errors.py checks these against
# it), after seg-bench's own "auto" (seg_bench/training/precision.py picks one per machine).
PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true")
PRECISION_ALIASES = ("32", "16", "bf16", "64")
# What the network learns from the instance labels (seg_bench/training/targets.py), and the
# losses that fit each target; a run of another target with a pixel loss gets its first loss.
TARGET_LOSSES: dict[str, tuple[str, ...] | None] = {
    "binary": None,  # any pixel loss
    "boundary3": ("boundary3_ce_dice",),
    "distance": ("distance_bce_mse",),
}
# boundary3's boundary class: "outer" marks every object's rim, "touching" only where objects
# lie within ``reach`` pixels of each other (seg_bench/training/targets.py).
TARGET_OPTIONS = {
    "boundary3": {"boundary_weight", "boundary", "reach"},
    "binary": set(),
    "distance": set(),
}
BOUNDARY_KINDS = ("outer", "touching")


def loss_for_target(target: str, loss: str) -> str:
    """The loss a run of ``target`` trains with: ``loss`` where it fits the target, else the
    target's own loss (a profile's pixel loss does not fit a 3-channel target)."""
    losses = TARGET_LOSSES[target]
    return loss if losses is None or loss in losses else losses[0]


@dataclass
class RunConfig:
    dataset: str = "synthetic"
    model: str = "unet"
    profile: str = "cpu"
    config_file: str | None = None  # a user's profile file (--config) instead of the shipped one
    root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    # model
    width: float = 1.0
    model_options: dict[str, Any] = field(default_factory=dict)
    # optimisation
    loss: str = "bce_dice"
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str | None = None  # one of SCHEDULES
    warmup: float = 0.05  # fraction of the steps of linear warm-up (step-wise schedules)
    # what is learned: binary | boundary3 | distance (instance-aware targets)
    target: str = "binary"
    target_options: dict[str, Any] = field(default_factory=dict)  # boundary3: boundary_weight
    # data
    patch_size: int | None = None
    batch_size: int = 4
    samples_per_epoch: int | None = None
    augment: str = "d4"
    augment_params: dict[str, Any] = field(default_factory=dict)
    foreground_bias: float = 0.0
    num_workers: int | None = None
    labels: str = "manual"  # manual | floodfill | region (weak-label study)
    weak_label_options: dict[str, Any] = field(default_factory=dict)
    # budget
    max_epochs: int = 20
    # Optimizer steps of the run; when set it is the budget, and max_epochs follows from it,
    # samples_per_epoch and batch_size (resolve_config).
    max_steps: int | None = None
    budget_note: str = ""  # e.g. "not converged": printed in the leaderboard header
    lr_source: str = ""  # how the profile's learning rates were chosen (leaderboard header)
    max_time_s: float | None = None
    val_every: int = 1
    # hardware
    precision: str = "auto"  # auto: measured on CPUs (seg_bench.training.precision)
    bf16_exclude: dict[str, str] = field(default_factory=dict)  # model -> why auto skips bf16
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    compile: bool = False
    # evaluation
    overlap: float = 0.25
    window: int | None = (
        None  # sliding-window tile; None = max(patch, 256): nets are fully convolutional
    )
    tta: bool = False
    postprocess: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    logger: str = (
        "auto"  # seg_bench.tracking.runs: W&B (offline without WANDB_API_KEY), CSV if W&B fails
    )

    def validate(self) -> RunConfig:
        """Check every option value (the one place that does); raise a one-line UserError."""
        self._validate_number_types()
        checks = [
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.max_epochs >= 1, f"--epochs must be >= 1, got {self.max_epochs}"),
            (
                self.max_steps is None or self.max_steps >= 1,
                f"max_steps must be >= 1, got {self.max_steps}",
            ),
            (0 <= self.warmup < 1, f"warmup must be a fraction in [0, 1), got {self.warmup}"),
            (self.width > 0, f"--width must be positive, got {self.width}"),
            (0 <= self.overlap < 1, f"--overlap must be in [0, 1), got {self.overlap}"),
            (
                self.patch_size is None or self.patch_size >= 16,
                f"--patch-size must be >= 16, got {self.patch_size}",
            ),
            (
                self.profile in PROFILES,
                f"unknown profile '{self.profile}'. Known: {', '.join(PROFILES)}",
            ),
            (
                0.0 <= self.foreground_bias <= 1.0,
                f"--foreground-bias must be in [0, 1], got {self.foreground_bias}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        if self.schedule not in SCHEDULES:
            known = ", ".join(str(k).lower() for k in SCHEDULES)
            raise UserError(f"unknown schedule '{self.schedule}'. Known: {known}")
        self._validate_target()
        LOSSES.require(self.loss)
        OPTIMIZERS.require(self.optimizer)
        for option, registry, name in (
            ("--labels", LABEL_SOURCES, self.labels),
            ("--augment", AUGMENT_PRESETS, self.augment),
        ):
            try:
                registry.require(name)
            except UserError as e:
                raise UserError(f"{option}: {e}") from None
        check_choice("--precision", self.precision, PRECISIONS + PRECISION_ALIASES)
        if self.strategy != "auto":  # Lightning's import is slow: only for a strategy to check
            from lightning.pytorch.strategies import StrategyRegistry

            check_choice("--strategy", self.strategy, StrategyRegistry.available_strategies())
        check_hardware(self)
        return self

    def _validate_boundary_options(self) -> None:
        boundary = self.target_options.get("boundary", "outer")
        check_choice("--set target_options.boundary", boundary, BOUNDARY_KINDS)
        if "reach" in self.target_options and boundary != "touching":
            raise UserError(
                "--set target_options.reach applies to boundary: touching; add it or drop reach"
            )
        reach = self.target_options.get("reach")
        if reach is not None and (
            isinstance(reach, bool) or not isinstance(reach, int) or reach < 1
        ):
            raise UserError(
                f"--set target_options.reach {reach!r}: give a whole number of pixels >= 1"
            )

    def _validate_number_types(self) -> None:
        """Numbers from a profile file or ``--set`` are YAML, so ``lr: fast`` arrives as text."""
        for f in dataclasses.fields(self):
            kind, value = str(f.type).removesuffix(" | None"), getattr(self, f.name)
            if kind not in ("int", "float") or (value is None and str(f.type) != kind):
                continue
            wanted = (int, float) if kind == "float" else int
            if isinstance(value, bool) or not isinstance(value, wanted):
                what = "a number" if kind == "float" else "a whole number"
                raise UserError(
                    f"{f.name} {value!r}: not {what}; fix it in --set or the profile file"
                )

    def _validate_target(self) -> None:
        if self.target not in TARGET_LOSSES:
            raise UserError(
                f"--set target={self.target}: unknown target; known: {', '.join(TARGET_LOSSES)}"
            )
        if not isinstance(self.target_options, dict):
            raise UserError(
                f"--set target_options must be a mapping such as {{boundary_weight: 5}}, "
                f"got {self.target_options!r}"
            )
        unknown = sorted(set(self.target_options) - TARGET_OPTIONS[self.target])
        if unknown:
            raise UserError(
                f"--set target_options: {unknown} do not apply to target {self.target}; "
                f"known: {sorted(TARGET_OPTIONS[self.target]) or 'none'}"
            )
        weight = self.target_options.get("boundary_weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise UserError(
                f"--set target_options={{boundary_weight: W}}: W must be > 0, got {weight!r}"
            )
        self._validate_boundary_options()
        if (self.postprocess or {}).get("three_class") and self.target != "boundary3":
            raise UserError(
                f"--set postprocess.three_class reads a 3-class output; --set target="
                f"{self.target} has none: use --set target=boundary3 or drop three_class"
            )
        owner = [k for k, v in TARGET_LOSSES.items() if v and self.loss in v]
        if owner and owner[0] != self.target:
            raise UserError(f"--loss {self.loss} needs --set target={owner[0]}")
        # The record says which loss was used, through this field.
        self.loss = loss_for_target(self.target, self.loss)

    def inference_window(self, patch_size: int) -> int:
        # Tiles larger than the training patch cost fewer seams and less overhead per pixel.
        return int(self.window or max(patch_size, 256))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_choice(option: str, value: Any, known: list[str] | tuple[str, ...]) -> None:
    """A one-line UserError unless ``str(value)`` is one of ``known`` (closest name as a hint)."""
    if str(value) in known:
        return
    close = difflib.get_close_matches(str(value), known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UserError(f"{option} {value}: not a known value; {hint}known: {', '.join(known)}")


def default_profile() -> str:
    import torch

    return "paper" if torch.cuda.is_available() else "cpu"


def benchmark_models(
    dataset: str, profile: str | None = None, config_file: str | None = None
) -> list[str]:
    """The models a bench runs by default: the profile's ``bench_models``, else the file's
    ``models``."""
    DATASETS.require(dataset)
    spec = load_profile_file(dataset, config_file)
    section = spec.get("profiles", {}).get(profile or default_profile(), {})
    return list(
        section.get("bench_models") or spec.get("models", ["unet", "resunet", "segnet", "tiramisu"])
    )


def resolve_config(
    dataset: str, model: str, profile: str | None = None, **overrides: Any
) -> RunConfig:
    DATASETS.require(dataset)
    profile = profile or default_profile()
    spec = load_profile_file(dataset, overrides.get("config_file"))
    profiles = spec.get("profiles", {})
    if profile not in PROFILES:
        raise UserError(f"unknown profile '{profile}'. Known: {', '.join(PROFILES)}")
    section = profiles.get(profile, {})
    check_equal_budgets(section, f"profile {profile} of {dataset}")
    values: dict[str, Any] = merge(
        spec.get("common", {}),
        {k: v for k, v in section.items() if k not in ("models", "bench_models")},
    )
    values = merge(values, model_settings(section, model, f"profile {profile} of {dataset}"))
    given = {k: v for k, v in overrides.items() if v is not None}
    if "max_epochs" in given and "max_steps" not in given:
        values.pop("max_steps", None)  # epochs given explicitly replace the profile's steps
    values = merge(values, given)
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        hints = [
            f"'{k}' -> '{close[0]}'"
            for k in unknown
            if (close := difflib.get_close_matches(k, known, n=1))
        ]
        hint = f" Did you mean {', '.join(hints)}?" if hints else f" Known: {sorted(known)}"
        raise UserError(f"unknown config keys {unknown} for {dataset}/{profile}.{hint}")
    values.update(dataset=dataset, model=model, profile=profile)
    cfg = RunConfig(**values).validate()
    if cfg.max_steps and cfg.samples_per_epoch:
        per_epoch = math.ceil(cfg.samples_per_epoch / cfg.batch_size)
        cfg.max_epochs = math.ceil(cfg.max_steps / per_epoch)
    return cfg


def planned_steps(cfg: Any) -> int | None:
    """The optimizer steps a configuration (a RunConfig or a record's dict) trains, where it
    fixes them; None where an epoch is one pass over a training set of unknown size."""
    get = cfg.get if isinstance(cfg, dict) else lambda key: getattr(cfg, key, None)
    if get("max_steps"):
        return int(get("max_steps"))
    if get("samples_per_epoch") and get("max_epochs") and get("batch_size"):
        return int(get("max_epochs")) * math.ceil(get("samples_per_epoch") / get("batch_size"))
    return None


def model_settings(section: dict[str, Any], model: str, where: str) -> dict[str, Any]:
    """A profile's settings for ``model``: its own entry, else its family's (``smp`` for every
    smp- model). An entry that names no model is refused: it would tune nothing, silently (an
    ``smp-unet-resnet18`` entry was once looked up as ``smp`` and never applied)."""
    from seg_bench.registry import MODELS

    entries = section.get("models") or {}
    for name in entries:
        if name != "smp" and name not in MODELS:
            raise UserError(
                f"{where}: models.{name} names no registered model; see `seg-bench models`"
            )
    if model in entries:
        return entries[model] or {}
    return (entries.get("smp") or {}) if model.startswith("smp-") else {}


def check_equal_budgets(section: dict[str, Any], where: str) -> None:
    """A profile's per-model sections may tune a model (lr, options) but not its budget."""
    for model, settings in (section.get("models") or {}).items():
        fixed = sorted(set(settings or {}) & set(BUDGET_KEYS))
        if fixed:
            raise UserError(
                f"{where}: models.{model} sets {', '.join(fixed)}; every model of a profile "
                "trains on the same budget, so set it for the whole profile"
            )
