"""DICOM ingestion: find, validate and catalogue input files and choose the image to label.

What is labelled (CONTRACT): a single-frame image is labelled itself; a series of several slices
on its middle slice, ordered along the slice normal by ImagePositionPatient; a multi-frame image
on its middle frame. Files are only read, never modified, and a broken file never stops a scan:
it is recorded in the catalog with the reason it was rejected.

Coordinates: images are rows x columns; ``pixel_spacing_mm`` is (row spacing, column spacing) in
mm, the order of DICOM PixelSpacing. Patient identity never leaves this module in the clear: the
catalog holds a salted hash of PatientID (``patient_key``), and no name or birth date.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, pixel_array
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from labeling_pipeline.imaging.image import LabelImage

SOURCES = ("incoming", "archive")
MIN_SIZE = 32  # smallest accepted rows / columns: below this no anatomy can be recognised

# Outcomes of a file in the catalog.
LABELLED = "labelled"  # its image (or one of its frames) is the one labelled for its series
ACCEPTED = "accepted"  # valid, part of a labelled series, but not the slice that is labelled
REJECTED = "rejected"

# Machine-readable reasons (``DicomValidationError.reason`` and the catalog's ``reason_code``).
NOT_DICOM = "not_dicom"
UNREADABLE = "unreadable"
EMPTY_DATASET = "empty_dataset"
MISSING_UID = "missing_uid"
NO_PIXEL_DATA = "no_pixel_data"
TRUNCATED = "truncated"
NOT_GRAYSCALE = "not_grayscale"
INVALID_DIMENSIONS = "invalid_dimensions"
MISSING_PIXEL_SPACING = "missing_pixel_spacing"
INVALID_PIXEL_SPACING = "invalid_pixel_spacing"
UNDECODABLE = "undecodable"
DUPLICATE = "duplicate"

# Pseudonym salt: deployments should set LABELING_PSEUDONYM_SALT to a secret of their own, so
# that a patient_key cannot be recomputed from a guessed PatientID by someone who reads this code.
PSEUDONYM_SALT_ENV = "LABELING_PSEUDONYM_SALT"
DEFAULT_PSEUDONYM_SALT = "labeling_pipeline/patient-key/v1"

_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloat...
_UNDEFINED_LENGTH = 0xFFFFFFFF
_DATE = re.compile(r"^\d{8}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class DicomValidationError(ValueError):
    """A file cannot be used: ``reason`` is a short code (e.g. ``no_pixel_data``), the message
    says what is wrong in words."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# ---------------------------------------------------------------------------------------------
# Keys and pseudonyms


def partition_key(study_date: str, study_uid: str) -> str:
    """Dagster dynamic-partition key of a study: ``YYYYMMDD-<first 8 hex of sha1(study_uid)>``.

    Readable (sorts by date), stable across runs and machines, one per study. ``nodate`` stands
    in for a missing or malformed StudyDate.
    """
    if not study_uid:
        raise ValueError("a partition key needs a StudyInstanceUID")
    date = study_date if _DATE.match(study_date or "") else "nodate"
    digest = hashlib.sha1(study_uid.encode("utf-8")).hexdigest()[:8]
    return f"{date}-{digest}"


def image_key(sop_instance_uid: str) -> str:
    """A file-name-safe key for one labelled image (overlay and feature-store names).

    A well-formed UID (digits and dots) is its own key, as the CONTRACT's
    ``overlays/<sop_instance_uid>.png`` expects; anything else (which could hold ``/`` or
    ``..``) is replaced by ``x`` + 16 hex of its sha1.
    """
    if not sop_instance_uid:
        raise ValueError("an image key needs a SOPInstanceUID")
    if _UID.match(sop_instance_uid) and len(sop_instance_uid) <= 64:
        return sop_instance_uid
    return "x" + hashlib.sha1(sop_instance_uid.encode("utf-8")).hexdigest()[:16]


def pseudonymize(patient_id: str, salt: str | None = None) -> str:
    """``patient_key``: first 16 hex of sha256(salt + PatientID); "" when PatientID is empty.

    The salt comes from the environment variable ``LABELING_PSEUDONYM_SALT`` (default: a fixed
    project string, which only protects against casual reading; set your own in deployments).
    """
    if not patient_id:
        return ""
    if salt is None:
        salt = os.environ.get(PSEUDONYM_SALT_ENV, DEFAULT_PSEUDONYM_SALT)
    return hashlib.sha256((salt + patient_id).encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Catalog


@dataclass
class CatalogEntry:
    """One input file seen by a scan, and what became of it.

    ``path`` is relative to the data directory (``incoming/a/b.dcm``). ``frame_index`` is the
    labelled frame (0-based) on the ``labelled`` row, -1 elsewhere. ``rows``/``columns``/
    ``number_of_frames`` are 0 when unknown. ``note`` records fallbacks that were taken (e.g.
    ImagerPixelSpacing used, slice order from InstanceNumber).
    """

    path: str
    source: str
    size_bytes: int
    sha256: str
    outcome: str
    reason_code: str = ""
    reason: str = ""
    note: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_instance_uid: str = ""
    study_date: str = ""
    modality: str = ""
    partition_key: str = ""
    patient_key: str = ""
    frame_index: int = -1
    number_of_frames: int = 0
    rows: int = 0
    columns: int = 0


CATALOG_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CatalogEntry))
CATALOG_INT_COLUMNS = ("size_bytes", "frame_index", "number_of_frames", "rows", "columns")


def catalog_to_frame(entries: list[CatalogEntry]) -> pd.DataFrame:
    """The catalog as a table with the columns of :class:`CatalogEntry`, sorted by path."""
    frame = pd.DataFrame([asdict(e) for e in entries], columns=list(CATALOG_COLUMNS))
    for column in CATALOG_COLUMNS:
        if column in CATALOG_INT_COLUMNS:
            frame[column] = frame[column].astype("int64")
        else:
            frame[column] = frame[column].astype(str)
    return frame.sort_values("path", kind="stable").reset_index(drop=True)


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
    return (
        partition_key(image.study_date, image.study_uid),
        image.series_uid,
        image.sop_instance_uid,
    )


# ---------------------------------------------------------------------------------------------
# Reading and validating one file


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        value = value[0] if len(value) else ""
    return str(value).strip()


def _read_dataset(path: Path) -> Dataset:
    """The data set of ``path`` with large values (pixel data) deferred, i.e. left on disk."""
    try:
        ds = pydicom.dcmread(path, defer_size=4096)
    except InvalidDicomError as error:
        # Files without the 128-byte preamble and "DICM" (older writers) are still DICOM when a
        # forced read finds an instance UID; anything else is not a DICOM file.
        ds = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                forced = pydicom.dcmread(path, defer_size=4096, force=True)
            if "SOPInstanceUID" in forced and "StudyInstanceUID" in forced:
                ds = forced
        except Exception:  # noqa: BLE001 - any failure of the forced read means "not DICOM"
            ds = None
        if ds is None:
            raise DicomValidationError(
                NOT_DICOM, "not a DICOM file: no 'DICM' file meta header and no DICOM data set"
            ) from error
        _ensure_transfer_syntax(ds)
    except Exception as error:  # noqa: BLE001 - pydicom raises many types on broken files
        raise DicomValidationError(
            UNREADABLE, f"unreadable DICOM: {type(error).__name__}: {error}"
        ) from error
    if len(ds) == 0:
        raise DicomValidationError(EMPTY_DATASET, "DICOM file holds no data set (truncated?)")
    return ds


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Give a file without meta information the transfer syntax its encoding implies."""
    if ds.file_meta.get("TransferSyntaxUID"):
        return
    implicit, little = ds.original_encoding
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif little is False:
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


def _functional_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """``sequence``'s first item for ``frame``: per-frame functional groups win over shared."""
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and 0 <= frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        items = group.get(sequence)
        if items:
            return items[0]
    return None


def _number_of_frames(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def _spacing(ds: Dataset, frame: int) -> tuple[tuple[float, float], str]:
    """(row, column) pixel spacing in mm and a note naming the source when it is a fallback."""
    candidates: list[tuple[Any, str]] = [(ds.get("PixelSpacing"), "")]
    measures = _functional_item(ds, frame, "PixelMeasuresSequence")
    if measures is not None:
        candidates.append((measures.get("PixelSpacing"), ""))
    # ImagerPixelSpacing is at the detector, not the patient (magnification differs slightly);
    # it is the best physical scale a projection image without PixelSpacing offers.
    candidates.append((ds.get("ImagerPixelSpacing"), "pixel spacing from ImagerPixelSpacing"))
    for value, note in candidates:
        if value is None or value == "":
            continue
        try:
            values = [float(v) for v in value]
        except (TypeError, ValueError) as error:
            raise DicomValidationError(
                INVALID_PIXEL_SPACING, f"unreadable PixelSpacing {value!r}"
            ) from error
        if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
            raise DicomValidationError(
                INVALID_PIXEL_SPACING, f"PixelSpacing must be two positive numbers, got {values}"
            )
        return (values[0], values[1]), note
    raise DicomValidationError(MISSING_PIXEL_SPACING, "missing PixelSpacing")


def _orientation(ds: Dataset, frame: int) -> np.ndarray | None:
    value = ds.get("ImageOrientationPatient")
    if value is None:
        item = _functional_item(ds, frame, "PlaneOrientationSequence")
        value = item.get("ImageOrientationPatient") if item is not None else None
    try:
        vector = np.asarray([float(v) for v in value], dtype=np.float64) if value else None
    except (TypeError, ValueError):
        return None
    if vector is None or vector.shape != (6,) or not np.all(np.isfinite(vector)):
        return None
    normal = np.cross(vector[:3], vector[3:])
    length = float(np.linalg.norm(normal))
    return normal / length if length > 1e-6 else None


def _position(ds: Dataset, frame: int) -> np.ndarray | None:
    item = _functional_item(ds, frame, "PlanePositionSequence")
    value = item.get("ImagePositionPatient") if item is not None else None
    if value is None:
        value = ds.get("ImagePositionPatient")
    try:
        vector = np.asarray([float(v) for v in value], dtype=np.float64) if value else None
    except (TypeError, ValueError):
        return None
    if vector is None or vector.shape != (3,) or not np.all(np.isfinite(vector)):
        return None
    return vector


@dataclass
class _Header:
    """A file whose header passed validation; pixels are still on disk."""

    path: Path
    rel: str
    ds: Dataset
    study_uid: str
    series_uid: str
    sop_uid: str
    study_date: str
    modality: str
    patient_key: str
    frames: int
    rows: int
    columns: int
    spacing: tuple[float, float]
    note: str


def _identity(ds: Dataset) -> dict[str, str]:
    """UIDs and non-identifying study fields, for catalog rows (also of rejected files)."""
    date = _text(ds, "StudyDate")
    return {
        "study_uid": _text(ds, "StudyInstanceUID"),
        "series_uid": _text(ds, "SeriesInstanceUID"),
        "sop_instance_uid": _text(ds, "SOPInstanceUID"),
        "study_date": date if _DATE.match(date) else "",
        "modality": _text(ds, "Modality"),
        "patient_key": pseudonymize(_text(ds, "PatientID")),
    }


def _validate_header(ds: Dataset, path: Path, size_bytes: int) -> _Header:
    """Check everything that can be checked without decoding pixels."""
    ident = _identity(ds)
    missing = [
        keyword
        for keyword, key in (
            ("StudyInstanceUID", "study_uid"),
            ("SeriesInstanceUID", "series_uid"),
            ("SOPInstanceUID", "sop_instance_uid"),
        )
        if not ident[key]
    ]
    if missing:
        raise DicomValidationError(MISSING_UID, f"missing {', '.join(missing)}")
    pixel_tag = next((tag for tag in _PIXEL_TAGS if tag in ds), None)
    if pixel_tag is None:
        raise DicomValidationError(NO_PIXEL_DATA, "no pixel data")
    raw = ds.get_item(pixel_tag, keep_deferred=True)
    # A deferred value records where it starts and how long it is: a file cut short is found
    # here, without reading its pixels.
    value_tell = getattr(raw, "value_tell", None)
    length = getattr(raw, "length", None)
    known_length = value_tell is not None and length not in (None, _UNDEFINED_LENGTH)
    if known_length and value_tell + length > size_bytes:
        raise DicomValidationError(
            TRUNCATED,
            f"pixel data truncated: file ends at byte {size_bytes}, "
            f"pixel data needs {value_tell + length}",
        )
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = _text(ds, "PhotometricInterpretation") or "MONOCHROME2"
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomValidationError(
            NOT_GRAYSCALE,
            f"not a grayscale image (SamplesPerPixel {samples}, {photometric}); "
            "only MONOCHROME1/2 images can be labelled",
        )
    try:
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    except (TypeError, ValueError):
        rows, columns = 0, 0
    if rows < MIN_SIZE or columns < MIN_SIZE:
        raise DicomValidationError(
            INVALID_DIMENSIONS,
            f"image is {rows} x {columns} pixels; at least {MIN_SIZE} x {MIN_SIZE} needed",
        )
    frames = _number_of_frames(ds)
    spacing, note = _spacing(ds, frames // 2)
    return _Header(
        path=path,
        rel="",
        ds=ds,
        study_uid=ident["study_uid"],
        series_uid=ident["series_uid"],
        sop_uid=ident["sop_instance_uid"],
        study_date=ident["study_date"],
        modality=ident["modality"],
        patient_key=ident["patient_key"],
        frames=frames,
        rows=rows,
        columns=columns,
        spacing=spacing,
        note=note,
    )


def _ordered_frames(ds: Dataset, frames: int) -> tuple[list[int], str]:
    """Frame indices ordered along the slice normal when per-frame geometry says where each
    frame lies (enhanced multi-frame); in stored order otherwise."""
    if frames <= 1:
        return [0], ""
    normal = _orientation(ds, 0)
    positions = [_position(ds, i) for i in range(frames)]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if normal is None or per_frame is None or any(p is None for p in positions):
        return list(range(frames)), ""
    along = [float(np.dot(p, normal)) for p in positions]
    if max(along) - min(along) < 1e-6:  # all at one place (e.g. a time series): keep order
        return list(range(frames)), ""
    return sorted(range(frames), key=lambda i: (along[i], i)), "frames ordered along the normal"


def middle_frame_index(ds: Dataset) -> int:
    """The frame that is labelled: the middle one (index n // 2 of the ordered frames)."""
    order, _ = _ordered_frames(ds, _number_of_frames(ds))
    return order[len(order) // 2]


def _decode(header: _Header, frame: int) -> np.ndarray:
    """One frame's pixels with the modality LUT applied, float32, rows x columns."""
    ds = header.ds
    try:
        # Multi-frame: decode only the frame that is labelled.
        array = pixel_array(ds, index=frame) if header.frames > 1 else pixel_array(ds)
    except Exception as error:  # noqa: BLE001 - decoders raise many types
        reason = TRUNCATED if "less than expected" in str(error) else UNDECODABLE
        raise DicomValidationError(
            reason, f"pixel data cannot be decoded: {type(error).__name__}: {error}"
        ) from error
    if array.ndim != 2:
        raise DicomValidationError(
            NOT_GRAYSCALE, f"decoded pixels have shape {array.shape}, expected rows x columns"
        )
    if "ModalityLUTSequence" in ds or ("RescaleSlope" in ds and "RescaleIntercept" in ds):
        array = apply_modality_lut(array, ds)
    else:
        # Enhanced multi-frame objects keep the rescale in the functional groups.
        item = _functional_item(ds, frame, "PixelValueTransformationSequence")
        if item is not None and "RescaleSlope" in item and "RescaleIntercept" in item:
            array = array.astype(np.float64) * float(item.RescaleSlope) + float(
                item.RescaleIntercept
            )
    return np.ascontiguousarray(array, dtype=np.float32)


def _window(ds: Dataset, frame: int) -> tuple[float | None, float | None]:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        item = _functional_item(ds, frame, "FrameVOILUTSequence")
        if item is not None:
            center, width = item.get("WindowCenter"), item.get("WindowWidth")
    try:
        if isinstance(center, MultiValue):
            center = center[0]
        if isinstance(width, MultiValue):
            width = width[0]
        if center is None or width is None or float(width) <= 0:
            return None, None
        return float(center), float(width)
    except (TypeError, ValueError, IndexError):
        return None, None


def _label_image(header: _Header, frame: int, pixels: np.ndarray) -> LabelImage:
    center, width = _window(header.ds, frame)
    spacing, _ = _spacing(header.ds, frame)
    return LabelImage(
        study_uid=header.study_uid,
        series_uid=header.series_uid,
        sop_instance_uid=header.sop_uid,
        study_date=header.study_date,
        modality=header.modality,
        pixels=pixels,
        pixel_spacing_mm=spacing,
        photometric_interpretation=_text(header.ds, "PhotometricInterpretation") or "MONOCHROME2",
        window_center=center,
        window_width=width,
        frame_index=frame,
        source_files=[header.rel or str(header.path)],
    )


def read_label_image(path: Path, frame_index: int | None = None) -> LabelImage:
    """Validate one DICOM file and return its image (the template, or a re-read of a study).

    A multi-frame file gives its middle frame unless ``frame_index`` names one (0-based).
    Raises :class:`DicomValidationError` with the reason when the file cannot be used.
    """
    path = Path(path)
    try:
        size_bytes = path.stat().st_size
    except OSError as error:
        raise DicomValidationError(UNREADABLE, f"cannot read {path}: {error}") from error
    header = _validate_header(_read_dataset(path), path, size_bytes)
    if frame_index is None:
        frame_index = middle_frame_index(header.ds)
    if not 0 <= frame_index < header.frames:
        raise ValueError(f"frame {frame_index} out of range: {path} has {header.frames} frames")
    return _label_image(header, frame_index, _decode(header, frame_index))


# ---------------------------------------------------------------------------------------------
# Scanning a tree


def _walk(root: Path) -> Iterator[Path]:
    """Every non-hidden file under ``root``, in sorted order (hidden folders are skipped too)."""
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(directory) / name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _slice_order(headers: list[_Header]) -> tuple[list[_Header], str]:
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
    normals = [_orientation(h.ds, 0) for h in headers]
    positions = [_position(h.ds, 0) for h in headers]
    note = ""
    if all(n is not None for n in normals) and all(p is not None for p in positions):
        common, count = Counter(orientations).most_common(1)[0]
        normal = normals[orientations.index(common)]
        if count < len(headers):
            note = "series mixes slice orientations; ordered along the most common normal"
        along = [float(np.dot(p, normal)) for p in positions]
        order = sorted(range(len(headers)), key=lambda i: (along[i], headers[i].rel))
        return [headers[i] for i in order], note

    def instance(h: _Header) -> int | None:
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


def scan_dicom_tree(root: Path, source: str) -> ScanResult:
    """Find, validate and group every file under ``root`` (a data directory's ``incoming/``
    or ``archive/``) and choose the one image per series that is labelled.

    Catalog paths are relative to ``root.parent`` (``incoming/a/b.dcm``). A missing ``root``
    gives an empty result. Pixels are decoded only for the chosen image; if that fails, the
    file is rejected and the next slice nearest the middle is tried. To scan both sources of a
    data directory as one (duplicates and series spanning them), use :func:`scan_data_dir`.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    return _scan([(root, source)], root.parent)


def scan_data_dir(data_dir: Path, sources: tuple[str, ...] = SOURCES) -> ScanResult:
    """Scan ``data_dir/incoming`` and ``data_dir/archive`` together.

    Unlike two separate :func:`scan_dicom_tree` calls, a SOP instance present in both is
    labelled once (the copy whose path sorts first, ``archive/`` before ``incoming/``, is kept;
    the other is a ``duplicate``), a series whose slices are spread over both is one series,
    and a study gets one partition key. Missing source folders are skipped.
    """
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"sources must be among {SOURCES}, got {unknown}")
    data_dir = Path(data_dir)
    for source in sources:
        if (data_dir / source).exists() and not (data_dir / source).is_dir():
            raise ValueError(f"{data_dir / source} is not a directory")
    return _scan([(data_dir / source, source) for source in sources], data_dir)


def _files(roots: list[tuple[Path, str]]) -> Iterator[tuple[Path, str]]:
    for root, source in roots:
        if root.is_dir():
            for path in _walk(root):
                yield path, source


def _scan(roots: list[tuple[Path, str]], base: Path) -> ScanResult:
    """The scan behind :func:`scan_dicom_tree` and :func:`scan_data_dir`; catalog paths are
    relative to ``base``."""
    entries: dict[str, CatalogEntry] = {}
    headers: list[_Header] = []
    for path, source in _files(roots):
        rel = path.relative_to(base).as_posix()
        if not path.is_file():  # a pipe would block the read; a broken link cannot be read
            entries[rel] = CatalogEntry(
                rel, source, 0, "", REJECTED, UNREADABLE, "not a regular file (link, pipe, device)"
            )
            continue
        try:
            size_bytes = path.stat().st_size
            digest = _sha256(path)
        except OSError as error:
            entries[rel] = CatalogEntry(
                rel, source, 0, "", REJECTED, UNREADABLE, f"cannot read file: {error}"
            )
            continue
        entry = CatalogEntry(rel, source, size_bytes, digest, REJECTED)
        entries[rel] = entry
        try:
            ds = _read_dataset(path)
        except DicomValidationError as error:
            entry.reason_code, entry.reason = error.reason, error.message
            continue
        ident = _identity(ds)
        for key, value in ident.items():
            setattr(entry, key, value)
        try:
            rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        except (TypeError, ValueError):
            rows, columns = 0, 0
        entry.rows, entry.columns, entry.number_of_frames = rows, columns, _number_of_frames(ds)
        try:
            header = _validate_header(ds, path, size_bytes)
        except DicomValidationError as error:
            entry.reason_code, entry.reason = error.reason, error.message
            continue
        header.rel = rel
        entry.note = header.note
        headers.append(header)

    # Duplicate SOP instances: the first by path is kept, the others are recorded.
    kept: dict[str, _Header] = {}
    for header in sorted(headers, key=lambda h: h.rel):
        first = kept.get(header.sop_uid)
        if first is None:
            kept[header.sop_uid] = header
            continue
        entry = entries[header.rel]
        entry.reason_code = DUPLICATE
        entry.reason = f"duplicate: SOPInstanceUID already seen in {first.rel}"

    # One partition per study: every file of a study takes the earliest valid date seen in it.
    study_dates: dict[str, str] = {}
    for entry in entries.values():
        if entry.study_uid and entry.study_date:
            known = study_dates.get(entry.study_uid)
            if known is None or entry.study_date < known:
                study_dates[entry.study_uid] = entry.study_date
    for entry in entries.values():
        if entry.study_uid:
            entry.study_date = study_dates.get(entry.study_uid, entry.study_date)
            entry.partition_key = partition_key(entry.study_date, entry.study_uid)
    for header in kept.values():
        header.study_date = study_dates.get(header.study_uid, header.study_date)

    series: dict[tuple[str, str], list[_Header]] = defaultdict(list)
    for header in kept.values():
        series[(header.study_uid, header.series_uid)].append(header)

    images: list[LabelImage] = []
    for key in sorted(series):
        image = _choose_and_decode(series[key], entries)
        if image is not None:
            images.append(image)
    images.sort(key=_image_sort_key)
    return ScanResult(images=images, catalog=sorted(entries.values(), key=lambda e: e.path))


def _choose_and_decode(
    members: list[_Header], entries: dict[str, CatalogEntry]
) -> LabelImage | None:
    """Label the middle slice of a series (middle frame of a multi-frame file); a slice that
    cannot be decoded is rejected and the middle of the remaining ones is tried."""
    remaining = list(members)
    while remaining:
        ordered, order_note = _slice_order(remaining)
        chosen = ordered[len(ordered) // 2]
        frame_order, frame_note = _ordered_frames(chosen.ds, chosen.frames)
        frame = frame_order[len(frame_order) // 2]
        try:
            pixels = _decode(chosen, frame)
        except DicomValidationError as error:
            entry = entries[chosen.rel]
            entry.reason_code, entry.reason = error.reason, error.message
            remaining.remove(chosen)
            continue
        image = _label_image(chosen, frame, pixels)
        image.study_date = chosen.study_date
        for member in remaining:
            entries[member.rel].outcome = ACCEPTED
        entry = entries[chosen.rel]
        entry.outcome = LABELLED
        entry.frame_index = frame
        notes = [n for n in (entry.note, order_note, frame_note) if n]
        if len(remaining) < len(members):
            notes.append("middle slice chosen among the decodable slices")
        entry.note = "; ".join(notes)
        return image
    return None
