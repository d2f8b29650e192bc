"""The template bank: fully reviewed images as extra templates (learning from review).

A labelled image whose every landmark a person has settled is exactly what a template is. The
bank keeps up to :data:`BANK_LIMIT` of them under ``<output>/template_bank/<name>/`` in the
layout of ``template/<name>/`` (``template.dcm``, ``landmarks.json``) plus ``source.json``
(which image, when reviewed). Localization tries them, like the data directory's named
templates, where the default template leaves landmarks for review.

An image joins when every landmark is ``ok``, ``confirmed``, ``corrected`` or ``not_in_view``,
at least one is ``corrected`` or ``confirmed`` (a reviewer looked at it), and at least two
vertebrae are placed. ``not_in_view`` landmarks are left out of its ``landmarks.json``. The
newest reviews are kept (by the time of the image's last decision); older ones are evicted
when more qualify, and an image whose decisions are reverted leaves the bank.

``template.dcm`` is written anew from the labelled pixels with none of the source's header
beyond what an image needs (pixel spacing, modality): no patient or study data, new UIDs.
The bank is a function of the labels and the corrections: refreshing it twice writes nothing
the second time.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from labeling_pipeline.atomic import atomic_write
from labeling_pipeline.corrections.enum import CuratedStatus
from labeling_pipeline.corrections.publish import MissingSourceError, labelled_source
from labeling_pipeline.imaging.dicom import DicomValidationError, read_label_image
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.locks import exclusive_lock

#: Most reviewed images kept as templates: each costs one search (~30 ms) on every flagged image.
BANK_LIMIT = 8
#: The ``template`` column's value for a bank entry is this prefix and the entry's folder name.
BANK_PREFIX = "bank/"
ENTRY_PREFIX = "reviewed-"
SOURCE_FILE = "source.json"
_SETTLED = {
    CuratedStatus.OK.value,
    CuratedStatus.CONFIRMED.value,
    CuratedStatus.CORRECTED.value,
    CuratedStatus.NOT_IN_VIEW.value,
}
_PLACED = {CuratedStatus.OK.value, CuratedStatus.CONFIRMED.value, CuratedStatus.CORRECTED.value}
_REVIEWED = {CuratedStatus.CONFIRMED.value, CuratedStatus.CORRECTED.value}
_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root for generated UIDs


@dataclass(frozen=True)
class BankCandidate:
    """One fully reviewed image: its landmarks (name, kind, x = column, y = row) as placed."""

    sop_instance_uid: str
    partition_key: str
    reviewed_at: str
    landmarks: tuple[tuple[str, str, float, float], ...]
    corrected: int
    confirmed: int

    @property
    def name(self) -> str:
        """The entry's folder name: stable per image, and no UID in clear."""
        digest = hashlib.sha256(self.sop_instance_uid.encode("utf-8")).hexdigest()
        return ENTRY_PREFIX + digest[:12]

    def landmarks_document(self, region: str) -> dict[str, Any]:
        return {
            "region": region,
            "landmarks": [
                {"name": name, "kind": kind, "x": round(x, 3), "y": round(y, 3)}
                for name, kind, x, y in self.landmarks
            ],
        }


@dataclass
class BankRefresh:
    """What :func:`refresh_template_bank` did: entries by name."""

    kept: list[str] = field(default_factory=list)  # unchanged
    written: list[str] = field(default_factory=list)  # new or changed
    removed: list[str] = field(default_factory=list)  # evicted, or no longer fully reviewed
    problems: list[str] = field(default_factory=list)  # qualifying images that could not join

    @property
    def entries(self) -> list[str]:
        return sorted(self.kept + self.written)


def bank_candidates(curated: pd.DataFrame, vertebrae: Sequence[str]) -> list[BankCandidate]:
    """The fully reviewed images of ``curated`` (the curated dataset's rows), newest review
    first. ``vertebrae``: the region's vertebra names (two must be placed)."""
    if curated.empty:
        return []
    names = set(vertebrae)
    candidates = []
    for sop, rows in curated.groupby("sop_instance_uid", sort=False):
        statuses = set(rows["status"].astype(str))
        if not statuses <= _SETTLED or not statuses & _REVIEWED:
            continue
        placed = rows[rows["status"].isin(_PLACED)]
        placed = placed[
            np.isfinite(placed["x"].astype(float)) & np.isfinite(placed["y"].astype(float))
        ]
        if sum(name in names for name in placed["landmark"]) < 2:
            continue
        candidates.append(
            BankCandidate(
                sop_instance_uid=str(sop),
                partition_key=str(rows["partition_key"].iloc[0]),
                reviewed_at=str(rows["reviewed_at"].astype(str).max()),
                landmarks=tuple(
                    (str(r["landmark"]), str(r["kind"]), float(r["x"]), float(r["y"]))
                    for r in placed.to_dict("records")
                ),
                corrected=int((rows["status"] == CuratedStatus.CORRECTED.value).sum()),
                confirmed=int((rows["status"] == CuratedStatus.CONFIRMED.value).sum()),
            )
        )
    candidates.sort(key=lambda c: (c.reviewed_at, c.sop_instance_uid), reverse=True)
    return candidates


def _uid(*parts: str) -> str:
    return generate_uid(prefix=_UID_ROOT, entropy_srcs=["template-bank", *parts])


def write_template_image(image: LabelImage, path: Path, name: str) -> Path:
    """``image``'s pixels as a de-identified single-frame DICOM (16-bit, rescaled back to the
    stored values), atomically. Nothing of the source's header but pixel spacing and modality."""
    pixels = np.asarray(image.pixels, dtype=np.float64)
    low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
    slope = (high - low) / 65535.0 if high > low else 1.0
    stored = np.clip(np.round((np.nan_to_num(pixels, nan=low) - low) / slope), 0, 65535)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = _uid(name, "sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid(name, "study")
    ds.SeriesInstanceUID = _uid(name, "series")
    ds.Modality = image.modality or "MR"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SeriesDescription = f"template bank {name}"
    ds.PatientName = ""
    ds.PatientID = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = image.photometric_interpretation or "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [f"{image.pixel_spacing_mm[0]:.8g}", f"{image.pixel_spacing_mm[1]:.8g}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = f"{low:.10g}"
    ds.RescaleSlope = f"{slope:.10g}"
    if image.window_center is not None and image.window_width is not None:
        ds.WindowCenter, ds.WindowWidth = f"{image.window_center:g}", f"{image.window_width:g}"
    ds.PixelData = stored.astype(np.uint16).tobytes()
    return atomic_write(path, lambda temporary: ds.save_as(temporary, enforce_file_format=True))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, document: Any) -> Path:
    text = json.dumps(document, indent=1) + "\n"
    return atomic_write(path, lambda temporary: temporary.write_text(text))


def bank_entries(bank_dir: Path) -> list[Path]:
    """The bank's entry folders written by :func:`refresh_template_bank`, by name."""
    directory = Path(bank_dir)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith(ENTRY_PREFIX))


def bank_version(bank_dir: Path) -> str:
    """A digest of the bank's content (entry names and landmark files): what it is now."""
    digest = hashlib.sha256()
    for entry in bank_entries(bank_dir):
        digest.update(entry.name.encode("utf-8") + b"\0")
        for name in ("landmarks.json", SOURCE_FILE):
            try:
                digest.update((entry / name).read_bytes())
            except OSError:
                digest.update(b"<missing>")
    return digest.hexdigest()[:24]


def bank_changed_ns(bank_dir: Path) -> int | None:
    """When the bank's content last changed (ns since the epoch): the newest modification time
    of its folder (entries added or removed), its entry folders and their files; None when the
    bank has no entries (nothing to learn from)."""
    entries = bank_entries(bank_dir)
    if not entries:
        return None
    paths = [Path(bank_dir), *entries]
    paths += [path for entry in entries for path in entry.iterdir()]
    times = []
    for path in paths:
        try:
            times.append(path.stat().st_mtime_ns)
        except OSError:  # removed by a refresh meanwhile: the folder's time covers it
            continue
    return max(times)


_flagged_cache: dict[tuple[str, int], bool] = {}


def _has_flags(path: Path, modified_ns: int) -> bool:
    """Whether a partition's label file has a ``needs_review`` row (cached per file version:
    automation asks on every tick)."""
    key = (str(path), modified_ns)
    if key not in _flagged_cache:
        status = pd.read_parquet(path, columns=["status"])["status"]
        if len(_flagged_cache) > 100_000:
            _flagged_cache.clear()
        _flagged_cache[key] = bool((status == CuratedStatus.NEEDS_REVIEW.value).any())
    return _flagged_cache[key]


def studies_to_retry(labels_dir: Path, bank_dir: Path) -> frozenset[str]:
    """Partition keys of the studies the bank may now help: labelled with landmarks left for
    review, before the bank last changed. Empty when the bank is."""
    changed = bank_changed_ns(bank_dir)
    directory = Path(labels_dir)
    if changed is None or not directory.is_dir():
        return frozenset()
    keys = set()
    for path in directory.glob("[!._]*.parquet"):
        try:
            modified = path.stat().st_mtime_ns
            if modified < changed and _has_flags(path, modified):
                keys.add(path.stem)
        except (OSError, ValueError, KeyError):  # replaced meanwhile, or not a label file
            continue
    return frozenset(keys)


def refresh_template_bank(
    bank_dir: Path,
    curated: pd.DataFrame,
    catalog: pd.DataFrame,
    data_dir: Path,
    region: str,
    vertebrae: Sequence[str],
    limit: int = BANK_LIMIT,
) -> BankRefresh:
    """Make ``bank_dir`` hold the ``limit`` newest fully reviewed images of ``curated``
    (module docstring), reading their pixels from the files the catalog names under
    ``data_dir``. Entries are written atomically, one file at a time, under a lock, so the
    review app and a run refreshing at once never mix their work."""
    bank_dir = Path(bank_dir)
    report = BankRefresh()
    bank_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(bank_dir / ".lock"):
        chosen: list[BankCandidate] = []
        for candidate in bank_candidates(curated, vertebrae):
            if len(chosen) >= limit:
                break
            if _write_entry(bank_dir, candidate, catalog, Path(data_dir), region, report):
                chosen.append(candidate)
        wanted = {candidate.name for candidate in chosen}
        for entry in bank_entries(bank_dir):
            if entry.name not in wanted:
                shutil.rmtree(entry, ignore_errors=True)
                report.removed.append(entry.name)
    return report


def _write_entry(
    bank_dir: Path,
    candidate: BankCandidate,
    catalog: pd.DataFrame,
    data_dir: Path,
    region: str,
    report: BankRefresh,
) -> bool:
    entry = bank_dir / candidate.name
    document = candidate.landmarks_document(region)
    source = {
        "sop_instance_uid": candidate.sop_instance_uid,
        "partition_key": candidate.partition_key,
        "reviewed_at": candidate.reviewed_at,
        "corrected": candidate.corrected,
        "confirmed": candidate.confirmed,
    }
    image_path = entry / "template.dcm"
    unchanged = (
        image_path.is_file()
        and _read_json(entry / "landmarks.json") == document
        and _read_json(entry / SOURCE_FILE) == source
    )
    if unchanged:
        report.kept.append(candidate.name)
        return True
    try:
        if not image_path.is_file():
            relative, frame = labelled_source(catalog, candidate.sop_instance_uid)
            image = read_label_image(data_dir / relative, frame_index=frame)
            _check_inside(candidate, image)
            entry.mkdir(parents=True, exist_ok=True)
            write_template_image(image, image_path, candidate.name)
    except (MissingSourceError, DicomValidationError, ValueError, OSError) as error:
        report.problems.append(f"{candidate.partition_key}: image not added to the bank: {error}")
        return False
    _write_json(entry / "landmarks.json", document)
    _write_json(entry / SOURCE_FILE, source)  # last: an entry with it is complete
    report.written.append(candidate.name)
    return True


def _check_inside(candidate: BankCandidate, image: LabelImage) -> None:
    for name, _kind, x, y in candidate.landmarks:
        inside = -0.5 <= x <= image.columns - 0.5 and -0.5 <= y <= image.rows - 0.5
        if not (math.isfinite(x) and math.isfinite(y) and inside):
            raise ValueError(
                f"landmark {name} lies outside the {image.columns} x {image.rows} image"
            )
