"""The package's shape: imports point down the pipeline stages, never up; files stay readable.

The stages, bottom first. A module may import its own stage and any stage below it, including
lazily inside a function; an import that climbs fails here with the line that does it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seg_bench"

STAGES = [
    ("errors",),
    ("io", "paths", "registry", "plugins", "hardware"),
    ("config_files", "config"),
    ("metrics", "models"),
    ("data",),
    ("labels",),
    ("inference",),
    ("training", "tracking"),
    ("evaluation",),
    ("search",),
    ("protocol",),
    ("cli", "commands", "console", "__init__", "__main__"),
]
LEVEL = {name: i for i, names in enumerate(STAGES) for name in names}
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _stage_of(path: Path) -> str:
    part = path.relative_to(PACKAGE).parts[0]
    return part.removesuffix(".py")


def _imported_stages(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("seg_bench.")
        ):
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.module == "seg_bench":
            names = [f"seg_bench.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("seg_bench.")]
        out += [(node.lineno, n.split(".")[1]) for n in names]
    return out


def test_every_module_belongs_to_a_stage():
    unknown = {_stage_of(p) for p in _modules()} - set(LEVEL)
    assert not unknown, f"add {sorted(unknown)} to STAGES in this test"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_stages(path):
    here = _stage_of(path)
    climbs = [
        f"{path.relative_to(PACKAGE)}:{line} imports seg_bench.{stage} ({here} is below it)"
        for line, stage in _imported_stages(path)
        if LEVEL.get(stage, -1) > LEVEL[here]
    ]
    assert not climbs, "\n".join(climbs)


def test_no_module_is_too_long_to_read_in_one_sitting():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_longer_than_a_screen():
    long = {}
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{p.relative_to(PACKAGE)}:{node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_checker_sees_a_climbing_import(tmp_path):
    fake = PACKAGE / "metrics" / "functional.py"
    found = [s for _, s in _imported_stages(fake)]
    assert "protocol" not in found
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from seg_bench.protocol import bench\n")
    assert _imported_stages(bad) == [(2, "protocol")]
