"""Atomic file writes: readers see the old file or the new one, never a partial one; and the
sweep that removes what interrupted writes left behind."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

#: ``.<name>.<pid>.tmp``: the temporary sibling of :func:`atomic_write`.
TEMPORARY_FILE = re.compile(r"^\..+\.(?P<pid>\d+)\.tmp$")
#: ``_tmp-<pid>-<hex>`` / ``_old-<pid>-<hex>``: nodes of the feature store being written or
#: replaced (older versions wrote them without the pid).
TEMPORARY_NODE = re.compile(r"^_(?:tmp|old)-(?:(?P<pid>\d+)-)?[0-9a-f]{32}$")
#: Folders a sweep never enters (reviewers' corrections are only ever appended to).
NEVER_SWEPT = frozenset({"corrections"})


def temporary_path(path: Path) -> Path:
    """The temporary sibling :func:`atomic_write` writes ``path`` to first."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)``, then move the result onto ``path`` with ``os.replace``.

    The temporary file is a hidden sibling (``.<name>.<pid>.tmp``) in the same directory, so the
    rename stays on one file system and dataset readers (which skip names starting with ``.``)
    never pick it up; the pid lets :func:`sweep_interrupted_writes` tell a dead writer's file
    from a live one's. Parent directories are created; on failure the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def sweep_interrupted_writes(
    root: Path, writer_alive: Callable[[int], bool], sweep_unowned: bool = False
) -> list[Path]:
    """Remove the temporary files and feature-store nodes of writes that were interrupted
    (their writer process is gone) under ``root``; returns what was removed.

    ``writer_alive(pid)`` says whether a writer still runs. Nodes without a pid (older
    versions) are removed only with ``sweep_unowned`` (when no other process uses ``root``).
    ``corrections/`` is never entered.
    """
    removed: list[Path] = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for directory, subdirs, files in os.walk(root):
        if Path(directory) == root:
            subdirs[:] = [d for d in subdirs if d not in NEVER_SWEPT]
        for name in list(subdirs) + files:
            match = TEMPORARY_FILE.match(name) or TEMPORARY_NODE.match(name)
            if match is None:
                continue
            pid = match.group("pid")
            if (pid is None and not sweep_unowned) or (pid is not None and writer_alive(int(pid))):
                continue
            target = Path(directory) / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
                subdirs.remove(name)
            else:
                target.unlink(missing_ok=True)
            removed.append(target)
    return removed
