"""Processes as the tests see them, from /proc (Linux)."""

from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, waiting for a parent to reap it, has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
