"""Plug-ins without packaging: a user's module or ``.py`` file, imported for its registrations.

``--plugin MODULE_OR_FILE`` (repeatable) and ``$SEG_BENCH_PLUGINS`` (os.pathsep-separated) name
them; the CLI imports them before any registry is read, so a ``@MODELS.register`` in
``my_models.py`` makes ``--model my_net`` work. Installed packages use entry points instead
(see seg_bench/registry.py). A plug-in that fails to import, either way, is one error line
naming it (``plugin_import``); ``SEG_BENCH_DEBUG=1`` shows its traceback instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from seg_bench.errors import UserError

PLUGINS_ENV = "SEG_BENCH_PLUGINS"


@contextlib.contextmanager
def plugin_import(what: str, fix: str) -> Iterator[None]:
    """Turn any failure importing plug-in ``what`` into one line that says ``fix``."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        if os.environ.get("SEG_BENCH_DEBUG", "") not in ("", "0"):
            raise
        reason = str(e).splitlines()[0] if str(e) else ""
        raise UserError(f"{what}: cannot import it ({type(e).__name__}: {reason}); {fix}") from None


def load_plugin(spec: str, origin: str = "--plugin") -> None:
    """Import a user's module (a name on PYTHONPATH) or ``.py`` file, for its registrations."""
    with plugin_import(f"{origin} {spec}", "fix it or leave it out"):
        if spec.endswith(".py") or os.sep in spec or (os.altsep and os.altsep in spec):
            path = Path(spec).expanduser().resolve()
            if not path.is_file():
                raise UserError(
                    f"{origin} {spec}: file not found; give a .py file or a module name"
                )
            # One module per file, so a second load of the same file is a no-op.
            name = f"seg_bench_plugin_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
            if name in sys.modules:
                return
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        else:
            importlib.import_module(spec)


def load_plugins(specs: Iterable[str] = ()) -> None:
    """``$SEG_BENCH_PLUGINS`` (os.pathsep-separated), then ``specs`` (``--plugin``s), in order."""
    for spec in os.environ.get(PLUGINS_ENV, "").split(os.pathsep):
        if spec.strip():
            load_plugin(spec.strip(), PLUGINS_ENV)
    for spec in specs:
        load_plugin(spec)
