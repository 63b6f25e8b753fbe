"""Secrets never reach a log: :func:`redact` masks passwords in URLs (``postgresql://u:***@h``),
``password=...`` style pairs, the W&B API key wherever it appears, literals registered with
:func:`register_secret`, and the values of mapping keys named like ``*key*``, ``*token*``,
``*password*`` or ``*secret*``. :func:`warn_once` is the tracking code's one redacted warning
per topic and process."""

from __future__ import annotations

import os
import re
import sys
from typing import Any
from urllib.parse import unquote

MASK = "***"

_SECRET_KEY = re.compile(r"(key|token|password|passwd|secret|credential)", re.IGNORECASE)
# scheme://user:password@host  ->  scheme://user:***@host (the user may hold '@', as in
# Azure's user@server: SQLAlchemy splits at the last '@')
_URL_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/\s]*:)(?P<pw>[^@\s]+)(?P<at>@)"
)
# password=..., api_key: ..., token=...  (libpq DSNs, query strings, log lines)
_PAIR = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|api[_-]?key|token|secret)\s*[=:]\s*)"
    r"(?P<value>[^\s&;,'\"]+)",
    re.IGNORECASE,
)
_extra_secrets: set[str] = set()
_warned: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask this literal (and its URL-decoded form) wherever :func:`redact` meets it."""
    if value and len(value) >= 3:
        _extra_secrets.add(value)
        _extra_secrets.add(unquote(value))


def _secrets() -> list[str]:
    found = set(_extra_secrets)
    key = os.environ.get("WANDB_API_KEY")
    if key and len(key) >= 3:
        found.add(key)
    return sorted(found, key=len, reverse=True)  # longest first: no secret left half-masked


def redact_text(text: str) -> str:
    """``text`` with every password, key and registered secret replaced by ``***``."""

    def _url(m: re.Match) -> str:
        register_secret(m.group("pw"))  # so a driver error quoting it alone is masked too
        return f"{m.group('head')}{MASK}{m.group('at')}"

    text = _URL_PASSWORD.sub(_url, text)
    text = _PAIR.sub(lambda m: f"{m.group('head')}{MASK}", text)
    for secret in _secrets():
        text = text.replace(secret, MASK)
    return text


def redact(obj: Any) -> Any:
    """A copy of ``obj`` (dicts, lists, tuples, sets, strings, nested) safe to log anywhere."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {k: MASK if _is_secret_item(k, v) else redact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(redact(v) for v in obj)
    if isinstance(obj, set):
        return {redact(v) for v in obj}
    return obj  # numbers, paths, None: nothing secret in them


def _is_secret_item(key: Any, value: Any) -> bool:
    return (
        isinstance(key, str)
        and bool(_SECRET_KEY.search(key))
        and isinstance(value, (str, bytes))
        and bool(value)
    )


def warn_once(topic: str, message: str) -> None:
    """One redacted warning line on stderr per ``topic`` and process: tracking problems must
    not drown the training output, and never stop it."""
    if topic in _warned:
        return
    _warned.add(topic)
    print(f"seg-bench: warning: {redact_text(message)}", file=sys.stderr, flush=True)


__all__ = ["MASK", "redact", "redact_text", "register_secret", "warn_once"]
