"""Reliability under faults and load: SIGKILL at any point, concurrent benches on one results
folder, a full disk, non-finite losses, hostile checkpoints, interrupted downloads, and secrets
that must never be written. (Hostile *file contents* are fuzzed in test_fuzz.py.)"""

from __future__ import annotations

import csv
import errno
import hashlib
import http.server
import io
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from processes import ended

from seg_bench.errors import UserError
from seg_bench.io import atomic_write, write_json
from seg_bench.models import MODELS
from seg_bench.protocol.records import read_record

MODELS_UNDER_TEST = ["unet", "resunet"]
SEEDS = 2
CLI_FAST = ["--profile", "smoke", "--width", "0.0625", "--set", "num_workers=0", "--logger", "none"]


def cli_config(model: str, seed: int):
    """The configuration CLI_FAST resolves to (it names the run folder and the record)."""
    from seg_bench.config import resolve_config

    return resolve_config(
        "synthetic", model, "smoke", seed=seed, width=0.0625, num_workers=0, logger="none"
    )


def bench_argv(d: Path, models=MODELS_UNDER_TEST, seeds=SEEDS, extra=()) -> list[str]:
    return [
        "bench",
        "--dataset",
        "synthetic",
        "--models",
        ",".join(models),
        "--seeds",
        str(seeds),
        "--results-dir",
        str(d / "results"),
        "--leaderboard-dir",
        str(d / "lb"),
        *CLI_FAST,
        *extra,
    ]


def flat(path: Path) -> str:
    """A log with rich's line wrapping undone."""
    return " ".join(path.read_text().split())


def cli_env(d: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "SEG_BENCH_RUNS": str(d / "runs"), "PYTHONUNBUFFERED": "1", **extra}


# --- what every state of the folders must satisfy ----------------------------------------------
def check_consistent(
    d: Path, complete: bool = False, models: list[str] = MODELS_UNDER_TEST
) -> Counter:
    """Every file a reader could take for a result is whole. Returns counts of files checked.

    complete: also exactly one valid record per (model, seed), a parseable leaderboard, and no
    temporary file anywhere (a later run removes those a killed one left)."""
    from seg_bench.inference.checkpoint import load_checkpoint

    checked: Counter = Counter()
    results = d / "results" / "synthetic"
    for p in sorted(results.glob("*.json")) if results.is_dir() else []:
        if p.name.endswith(".failed.json"):
            json.loads(p.read_text())
        else:
            rec = read_record(p)
            assert p.name == f"{rec['model']}__seed{rec['seed']}__{rec['config_key']}.json", p
            assert 0.0 <= rec["metrics"]["overall"]["iou"] <= 1.0
        checked["json"] += 1
    for p in sorted(d.rglob("*.npz")):
        with np.load(p) as z:
            assert z.files, p
            for k in z.files:
                z[k]  # decompresses the member, checking its CRC: a truncated file raises
        checked["npz"] += 1
    for p in sorted(d.rglob("*.ckpt")):  # (temporaries end in .tmp: never taken for one)
        load_checkpoint(p)  # weights_only=True; a truncated file would raise
        checked["ckpt"] += 1
    for p in sorted((d / "runs").rglob("config.json")):
        json.loads(p.read_text())
        checked["json"] += 1
    lb = d / "lb"
    if (lb / "synthetic.csv").exists():
        rows = list(csv.DictReader(open(lb / "synthetic.csv")))
        assert rows and all(0 <= float(r["iou"]) <= 1 for r in rows)
        checked["csv"] += 1
    if (lb / "synthetic.md").exists():
        md = (lb / "synthetic.md").read_text()
        assert md.startswith("# synthetic leaderboard") and md.endswith("\n") and "| Model |" in md
        checked["md"] += 1
    for p in sorted(lb.rglob("*.png")) if lb.is_dir() else []:
        from PIL import Image

        with Image.open(p) as im:
            im.load()
        checked["png"] += 1
    if complete:
        from seg_bench.protocol.records import record_path_for

        names = sorted(p.name for p in results.glob("*.json"))
        expected = [record_path_for(d, cli_config(m, s)).name for m in models for s in range(SEEDS)]
        assert names == sorted(expected)
        rows = {r["model"]: r for r in csv.DictReader(open(lb / "synthetic.csv"))}
        assert sorted(rows) == sorted(models) and all(
            r["seeds"] == str(SEEDS) for r in rows.values()
        )
        md = (lb / "synthetic.md").read_text()
        assert all(f"| {m} |" in md for m in models)
        leftovers = [p for p in d.rglob("*.tmp")]
        assert not leftovers, leftovers
        from seg_bench.training.run_dir import run_dir_for

        for m in models:
            for s in range(SEEDS):
                ck = run_dir_for(d / "runs", cli_config(m, s)) / "checkpoints"
                assert (ck / "best.ckpt").is_file() and (ck / "last.ckpt").is_file()
    return checked


# --- 1. kill anywhere -----------------------------------------------------------------------------
# A warm process (seg_bench imported, no torch op run yet) forks one bench per command, so a
# kill cycle costs the run and not the ~5 s of imports. The child is an ordinary process running
# `seg-bench bench`; a SIGKILL ends it as it would end `python -m seg_bench.cli`. For targeted
# kills the child wraps os.replace: just before (or after) a matching file is renamed into
# place it drops a flag file and sleeps, and the test kills it there.
FORKER = r"""
import fnmatch, json, os, sys, time, traceback
import seg_bench.cli, seg_bench.protocol.bench, seg_bench.evaluation.evaluate
import seg_bench.protocol.figures, seg_bench.protocol.report, seg_bench.training.trainer
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        pattern, when, flag = job.get("pattern"), job.get("when"), job.get("flag")
        if pattern:
            real_replace = os.replace
            def replace(src, dst, *a, **k):
                hit = fnmatch.fnmatch(os.path.basename(dst), pattern)
                if hit and when == "before":
                    open(flag, "w").write(str(dst)); time.sleep(600)
                out = real_replace(src, dst, *a, **k)
                if hit and when == "after":
                    open(flag, "w").write(str(dst)); time.sleep(600)
                return out
            os.replace = replace
        try:
            rc = seg_bench.cli.main(job["argv"])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
            rc = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(rc or 0)
    print(f"pid {pid}", flush=True)
    sys.stdin.readline()  # "reap": until then the pid stays ours (a zombie at worst), never reused
    _, status = os.waitpid(pid, 0)
    print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)
"""

# (kind, argument): ("random", max delay s) or ("before"/"after", file pattern to stop at).
KILL_PLAN = [
    ("random", 2.0),
    ("random", 4.0),
    ("before", "config.json"),
    ("before", "best.ckpt"),
    ("before", "last.ckpt"),
    ("random", 3.0),
    ("random", 5.0),
    ("before", "*.preview.npz"),
    ("before", "*__seed?__*.json"),
    ("after", "*__seed?__*.json"),
    ("random", 3.0),
    ("random", 5.0),
    ("before", "last.ckpt"),
    ("after", "*__seed?__*.json"),
    ("after", "*__seed?__*.json"),
    ("random", 4.0),
    ("after", "*__seed?__*.json"),
    ("before", "synthetic.md"),
    ("before", "synthetic.csv"),
    ("before", "roc.png"),
    ("before", "overlays.png"),
    ("random", 1.0),
    ("random", 2.0),
]

PHASE_OF_PATTERN = {
    "config.json": "training (run config)",
    "best.ckpt": "checkpoint saving",
    "last.ckpt": "checkpoint saving",
    "*.preview.npz": "result writing",
    "*__seed?__*.json": "result writing",
    "synthetic.md": "leaderboard writing",
    "synthetic.csv": "leaderboard writing",
    "roc.png": "leaderboard writing",
    "overlays.png": "leaderboard writing",
}


def phase_from_log(log: str) -> str:
    """Where a randomly timed kill landed, from the child's progress lines."""
    finished = log.count(": done in") + log.count(": already done")
    if finished >= len(MODELS_UNDER_TEST) * SEEDS:
        return "leaderboard writing"
    if log.rstrip().endswith("epochs)"):  # the last line: "[i/n] <model> seed <k>: training (...)"
        return "training/evaluation"
    return "start-up" if "[1/" not in log else "between pairs"


class Forker:
    def __init__(self, d: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(d / "forker.err", "w"),
            text=True,
            env=cli_env(d),
            cwd=d,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.expect("ready", 120) == "ready", (d / "forker.err").read_text()[-2000:]

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("eof")

    def expect(self, prefix: str, timeout: float) -> str:
        line = self.lines.get(timeout=timeout)
        assert line.startswith(prefix), line
        return line

    def start(self, job: dict) -> int:
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return int(self.expect("pid", 60).split()[1])

    def kill_and_reap(self, pid: int) -> int:
        os.kill(pid, signal.SIGKILL)  # safe: not reaped yet, so the pid is still this child's
        self.proc.stdin.write("reap\n")
        self.proc.stdin.flush()
        return int(self.expect("exit", 120).split()[1])

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_at_random_and_targeted_points_then_rerun_finishes_cleanly(tmp_path):
    d = tmp_path
    rng = random.Random(20240607)
    phases: Counter = Counter()
    checked: Counter = Counter()
    kills = 0
    t_start = time.monotonic()

    # One kill of a plain `python -m seg_bench.cli bench` process, mid-training.
    log = d / "cli0.log"
    with open(log, "w") as f:
        p = subprocess.Popen(
            [sys.executable, "-m", "seg_bench.cli", *bench_argv(d)],
            stdout=f,
            stderr=f,
            env=cli_env(d),
            cwd=d,
        )
    while ": training (" not in log.read_text() and p.poll() is None:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.5))
    p.send_signal(signal.SIGKILL)
    assert p.wait(30) == -signal.SIGKILL, log.read_text()[-2000:]
    kills += 1
    phases["training/evaluation (python -m seg_bench.cli)"] += 1
    checked += check_consistent(d)

    # On a fast machine a bench may finish before a planned kill lands: once a run completes,
    # the following kills go to a fresh folder, so each one meets unfinished work. The plan is
    # repeated until at least 20 kills have landed (at most 3 passes).
    folders = [d]
    forker = Forker(d)
    try:
        for n, (kind, arg) in enumerate(KILL_PLAN * 3):
            if kills >= 20 and n >= len(KILL_PLAN):
                break
            cycle_dir = folders[-1]
            flag = cycle_dir / f"flag{n}"
            job = {"argv": bench_argv(cycle_dir), "log": str(cycle_dir / f"run{n}.log")}
            if kind != "random":
                job.update(pattern=arg, when=kind, flag=str(flag))
            pid = forker.start(job)
            if kind == "random":
                time.sleep(rng.uniform(0.1, arg))
            else:
                # a fresh folder may need a whole bench before the pattern: slow CI cores
                deadline = time.monotonic() + 300
                while not flag.exists() and time.monotonic() < deadline and not ended(pid):
                    time.sleep(0.01)
            code = forker.kill_and_reap(pid)
            run_log = flat(Path(job["log"]))
            if code == -signal.SIGKILL:
                kills += 1
                if kind == "random":
                    phases[phase_from_log(run_log)] += 1
                else:
                    assert flag.exists(), f"killed before reaching {arg}: {run_log[-1500:]}"
                    phases[f"{PHASE_OF_PATTERN[arg]} ({kind} rename)"] += 1
            else:  # it finished before the kill: must have succeeded
                assert code == 0, run_log[-3000:]
                phases["(run finished before the kill)"] += 1
            checked += check_consistent(cycle_dir)
            if code == 0:
                forker.close()
                folders.append(d / f"folder{len(folders) + 1}")
                folders[-1].mkdir()
                forker = Forker(folders[-1])
    finally:
        forker.close()

    # The final, uninterrupted run finishes the job with a plain CLI process.
    # Newest first: later folders live inside the first one, whose check looks through them.
    for cycle_dir in reversed(folders):
        done = subprocess.run(
            [sys.executable, "-m", "seg_bench.cli", *bench_argv(cycle_dir)],
            capture_output=True,
            text=True,
            env=cli_env(cycle_dir),
            cwd=cycle_dir,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        if cycle_dir != folders[-1]:  # earlier folders were finished by runs that kills interrupted
            assert done.stderr.count("already done") == len(MODELS_UNDER_TEST) * SEEDS
        checked += check_consistent(cycle_dir, complete=True)

    elapsed = time.monotonic() - t_start
    print(f"\n[kill test] kills survived: {kills} in {elapsed:.0f}s; by phase: {dict(phases)}")
    print(
        "[kill test] files checked after every kill and at the end: "
        f"{sum(checked.values())} {dict(checked)}"
    )
    assert kills >= 20
    landed = " ".join(phases)
    for phase in ("training", "checkpoint saving", "result writing", "leaderboard writing"):
        assert phase in landed, phases


# --- 2. concurrent benches on one results folder --------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_benches_on_one_results_folder_share_the_work_and_lose_nothing(tmp_path):
    """Two processes with the same model and seeds (the worst case: the same pairs). The test
    holds unet seed 0's lock at first, so both must put it off and then wait for it."""
    from seg_bench.io import file_lock
    from seg_bench.protocol.bench import lock_path
    from seg_bench.protocol.records import record_path_for

    d = tmp_path
    held = lock_path(record_path_for(d / "results", cli_config("unet", 0)))
    logs = [d / "a.log", d / "b.log"]
    with file_lock(held) as got:
        assert got
        procs = []
        for log in logs:
            with open(log, "w") as f:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "seg_bench.cli", *bench_argv(d, models=["unet"])],
                        stdout=f,
                        stderr=f,
                        env=cli_env(d),
                        cwd=d,
                    )
                )
        deadline = time.monotonic() + 240
        while not all("unet seed 0: waiting for the other" in flat(log) for log in logs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [
                log.read_text()[-2000:] for log in logs
            ]
            time.sleep(0.1)
    codes = [p.wait(240) for p in procs]
    texts = [flat(log) for log in logs]
    assert codes == [0, 0], [t[-3000:] for t in texts]
    for t in texts:
        assert "unet seed 0: another seg-bench process is running it; coming back to it later" in t
    # Every (model, seed) was trained exactly once, by one of the two.
    for s in range(SEEDS):
        runs = sum(t.count(f"] unet seed {s}: training (") for t in texts)
        assert runs == 1, (s, [t[-3000:] for t in texts])
    check_consistent(d, complete=True, models=["unet"])  # one record each; the leaderboard has both


def test_distributed_ranks_above_zero_do_not_take_the_pair_lock(tmp_path, monkeypatch):
    """Under DDP, rank 0 holds the lock while its rank-1 process runs the same bench: taking it
    there would deadlock, so ranks > 0 skip it (they write nothing rank 0 does not)."""
    from seg_bench.io import file_lock
    from seg_bench.protocol.bench import pair_lock

    record = tmp_path / "synthetic" / "unet__seed0.json"
    for var in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(var, raising=False)
    with pair_lock(record, blocking=False) as first:
        assert first
        with pair_lock(record, blocking=False) as second:  # another open file: flock conflicts
            assert not second
        monkeypatch.setenv("LOCAL_RANK", "1")
        with pair_lock(record, blocking=False) as rank1:
            assert rank1
    with file_lock(tmp_path) as on_folder:  # folders can be locked too (the leaderboard's)
        assert on_folder


# --- 3. full disk ---------------------------------------------------------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _tiny_checkpoint() -> dict:
    model = nn.Conv2d(1, 4, 3)
    return {"state_dict": model.state_dict(), "hyper_parameters": {"model": "x"}, "epoch": 3}


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_full_disk_during_record_write_keeps_the_old_record(tmp_path, monkeypatch):
    path = tmp_path / "synthetic" / "unet__seed0.json"
    write_json(
        path, {"version": 1, "model": "unet", "seed": 0, "metrics": {"overall": {"iou": 0.5}}}
    )
    before = path.read_bytes()
    monkeypatch.setattr(os, "fsync", _enospc)  # where a full disk surfaces on delayed allocation
    with pytest.raises(
        UserError, match=r"cannot write .*unet__seed0\.json: No space left on device; free space"
    ):
        write_json(
            path, {"version": 1, "model": "unet", "seed": 0, "metrics": {"overall": {"iou": 0.9}}}
        )
    monkeypatch.undo()
    assert path.read_bytes() == before and not _temporaries(path.parent)

    # A failing write() in the middle of the data (a preview, a leaderboard, a prediction).
    class Full(io.BufferedWriter):
        pass

    real_open = open

    def open_full(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        if "w" in mode and str(file).endswith(".tmp"):
            f.write = lambda data: _enospc()
        return f

    monkeypatch.setattr("builtins.open", open_full)
    with pytest.raises(UserError, match="No space left on device"):
        with atomic_write(path) as f:
            f.write("{}")
    monkeypatch.undo()
    assert path.read_bytes() == before and not _temporaries(path.parent)


def test_full_disk_during_checkpoint_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    import seg_bench.training.checkpoint_io as cio

    path = tmp_path / "checkpoints" / "last.ckpt"
    io_ = cio.AtomicCheckpointIO()
    io_.save_checkpoint(_tiny_checkpoint(), path)
    before = path.read_bytes()
    real_save = torch.save

    def half_then_full(obj, f, *a, **k):  # some bytes reach the file, then the disk is full
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        _enospc()

    monkeypatch.setattr(cio.torch, "save", half_then_full)
    with pytest.raises(UserError, match=r"cannot write .*last\.ckpt: No space left on device"):
        io_.save_checkpoint({**_tiny_checkpoint(), "epoch": 4}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and not _temporaries(path.parent)
    assert torch.load(path, weights_only=True)["epoch"] == 3


def test_full_disk_while_training_is_one_line_from_the_cli(tmp_path, monkeypatch, capsys):
    import seg_bench.training.checkpoint_io as cio
    from seg_bench.cli import main

    monkeypatch.setattr(cio.torch, "save", _enospc)
    code = main(["train", "--model", "tiny_ok", "--run-dir", str(tmp_path / "run"), *CLI_FAST])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert (
        f"cannot write {tmp_path / 'run' / 'checkpoints'}/" in err
        and "No space left on device; free space" in err
    )
    assert not _temporaries(tmp_path / "run" / "checkpoints")


@pytest.fixture
def full_tmpfs(tmp_path):
    """A 1 MiB tmpfs, with a record and a checkpoint on it, then filled up to the last byte."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip(
            "mounting a 1 MiB tmpfs needs root on Linux "
            "(the injected-failure tests cover the logic)"
        )
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        write_json(
            mnt / "results" / "unet__seed0.json",
            {"version": 1, "model": "unet", "seed": 0, "metrics": {"overall": {}}},
        )
        from seg_bench.training.checkpoint_io import AtomicCheckpointIO

        AtomicCheckpointIO().save_checkpoint(_tiny_checkpoint(), mnt / "checkpoints" / "last.ckpt")
        try:
            with open(mnt / "filler", "wb", buffering=0) as f:
                while True:
                    f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        assert os.statvfs(mnt).f_bavail == 0
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_real_full_disk_tmpfs(full_tmpfs, monkeypatch, capsys):
    from seg_bench.training.checkpoint_io import AtomicCheckpointIO

    record, ckpt = (
        full_tmpfs / "results" / "unet__seed0.json",
        full_tmpfs / "checkpoints" / "last.ckpt",
    )
    old_record, old_ckpt = record.read_bytes(), ckpt.read_bytes()
    with pytest.raises(UserError, match="No space left on device"):
        write_json(
            record,
            {
                "version": 1,
                "model": "unet",
                "seed": 0,
                "metrics": {"overall": {"iou": 0.1}},
                "pad": "x" * 10000,
            },
        )
    with pytest.raises(UserError, match="No space left on device"):
        AtomicCheckpointIO().save_checkpoint(
            {**_tiny_checkpoint(), "pad": torch.zeros(100000)}, ckpt
        )
    assert record.read_bytes() == old_record and ckpt.read_bytes() == old_ckpt
    assert not _temporaries(record.parent) and not _temporaries(ckpt.parent)
    # The command line says it in one line, without a traceback.
    import seg_bench.cli as cli

    monkeypatch.setattr(cli, "RUNS_DIR", full_tmpfs / "runs")
    code = cli.main(
        [
            "bench",
            "--models",
            "unet",
            "--results-dir",
            str(full_tmpfs / "results"),
            "--leaderboard-dir",
            str(full_tmpfs / "lb"),
            *CLI_FAST,
        ]
    )
    err = capsys.readouterr().err
    assert (
        code == 2
        and "No space left on device; free space or write elsewhere" in err
        and "Traceback" not in err
    ), err
    print(f"\n[full disk] {err.strip()}")


# --- 6. checkpoints -------------------------------------------------------------------------------
class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def unet_checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint as Lightning writes it, without training (fast)."""
    from seg_bench.training.checkpoint_io import AtomicCheckpointIO
    from seg_bench.training.task import SegmentationTask

    task = SegmentationTask(model="unet", width=0.0625)
    path = tmp_path_factory.mktemp("ckpt") / "unet.ckpt"
    AtomicCheckpointIO().save_checkpoint(
        {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "epoch": 0}, path
    )
    return path


def test_checkpoint_that_would_run_code_is_refused(unet_checkpoint, tmp_path):
    from seg_bench.inference.checkpoint import load_checkpoint

    marker = tmp_path / "pwned"
    ckpt = torch.load(unet_checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["postprocess"] = _RunsCode(str(marker))
    torch.save(ckpt, tmp_path / "evil.ckpt")
    with pytest.raises(UserError, match="not a readable seg-bench checkpoint"):
        load_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()
    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")  # a readable file that is no checkpoint
    with pytest.raises(UserError, match="not a seg-bench checkpoint"):
        load_checkpoint(tmp_path / "tensor.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(UserError, match="not a readable seg-bench checkpoint"):
        load_checkpoint(tmp_path / "empty.ckpt")


def test_checkpoint_of_another_architecture_or_class_count_is_refused(unet_checkpoint, tmp_path):
    from seg_bench.inference.checkpoint import load_model_for_inference
    from seg_bench.training.checkpoint_io import AtomicCheckpointIO
    from seg_bench.training.task import SegmentationTask

    assert (
        load_model_for_inference(unet_checkpoint, expected_model="unet", classes=2).hparams["model"]
        == "unet"
    )
    with pytest.raises(UserError, match="holds a 'unet' model, not 'segnet'"):
        load_model_for_inference(unet_checkpoint, expected_model="segnet")
    three = SegmentationTask(model="unet", width=0.0625, num_classes=3)
    AtomicCheckpointIO().save_checkpoint(
        {"state_dict": three.state_dict(), "hyper_parameters": dict(three.hparams)},
        tmp_path / "three.ckpt",
    )
    with pytest.raises(UserError, match="predicts 3 classes, not 2"):
        load_model_for_inference(tmp_path / "three.ckpt", classes=2)
    # segnet weights filed under unet's name: the state dict does not fit
    seg = SegmentationTask(model="segnet", width=0.0625)
    AtomicCheckpointIO().save_checkpoint(
        {
            "state_dict": seg.state_dict(),
            "hyper_parameters": {**dict(seg.hparams), "model": "unet"},
        },
        tmp_path / "swap.ckpt",
    )
    with pytest.raises(UserError, match=r"does not match the model it names \(unet\)"):
        load_model_for_inference(tmp_path / "swap.ckpt")


# --- 7. numerical faults --------------------------------------------------------------------------
NAN_SWITCH = {"on": True}


class _NanAfterFirstStep(nn.Module):
    """Fine for one training step, then its output (and so the loss) is NaN while the switch is
    on."""

    def __init__(self, in_channels: int = 1, classes: int = 1, width: float = 1.0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, classes, 3, padding=1)
        self.steps = 0

    def forward(self, x):
        out = self.conv(x)
        if self.training:
            self.steps += 1
            if NAN_SWITCH["on"] and self.steps > 1:
                return out * float("nan")
        return out


@MODELS.register("nan_after_step1", "NaN output after one training step (test-only)")
def nan_after_step1(in_channels: int = 1, classes: int = 1, width: float = 1.0) -> nn.Module:
    return _NanAfterFirstStep(in_channels, classes, width)


@MODELS.register("tiny_ok", "one 3x3 convolution (test-only)")
def tiny_ok(in_channels: int = 1, classes: int = 1, width: float = 1.0) -> nn.Module:
    return nn.Conv2d(in_channels, classes, 3, padding=1)


@pytest.mark.slow
def test_nan_loss_writes_a_failed_note_and_the_bench_goes_on(tmp_path):
    from seg_bench.protocol.bench import bench
    from seg_bench.protocol.records import load_records

    dirs = {
        "results_dir": tmp_path / "results",
        "runs_dir": tmp_path / "runs",
        "leaderboard_dir": tmp_path / "lb",
    }
    kw = {"profile": "smoke", "overrides": {"logger": "none", "num_workers": 0}, **dirs}
    NAN_SWITCH["on"] = True
    with pytest.raises(
        UserError,
        match=r"1 of 2 runs failed .*nan_after_step1 seed 0 \(loss became nan at epoch 0, step 1;",
    ):
        bench("synthetic", models=["nan_after_step1", "tiny_ok"], **kw)
    from seg_bench.config import resolve_config
    from seg_bench.protocol.records import failed_path, record_path_for

    nan_cfg = resolve_config("synthetic", "nan_after_step1", "smoke", **kw["overrides"])
    record = record_path_for(dirs["results_dir"], nan_cfg)
    failed = json.loads(failed_path(record).read_text())
    assert failed["status"] == "failed" and (failed["epoch"], failed["step"]) == (0, 1)
    assert (
        "lower the learning rate" in failed["error"]
        and failed["config"]["model"] == "nan_after_step1"
    )
    assert not record.exists()
    assert [r["model"] for r in load_records(dirs["results_dir"], "synthetic")] == [
        "tiny_ok"
    ]  # the note is no record
    md = (dirs["leaderboard_dir"] / "synthetic.md").read_text()
    assert "| tiny_ok |" in md and "nan_after_step1" not in md  # failed pairs are left off

    # An older configuration's record of the failing model is not shown in its place.
    [ok] = load_records(dirs["results_dir"], "synthetic")
    older = {**ok, "model": "nan_after_step1", "config": {**ok["config"], "lr": 0.5}}
    older["config"]["model"] = "nan_after_step1"
    (record.parent / "nan_after_step1__seed0__older.json").write_text(json.dumps(older))
    with pytest.raises(UserError, match="1 of 2 runs failed"):
        bench("synthetic", models=["nan_after_step1", "tiny_ok"], **kw)
    assert "nan_after_step1" not in (dirs["leaderboard_dir"] / "synthetic.md").read_text()

    NAN_SWITCH["on"] = False  # "fixed": a rerun retries the failed pair only, and clears its note
    try:
        records = bench("synthetic", models=["nan_after_step1", "tiny_ok"], **kw)
    finally:
        NAN_SWITCH["on"] = True
    assert [r["model"] for r in records] == ["nan_after_step1", "tiny_ok"]
    assert not failed_path(record).exists()
    assert "| nan_after_step1 |" in (dirs["leaderboard_dir"] / "synthetic.md").read_text()


def test_all_runs_failing_is_one_clear_error_and_no_leaderboard(tmp_path):
    from seg_bench.protocol.bench import bench

    with pytest.raises(UserError, match=r"1 of 1 runs failed"):
        bench(
            "synthetic",
            models=["nan_after_step1"],
            profile="smoke",
            overrides={"logger": "none", "num_workers": 0},
            results_dir=tmp_path / "r",
            runs_dir=tmp_path / "runs",
            leaderboard_dir=tmp_path / "lb",
        )
    assert not (tmp_path / "lb" / "synthetic.md").exists()
    # A --tta bench runs the training twin too: both count (it said "2 of 1 runs failed").
    with pytest.raises(UserError, match=r"2 of 2 runs failed.*\(its training run failed\)"):
        bench(
            "synthetic",
            models=["nan_after_step1"],
            profile="smoke",
            overrides={"logger": "none", "num_workers": 0, "tta": True},
            results_dir=tmp_path / "r",
            runs_dir=tmp_path / "runs",
            leaderboard_dir=tmp_path / "lb",
        )


def _all_finite(d: dict) -> bool:
    return all(np.isfinite(v) for v in d.values() if isinstance(v, float))


@pytest.mark.parametrize("truth_value", [0, 1], ids=["all-background", "all-foreground"])
def test_single_class_images_give_finite_metrics(truth_value):
    from seg_bench.evaluation.evaluate import aggregate, image_record
    from seg_bench.inference.postprocess import PostprocessConfig
    from seg_bench.metrics import pixel_metrics

    rng = np.random.default_rng(0)
    truth = np.full((32, 32), truth_value, np.uint8)
    for prob in (rng.random((32, 32)), np.zeros((32, 32)), np.ones((32, 32))):
        rec, _ = image_record(
            prob, truth, truth.astype(np.int32), "dsb", PostprocessConfig.from_dict({})
        )
        overall = aggregate([rec, rec])
        assert overall and _all_finite(overall), overall
        assert np.isfinite(rec["dsb_map"])
    for cm in ([[100, 0], [0, 0]], [[0, 0], [0, 100]], [[50, 50], [0, 0]], [[0, 0], [50, 50]]):
        m = pixel_metrics(np.array(cm))
        headline = {
            k: m[k]
            for k in ("iou", "dice", "kappa", "precision", "recall", "specificity", "fpr", "fnr")
        }
        assert _all_finite({k: float(v) for k, v in headline.items()}), (cm, headline)


@pytest.mark.parametrize("loss", ["bce", "dice", "bce_dice", "focal", "unet_weighted"])
@pytest.mark.parametrize("truth_value", [0, 1], ids=["all-background", "all-foreground"])
def test_losses_are_finite_on_single_class_batches(loss, truth_value):
    from seg_bench.training.losses import get_loss

    mask = torch.full((2, 16, 16), truth_value, dtype=torch.long)
    batch = {"mask": mask, "instances": mask.int()}
    for logits in (
        torch.randn(2, 1, 16, 16),
        torch.full((2, 1, 16, 16), 30.0),
        torch.full((2, 1, 16, 16), -30.0),
    ):
        assert torch.isfinite(get_loss(loss)(logits, batch)), (loss, logits.flatten()[0])


def test_validation_and_evaluation_on_all_background_images_are_finite(tmp_path):
    from seg_bench.config import resolve_config
    from seg_bench.evaluation.evaluate import evaluate
    from seg_bench.training.trainer import build_datamodule, build_task, build_trainer

    cfg = resolve_config("synthetic", "tiny_ok", "smoke", num_workers=0, logger="none")
    dm = build_datamodule(cfg)
    for split in ("val", "test"):
        for s in dm.samples(split):
            s.mask[:] = 0
            s.instances[:] = 0
            s.foreground = np.zeros(0, np.int64)
    task = build_task(cfg, dm)
    trainer, _, _ = build_trainer(cfg, tmp_path, progress=False)
    scores = trainer.validate(task, datamodule=dm, verbose=False)[0]
    assert scores and all(np.isfinite(v) for v in scores.values()), scores
    result = evaluate(task.model, dm, cfg)
    assert "auroc" not in result["overall"]  # undefined without positives: left out, not NaN
    assert _all_finite(result["overall"]), result["overall"]


# --- 5. downloads ---------------------------------------------------------------------------------
@pytest.fixture
def flaky_server(tmp_path, monkeypatch):
    """127.0.0.1 server of one file: the first request gets half the body (Content-Length says
    all of it) and the connection closes; later requests get the whole file."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    body = np.random.default_rng(0).bytes(300_000)
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if len(hits) == 1:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/training.tif", body, hits
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("checked", [True, False], ids=["sha256", "no-checksum"])
def test_download_cut_off_midway_leaves_nothing_and_the_next_call_restarts_cleanly(
    tmp_path, flaky_server, checked
):
    from seg_bench.data import download as dl
    from seg_bench.errors import DataError

    url, body, hits = flaky_server
    remote = dl.Remote(url, "training.tif", hashlib.sha256(body).hexdigest() if checked else None)
    dest = tmp_path / "epfl"
    dest.mkdir()
    with pytest.raises(
        DataError, match=rf"could not download {url} .*By hand: place training\.tif"
    ):
        dl.fetch(remote, dest, dl.SOURCES["epfl"].manual)
    assert list(dest.iterdir()) == []  # no partial file, no temporary under any name
    target = dl.fetch(remote, dest, dl.SOURCES["epfl"].manual)
    assert target.read_bytes() == body and len(hits) == 2
    assert [p.name for p in dest.iterdir()] == ["training.tif"]


@pytest.mark.parametrize(
    "entries",
    [
        [("file", "/abs/evil.txt")],
        [("file", "ok/../../evil.txt")],
        [("symlink", "ok/link", "/etc")],
        [("symlink", "link", "."), ("symlink", "link2", "link/../..")],
        [("symlink", "a", "b/../.."), ("file", "a/evil.txt")],
        [("hardlink", "ok/h", "/etc/passwd")],
    ],
    ids=[
        "tar-absolute",
        "tar-dotdot-inside-name",
        "tar-symlink-absolute",
        "tar-symlink-chain",
        "tar-write-through-escaping-link",
        "tar-hardlink-absolute",
    ],
)
def test_escaping_tar_entries_are_refused_before_anything_is_written(tmp_path, entries):
    """Cases beyond test_data_download.py's: absolute names, escape via a chain of links, a file
    written through an escaping link. Nothing lands outside the target, nothing inside either."""
    import tarfile

    from seg_bench.data.download import safe_extract

    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tf:
        ok = tarfile.TarInfo("ok/fine.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        for kind, name, *target in entries:
            m = tarfile.TarInfo(name)
            if kind == "file":
                m.size = 4
                tf.addfile(m, io.BytesIO(b"evil"))
            else:
                m.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                m.linkname = target[0]
                tf.addfile(m)
    out = tmp_path / "deep" / "out"
    with pytest.raises(UserError, match="refusing archive entry"):
        safe_extract(archive, out)
    assert not any(out.rglob("*")) and not list(tmp_path.rglob("evil.txt"))


# --- 8. secrets -----------------------------------------------------------------------------------
FAKE_KEY = "f4ke0123456789abcdef0123456789abcdef9999"
DB_PASSWORD = "Pg-s3cret-Pa55"


def _wandb_env(d: Path) -> dict[str, str]:
    env = {
        "WANDB_MODE": "offline",
        "WANDB_API_KEY": FAKE_KEY,
        "WANDB_SILENT": "true",
        "WANDB_X_DISABLE_STATS": "true",
    }
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        env[var] = str(d / "wandb-home" / var.lower())
    return env


def _files_holding(root: Path, *secrets: str) -> list[Path]:
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    assert files
    return [p for p in files if any(s.encode() in p.read_bytes() for s in secrets)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_api_key_and_database_password_are_never_written_by_bench_or_search(tmp_path):
    """A bench logging to W&B (offline, a fake API key in the environment) and a search given a
    PostgreSQL URL with a password (unreachable: it fails, naming the storage): no secret in any
    file written (run folders, W&B's offline runs and its config/cache folders, records,
    leaderboards) or in the output. A search that reaches its database: the next test, and
    test_search_postgres.py."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://bench:{DB_PASSWORD}@127.0.0.1:{port}/optuna"
    env = {
        **os.environ,
        **_wandb_env(tmp_path),
        "SEG_BENCH_RUNS": str(tmp_path / "runs"),
        "PYTHONUNBUFFERED": "1",
    }
    fast = [
        "--profile",
        "smoke",
        "--width",
        "0.0625",
        "--set",
        "num_workers=0",
        "--logger",
        "wandb",
    ]
    cmds = [
        [
            "bench",
            "--models",
            "unet",
            "--results-dir",
            str(tmp_path / "results"),
            "--leaderboard-dir",
            str(tmp_path / "lb"),
            *fast,
        ],
        ["search", "--model", "unet", "--trials", "1", "--storage", url, *fast],
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "seg_bench.cli", *c],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for c in cmds
    ]
    (b_out, b_err), (s_out, s_err) = (p.communicate(timeout=240) for p in procs)
    assert procs[0].returncode == 0, b_err[-3000:]
    assert (
        procs[1].returncode == 2
        and f"cannot open the study storage postgresql://bench:***@127.0.0.1:{port}/optuna"
        in " ".join(s_err.split())
    ), s_err
    output = b_out + b_err + s_out + s_err
    assert FAKE_KEY not in output and DB_PASSWORD not in output
    assert list(tmp_path.rglob("*.wandb")), "W&B wrote no offline run: nothing was checked"
    assert (
        list((tmp_path / "results" / "synthetic").glob("unet__seed0__*.json"))
        and (tmp_path / "lb" / "synthetic.md").exists()
    )
    assert _files_holding(tmp_path, FAKE_KEY, DB_PASSWORD) == []
    n = sum(1 for p in tmp_path.rglob("*") if p.is_file())
    print(f"\n[secrets] {n} files and {len(output)} characters of output checked")


def test_a_password_on_the_command_line_stays_out_of_wandb_run_metadata(tmp_path, monkeypatch):
    """W&B records sys.argv in every run, e.g. `search --storage postgresql://u:PASSWORD@h/db`."""
    from seg_bench import tracking

    for k, v in _wandb_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    argv = [
        "seg-bench",
        "search",
        "--storage",
        f"postgresql://bench:{DB_PASSWORD}@db.example:5432/optuna",
        "--trials",
        "2",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    logger = tracking.build_logger(
        "wandb", tmp_path / "run", project="p", name="trial-0", config={"lr": 0.1}
    )
    assert tracking.is_wandb(logger) and sys.argv == argv  # restored for Lightning's DDP launcher
    tracking.TrackedRun(logger).finish()
    import wandb

    wandb.teardown()  # the W&B service writes the run file on its own; this waits for it
    run_file = next((tmp_path / "run").rglob("*.wandb")).read_bytes()
    assert b"bench:***@db.example" in run_file  # the command line is there, redacted
    assert _files_holding(tmp_path, DB_PASSWORD, FAKE_KEY) == []
