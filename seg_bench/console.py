"""The command line's manners: bad input is one line and exit 2, warnings one line each.

``SEG_BENCH_DEBUG=1`` shows the full traceback of a user error (for bug reports).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from seg_bench.errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parent
# Options naming a folder the command writes: an existing file there is refused at once.
OUTPUT_FOLDERS = ("run_dir", "results_dir", "leaderboard_dir", "output")


def debug() -> bool:
    return os.environ.get("SEG_BENCH_DEBUG", "") not in ("", "0")


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is a UserError: one line, exit 2, no usage block."""

    def error(self, message: str) -> Any:
        raise UserError(f"{message} (see `{self.prog} --help`)")


def bounded(kind: type, low: float, *, strict: bool = False, below: float | None = None):
    """An argparse type: ``kind`` (int or float) at least ``low`` (above it if ``strict``)."""
    what = "an integer" if kind is int else "a number"
    limit = f"{'>' if strict else '>='} {low}" + (f" and < {below}" if below is not None else "")

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} {limit}, got '{text}'") from None
        if value < low or (strict and value == low) or (below is not None and value >= below):
            raise argparse.ArgumentTypeError(f"must be {limit}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _in_package(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """seg_bench's warnings as ``seg-bench: warning: ...``, each text once; others unchanged."""
    seen: set[str] = set()
    with warnings.catch_warnings():
        default_show: Callable = warnings.showwarning
        warnings.filterwarnings("default", module=r"seg_bench(\.|$)")

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            if not _in_package(filename):
                return default_show(message, category, filename, lineno, file, line)
            text = str(message).replace("\n", " ").strip()
            if text not in seen:
                seen.add(text)
                print(f"seg-bench: warning: {text}", file=sys.stderr)

        warnings.showwarning = show
        yield


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse at once an output folder that is a file (rather than after hours of training)."""
    for dest in OUTPUT_FOLDERS:
        value = getattr(args, dest, None)
        if value and Path(value).exists() and not Path(value).is_dir():
            option = "--" + dest.replace("_", "-")
            raise UserError(f"{option} {value}: is a file; give a folder (created if missing)")
