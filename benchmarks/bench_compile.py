"""torch.compile on CPU: compile time, compiled vs eager step time, break-even.

Per core architecture at the cpu profile (patch 128, batch 8, width 0.25, the profile's
precision), each in its own subprocess with an empty Inductor cache (a cold compile, as the first
run of a model on a machine) and a hard time limit:

* eager: the hand-written training step (:class:`train_loop.HandLoop`), warm-up dropped, median;
* compiled: ``model.compile()`` (torch.compile in place) as ``seg_bench.training.trainer`` does with
  ``compile: true`` (the loss and the optimizer stay eager; AOTAutograd compiles the backward
  too). Compile cost = the time of the first compiled steps beyond the same number of compiled
  steady steps;
* eval compile (``--eval``, first model only, to show its cost): seg-bench validates every epoch
  with the same compiled module in eval mode under ``inference_mode`` (sliding window, batches
  of up to 4 tiles and a smaller last batch), which compiles new graphs: the extra time of the
  first validation pass over a second one;
* warm cache (full mode, if the budget allows): the same compile again in a new process with the
  cache the first one filled (the second seed of ``seg-bench bench``).

Break-even = compile cost / (eager - compiled step time), in steps. The cpu profile trains
``max_epochs x samples_per_epoch / batch_size`` steps per run; compile pays back when the
break-even (training compile, plus the eval compile where measured) is below that. A model
whose compile does not finish within its share of the budget is stopped and reported with the
time spent; when that is already longer than the whole eager run, it cannot pay back whatever
its speed-up. If torch.compile fails, the error is reported.

    python benchmarks/bench_compile.py            # 4 models, ~3.5 min budget on 2 cores
    python benchmarks/bench_compile.py --quick    # unet at patch 64
    python benchmarks/bench_compile.py --models unet --eval   # + the validation compile
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    Budget,
    add_common_args,
    add_models_arg,
    emit,
    fmt,
    machine_line,
    md_table,
    models_arg,
    setup_torch,
    stats,
)
from train_loop import cpu_config, profile_precision, profile_steps  # noqa: E402


def worker(spec: dict) -> dict:
    """One model: eager steps, compiled steps, optionally the eval compile. Runs in a subprocess."""
    import torch
    from train_loop import HandLoop, batch_loader, datamodule, make_model, pregenerate

    setup_torch(spec["threads"])
    cfg = cpu_config(spec["model"], patch_size=spec["patch"])
    precision = profile_precision(cfg)
    dm = datamodule(cfg)
    warm, n, first = spec["warmup"], spec["steps"], spec["first"]
    batches = pregenerate(dm, max(warm + n, first + n), seed=spec["seed"])
    out: dict = {"precision": precision, "torch": torch.__version__}

    def emit_partial():
        print("PARTIAL " + json.dumps(out), flush=True)

    model = make_model(cfg, dm, seed=spec["seed"])
    eager = HandLoop(cfg, model, precision).run(batch_loader(batches[: warm + n]))
    out["eager_step_s"] = stats(eager[warm:])["median"]
    emit_partial()

    if spec["eval"]:
        from seg_bench.inference.sliding_window import predict_logits

        image = next(iter(dm.val_dataloader()))["image"]
        t0 = time.perf_counter()
        predict_logits(model, image, window=dm.patch_size, overlap=cfg.overlap, precision=precision)
        out["eager_eval_s"] = time.perf_counter() - t0

    torch._dynamo.reset()
    model = make_model(cfg, dm, seed=spec["seed"])
    model.compile()
    loop = HandLoop(cfg, model, precision)
    t0 = time.perf_counter()
    try:
        times = loop.run(batch_loader(batches[: first + n]))
    except Exception as exc:  # inductor needs a C++ toolchain; report what failed
        out["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
        return out
    out["compiled_step_s"] = stats(times[first:])["median"]
    out["first_steps_s"] = times[:first]
    # Compile cost: the first steps' time beyond steady compiled steps.
    out["compile_s"] = sum(times[:first]) - first * out["compiled_step_s"]
    out["compiled_total_s"] = time.perf_counter() - t0
    emit_partial()

    if spec["eval"]:
        t0 = time.perf_counter()
        predict_logits(model, image, window=dm.patch_size, overlap=cfg.overlap, precision=precision)
        first_eval = time.perf_counter() - t0
        t0 = time.perf_counter()
        predict_logits(model, image, window=dm.patch_size, overlap=cfg.overlap, precision=precision)
        out["compiled_eval_s"] = time.perf_counter() - t0
        out["eval_compile_s"] = first_eval - out["compiled_eval_s"]
    return out


def run_worker(spec: dict, timeout: float, cache_dir: str) -> dict:
    env = dict(
        os.environ,
        TORCHINDUCTOR_CACHE_DIR=cache_dir,
        TRITON_CACHE_DIR=os.path.join(cache_dir, "triton"),
    )
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 1), env=env)
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        partial = [
            json.loads(line[8:]) for line in stdout.splitlines() if line.startswith("PARTIAL ")
        ]
        res = partial[-1] if partial else {}
        res["timeout_s"] = timeout
        res["wall_s"] = time.perf_counter() - t0
        return res
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {
            "error": f"worker exit {proc.returncode}: {' | '.join(tail)[:400]}",
            "wall_s": time.perf_counter() - t0,
        }
    res = json.loads(lines[-1][7:])
    res["wall_s"] = time.perf_counter() - t0
    return res


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, budget=300)
    add_models_arg(ap)
    ap.add_argument(
        "--patch", type=int, default=None, help="patch size (default: the profile's 128; quick 64)"
    )
    ap.add_argument(
        "--steps", type=int, default=None, help="steady steps timed (default 5, quick 3)"
    )
    ap.add_argument(
        "--eval",
        action="store_true",
        help="also time the eval-mode compile of the first validation pass (first model only; "
        "about as long again as the training compile, so off by default)",
    )
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def verdict(res: dict, spec: dict, do_eval: bool, budget_steps: int) -> str:
    """Whether the compile pays back within one profile run; adds the break-even to ``res``."""
    eager, comp = res.get("eager_step_s"), res.get("compiled_step_s")
    if "error" in res:
        return f"error: {res['error']}"
    if comp is None:
        spent = res.get("wall_s", 0)
        whole = (eager or 0) * budget_steps
        return f"compile not done after {spent:.0f} s" + (
            f" > whole eager run ({whole:.0f} s): cannot pay back"
            if eager and spent > whole
            else " (budget)"
        )
    total = res["compile_s"] + res.get("eval_compile_s", 0.0)
    gain = eager - comp
    be = total / gain if gain > 0 else float("inf")
    res["break_even_steps"] = be
    if spec["eval"] and "eval_compile_s" not in res:
        res["eval_note"] = "not finished"
    elif do_eval and not spec["eval"]:
        res["eval_note"] = "first model only"
    res["pays_back"] = be < budget_steps
    if be < budget_steps:
        text = f"pays back after {be:.0f} steps"
    elif be != float("inf"):
        text = f"does not pay back ({be:.0f} > {budget_steps} steps)"
    else:
        text = "never: compiled is not faster"
    if "eval_compile_s" not in res and gain > 0:
        text += " (training compile only)"
    return text


def result_row(name: str, res: dict, do_eval: bool, text: str) -> list[str]:
    eager, comp = res.get("eager_step_s"), res.get("compiled_step_s")
    if "eval_compile_s" in res:
        eval_cell = fmt(res.get("eval_compile_s"), 1)
    else:
        eval_cell = res.get("eval_note", "-") if do_eval else "not run"
    return [
        name,
        fmt(1000 * eager, 0) if eager else "-",
        fmt(1000 * comp, 0) if comp else "-",
        f"{eager / comp:.2f}x" if eager and comp else "-",
        fmt(res.get("compile_s"), 1),
        eval_cell,
        fmt(res.get("warm_cache_compile_s"), 1),
        text,
    ]


def bench_model(spec: dict, left: float, cache: str, budget: Budget, quick: bool) -> dict:
    """One model's worker run, then (full mode, time allowing) the same with a warm cache."""
    res = run_worker(spec, left, cache)
    if (
        "compile_s" in res
        and "timeout_s" not in res
        and budget.left() > 2 * res.get("wall_s", 0)
        and not quick
    ):
        warm = run_worker({**spec, "eval": False}, budget.left() / 2, cache)
        res["warm_cache_compile_s"] = warm.get("compile_s")
    return res


HEADERS = [
    "model",
    "eager ms/step",
    "compiled ms/step",
    "speed-up",
    "compile s",
    "eval compile s",
    "warm-cache compile s",
    "verdict",
]


def report(rows, data, patch, cfg0, budget_steps, do_eval, has_cxx) -> list[str]:
    not_measured = (
        " Not measured here (`--eval`): `train()` validates with the compiled module, and "
        "its first validation pass compiles eval-mode graphs too, which only delays the "
        "break-even further."
    )
    pays = [m for m in data if data[m].get("pays_back")]
    return [
        f"torch.compile (default mode, inductor) of the model, training step at patch {patch}, "
        f"batch {cfg0.batch_size}, {profile_precision(cfg0)}; each model in a fresh process with "
        f"an empty Inductor cache (cold). Compile s = first 2 compiled steps minus 2 steady "
        f"compiled steps; eval compile s = the extra time of the first validation pass (eval "
        f"mode, inference_mode, sliding window) with the compiled module; break-even = (compile "
        f"+ eval compile) / (eager - compiled) steps, against the {budget_steps} steps of one "
        f"cpu-profile run. Warm-cache compile s = the same compile in a new process with the "
        f"cache filled (later seeds of a bench). C++ compiler: {has_cxx or 'none found'}."
        + ("" if do_eval else not_measured),
        "",
        md_table(HEADERS, rows),
        "",
        f"Pays back within one cpu-profile run ({budget_steps} steps): "
        + (", ".join(pays) if pays else "none of the measured models")
        + (
            ". `compile: false` stays the right default for the cpu profile."
            if not pays
            else "; elsewhere `compile: false` stays the right default for the cpu profile."
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return

    setup_torch(args.threads)
    budget = Budget(args.budget)
    models = models_arg(args.models, ("unet",) if args.quick else None)
    cfg0 = cpu_config(models[0])
    patch = args.patch or (64 if args.quick else cfg0.patch_size)
    budget_steps = profile_steps(cfg0)
    print(
        f"# torch.compile (inductor), cpu profile, patch {patch}, {profile_precision(cfg0)}; "
        f"profile run = {budget_steps} steps\n# {machine_line()}",
        flush=True,
    )
    has_cxx = (
        shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++") or shutil.which("clang++")
    )

    rows, data, headline = [], {}, {}
    cache_root = tempfile.mkdtemp(prefix="seg-bench-inductor-")
    try:
        reserve = 40.0  # seconds kept for each model still to come (its eager steps, a verdict)
        for i, name in enumerate(models):
            # The first models may use what the later ones do not need up front: a compile that
            # finishes is worth more than four that are all stopped half-way.
            # ... but never less than an even share, or the first model is starved.
            left = max(
                budget.left() - reserve * (len(models) - i - 1), budget.share(len(models) - i)
            )
            if left < 20:
                rows.append([name, "-", "-", "-", "-", "-", "-", "skipped: budget"])
                continue
            spec = {
                "model": name,
                "patch": patch,
                "warmup": 2,
                "steps": args.steps or (3 if args.quick else 5),
                "first": 2,
                "eval": args.eval and i == 0,  # once is enough to show its cost
                "seed": args.seed,
                "threads": args.threads,
            }
            res = data[name] = bench_model(
                spec, left, os.path.join(cache_root, name), budget, args.quick
            )
            text = verdict(res, spec, args.eval, budget_steps)
            if "break_even_steps" in res:
                be = res["break_even_steps"]
                headline[f"compile break-even {name}"] = (
                    f"{be:.0f} steps (profile run {budget_steps})"
                    if be != float("inf")
                    else "never (no speed-up)"
                )
            rows.append(result_row(name, res, args.eval, text))
            print(f"{name}: {rows[-1]}", flush=True)
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)

    md = report(rows, data, patch, cfg0, budget_steps, args.eval, has_cxx)
    emit(args, "compile", "torch.compile on CPU", "\n".join(md), headline, data, budget)


if __name__ == "__main__":
    main()
