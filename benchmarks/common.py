"""Shared helpers for the benchmark scripts in this folder.

* timing: per-step wall times with warm-up excluded, medians and spreads, A/B rounds run in
  rotating order so that load drifting on a shared machine hits every variant alike;
* the machine/versions header every result carries;
* markdown tables;
* the JSON hand-over to ``run_all.py``: each script prints its markdown and, given
  ``--json PATH``, writes ``{"name", "title", "markdown", "headline", "data", ...}`` there;
* the seg-bench plumbing the training benchmarks share lives in ``train_loop.py``.

Scripts import this as ``from common import ...`` (they put their own folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # run from a checkout without installing

from seg_bench.hardware import cpu_cores as cores  # noqa: E402
from seg_bench.hardware import cpu_name  # noqa: E402
from seg_bench.io import write_json  # noqa: E402

MODELS = ("unet", "resunet", "segnet", "tiramisu")  # the core architectures (fallback list)


def core_models(profile: str = "cpu") -> list[str]:
    """The core architectures as the profile benchmarks them (its ``bench_models``: at the cpu
    profile the Tiramisu is FC-DenseNet56), else ``MODELS``."""
    try:
        from seg_bench.config import benchmark_models

        try:
            return list(benchmark_models("synthetic", profile))
        except TypeError:  # older signature without the profile
            return list(benchmark_models("synthetic"))
    except Exception:
        return list(MODELS)


# --------------------------------------------------------------------------------------------
# command line


def add_common_args(ap: argparse.ArgumentParser, budget: float, cpu_time: bool = False) -> None:
    ap.add_argument("--quick", action="store_true", help="tiny CI-like run (seconds, not minutes)")
    ap.add_argument("--json", default=None, help="also write the results here (for run_all.py)")
    ap.add_argument(
        "--budget",
        type=float,
        default=budget,
        help=f"seconds this script aims to finish in; sizes the runs, skips what does not fit "
        f"(default {budget:.0f}; 0 = no limit)",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    if cpu_time:
        ap.add_argument(
            "--cpu-time",
            action="store_true",
            help="time steps by the main thread's CPU time with 1 torch thread instead of wall "
            "time: robust on a busy machine (ratios), but not the machine's multi-core wall speed",
        )


def add_models_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--models",
        default=None,
        help="comma list (default: the cpu profile's bench models "
        f"{','.join(core_models())}; quick: unet)",
    )


def models_arg(text: str | None, default: Sequence[str] | None = None) -> list[str]:
    if not text:
        return list(default) if default is not None else core_models()
    return [m.strip() for m in text.split(",") if m.strip()]


_CLOCK = {"now": time.perf_counter, "name": "wall"}


def now() -> float:
    """The benchmark clock: wall time, or main-thread CPU time under ``--cpu-time``."""
    return _CLOCK["now"]()


def clock_name() -> str:
    return _CLOCK["name"]


def setup_torch(threads: int = 0, cpu_time: bool = False) -> None:
    import torch

    if cpu_time:
        threads = 1  # all compute then runs in the main thread, which thread_time measures
        _CLOCK.update(now=time.thread_time, name="main-thread CPU time, 1 torch thread")
    if threads:
        torch.set_num_threads(threads)
    from seg_bench.training.trainer import quiet_lightning

    quiet_lightning()


# --------------------------------------------------------------------------------------------
# budget and timing


class Budget:
    """Wall-clock budget of one script; ``seconds <= 0`` means unlimited."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds or 0)
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return float("inf") if self.seconds <= 0 else self.seconds - self.elapsed()

    def share(self, parts_left: int) -> float:
        """An even share of what is left over ``parts_left`` remaining pieces of work."""
        return self.left() / max(parts_left, 1)


def sync(device: Any = None) -> None:
    import torch

    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def steps_for(seconds: float, step_s: float, lo: int, hi: int) -> int:
    """How many steps of ``step_s`` fit in ``seconds``, clamped to [lo, hi]."""
    if step_s <= 0 or seconds == float("inf"):
        return hi
    return int(max(lo, min(hi, seconds // step_s)))


def intervals(stamps: Sequence[float]) -> list[float]:
    return [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]


def stats(times: Sequence[float]) -> dict[str, float]:
    """median, quartiles, n and the relative spread (IQR / median) of a list of times."""
    xs = sorted(times)
    if not xs:
        return {
            "median": float("nan"),
            "p25": float("nan"),
            "p75": float("nan"),
            "n": 0,
            "spread": float("nan"),
        }
    med = statistics.median(xs)
    if len(xs) >= 4:
        q = statistics.quantiles(xs, n=4)
        p25, p75 = q[0], q[2]
    else:
        p25, p75 = xs[0], xs[-1]
    return {
        "median": med,
        "p25": p25,
        "p75": p75,
        "n": len(xs),
        "spread": (p75 - p25) / med if med else 0.0,
    }


def median_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def rounds(
    variants: dict[str, Callable[[], list[float]]], n_rounds: int
) -> dict[str, list[list[float]]]:
    """Run every variant once per round, the order rotating each round (A B C, B C A, ...).

    Each variant returns a list of steady-state step times; the result keeps them per round so
    that ratios can be formed within a round (paired), which cancels slow drifts in machine load.
    """
    names = list(variants)
    out: dict[str, list[list[float]]] = {k: [] for k in names}
    for r in range(n_rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            out[name].append(list(variants[name]()))
    return out


def paired_ratio(num: list[list[float]], den: list[list[float]]) -> float:
    """Median over rounds of median(num_round) / median(den_round)."""
    ratios = [
        statistics.median(a) / statistics.median(b)
        for a, b in zip(num, den, strict=True)
        if a and b
    ]
    return statistics.median(ratios) if ratios else float("nan")


def flat(per_round: Iterable[Iterable[float]]) -> list[float]:
    return [x for r in per_round for x in r]


# --------------------------------------------------------------------------------------------
# machine header


def machine_info() -> dict[str, Any]:
    import lightning
    import numpy
    import torch

    from seg_bench.hardware import cpu_flags

    flags = cpu_flags()
    gpu = None
    if torch.cuda.is_available():
        gpu = f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    try:
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        bf16 = None
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": cpu_name(),
        "cores": cores(),
        "logical_cpus": os.cpu_count(),
        "cpu_features": " ".join(sorted(f for f in flags if f.startswith(("avx512_bf16", "amx"))))
        or "-",
        "onednn_bf16": bf16,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu or "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "numpy": numpy.__version__,
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    i = info or machine_info()
    return (
        f"{i['cpu']}, {i['cores']} cores, torch threads {i['torch_threads']}, GPU {i['gpu']}; "
        f"torch {i['torch']}, lightning {i['lightning']}, numpy {i['numpy']}; "
        f"load {i['load_avg_1m']}"
    )


# --------------------------------------------------------------------------------------------
# output


def md_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None
) -> str:
    """A GitHub markdown table. ``align``: one letter per column, l/r/c (default: l then r)."""
    headers = [str(h) for h in headers]
    align = align or ("l" + "r" * (len(headers) - 1))
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join(marks[a] for a in align) + " |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def fmt(x: Any, digits: int = 2, unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return "n/a" if x != x else ("never" if x > 0 else "-inf")
    if isinstance(x, float):
        return f"{x:.{digits}f}{unit}"
    return f"{x}{unit}"


def emit(
    args: argparse.Namespace,
    name: str,
    title: str,
    markdown: str,
    headline: dict[str, Any] | None = None,
    data: Any = None,
    budget: Budget | None = None,
) -> None:
    """Print the section and, with ``--json``, hand it to run_all.py."""
    print(markdown, flush=True)
    if budget is not None:
        print(f"\n({name}: {budget.elapsed():.0f} s)", flush=True)
    if getattr(args, "json", None):
        payload = {
            "name": name,
            "title": title,
            "markdown": markdown,
            "headline": headline or {},
            "data": data,
            "quick": bool(getattr(args, "quick", False)),
            "elapsed_s": budget.elapsed() if budget else None,
            "machine": machine_info(),
            "argv": sys.argv,
        }
        # Strict JSON for any reader: NaN and infinities (no measurement) become null.
        write_json(Path(args.json), json.loads(json.dumps(payload), parse_constant=lambda _: None))
