"""Atomic file writes: readers see the old file or the new one, never a partial one."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)``, then move the result onto ``path`` with ``os.replace``.

    The temporary file is a hidden sibling (``.<name>.<pid>.tmp``) in the same directory, so the
    rename stays on one file system and dataset readers (which skip names starting with ``.``)
    never pick it up. Parent directories are created; on failure the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path
