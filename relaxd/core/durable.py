"""Files that survive a power cut: written atomically, fsync'd with their folder.

Imports nothing but the standard library (``relaxd safe-off`` runs it after any exit).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_durably(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, and make it survive a power cut."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _sync_dir(path.parent)


def remove_durably(path: Path) -> None:
    """Remove ``path`` (if there) so that the removal survives a power cut."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
