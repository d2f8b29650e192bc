"""Reading and validating one DICOM file, and decoding the frame that is labelled.

What is labelled (CONTRACT "What is labelled"): a single-frame image itself; a multi-frame
image the frame that a scan chooses (:mod:`~labeling_pipeline.imaging.dicom.scanning`, recorded
in the catalog's ``frame_index``); read alone, its middle frame, ordered along the slice normal
when per-frame geometry says where each frame lies. Files are only read, never modified; a
file that cannot be used raises :class:`DicomValidationError` with a reason code.

Coordinates: images are rows x columns; ``pixel_spacing_mm`` is (row spacing, column spacing) in
mm, the order of DICOM PixelSpacing. Patient identity never leaves this package in the clear:
:func:`identity_fields` gives a salted hash of PatientID (``patient_key``), and no name or
birth date.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, pixel_array
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from labeling_pipeline.imaging.dicom.enum import RejectionReason
from labeling_pipeline.imaging.dicom.keys import is_calendar_date, is_uid, pseudonymize
from labeling_pipeline.imaging.dicom.limits import (
    NON_IMAGE_MODALITIES,
    SPINE_BODY_PARTS,
    ImageLimits,
)
from labeling_pipeline.imaging.image import LabelImage

MIN_SIZE = 32  # smallest accepted rows / columns: below this no anatomy can be recognised

_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloat...
_UNDEFINED_LENGTH = 0xFFFFFFFF


class DicomValidationError(ValueError):
    """A file cannot be used: ``reason`` is a short code (e.g. ``no_pixel_data``), the message
    says what is wrong in words."""

    def __init__(self, reason: RejectionReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        value = value[0] if len(value) else ""
    return str(value).strip()


def read_dataset(path: Path) -> Dataset:
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
                RejectionReason.NOT_DICOM,
                "not a DICOM file: no 'DICM' file meta header and no DICOM data set",
            ) from error
        _ensure_transfer_syntax(ds)
    except Exception as error:  # noqa: BLE001 - pydicom raises many types on broken files
        raise DicomValidationError(
            RejectionReason.UNREADABLE, f"unreadable DICOM: {type(error).__name__}: {error}"
        ) from error
    if len(ds) == 0:
        if ds.file_meta.get("MediaStorageSOPInstanceUID"):  # the meta header promised one
            raise DicomValidationError(
                RejectionReason.TRUNCATED, "file ends after its meta header: truncated"
            )
        raise DicomValidationError(
            RejectionReason.EMPTY_DATASET, "DICOM file holds no data set (truncated?)"
        )
    # A meta header without TransferSyntaxUID: the encoding pydicom found when reading tells it.
    _ensure_transfer_syntax(ds)
    return ds


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Give a file without meta information (or without TransferSyntaxUID in it) the transfer
    syntax its encoding implies."""
    if not hasattr(ds, "file_meta") or ds.file_meta is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    if ds.file_meta.get("TransferSyntaxUID"):
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        return
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


def number_of_frames(ds: Dataset) -> int:
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
                RejectionReason.INVALID_PIXEL_SPACING, f"unreadable PixelSpacing {value!r}"
            ) from error
        if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
            raise DicomValidationError(
                RejectionReason.INVALID_PIXEL_SPACING,
                f"PixelSpacing must be two positive numbers, got {values}",
            )
        return (values[0], values[1]), note
    raise DicomValidationError(RejectionReason.MISSING_PIXEL_SPACING, "missing PixelSpacing")


def slice_normal(ds: Dataset, frame: int) -> np.ndarray | None:
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


def slice_position(ds: Dataset, frame: int) -> np.ndarray | None:
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
class DicomHeader:
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


def identity_fields(ds: Dataset) -> dict[str, str]:
    """UIDs and non-identifying study fields, for catalog rows (also of rejected files)."""
    date = _text(ds, "StudyDate")
    return {
        "study_uid": _text(ds, "StudyInstanceUID"),
        "series_uid": _text(ds, "SeriesInstanceUID"),
        "sop_instance_uid": _text(ds, "SOPInstanceUID"),
        "study_date": date if is_calendar_date(date) else "",
        "modality": _text(ds, "Modality"),
        "patient_key": pseudonymize(_text(ds, "PatientID")),
    }


def validate_header(
    ds: Dataset, path: Path, size_bytes: int, limits: ImageLimits | None = None
) -> DicomHeader:
    """Check everything that can be checked without decoding pixels; with ``limits``, also
    that the image is plausibly a sagittal spine image of bounded size."""
    ident = identity_fields(ds)
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
        if _ends_before(ds, missing, size_bytes):
            raise DicomValidationError(
                RejectionReason.TRUNCATED,
                f"file ends (at byte {size_bytes}) before {', '.join(missing)}: truncated",
            )
        raise DicomValidationError(RejectionReason.MISSING_UID, f"missing {', '.join(missing)}")
    malformed = [
        keyword
        for keyword, key in (
            ("StudyInstanceUID", "study_uid"),
            ("SeriesInstanceUID", "series_uid"),
            ("SOPInstanceUID", "sop_instance_uid"),
        )
        if not is_uid(ident[key])
    ]
    if malformed:
        raise DicomValidationError(
            RejectionReason.INVALID_UID,
            f"{', '.join(malformed)} not a DICOM UID (digits and dots, at most 64 characters)",
        )
    modality = ident["modality"].upper()
    if modality in NON_IMAGE_MODALITIES:
        raise DicomValidationError(
            RejectionReason.UNSUPPORTED_MODALITY,
            f"modality {modality} holds no image of the patient to label",
        )
    pixel_tag = next((tag for tag in _PIXEL_TAGS if tag in ds), None)
    if pixel_tag is None:
        raise DicomValidationError(RejectionReason.NO_PIXEL_DATA, "no pixel data")
    raw = ds.get_item(pixel_tag, keep_deferred=True)
    # A deferred value records where it starts and how long it is: a file cut short is found
    # here, without reading its pixels.
    value_tell = getattr(raw, "value_tell", None)
    length = getattr(raw, "length", None)
    known_length = value_tell is not None and length not in (None, _UNDEFINED_LENGTH)
    if known_length and value_tell + length > size_bytes:
        raise DicomValidationError(
            RejectionReason.TRUNCATED,
            f"pixel data truncated: file ends at byte {size_bytes}, "
            f"pixel data needs {value_tell + length}",
        )
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = _text(ds, "PhotometricInterpretation") or "MONOCHROME2"
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomValidationError(
            RejectionReason.NOT_GRAYSCALE,
            f"not a grayscale image (SamplesPerPixel {samples}, {photometric}); "
            "only MONOCHROME1/2 images can be labelled",
        )
    try:
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    except (TypeError, ValueError):
        rows, columns = 0, 0
    if rows < MIN_SIZE or columns < MIN_SIZE:
        raise DicomValidationError(
            RejectionReason.INVALID_DIMENSIONS,
            f"image is {rows} x {columns} pixels; at least {MIN_SIZE} x {MIN_SIZE} needed",
        )
    if limits is not None and rows * columns > limits.max_pixels:
        raise DicomValidationError(
            RejectionReason.IMAGE_TOO_LARGE,
            f"image is {rows} x {columns} pixels; at most {limits.max_pixels} pixels per frame",
        )
    frames = number_of_frames(ds)
    spacing, note = _spacing(ds, frames // 2)
    if limits is not None:
        _check_bounds(ds, frames // 2, rows, columns, spacing, limits)
    return DicomHeader(
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


_UID_TAGS = {"SOPInstanceUID": 0x00080018, "StudyInstanceUID": 0x0020000D,
             "SeriesInstanceUID": 0x0020000E}  # fmt: skip


def _ends_before(ds: Dataset, missing: list[str], size_bytes: int) -> bool:
    """Whether the data set stops before the first missing UID would be, in a file that has
    no pixel data either: a file cut short, not one written without the UID."""
    if any(tag in ds for tag in _PIXEL_TAGS) or not len(ds):
        return False
    last = max(int(element.tag) for element in ds)
    return last < min(_UID_TAGS[keyword] for keyword in missing) or size_bytes < 256


def _body_part(ds: Dataset) -> str:
    return _text(ds, "BodyPartExamined").upper()


def _check_bounds(
    ds: Dataset,
    frame: int,
    rows: int,
    columns: int,
    spacing: tuple[float, float],
    limits: ImageLimits,
) -> None:
    """Raise :class:`DicomValidationError` when the image is outside ``limits``."""
    low, high = limits.min_pixel_spacing_mm, limits.max_pixel_spacing_mm
    if not all(low <= value <= high for value in spacing):
        raise DicomValidationError(
            RejectionReason.IMPLAUSIBLE_PIXEL_SPACING,
            f"pixel spacing {spacing[0]:g} x {spacing[1]:g} mm outside {low:g}-{high:g} mm",
        )
    extent = max(rows * spacing[0], columns * spacing[1])
    if extent > limits.max_field_of_view_mm:
        raise DicomValidationError(
            RejectionReason.IMAGE_TOO_LARGE,
            f"field of view {rows * spacing[0]:.0f} x {columns * spacing[1]:.0f} mm; at most "
            f"{limits.max_field_of_view_mm:g} mm",
        )
    body_part = _body_part(ds)
    if body_part and not any(part in body_part for part in SPINE_BODY_PARTS):
        raise DicomValidationError(
            RejectionReason.NOT_SPINE, f"BodyPartExamined {body_part!r} is not the spine"
        )
    if limits.require_sagittal:
        normal = slice_normal(ds, frame)
        if normal is not None:
            angle = math.degrees(math.acos(min(1.0, abs(float(normal[0])))))
            if angle > limits.sagittal_tolerance_deg:
                raise DicomValidationError(
                    RejectionReason.NOT_SAGITTAL,
                    f"not a sagittal image: slice normal {angle:.0f} deg from left-right "
                    f"(at most {limits.sagittal_tolerance_deg:g})",
                )


def ordered_frames(ds: Dataset, frames: int) -> tuple[list[int], str]:
    """Frame indices ordered along the slice normal when per-frame geometry says where each
    frame lies (enhanced multi-frame); in stored order otherwise."""
    if frames <= 1:
        return [0], ""
    normal = slice_normal(ds, 0)
    positions = [slice_position(ds, i) for i in range(frames)]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if normal is None or per_frame is None or any(p is None for p in positions):
        return list(range(frames)), ""
    along = [float(np.dot(p, normal)) for p in positions]
    if max(along) - min(along) < 1e-6:  # all at one place (e.g. a time series): keep order
        return list(range(frames)), ""
    return sorted(range(frames), key=lambda i: (along[i], i)), "frames ordered along the normal"


def middle_frame_index(ds: Dataset) -> int:
    """The frame that is labelled: the middle one (index n // 2 of the ordered frames)."""
    order, _ = ordered_frames(ds, number_of_frames(ds))
    return order[len(order) // 2]


def decode_frame(header: DicomHeader, frame: int) -> np.ndarray:
    """One frame's pixels with the modality LUT applied, float32, rows x columns."""
    ds = header.ds
    try:
        # Multi-frame: decode only the frame that is labelled.
        array = pixel_array(ds, index=frame) if header.frames > 1 else pixel_array(ds)
    except Exception as error:  # noqa: BLE001 - decoders raise many types
        reason = (
            RejectionReason.TRUNCATED
            if "less than expected" in str(error)
            else RejectionReason.UNDECODABLE
        )
        raise DicomValidationError(
            reason, f"pixel data cannot be decoded: {type(error).__name__}: {error}"
        ) from error
    if array.ndim != 2:
        raise DicomValidationError(
            RejectionReason.NOT_GRAYSCALE,
            f"decoded pixels have shape {array.shape}, expected rows x columns",
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


def build_label_image(header: DicomHeader, frame: int, pixels: np.ndarray) -> LabelImage:
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
        raise DicomValidationError(
            RejectionReason.UNREADABLE, f"cannot read {path}: {error}"
        ) from error
    header = validate_header(read_dataset(path), path, size_bytes)
    if frame_index is None:
        frame_index = middle_frame_index(header.ds)
    if not 0 <= frame_index < header.frames:
        raise ValueError(f"frame {frame_index} out of range: {path} has {header.frames} frames")
    return build_label_image(header, frame_index, decode_frame(header, frame_index))
