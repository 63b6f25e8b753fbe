"""Each model's learning rate from a grid at a reduced budget, chosen on validation data only.

For every model of a profile and every rate of a grid (default: the profile's own rate and half
a decade either side), seg-bench's own training (the profile's data, split, schedule and
precision) runs ``--steps`` optimizer steps (default: half the profile's budget) for ``--seeds``
seeds, and the score is the final validation IoU. A model keeps the profile's rate unless
another rate beats it by more than max(0.01, the seed range: the largest max - min over seeds
at one rate), so that what another seed does cannot move a profile (bench_bf16_accuracy.py
judges bf16 by the same range). With one seed the choice is marked provisional; ``--confirm
N`` runs N seeds in all for each model whose first ``--seeds`` would move its rate, so the CPU
goes where a profile may change (a model those seeds keep at the profile's rate stays there).
Where a model's best mean sits at an end of its grid, the table says so and ``--grow N`` adds up
to N rates past that end (x3 or /3 each, before any confirmation seeds). The test split is
never read.

Each run writes one JSON (``<out-dir>/<dataset>/<model>__seed<s>__lr<rate>.json``); a rerun
skips finished runs, so a long grid can be stopped and restarted. The markdown names the
machine, the budget and, per model, the rate to put in the profile with its reason; cite it in
the profile's ``lr_source``.

    python benchmarks/lr_grid.py --dataset isbi2012 --confirm 2 --out benchmarks/lr_grid/isbi2012.md
    python benchmarks/lr_grid.py --quick                     # 2 models, smoke data, seconds
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_convergence import (  # noqa: E402
    GAIN,
    run_parser,
    start,
    train_once,
    write_text,
)
from common import Budget, emit, machine_line, md_table  # noqa: E402

# Runs stored before 2026-12-07 did not record their machine; the grids' pages name them.
UNRECORDED = "not recorded (runs before 2026-12-07; see the README)"

FACTORS = (1 / 3, 1, 3)  # x the profile's rate: 3e-4, 1e-3, 3e-3 around Adam's 1e-3
STEP = 3  # a grown grid's next rate: x 3 past its top, / 3 past its bottom
LIMITS = (1e-5, 0.1)  # no rate outside: Adam diverges above, and trains nothing below


def next_rate(scores: dict[float, list[float]]) -> float | None:
    """The rate past the grid's end where the best mean sits at that end (inside ``LIMITS``):
    a rate chosen at the edge of a grid may only be where the grid happened to stop."""
    means = {lr: statistics.mean(v) for lr, v in scores.items() if v}
    if len(means) < 2:
        return None
    best = max(means, key=means.get)
    if best == max(means):
        lr = best * STEP
    elif best == min(means):
        lr = best / STEP
    else:
        return None
    lr = float(f"{lr:.1g}")
    return lr if LIMITS[0] <= lr <= LIMITS[1] else None


def run_path(out: Path, dataset: str, model: str, seed: int, lr: float) -> Path:
    return out / dataset / f"{model}__seed{seed}__lr{lr:g}.json"


def choose(scores: dict[float, list[float]], current: float) -> dict:
    """The rate for one model from its final validation IoUs per rate (one per seed): the best
    mean, unless the ``current`` rate is within the tolerance of it."""
    means = {lr: statistics.mean(v) for lr, v in scores.items()}
    spread = max(max(v) - min(v) for v in scores.values())
    tolerance = max(GAIN, spread)
    best = max(means, key=lambda lr: (means[lr], lr == current))
    lead = means[best] - means.get(current, float("-inf"))
    chosen = current if lead <= tolerance else best
    reason = (
        "the best mean"
        if chosen == best
        else f"kept: {best:g} leads by {lead:.3f}, within the tolerance"
    )
    if min(len(v) for v in scores.values()) < 2:
        reason += " (one seed: no seed range, provisional)"
    return {"means": means, "tolerance": tolerance, "best": best, "chosen": chosen, "why": reason}


def render(dataset: str, profile: str, per_model: dict) -> str:
    rates = sorted({lr for c in per_model.values() for lr in c["means"]})
    steps = sorted({c["steps"] for c in per_model.values()})
    head = ["Model", "seeds", *(f"lr {lr:g}" for lr in rates), "tolerance", "chosen", "why"]
    rows = [
        [
            model,
            str(c.get("seeds", "")),
            *(f"{c['means'][lr]:.3f}" if lr in c["means"] else "–" for lr in rates),
            "–" if c["chosen"] is None else f"{c['tolerance']:.3f}",
            "–" if c["chosen"] is None else f"{c['chosen']:g}",
            c["why"],
        ]
        for model, c in per_model.items()
    ]
    return "\n".join(
        [
            f"# Learning rate per model on {dataset} ({profile} profile, "
            f"{'/'.join(map(str, steps))} steps)",
            "",
            f"Rendered on: {machine_line()}.",
            f"Runs trained on: {machines_sentence(per_model)}.",
            "Final validation IoU, mean of seeds; the profile's rate stays unless another leads "
            f"by more than max({GAIN}, seed range): more than another seed moves the score. "
            "Test images are not used.",
            "",
            md_table(head, rows, "l" + "r" * (len(rates) + 3) + "l"),
        ]
    )


def machines_sentence(per_model: dict) -> str:
    total = sum((c.get("machines", Counter()) for c in per_model.values()), Counter())
    ordered = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))  # most runs first
    return "; ".join(f"{m}: {n} runs" for m, n in ordered) or "none"


def grid_for_model(args, model: str, out: Path, overrides: dict, budget: Budget) -> dict:
    """Train ``model`` at every rate of its grid (stored runs are read back) and choose; where
    ``--seeds`` would move the profile's rate, ``--confirm`` seeds decide first. Then the grid
    grows past an edge where the means of every seed gathered put the best rate, each grown rate
    on all of those seeds: a confirmation that moves the best mean inside saves the growth."""
    from seg_bench.config import resolve_config

    profile_cfg = resolve_config(args.dataset, model, args.profile)
    steps = args.steps or max(1, (profile_cfg.max_steps or 0) // 2)
    rates = [float(x) for x in args.lrs.split(",")] if args.lrs else None
    rates = rates or [float(f"{profile_cfg.lr * f:.1g}") for f in FACTORS]
    options = {**overrides, "max_steps": steps}
    seeds, grown = args.seeds, 0
    scores = grid_scores(args, model, out, options, rates, range(seeds), budget)
    while True:
        choice = undecided(scores, rates, seeds) or choose(scores, profile_cfg.lr)
        if choice["chosen"] is None:  # runs missing: the time budget ran out
            break
        if choice["chosen"] != profile_cfg.lr and args.confirm > seeds:
            more, seeds = range(seeds, args.confirm), args.confirm
            for lr, values in grid_scores(args, model, out, options, rates, more, budget).items():
                scores.setdefault(lr, []).extend(values)
        elif grown < args.grow and (lr := next_rate(scores)) is not None:
            rates.append(lr)
            grown += 1
            scores.update(grid_scores(args, model, out, options, [lr], range(seeds), budget))
        else:
            break
    edge = next_rate(scores) if choice["chosen"] is not None else None
    if edge is not None:
        choice["why"] += f"; the best mean is at the grid's edge ({edge:g} untried: --grow)"
    return {
        **choice,
        "steps": steps,
        "seeds": max((len(v) for v in scores.values()), default=0),
        "machines": run_machines(out, args, model, scores),
    }


def run_machines(out: Path, args, model: str, scores: dict[float, list[float]]) -> Counter:
    """How many of the runs behind ``scores`` trained on each machine (runs stored before the
    machine was recorded count as such): a grid resumed across sessions mixes machines."""
    runs = (
        run_path(out, args.dataset, model, s, lr) for lr, v in scores.items() for s in range(len(v))
    )
    return Counter(json.loads(p.read_text()).get("machine", UNRECORDED) for p in runs if p.exists())


def undecided(scores: dict[float, list[float]], rates: list[float], seeds: int) -> dict | None:
    """Where a rate lacks some of its ``seeds`` runs (the time budget ran out), no choice: one
    made from part of the grid could move a profile on a rate that was never tried."""
    missing = sum(max(0, seeds - len(scores.get(lr, []))) for lr in rates)
    if not missing:
        return None
    means = {lr: statistics.mean(v) for lr, v in scores.items() if v}
    why = f"not decided: {missing} runs not trained (rerun the same command to resume)"
    return {"means": means, "tolerance": None, "best": None, "chosen": None, "why": why}


def grid_scores(args, model, out, options, rates, seeds, budget) -> dict[float, list[float]]:
    """Final validation IoU per rate, one per seed of ``seeds``."""
    scores: dict[float, list[float]] = {}
    for lr in rates:
        for seed in seeds:
            path = run_path(out, args.dataset, model, seed, lr)
            if budget.left() <= 0 and not path.exists():  # stored runs still count
                continue
            rec = train_once(path, args.dataset, model, args.profile, seed, {**options, "lr": lr})
            scores.setdefault(lr, []).append(rec["final_val_iou"])
            print(f"{model} lr {lr:g} seed {seed}: {rec['final_val_iou']:.3f}", flush=True)
    return scores


def main(argv: list[str] | None = None) -> None:
    ap = run_parser(__doc__, seeds=1, name="lr_grid")
    ap.add_argument("--steps", type=int, default=None, help="default: half the profile's")
    ap.add_argument("--lrs", default=None, help="comma list (default: the profile's x 1/3, 1, 3)")
    ap.add_argument(
        "--grow",
        type=int,
        default=0,
        help="rates added past an end of the grid where a model's best mean sits at it",
    )
    ap.add_argument(
        "--confirm",
        type=int,
        default=0,
        help="seeds in all for a model whose --seeds would move the profile's rate",
    )
    args = ap.parse_args(argv)
    overrides, out, budget, models = start(args, "lr_grid")
    if args.quick:
        args.steps = args.steps or 4
    per_model = {m: grid_for_model(args, m, out, overrides, budget) for m in models}
    md = render(args.dataset, args.profile, per_model)
    if args.out:
        write_text(args.out, md + "\n")
    chosen = {m: c["chosen"] for m, c in per_model.items()}
    data = {
        m: {**c, "means": {f"{k:g}": v for k, v in c["means"].items()}}
        for m, c in per_model.items()
    }
    emit(args, "lr_grid", "Learning rate per model", md, chosen, data, budget)


if __name__ == "__main__":
    main()
