"""Profile files: where ``<dataset>.yaml`` is found, and how it is read (duplicate keys refused,
``1e-3`` a number, ``extends:`` merged). seg_bench/config.py turns the result into a RunConfig.
"""

from __future__ import annotations

import copy
import os
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from seg_bench.errors import UserError


def profile_file(dataset: str, config: str | os.PathLike | None = None) -> Traversable:
    """The profile file for ``dataset``: ``config`` if given, else ``$SEG_BENCH_CONFIGS`` or the
    profiles shipped inside the package (read through importlib.resources, so a wheel works)."""
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise UserError(f"--config {config}: file not found; give a YAML profile file")
        return path
    path = _profile_folder() / f"{dataset}.yaml"
    return path if path.is_file() else _profile_folder() / "default.yaml"


def _profile_folder() -> Traversable:
    env = os.environ.get("SEG_BENCH_CONFIGS")
    return Path(env) if env else resources.files("seg_bench") / "profiles"


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping, where PyYAML would
    silently keep the last one (a second ``models:`` in a profile drops the first), and reads
    ``1e-3`` as a number, as YAML 1.2 does (PyYAML's YAML 1.1 reads it as a string)."""


def _unique_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first_line: dict[str, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base" may be overridden below
            continue
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):
            continue
        line = key_node.start_mark.line + 1
        if key in first_line:
            problem = f"key '{key}' given twice, lines {first_line[key]} and {line}"
            raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
        first_line[key] = line
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)
UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """``text`` parsed as YAML, refusing duplicate keys (see UniqueKeyLoader)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_profile_file(dataset: str, config: str | os.PathLike | None = None) -> dict[str, Any]:
    """The profile file for ``dataset`` (see profile_file), merged onto the file it names with
    ``extends:`` (a dataset name or ``default``, found where profile_file looks)."""
    path = profile_file(dataset, config)
    spec, chain = _read_profile(path), [str(path)]
    while "extends" in spec:
        parent = spec.pop("extends")
        path = _parent_profile(parent, path)
        if str(path) in chain:
            raise UserError(f"{chain[-1]}: extends: {parent} leads back to itself; break the loop")
        chain.append(str(path))
        spec = merge(_read_profile(path), spec)
    return spec


def _parent_profile(name: Any, child: Traversable) -> Traversable:
    folder = _profile_folder()
    path = folder / f"{name}.yaml"
    if not isinstance(name, str) or not path.is_file():
        known = sorted(p.name.removesuffix(".yaml") for p in folder.iterdir())
        raise UserError(f"{child}: extends: {name} is not a profile; known: {', '.join(known)}")
    return path


def _read_profile(path: Traversable) -> dict[str, Any]:
    try:
        spec = load_yaml(path.read_text())
    except yaml.YAMLError as e:
        problem = str(e).splitlines()[0]
        raise UserError(f"{path}: not valid YAML ({problem}); fix the file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    if spec is not None and not isinstance(spec, dict):
        raise UserError(
            f"{path}: a profile file is a mapping (common:, profiles:), got {type(spec).__name__}"
        )
    _check_sections(path, spec or {})
    return spec or {}


SECTIONS = ("extends", "models", "common", "profiles")


def _check_sections(path: Traversable, spec: dict[str, Any]) -> None:
    """Refuse a key the loader would never read: a top-level ``lr:`` or a profile name with a
    typo was silently ignored, and the run took the defaults."""
    from seg_bench.config import PROFILES

    for key in spec:
        if key not in SECTIONS:
            raise UserError(
                f"{path}: top-level key '{key}' is not read; put run settings under common: or "
                f"profiles: <name>: (sections: {', '.join(SECTIONS)})"
            )
    profiles = spec.get("profiles") or {}
    for name in profiles if isinstance(profiles, dict) else []:
        if name not in PROFILES:
            raise UserError(
                f"{path}: profiles: {name} is not a profile; known: {', '.join(PROFILES)}"
            )


def merge(base: dict, extra: dict | None) -> dict:
    """``extra`` over a deep copy of ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
