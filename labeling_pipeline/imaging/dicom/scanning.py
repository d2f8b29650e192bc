"""Scanning a data directory: find, validate and group every file, and choose the one image per
series that is labelled.

What is labelled (CONTRACT "What is labelled"): a single-frame image is labelled itself; a
series of several slices (ordered along the slice normal by ImagePositionPatient) and a
multi-frame image on their most mid-sagittal slice or frame among the central ones
(:mod:`labeling_pipeline.imaging.midsagittal`), the middle one when nothing tells them apart;
the catalog's ``slice_choice`` says which and why. A broken file never stops a scan: it is
recorded in the catalog with the reason it was rejected.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from labeling_pipeline.imaging.dicom.catalog import CatalogEntry, catalog_to_frame
from labeling_pipeline.imaging.dicom.enum import SOURCES, CatalogOutcome, RejectionReason
from labeling_pipeline.imaging.dicom.keys import partition_key, study_source
from labeling_pipeline.imaging.dicom.limits import ImageLimits
from labeling_pipeline.imaging.dicom.listing import TreeEntry, walk_tree
from labeling_pipeline.imaging.dicom.reading import (
    DicomHeader,
    DicomValidationError,
    build_label_image,
    decode_frame,
    identity_fields,
    number_of_frames,
    ordered_frames,
    read_dataset,
    slice_normal,
    slice_position,
    validate_header,
)
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.imaging.midsagittal import (
    SINGLE_FRAME,
    SliceChoice,
    central_slices,
    choose_among,
)


@dataclass
class ScanResult:
    """What a scan found: the images to label (one per series) and every file's catalog row."""

    images: list[LabelImage] = field(default_factory=list)
    catalog: list[CatalogEntry] = field(default_factory=list)

    def catalog_frame(self) -> pd.DataFrame:
        return catalog_to_frame(self.catalog)

    def extend(self, other: ScanResult) -> ScanResult:
        """Both scans together (e.g. incoming and archive), sorted as a scan sorts them."""
        images = sorted(self.images + other.images, key=_image_sort_key)
        catalog = sorted(self.catalog + other.catalog, key=lambda e: e.path)
        return ScanResult(images=images, catalog=catalog)


def _image_sort_key(image: LabelImage) -> tuple[str, str, str]:
    return (image.partition_key, image.series_uid, image.sop_instance_uid)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _slice_order(headers: list[DicomHeader]) -> tuple[list[DicomHeader], str]:
    """The slices of one series ordered along the slice normal, and a note on any fallback.

    Normal = row direction x column direction of ImageOrientationPatient (the most common
    orientation in the series); position = ImagePositionPatient . normal. Without geometry on
    every slice the order falls back to InstanceNumber, then to the file path.
    """
    if len(headers) == 1:
        return headers, ""
    orientations = []
    for h in headers:
        value = h.ds.get("ImageOrientationPatient")
        orientations.append(tuple(round(float(v), 4) for v in value) if value else None)
    normals = [slice_normal(h.ds, 0) for h in headers]
    positions = [slice_position(h.ds, 0) for h in headers]
    note = ""
    if all(n is not None for n in normals) and all(p is not None for p in positions):
        common, count = Counter(orientations).most_common(1)[0]
        normal = normals[orientations.index(common)]
        if count < len(headers):
            note = "series mixes slice orientations; ordered along the most common normal"
        along = [float(np.dot(p, normal)) for p in positions]
        order = sorted(range(len(headers)), key=lambda i: (along[i], headers[i].rel))
        return [headers[i] for i in order], note

    def instance(h: DicomHeader) -> int | None:
        try:
            return int(h.ds.get("InstanceNumber"))
        except (TypeError, ValueError):
            return None

    numbers = [instance(h) for h in headers]
    if all(n is not None for n in numbers):
        order = sorted(range(len(headers)), key=lambda i: (numbers[i], headers[i].rel))
        note = "slice order from InstanceNumber (ImagePositionPatient/Orientation missing)"
        return [headers[i] for i in order], note
    note = "slice order from file path (no slice geometry, no InstanceNumber)"
    return sorted(headers, key=lambda h: h.rel), note


def scan_dicom_tree(root: Path, source: str, limits: ImageLimits | None = None) -> ScanResult:
    """Find, validate and group every file under ``root`` (a data directory's ``incoming/``
    or ``archive/``) and choose the one image per series that is labelled.

    Catalog paths are relative to ``root.parent`` (``incoming/a/b.dcm``). A missing ``root``
    gives an empty result. Pixels are decoded only for the central slices that the choice of
    the labelled one compares; a file that fails to decode is rejected and the choice is made
    again among the others. To scan both sources of a
    data directory as one (duplicates and series spanning them), use :func:`scan_data_dir`.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    return _scan([(root, source)], root.parent, limits)


def scan_data_dir(
    data_dir: Path, sources: tuple[str, ...] = SOURCES, limits: ImageLimits | None = None
) -> ScanResult:
    """Scan ``data_dir/incoming`` and ``data_dir/archive`` together.

    Unlike two separate :func:`scan_dicom_tree` calls, a SOP instance present in both is
    labelled once (the copy whose path sorts first, ``archive/`` before ``incoming/``, is kept;
    the other is a ``duplicate``), a series whose slices are spread over both is one series,
    and a study gets one partition key, whose source is ``incoming`` when any of its valid files
    is there (:func:`~labeling_pipeline.imaging.dicom.keys.study_source`). Missing source
    folders are skipped.
    """
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"sources must be among {SOURCES}, got {unknown}")
    data_dir = Path(data_dir)
    for source in sources:
        if (data_dir / source).exists() and not (data_dir / source).is_dir():
            raise ValueError(f"{source}/ of the data directory is not a directory")
    return _scan([(data_dir / source, source) for source in sources], data_dir, limits)


def _files(roots: list[tuple[Path, str]], base: Path) -> Iterator[tuple[TreeEntry, str]]:
    for root, source in roots:
        if root.is_dir():
            for entry in walk_tree(root, base):
                yield entry, source


def _unreadable_entry(rel: str, source: str, reason: str) -> CatalogEntry:
    """The catalog row of a file that cannot even be read (nothing known of it but its path)."""
    return CatalogEntry(
        rel, source, 0, "", CatalogOutcome.REJECTED, RejectionReason.UNREADABLE, reason
    )


def _scan(
    roots: list[tuple[Path, str]], base: Path, limits: ImageLimits | None = None
) -> ScanResult:
    """The scan behind :func:`scan_dicom_tree` and :func:`scan_data_dir`; catalog paths are
    relative to ``base``."""
    limits = limits or ImageLimits()
    entries: dict[str, CatalogEntry] = {}
    headers: list[DicomHeader] = []
    for found, source in _files(roots, base):
        path = found.path
        rel = path.relative_to(base).as_posix()
        if found.problem is not None:
            entries[rel] = CatalogEntry(
                rel, source, 0, "", CatalogOutcome.REJECTED, found.problem, found.detail
            )
            continue
        if not path.is_file():  # a pipe would block the read; a broken link cannot be read
            entries[rel] = _unreadable_entry(rel, source, "not a regular file (link, pipe, device)")
            continue
        try:
            size_bytes = path.stat().st_size
            digest = _sha256(path)
        except OSError as error:
            entries[rel] = _unreadable_entry(rel, source, f"cannot read file: {error}")
            continue
        entry = CatalogEntry(rel, source, size_bytes, digest, CatalogOutcome.REJECTED)
        entries[rel] = entry
        try:
            ds = read_dataset(path)
        except DicomValidationError as error:
            entry.reason_code, entry.reason = error.reason, error.message
            continue
        ident = identity_fields(ds)
        for key, value in ident.items():
            setattr(entry, key, value)
        try:
            rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        except (TypeError, ValueError):
            rows, columns = 0, 0
        entry.rows, entry.columns, entry.number_of_frames = rows, columns, number_of_frames(ds)
        try:
            header = validate_header(ds, path, size_bytes, limits)
        except DicomValidationError as error:
            entry.reason_code, entry.reason = error.reason, error.message
            continue
        header.rel = rel
        entry.note = header.note
        headers.append(header)

    # Duplicate SOP instances: the first by path is kept, the others are recorded.
    kept: dict[str, DicomHeader] = {}
    for header in sorted(headers, key=lambda h: h.rel):
        first = kept.get(header.sop_uid)
        if first is None:
            kept[header.sop_uid] = header
            continue
        entry = entries[header.rel]
        entry.reason_code = RejectionReason.DUPLICATE
        entry.reason = f"duplicate: SOPInstanceUID already seen in {first.rel}"

    # One partition per study: every file of a study takes the earliest valid date seen in it.
    study_dates: dict[str, str] = {}
    for entry in entries.values():
        if entry.study_uid and entry.study_date:
            known = study_dates.get(entry.study_uid)
            if known is None or entry.study_date < known:
                study_dates[entry.study_uid] = entry.study_date
    # ... and the source that study_source picks among the folders of its valid files (a
    # duplicate copy in another folder does not count), or of all its files when none is valid.
    kept_sources: dict[str, set[str]] = defaultdict(set)
    for header in kept.values():
        kept_sources[header.study_uid].add(entries[header.rel].source)
    all_sources: dict[str, set[str]] = defaultdict(set)
    for entry in entries.values():
        if entry.study_uid:
            all_sources[entry.study_uid].add(entry.source)
    study_keys = {
        uid: partition_key(
            study_source(kept_sources.get(uid) or folders), study_dates.get(uid, ""), uid
        )
        for uid, folders in all_sources.items()
    }
    for entry in entries.values():
        if entry.study_uid:
            entry.study_date = study_dates.get(entry.study_uid, entry.study_date)
            entry.partition_key = study_keys[entry.study_uid]
    for header in kept.values():
        header.study_date = study_dates.get(header.study_uid, header.study_date)

    series: dict[tuple[str, str], list[DicomHeader]] = defaultdict(list)
    for header in kept.values():
        series[(header.study_uid, header.series_uid)].append(header)

    images: list[LabelImage] = []
    for key in sorted(series):
        image = _choose_and_decode(series[key], entries)
        if image is not None:
            image.partition_key = study_keys[image.study_uid]
            images.append(image)
    images.sort(key=_image_sort_key)
    return ScanResult(images=images, catalog=sorted(entries.values(), key=lambda e: e.path))


def _slice_spacing_mm(planes: list[tuple[DicomHeader, int]]) -> float | None:
    """Median distance (mm) between neighbouring planes along the slice normal; None without
    geometry on every plane."""
    normal = slice_normal(planes[0][0].ds, planes[0][1])
    positions = [slice_position(h.ds, f) for h, f in planes]
    if normal is None or any(p is None for p in positions):
        return None
    along = np.sort([float(np.dot(p, normal)) for p in positions])
    steps = np.diff(along)
    steps = steps[steps > 1e-6]
    return float(np.median(steps)) if steps.size else None


def _choose_and_decode(
    members: list[DicomHeader], entries: dict[str, CatalogEntry]
) -> LabelImage | None:
    """Label the most mid-sagittal central slice of a series (frame of a multi-frame file);
    a slice that cannot be decoded is rejected and the choice is made among the others."""
    remaining = list(members)
    while remaining:
        ordered, order_note = _slice_order(remaining)
        frame_note = ""
        if len(ordered) == 1:
            frame_order, frame_note = ordered_frames(ordered[0].ds, ordered[0].frames)
            planes = [(ordered[0], frame) for frame in frame_order]
        else:  # one plane per file: a multi-frame file in a series gives its middle frame
            planes = []
            for header in ordered:
                frame_order, _ = ordered_frames(header.ds, header.frames)
                planes.append((header, frame_order[len(frame_order) // 2]))
        middle = len(planes) // 2
        candidates = central_slices(len(planes), _slice_spacing_mm(planes))
        pixels: dict[int, np.ndarray] = {}
        failed: DicomHeader | None = None
        for index in candidates:
            header, frame = planes[index]
            try:
                pixels[index] = decode_frame(header, frame)
            except DicomValidationError as error:
                entry = entries[header.rel]
                entry.reason_code, entry.reason = error.reason, error.message
                failed = header
                break
        if failed is not None:
            remaining.remove(failed)
            continue
        if len(planes) == 1:
            choice = SliceChoice(0, SINGLE_FRAME, (0,))
        else:
            spacing = planes[middle][0].spacing
            choice = choose_among(candidates, [pixels[i] for i in candidates], middle, spacing)
        chosen, frame = planes[choice.index]
        image = build_label_image(chosen, frame, pixels[choice.index])
        image.study_date = chosen.study_date
        image.slice_choice = choice.reason
        for member in remaining:
            entries[member.rel].outcome = CatalogOutcome.ACCEPTED
        entry = entries[chosen.rel]
        entry.outcome = CatalogOutcome.LABELLED
        entry.frame_index = frame
        entry.slice_choice = choice.reason
        notes = [n for n in (entry.note, order_note, frame_note) if n]
        if len(remaining) < len(members):
            notes.append("slice chosen among the decodable slices")
        entry.note = "; ".join(notes)
        return image
    return None
