"""One registry for everything chosen by name: models, datasets, losses, optimizers, presets.

Each registry knows the package that holds its built-in entries and imports it on first use,
so configuration can check a name without importing torch models or datasets, and no module
has to import the registries' users (the names are strings, resolved lazily, as in timm).
Third-party packages add entries through a Python entry point group (``seg_bench.models`` for
models, ``seg_bench.datasets`` for datamodules); the entry point may name a module (imported
for its ``@register`` side effects) or a callable (registered under the entry point's name).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from seg_bench.errors import UserError
from seg_bench.plugins import plugin_import


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    description: str


@dataclass(frozen=True)
class Family:
    """Names made of a prefix and parts, e.g. ``smp-unet-resnet34``; too many to list one by one."""

    prefix: str
    factory: Callable[..., Any]  # factory(name, **kwargs)
    description: str
    examples: tuple[str, ...]
    accepts: Callable[[str], bool]


def _origin(factory: Callable) -> str:
    """Where a function was defined (a module imported again registers the same origin)."""
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', factory)}"


class Registry:
    def __init__(
        self, kind: str, builtins: str | None = None, entry_point_group: str | None = None
    ):
        self.kind = kind
        self.builtins = builtins  # module whose import registers the built-in entries
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry] = {}
        self._families: list[Family] = []
        self._plugins_loaded = False

    def register(self, name: str | Callable | None = None, description: str = "") -> Callable:
        """Decorator: ``@MODELS.register("unet", "U-Net (Ronneberger et al. 2015)")``, or bare
        ``@MODELS.register`` (the function's name). A name taken by another function is
        refused: a plug-in must not replace a built-in (or another plug-in) unnoticed."""
        if callable(name):  # used bare: the function itself came as the name
            return self.register()(name)

        def decorate(factory: Callable) -> Callable:
            key = name or factory.__name__
            old = self._entries.get(key)
            if old is not None and _origin(old.factory) != _origin(factory):
                raise UserError(
                    f"{self.kind} '{key}' is registered twice: by {_origin(old.factory)} and "
                    f"by {_origin(factory)}; give one of them another name"
                )
            doc = description or (factory.__doc__ or "").strip().split("\n")[0]
            self._entries[key] = Entry(key, factory, doc)
            return factory

        return decorate

    def register_family(
        self,
        prefix: str,
        factory: Callable[..., Any],
        description: str,
        examples: Iterable[str],
        accepts: Callable[[str], bool],
    ) -> None:
        self._families.append(Family(prefix, factory, description, tuple(examples), accepts))

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        if self.builtins:
            importlib.import_module(self.builtins)
        if not self.entry_point_group:
            return
        for ep in entry_points(group=self.entry_point_group):
            dist = ep.dist.name if ep.dist else "its package"
            what = f"plug-in {ep.value} (entry point '{ep.name}' of {dist})"
            with plugin_import(what, f"fix it or `pip uninstall {dist}`"):
                obj = ep.load()
            if callable(obj):
                self.register(ep.name)(obj)

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._entries or any(
            name.startswith(f.prefix) and f.accepts(name) for f in self._families
        )

    def names(self, pattern: str = "*") -> list[str]:
        self._load_plugins()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def families(self) -> list[Family]:
        return list(self._families)

    def describe(self, name: str) -> str:
        self._load_plugins()
        if name in self._entries:
            return self._entries[name].description
        for family in self._families:
            if name.startswith(family.prefix) and family.accepts(name):
                return family.description
        raise self._unknown(name)

    def create(self, name: str, **kwargs: Any) -> Any:
        self._load_plugins()
        if name in self._entries:
            return self._entries[name].factory(**kwargs)
        for family in self._families:
            if name.startswith(family.prefix) and family.accepts(name):
                return family.factory(name, **kwargs)
        raise self._unknown(name)

    def require(self, name: str) -> None:
        """Raise the one-line 'unknown <kind>' error (closest name as a hint) unless known."""
        if name not in self:
            raise self._unknown(name)

    def get(self, name: str) -> Callable[..., Any]:
        """The factory itself (for classes such as datamodules)."""
        self._load_plugins()
        if name in self._entries:
            return self._entries[name].factory
        raise self._unknown(name)

    def _unknown(self, name: str) -> UserError:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        fams = "".join(f", {f.prefix}<...> (e.g. {f.examples[0]})" for f in self._families)
        return UserError(
            f"unknown {self.kind} '{name}'.{hint} Registered: {', '.join(known)}{fams}"
        )


MODELS = Registry("model", "seg_bench.models", entry_point_group="seg_bench.models")
DATASETS = Registry("dataset", "seg_bench.data.datasets", entry_point_group="seg_bench.datasets")
LOSSES = Registry("loss", "seg_bench.training.losses")
OPTIMIZERS = Registry("optimizer", "seg_bench.training.optimizers")
LABEL_SOURCES = Registry("label source", "seg_bench.labels.source")
AUGMENT_PRESETS = Registry("augmentation preset", "seg_bench.data.augment.presets")
