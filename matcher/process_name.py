"""Name this process (Linux `comm`, what `ps -o comm`, `top` and psutil's name() show)."""

from __future__ import annotations

from pathlib import Path

WORKER = "cl-matcher"
SCANS = "cl-scans"


def set_process_name(name: str) -> None:
    """Best effort: operators and tests tell matcher workers from scan runners by this name."""
    try:
        Path("/proc/self/comm").write_text(name[:15])
    except OSError:
        pass  # not Linux, or no /proc: names are a convenience
