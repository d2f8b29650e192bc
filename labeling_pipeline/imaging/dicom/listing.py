"""Walking a folder as the scan walks it, and a cheap fingerprint of its files: it notices new
or changed DICOM files without reading them (the sensor compares it with the one the latest
catalog was built from)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def walk_files(root: Path) -> Iterator[Path]:
    """Every non-hidden file under ``root``, in sorted order (hidden folders are skipped too)."""
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(directory) / name


@dataclass(frozen=True)
class TreeFingerprint:
    """``files``: how many files; ``digest``: sha256 of their relative paths, sizes and
    modification times (ns). Hidden files and folders are left out, as the scan leaves them."""

    files: int
    digest: str


def tree_fingerprint(root: Path) -> TreeFingerprint:
    """Fingerprint every non-hidden file under ``root`` (an empty digest when it is missing)."""
    root = Path(root)
    digest = hashlib.sha256()
    count = 0
    if root.is_dir():
        for path in walk_files(root):
            try:
                stat = path.stat()
            except OSError:
                continue  # vanished while walking; the next look sees the new state
            rel = path.relative_to(root).as_posix()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            count += 1
    return TreeFingerprint(files=count, digest=digest.hexdigest())
