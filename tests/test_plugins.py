"""The README's recipe for adding an architecture, run as a user runs it: the README's own code
in a file of the user's, brought in by an installed package's entry point, by ``--plugin`` or by
``$SEG_BENCH_PLUGINS``, then listed and benchmarked by ``seg-bench`` in a fresh process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from seg_bench.cli import main
from seg_bench.protocol.records import load_records

REPO = Path(__file__).resolve().parents[1]


def readme_recipe() -> str:
    """The first Python block of the README's "Adding an architecture" section."""
    section = (REPO / "README.md").read_text().split("## Adding an architecture", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def install(site: Path, module: str, source: str) -> None:
    """What ``pip install`` leaves for a package declaring the README's entry point."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[seg_bench.models]\ntiny = {module}\n")


def seg_bench(cwd: Path, *argv: str, path: Path | None = None, **env: str):
    """``seg-bench argv`` in a fresh process (``python -m seg_bench``), ``path`` on PYTHONPATH."""
    pythonpath = os.pathsep.join(str(p) for p in (path, REPO) if p)
    full_env = {**os.environ, "PYTHONPATH": pythonpath, "SEG_BENCH_RUNS": str(cwd / "runs")}
    full_env.pop("SEG_BENCH_PLUGINS", None)
    return subprocess.run(
        [sys.executable, "-m", "seg_bench", *argv],
        cwd=cwd,
        env={**full_env, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


# How the user's my_models.py reaches seg-bench: (options, environment, installed or not).
WAYS = {
    "entry point": ([], {}, True),
    "--plugin file": (["--plugin", "my_models.py"], {}, False),
    "SEG_BENCH_PLUGINS file": ([], {"SEG_BENCH_PLUGINS": "my_models.py"}, False),
}


@pytest.mark.parametrize("way", WAYS)
def test_the_readme_recipe_is_listed_and_benchmarked(way, tmp_path):
    options, env, installed = WAYS[way]
    site = tmp_path / "site"
    site.mkdir()
    if installed:
        install(site, "my_models", readme_recipe())
    else:
        (tmp_path / "my_models.py").write_text(readme_recipe())

    listed = seg_bench(tmp_path, *options, "models", path=site, **env)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^tiny_fcn +two 3x3 convolutions$", listed.stdout, re.M), listed.stdout

    argv = ["bench", "--models", "tiny_fcn", "--profile", "smoke", "--seeds", "1"]
    argv += ["--logger", "none", "--results-dir", "results"]
    run = seg_bench(tmp_path, *options, *argv, path=site, **env)
    assert run.returncode == 0, run.stderr
    [record] = load_records(tmp_path / "results", "synthetic")
    # The smoke profile's width 0.125 gives c = 4 channels: (1*4*9 + 4) + (4*1*9 + 1).
    assert (record["model"], record["config"]["width"], record["params"]) == ("tiny_fcn", 0.125, 77)
    assert "| tiny_fcn |" in (tmp_path / "results" / "leaderboards" / "synthetic.md").read_text()


def test_a_plugin_module_name_on_the_python_path_is_imported(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "my_models.py").write_text(readme_recipe())
    listed = seg_bench(tmp_path, "models", "--plugin", "my_models", path=site)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^tiny_fcn ", listed.stdout, re.M)


BROKEN = "import no_such_module_for_seg_bench\n"
NOT_FOUND = "ModuleNotFoundError: No module named 'no_such_module_for_seg_bench'"


@pytest.mark.parametrize(
    "how, expected",
    [
        ("missing file", "--plugin {tmp}/missing.py: file not found; give a .py file"),
        ("missing module", "--plugin no_such_plugin: cannot import it (ModuleNotFoundError"),
        ("import error", f"--plugin {{tmp}}/broken.py: cannot import it ({NOT_FOUND})"),
        ("environment", f"SEG_BENCH_PLUGINS {{tmp}}/broken.py: cannot import it ({NOT_FOUND})"),
    ],
)
def test_a_bad_plugin_is_one_error_line_naming_it(how, expected, tmp_path, capsys, monkeypatch):
    (tmp_path / "broken.py").write_text(BROKEN)
    spec = {
        "missing file": f"{tmp_path}/missing.py",
        "missing module": "no_such_plugin",
        "import error": f"{tmp_path}/broken.py",
    }.get(how)
    if how == "environment":
        monkeypatch.setenv("SEG_BENCH_PLUGINS", f"{tmp_path}/broken.py")
    assert main(["--plugin", spec, "models"] if spec else ["models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seg-bench: error: " + expected.format(tmp=tmp_path))
    assert err.count("\n") == 1


def test_a_broken_installed_plugin_is_one_line_and_debug_shows_its_traceback(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install(site, "broken_models", BROKEN)
    listed = seg_bench(tmp_path, "models", path=site)
    assert listed.returncode == 2 and listed.stdout == ""
    assert listed.stderr == (
        "seg-bench: error: plug-in broken_models (entry point 'tiny' of broken_models): cannot "
        f"import it ({NOT_FOUND}); fix it or `pip uninstall broken_models`\n"
    )
    debug = seg_bench(tmp_path, "models", path=site, SEG_BENCH_DEBUG="1")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and debug.stderr.rstrip().endswith(NOT_FOUND)
