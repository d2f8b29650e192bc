"""Walking a folder as the scan walks it, and a cheap fingerprint of its files: it notices new
or changed DICOM files without reading them (the sensor compares it with the one the latest
catalog was built from)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labeling_pipeline.imaging.dicom.enum import RejectionReason


def walk_files(root: Path) -> Iterator[Path]:
    """Every non-hidden file under ``root``, in sorted order (hidden folders are skipped too)."""
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(directory) / name


#: Names the pipeline itself keeps at the top of a source folder (the DICOMweb cache's record,
#: its staging area for retrieves in progress and its lock): not input, so neither read nor
#: catalogued.
CACHE_STATE_NAME = ".dicomweb-state.json"
CACHE_STAGING_NAME = ".staging"
CACHE_LOCK_NAME = ".lock"
PIPELINE_OWNED_NAMES = frozenset({CACHE_STATE_NAME, CACHE_STAGING_NAME, CACHE_LOCK_NAME})


@dataclass(frozen=True)
class TreeEntry:
    """One thing a scan finds: a file to read (``problem`` None), or a file or folder that is
    not read, with the reason (hidden, unreadable folder, link leaving the data directory or
    looping back)."""

    path: Path
    problem: RejectionReason | None = None
    detail: str = ""


def walk_tree(root: Path, boundary: Path) -> Iterator[TreeEntry]:
    """Every entry under ``root`` in sorted order, as a scan must see it: files to read, and
    one entry with the reason for each hidden file or folder (not entered), each folder that
    cannot be listed, and each linked folder that leads outside ``boundary`` (the data
    directory) or back into a folder already walked. Linked folders inside ``boundary`` are
    followed."""
    boundary_real = os.path.realpath(boundary)
    visited = {os.path.realpath(root)}

    def inside(real: str) -> bool:
        return real == boundary_real or real.startswith(boundary_real + os.sep)

    def visit(directory: Path) -> Iterator[TreeEntry]:
        try:
            with os.scandir(directory) as scan:
                names = sorted(entry.name for entry in scan)
        except OSError as error:
            yield TreeEntry(
                directory,
                RejectionReason.UNREADABLE_FOLDER,
                f"folder cannot be listed ({error.strerror or type(error).__name__}); "
                "its files are not catalogued",
            )
            return
        for name in names:
            path = directory / name
            if directory == root and name in PIPELINE_OWNED_NAMES:
                continue
            if name.startswith("."):
                kind = "folder" if path.is_dir() else "file"
                yield TreeEntry(path, RejectionReason.HIDDEN, f"hidden {kind}, not scanned")
                continue
            if not path.is_dir():
                yield TreeEntry(path)
                continue
            real = os.path.realpath(path)
            if path.is_symlink() and not inside(real):
                yield TreeEntry(
                    path,
                    RejectionReason.LINK_OUTSIDE_DATA_DIR,
                    "linked folder leads outside the data directory; not followed",
                )
                continue
            if path.is_symlink() and (real in visited or _is_ancestor(real, path)):
                yield TreeEntry(
                    path, RejectionReason.LINK_LOOP, "linked folder already scanned (a loop)"
                )
                continue
            visited.add(real)
            yield from visit(path)

    yield from visit(Path(root))


def _is_ancestor(real: str, path: Path) -> bool:
    here = os.path.realpath(path.parent)
    return here == real or here.startswith(real + os.sep)


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
