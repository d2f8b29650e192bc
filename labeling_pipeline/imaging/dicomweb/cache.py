"""The local cache of retrieved studies and its record of every server study seen.

Layout under the cache root (a data directory's ``dicomweb/`` by default)::

    <StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm   retrieved instances
    .dicomweb-state.json                                          the record (below)
    .staging/                                                     retrieves in progress
    .lock                                                         one sync at a time

Names starting with ``.`` are skipped by the ingestion scan, so a half-retrieved study is never
catalogued: a study is moved into place only when all its instances arrived. The record keeps,
per StudyInstanceUID, its status, the series retrieved and their instance counts (a study is
retrieved again only when they change), when it was retrieved (eviction order), and the reason
of the last failure. It holds UIDs, dates, counts and the server's credential-free URL only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from labeling_pipeline.atomic import atomic_write
from labeling_pipeline.imaging.dicom.listing import (
    CACHE_LOCK_NAME,
    CACHE_STAGING_NAME,
    CACHE_STATE_NAME,
)
from labeling_pipeline.imaging.dicomweb.enum import StudyStatus

STATE_NAME = CACHE_STATE_NAME
STAGING_NAME = CACHE_STAGING_NAME
LOCK_NAME = CACHE_LOCK_NAME
STATE_VERSION = 1


@dataclass
class StudyRecord:
    """What the cache knows of one server study."""

    study_uid: str
    server_url: str
    status: str
    study_date: str = ""
    series: dict[str, int] = field(default_factory=dict)  # series UID -> instance count
    files: int = 0
    size_bytes: int = 0
    sequence: int = 0  # retrieve order: the smallest is evicted first
    retrieved_at: str = ""  # ISO time, UTC
    attempts: int = 0  # failed retrieves since the last success
    reason: str = ""
    message: str = ""
    skipped_non_image: int = 0  # instances of the spine series left on the server (SR, PR...)


def cache_root(data_dir: Path) -> Path:
    """Where a data directory keeps its DICOMweb studies: ``dicomweb/`` beside ``incoming/``
    and ``archive/``, so the ingestion scan catalogues them as source ``dicomweb``."""
    return Path(data_dir) / "dicomweb"


def with_server_urls(catalog: pd.DataFrame, root: Path) -> pd.DataFrame:
    """``catalog`` with ``server_url`` filled for its ``dicomweb`` rows from the cache record
    under ``root`` (the credential-free URL each study was retrieved from)."""
    catalog = catalog.copy()
    if "server_url" not in catalog:
        catalog["server_url"] = ""
    state = Path(root) / STATE_NAME
    if not state.is_file():
        return catalog
    studies = json.loads(state.read_text(encoding="utf-8")).get("studies", {})
    urls = {uid: str(record.get("server_url", "")) for uid, record in studies.items()}
    rows = catalog["source"] == "dicomweb"
    catalog.loc[rows, "server_url"] = catalog.loc[rows, "study_uid"].map(urls).fillna("")
    return catalog


def _directory_size(path: Path) -> tuple[int, int]:
    files = size = 0
    for item in path.rglob("*"):
        if item.is_file():
            files += 1
            size += item.stat().st_size
    return files, size


class StudyCache:
    """Retrieved studies under ``root``, at most ``limit_bytes`` of them (oldest retrieved
    evicted first). Use :meth:`locked` around a sync, then :meth:`save`."""

    def __init__(self, root: Path, limit_bytes: int) -> None:
        if limit_bytes <= 0:
            raise ValueError("the cache size limit must be positive")
        self.root = Path(root)
        self.limit_bytes = int(limit_bytes)
        self.records: dict[str, StudyRecord] = {}
        self._next_sequence = 1
        self.load()

    # Record -------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.root / STATE_NAME

    def load(self) -> None:
        """Read the record (an empty one when there is none yet)."""
        self.records, self._next_sequence = {}, 1
        if not self.state_path.is_file():
            return
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            records = {
                uid: StudyRecord(**record) for uid, record in state.get("studies", {}).items()
            }
        except (OSError, ValueError, TypeError) as error:
            raise ValueError(
                f"DICOMweb cache record {self.state_path} is unreadable: {error}"
            ) from error
        self.records = records
        self._next_sequence = int(state.get("next_sequence", 1))

    def save(self) -> None:
        """Write the record atomically."""
        state = {
            "version": STATE_VERSION,
            "next_sequence": self._next_sequence,
            "studies": {uid: asdict(self.records[uid]) for uid in sorted(self.records)},
        }
        text = json.dumps(state, indent=1, sort_keys=True)
        atomic_write(self.state_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    @contextlib.contextmanager
    def locked(self) -> Iterator[StudyCache]:
        """Hold the cache for one sync (a sensor tick and a run do not retrieve at once)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_NAME, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self.load()
                yield self
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # Layout -------------------------------------------------------------------------------
    def study_dir(self, study_uid: str) -> Path:
        return self.root / study_uid

    def staging_dir(self, study_uid: str) -> Path:
        return self.root / STAGING_NAME / study_uid

    def cached_bytes(self, exclude: str = "") -> int:
        return sum(
            r.size_bytes
            for r in self.records.values()
            if r.status == StudyStatus.RETRIEVED and r.study_uid != exclude
        )

    def server_url_of(self, study_uid: str) -> str:
        """The server a cached study came from ("" when unknown)."""
        record = self.records.get(study_uid)
        return record.server_url if record else ""

    # Changes ------------------------------------------------------------------------------
    def commit(self, record: StudyRecord, protected: set[str], evicted: list[str]) -> bool:
        """Move a completely staged study into place, evicting the oldest retrieved studies
        (never those in ``protected``, retrieved by the current sync) until it fits. False,
        and the staged copy dropped, when it cannot fit; ``evicted`` collects evicted UIDs."""
        staged = self.staging_dir(record.study_uid)
        files, size = _directory_size(staged)
        while self.cached_bytes(exclude=record.study_uid) + size > self.limit_bytes:
            candidates = [
                r
                for r in self.records.values()
                if r.status == StudyStatus.RETRIEVED
                and r.study_uid not in protected
                and r.study_uid != record.study_uid
            ]
            if not candidates:
                shutil.rmtree(staged, ignore_errors=True)
                return False
            oldest = min(candidates, key=lambda r: r.sequence)
            self.evict(oldest.study_uid)
            evicted.append(oldest.study_uid)
        target = self.study_dir(record.study_uid)
        if target.exists():  # a new version of a study already cached: swap it in
            old = self.root / STAGING_NAME / f"{record.study_uid}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(staged, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staged, target)
        record.files, record.size_bytes = files, size
        record.status = StudyStatus.RETRIEVED
        record.sequence = self._next_sequence
        self._next_sequence += 1
        record.retrieved_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        record.attempts, record.reason, record.message = 0, "", ""
        self.records[record.study_uid] = record
        return True

    def evict(self, study_uid: str) -> None:
        """Remove a study's files; its record stays, so it is not retrieved again."""
        shutil.rmtree(self.study_dir(study_uid), ignore_errors=True)
        record = self.records[study_uid]
        record.status = StudyStatus.EVICTED
        record.files = record.size_bytes = 0

    def discard_staging(self, study_uid: str) -> None:
        shutil.rmtree(self.staging_dir(study_uid), ignore_errors=True)
