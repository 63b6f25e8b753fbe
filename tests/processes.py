"""Process states read from /proc, for tests that kill parents and wait on their children."""

from __future__ import annotations

from pathlib import Path


def ended(pid: int) -> bool:
    """True once ``pid`` has exited: gone (reaped, e.g. an orphan by init) or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
