"""Convergence of a step budget: does doubling it still change any model's validation IoU?

Every model of a profile is trained (seg-bench's own training: the profile's data, schedule and
precision) at 1x, 2x and, where needed, 4x a candidate number of optimizer steps, for 2 seeds.
The final validation IoU (the end of the run's schedule) is compared between each budget and
its double; once a doubling moves no model, larger budgets are not trained.
A budget has converged when doubling it changes no model's mean validation IoU by more than
``GAIN`` (0.01) or, where seeds disagree more, by more than a third of the seed range (max - min
over the seeds of both budgets): the tolerance is the larger of the two. The smallest converged
budget is the one to put in the profile (``max_steps``), provided its runs fit the time cap:
a budget whose runs take a model more than ``--cap-minutes`` (10; median over its seeds of the
recorded training time) cannot be the profile's, and no larger one is trained. Where no budget
within the cap converges every model, the largest budget within it is chosen and the models
that still gain there are named "not converged" (the leaderboard must not rank them as if
they had).

Each run writes one JSON (``<out>/<dataset>/<model>__seed<s>__steps<n>.json``, atomically);
a rerun skips finished runs and resumes an interrupted one from its last checkpoint, so the
full mode (hours on a CPU) can be stopped and restarted at will. ``--records`` reuses bench
records of the same configuration (the leaderboard's runs at the profile's budget). No verdict
rests on part of the runs: while a model lacks a seed of either budget, its row says how many
runs are left and the budget stays undecided (``--report`` prints that table without training).

    python benchmarks/bench_convergence.py --dataset isbi2012              # the cpu profile
    python benchmarks/bench_convergence.py --dataset isbi2012 --base-steps 512
    python benchmarks/bench_convergence.py --dataset isbi2012 --records leaderboards/records
    python benchmarks/bench_convergence.py --dataset isbi2012 --out-dir DIR --report
    python benchmarks/bench_convergence.py --quick                          # 2 models, smoke data
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    Budget,
    add_common_args,
    emit,
    machine_info,
    machine_line,
    md_table,
    setup_torch,
)

from seg_bench.io import atomic_write  # noqa: E402

GAIN = 0.01  # IoU; the same gain the leaderboard's plateau column uses
CAP_MINUTES = 10.0  # per (model, seed) on 2 cores with the fast precision (issue 16)
SPREAD_FRACTION = 1 / 3
FACTORS = (1, 2, 4)


def run_path(out: Path, dataset: str, model: str, seed: int, steps: int) -> Path:
    return out / dataset / f"{model}__seed{seed}__steps{steps}.json"


def train_once(
    path: Path,
    dataset: str,
    model: str,
    profile: str,
    seed: int,
    overrides: dict,
    records: Path | None = None,
    train_missing: bool = True,
) -> dict | None:
    """One run of seg-bench's training (the profile with ``overrides``): its stored result at
    ``path``, else a bench record of the very same configuration under ``records`` (a results
    folder such as leaderboards/records), else a new run, whose folder goes once the JSON is
    written (None instead where not ``train_missing``). lr_grid.py shares it."""
    from seg_bench.config import resolve_config
    from seg_bench.io import write_json
    from seg_bench.training.trainer import train

    if path.exists():
        return json.loads(path.read_text())
    cfg = resolve_config(dataset, model, profile, seed=seed, logger="none", **overrides)
    if records is not None and (found := bench_record(records, cfg)):
        return found
    if not train_missing:
        return None
    run_dir = path.with_suffix("")
    result = train(cfg, run_dir, progress=False)
    choice = result.precision_choice
    record = run_summary(
        cfg,
        result.task.curve,
        train_time_s=result.train_time_s,
        best_val_iou=result.best_val.get("val/iou"),
        precision_choice=choice.to_dict() if choice else None,
    )
    write_json(path, record)
    shutil.rmtree(run_dir, ignore_errors=True)
    return record


def run_machine() -> str:
    """The machine a run trained on, short enough for a table: CPU, its bf16/AMX flags, cores."""
    i = machine_info()
    return f"{i['cpu']} ({i['cpu_features']}), {i['cores']} cores"


def run_summary(cfg, curve: list[dict], **fields) -> dict:
    """What this script keeps of a run: its configuration, curve and final validation IoU."""
    from seg_bench.protocol.convergence import plateaued

    if not curve:  # every score here is a final validation IoU
        raise SystemExit(f"{cfg.model} seed {cfg.seed}: the run never validated")
    return {
        "dataset": cfg.dataset,
        "model": cfg.model,
        "seed": cfg.seed,
        "steps": cfg.max_steps,
        "lr": cfg.lr,
        "profile": cfg.profile,
        "final_val_iou": curve[-1]["val_iou"],
        "machine": run_machine(),
        "plateaued": plateaued(curve),
        **fields,
        "curve": curve,
        "config": cfg.to_dict(),
    }


def bench_record(results_dir: Path, cfg) -> dict | None:
    """A bench record (``seg-bench bench``) whose configuration has ``cfg``'s key: the same
    training, so its validation curve stands for a run of this script (None where it has none)."""
    from seg_bench.protocol.records import existing_record, record_path_for

    path = record_path_for(results_dir, cfg)
    record = existing_record(path)
    if not record or not record.get("curve"):
        return None
    fields = {k: record.get(k) for k in ("train_time_s", "precision_choice")}
    return run_summary(cfg, record["curve"], **fields, from_record=str(path))


def compare(runs: dict[int, list[dict]], seeds: int | None = None) -> list[dict]:
    """For each budget and its double: the change of the mean final IoU and its tolerance;
    ``converged`` is None (and ``missing`` counts the runs) while either budget lacks some of
    its ``seeds`` runs (default: as many as its fullest budget), so no verdict rests on part of
    the seeds or part of the models."""
    steps = sorted(runs)
    seeds = seeds or max((len(r) for r in runs.values()), default=0)
    out = []
    for small, big in zip(steps, steps[1:], strict=False):
        if 2 * small != big:
            continue
        a = [r["final_val_iou"] for r in runs[small]]
        b = [r["final_val_iou"] for r in runs[big]]
        missing = max(0, seeds - len(a)) + max(0, seeds - len(b))
        if missing:
            out.append({"steps": small, "doubled": big, "converged": None, "missing": missing})
            continue
        spread = max(max(a) - min(a), max(b) - min(b))
        tolerance = max(GAIN, SPREAD_FRACTION * spread)
        change = statistics.mean(b) - statistics.mean(a)
        out.append(
            {
                "steps": small,
                "doubled": big,
                "change": change,
                "seed_range": spread,
                "tolerance": tolerance,
                "converged": abs(change) <= tolerance,
            }
        )
    return out


def verdicts_at(per_model: dict[str, list[dict]], steps: int) -> list[bool | None]:
    """Every model's verdict on doubling ``steps`` (None: not every run of it is there)."""
    found = {m: [c["converged"] for c in cs if c["steps"] == steps] for m, cs in per_model.items()}
    return [v[0] if v else None for v in found.values()]


class Choice(NamedTuple):
    """The budget for the profile: ``steps`` (None while undecided), the models still gaining
    at it, and the models whose runs at the next budget exceeded the cap (why it stopped)."""

    steps: int | None
    not_converged: list[str]
    over_cap: list[str]


def over_cap(runs: dict[str, dict[int, list[dict]]], steps: int, cap_s: float) -> list[str]:
    """The models whose runs at ``steps`` took longer than ``cap_s`` (median over seeds; runs
    without a recorded time do not count)."""
    slow = []
    for model, by_steps in runs.items():
        times = [r["train_time_s"] for r in by_steps.get(steps, []) if r.get("train_time_s")]
        if times and statistics.median(times) > cap_s:
            slow.append(model)
    return slow


def choose_budget(per_model: dict[str, list[dict]], runs: dict, cap_s: float = math.inf) -> Choice:
    """The smallest budget within the cap at which doubling changes no model beyond its
    tolerance; else the largest budget within the cap once the next one exceeds it, with the
    models still gaining there. Undecided (steps None) while a smaller budget lacks runs."""
    budgets = {c["steps"] for cs in per_model.values() for c in cs}
    budgets |= {steps for by_steps in runs.values() for steps in by_steps if by_steps[steps]}
    for steps in sorted(budgets):
        if over_cap(runs, steps, cap_s):
            return Choice(None, [], over_cap(runs, steps, cap_s))
        verdicts = dict(zip(per_model, verdicts_at(per_model, steps), strict=True))
        if None in verdicts.values():
            return Choice(None, [], [])
        gaining = [m for m, ok in verdicts.items() if not ok]
        if not gaining:
            return Choice(steps, [], [])
        if slow := over_cap(runs, 2 * steps, cap_s):
            return Choice(steps, gaining, slow)
    return Choice(None, [], [])


def _mean_iou(runs: list[dict]) -> str:
    return f"{statistics.mean(r['final_val_iou'] for r in runs):.3f}" if runs else "-"


def _minutes(runs: list[dict]) -> str:
    times = [r["train_time_s"] for r in runs if r.get("train_time_s")]
    return f"{statistics.median(times) / 60:.1f}" if times else "-"


def render(
    dataset: str, profile: str, per_model: dict, runs: dict, choice: Choice, cap: float
) -> str:
    rows = []
    for model, comparisons in per_model.items():
        for c in comparisons:
            small, big = runs[model][c["steps"]], runs[model][c["doubled"]]
            means = [_mean_iou(small), _mean_iou(big), _minutes(small), _minutes(big)]
            if c["converged"] is None:
                judged = ["-", "-", "-", f"{c['missing']} runs left"]
            else:
                ok = "yes" if c["converged"] else "no"
                judged = [f"{c[k]:.3f}" for k in ("seed_range", "tolerance")] + [ok]
                judged.insert(0, f"{c['change']:+.3f}")
            rows.append([model, f"{c['steps']} -> {c['doubled']}", *means, *judged])
    head = ["Model", "steps", "IoU", "IoU doubled", "min", "min doubled", "change"]
    head += ["seed range", "tolerance", "ok"]
    return "\n".join(
        [
            f"# Convergence of the {profile} budget on {dataset}",
            "",
            f"Machine: {machine_line()}.",
            f"Final validation IoU (mean of seeds); tolerance max({GAIN}, seed range / 3); "
            f"min: training minutes per run (median of seeds), cap {cap:g} min.",
            "",
            md_table(head, rows, "llrrrrrrrl"),
            "",
            f"Verdict: {verdict(per_model, choice, cap)}.",
        ]
    )


def verdict(per_model: dict[str, list[dict]], choice: Choice, cap: float = CAP_MINUTES) -> str:
    if choice.steps and not choice.not_converged:
        return f"smallest converged budget: **{choice.steps} steps**"
    if choice.steps:
        return (
            f"**{choice.steps} steps**, the largest budget within the cap of {cap:g} min per run "
            f"(at {2 * choice.steps} steps {', '.join(choice.over_cap)} took longer); "
            f"not converged at it: {', '.join(choice.not_converged)}"
        )
    if choice.over_cap:
        return (
            f"the base budget exceeds the cap of {cap:g} min per run for "
            f"{', '.join(choice.over_cap)}: rerun with a smaller --base-steps"
        )
    left = sum(c.get("missing", 0) for cs in per_model.values() for c in cs)
    if left:
        return f"not decided yet: {left} runs are not trained (rerun the same command to resume)"
    return "no candidate budget converged: rerun with a larger --base-steps"


def write_text(path: str, text: str) -> None:
    with atomic_write(Path(path)) as f:
        f.write(text)


def write_study(leaderboard_dir: Path, args: argparse.Namespace, data: dict) -> None:
    """The study where ``seg-bench leaderboard`` looks for it (protocol/convergence.py)."""
    from seg_bench.io import write_json
    from seg_bench.protocol.convergence import STUDY_FILE

    study = {"dataset": args.dataset, "profile": args.profile, "seeds": args.seeds}
    study |= {"cap_minutes": args.cap_minutes, "machine": machine_line(), **data}
    write_json(leaderboard_dir / args.dataset / STUDY_FILE, study)


def run_parser(doc: str, seeds: int, name: str) -> argparse.ArgumentParser:
    """The options every training-grid script takes (lr_grid.py shares it)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_common_args(ap, budget=0)
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--models", default=None, help="comma list (default: the profile's)")
    ap.add_argument("--seeds", type=int, default=seeds)
    ap.add_argument("--out-dir", default=None, help=f"one JSON per run (default runs/{name})")
    ap.add_argument("--out", default=None, help="also write the markdown here")
    return ap


class Setting(NamedTuple):
    """What a run of this script or lr_grid.py works with: config overrides, the folder of the
    run JSONs, the time budget and the models."""

    overrides: dict
    out: Path
    budget: Budget
    models: list[str]


def start(args: argparse.Namespace, name: str) -> Setting:
    """Torch set up and the run's setting; ``--quick``: seconds per run (smoke data, two
    models, float32) in a temporary folder. lr_grid.py shares it."""
    from seg_bench.config import benchmark_models

    setup_torch(args.threads)
    overrides, out = {}, Path(args.out_dir or f"runs/{name}")
    if args.quick:
        args.profile, args.models = "smoke", args.models or "unet,segnet"
        overrides = {"precision": "32-true", "accelerator": "cpu", "schedule": "warmup_cosine"}
        out = Path(args.out_dir or tempfile.mkdtemp(prefix=f"{name}-"))
    models = args.models.split(",") if args.models else benchmark_models(args.dataset, args.profile)
    return Setting(overrides, out, Budget(args.budget), list(models))


def main(argv: list[str] | None = None) -> None:
    from seg_bench.config import resolve_config

    ap = run_parser(__doc__, seeds=2, name="convergence")
    ap.add_argument("--base-steps", type=int, default=None, help="default: the profile's")
    ap.add_argument(
        "--records",
        default=None,
        help="a bench results folder (e.g. leaderboards/records): runs of the same "
        "configuration there are reused, not trained again",
    )
    ap.add_argument(
        "--cap-minutes",
        type=float,
        default=CAP_MINUTES,
        help="training minutes a run may take (median of seeds) for its budget to be the "
        "profile's (default %(default)s)",
    )
    ap.add_argument(
        "--leaderboard-dir",
        default=None,
        help="also write the study to <dir>/<dataset>/convergence.json, where the leaderboard "
        "of the same profile shows it (e.g. leaderboards)",
    )
    ap.add_argument(
        "--report",
        action="store_true",
        help="train nothing: the table of the runs stored so far (undecided where some are not)",
    )
    args = ap.parse_args(argv)
    overrides, out, budget, models = start(args, "convergence")
    if args.quick:
        args.base_steps = args.base_steps or 4
    base = args.base_steps or resolve_config(args.dataset, models[0], args.profile).max_steps
    if not base:
        raise SystemExit(f"profile {args.profile} has no max_steps: give --base-steps")
    records = Path(args.records) if args.records else None
    runs: dict[str, dict[int, list[dict]]] = {m: {} for m in models}
    for steps in (f * base for f in FACTORS):
        for model in models:
            for seed in range(args.seeds):
                path = run_path(out, args.dataset, model, seed, steps)
                options = {**overrides, "max_steps": steps}
                train = budget.left() > 0 and not args.report
                rec = train_once(
                    path, args.dataset, model, args.profile, seed, options, records, train
                )
                runs[model].setdefault(steps, [])
                if rec is None:
                    print(f"{model} {steps} steps seed {seed}: not trained")
                    continue
                runs[model][steps].append(rec)
                how = " (bench record)" if rec.get("from_record") else ""
                print(f"{model} {steps} steps seed {seed}: {rec['final_val_iou']:.3f}{how}")
        per_model = {m: compare(r, args.seeds) for m, r in runs.items()}
        choice = choose_budget(per_model, runs, args.cap_minutes * 60)
        undecided = steps > base and None in verdicts_at(per_model, steps // 2)
        if choice.steps or choice.over_cap or undecided:
            break  # chosen, past the cap, or undecided: no larger budget can be judged yet
    md = render(args.dataset, args.profile, per_model, runs, choice, args.cap_minutes)
    if args.out:
        write_text(args.out, md + "\n")
    data = {"per_model": per_model, "choice": choice._asdict(), "base_steps": base}
    if args.leaderboard_dir:
        write_study(Path(args.leaderboard_dir), args, data)
    title = "Convergence of the step budget"
    emit(args, "convergence", title, md, {"steps": choice.steps}, data, budget)


if __name__ == "__main__":
    main()
