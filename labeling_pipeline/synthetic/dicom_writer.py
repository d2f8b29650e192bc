"""Write synthetic phantoms as DICOM MR images (pydicom), deterministically.

Three layouts, all Explicit VR Little Endian, uncompressed, MONOCHROME2, 12 bits stored in 16:

- :func:`write_single_frame`: one image in one file;
- :func:`write_series`: a sagittal series, one file per slice, ``ImagePositionPatient``
  stepping along the slice normal; the middle slice is the mid-sagittal one the truth is
  drawn on;
- :func:`write_multiframe`: all slices as frames of one file (``NumberOfFrames``), likewise
  the middle frame.

Geometry: sagittal ``ImageOrientationPatient`` = [0, 1, 0, 0, 0, -1] (rows run towards the
patient's back, +Y; columns run towards the feet, -Z), so the slice normal (row x column
direction) is -X. Slice ``k`` of ``n`` lies at ``X = -(k - (n - 1) / 2) * spacing``: stepping along
the normal increases with ``k``, i.e. files and frames are in order along the normal.

All UIDs come from :func:`pydicom.uid.generate_uid` with ``entropy_srcs`` built from the study's
``key``, so writing the same study twice gives byte-identical files. Patient name and ID are
synthetic ("SYNTHETIC^CASE007", "SYN-0007") so that downstream anonymisation can be checked.
Files are written atomically (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from labeling_pipeline.atomic import atomic_write
from labeling_pipeline.synthetic.phantom import Phantom, slice_offsets_mm

#: Namespace mixed into every UID's entropy so synthetic UIDs never collide with other tools'.
UID_NAMESPACE = "labeling_pipeline.synthetic"


@dataclass(frozen=True)
class StudyInfo:
    """Identity of one synthetic study; ``key`` (any unique text) seeds its UIDs.

    ``case_number`` gives the synthetic patient ("SYNTHETIC^CASE007" / "SYN-0007").
    ``study_date`` is YYYYMMDD.
    """

    key: str
    case_number: int
    study_date: str = "20260901"
    study_description: str = "SYNTHETIC LUMBAR SPINE"
    series_description: str = "SAG T2 TSE"
    series_number: int = 1
    slice_thickness_mm: float = 4.0

    def __post_init__(self) -> None:
        date = self.study_date
        if len(date) != 8 or not date.isdigit():
            raise ValueError(f"study_date must be YYYYMMDD: {date!r}")

    @property
    def patient_name(self) -> str:
        return f"SYNTHETIC^CASE{self.case_number:03d}"

    @property
    def patient_id(self) -> str:
        return f"SYN-{self.case_number:04d}"

    def uid(self, *parts: object) -> str:
        """Deterministic UID for this study and ``parts`` (e.g. "series", "sop", 3)."""
        return generate_uid(entropy_srcs=[UID_NAMESPACE, self.key, *map(str, parts)])

    @property
    def study_uid(self) -> str:
        return self.uid("study")

    @property
    def series_uid(self) -> str:
        return self.uid("series", self.series_number)


@dataclass(frozen=True)
class WrittenImage:
    """One written file; ``labelled_frame`` is the frame index the truth is drawn on, the
    mid-sagittal one (None for a non-middle slice of a series)."""

    path: Path
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    labelled_frame: int | None


def window_of(pixels: np.ndarray) -> tuple[float, float]:
    """Display window (centre, width) from the 1st/99.5th percentiles of ``pixels``."""
    low, high = np.percentile(pixels, [1.0, 99.5])
    width = max(float(high - low), 1.0)
    return round(float(low) + width / 2, 1), round(width, 1)


def _base_dataset(study: StudyInfo, sop_uid: str, phantom: Phantom) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "SYNTHETIC"]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study.study_date
    ds.SeriesDate = study.study_date
    ds.StudyTime = "120000"
    ds.AccessionNumber = f"SYNACC{study.case_number:04d}"
    ds.Modality = "MR"
    ds.Manufacturer = "labeling_pipeline synthetic phantom"
    ds.StudyDescription = study.study_description
    ds.SeriesDescription = study.series_description
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "LSPINE"
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "SK"
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = f"{study.slice_thickness_mm:g}"
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = study.series_uid
    ds.StudyID = f"{study.case_number}"
    ds.SeriesNumber = study.series_number
    ds.FrameOfReferenceUID = study.uid("frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = phantom.rows
    ds.Columns = phantom.columns
    ds.PixelSpacing = [f"{phantom.pixel_spacing_mm[0]:.6g}", f"{phantom.pixel_spacing_mm[1]:.6g}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    return ds


def _position(phantom: Phantom, lateral_mm: float) -> list[str]:
    """ImagePositionPatient of the first pixel's centre: the image is centred on Y = Z = 0."""
    row_mm, col_mm = phantom.pixel_spacing_mm
    y = -0.5 * (phantom.columns - 1) * col_mm  # rows step along +Y (column index)
    z = 0.5 * (phantom.rows - 1) * row_mm  # columns step along -Z (row index)
    return [f"{lateral_mm + 0.0:.6g}", f"{y:.6g}", f"{z:.6g}"]  # + 0.0: no "-0"


def _check_pixels(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype != np.uint16 or pixels.ndim not in (2, 3):
        raise ValueError(f"pixels must be 2-D or 3-D uint16, got {pixels.dtype} {pixels.shape}")
    if int(pixels.max(initial=0)) > 4095:
        raise ValueError("pixels exceed the 12-bit range (max 4095)")
    return np.ascontiguousarray(pixels)


def _save(ds: Dataset, path: Path) -> None:
    """Write ``ds`` to ``path`` atomically."""
    atomic_write(path, lambda temporary: ds.save_as(temporary, enforce_file_format=True))


def write_single_frame(phantom: Phantom, path: Path, study: StudyInfo) -> WrittenImage:
    """Write one phantom as a single-frame MR image at ``path``."""
    sop_uid = study.uid("sop", study.series_number, 1)
    ds = _base_dataset(study, sop_uid, phantom)
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = _position(phantom, phantom.lateral_offset_mm)
    ds.SliceLocation = f"{phantom.lateral_offset_mm + 0.0:.6g}"
    ds.WindowCenter, ds.WindowWidth = window_of(phantom.pixels)
    ds.PixelData = _check_pixels(phantom.pixels).tobytes()
    _save(ds, path)
    return WrittenImage(Path(path), study.study_uid, study.series_uid, sop_uid, 0)


def write_series(
    slices: Sequence[Phantom],
    directory: Path,
    study: StudyInfo,
    slice_spacing_mm: float | None = None,
    name_pattern: str = "IM{number:04d}.dcm",
) -> list[WrittenImage]:
    """Write ``slices`` (ordered along the slice normal) as one sagittal series, one file each.

    ``slice_spacing_mm`` defaults to the slice thickness. File names come from ``name_pattern``
    with the 1-based ``number``. Returns the written images in slice order; the middle one
    (index ``len(slices) // 2``, an odd count is expected) has ``labelled_frame == 0``.
    """
    if not slices:
        raise ValueError("a series needs at least one slice")
    spacing = study.slice_thickness_mm if slice_spacing_mm is None else slice_spacing_mm
    middle = len(slices) // 2
    written = []
    for k, (phantom, x_mm) in enumerate(
        zip(slices, slice_offsets_mm(len(slices), spacing), strict=True)
    ):
        sop_uid = study.uid("sop", study.series_number, k + 1)
        ds = _base_dataset(study, sop_uid, phantom)
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = _position(phantom, x_mm)
        ds.SliceLocation = f"{x_mm + 0.0:.6g}"
        ds.SpacingBetweenSlices = f"{spacing:g}"
        ds.WindowCenter, ds.WindowWidth = window_of(slices[middle].pixels)
        ds.PixelData = _check_pixels(phantom.pixels).tobytes()
        path = Path(directory) / name_pattern.format(number=k + 1)
        _save(ds, path)
        written.append(
            WrittenImage(
                path, study.study_uid, study.series_uid, sop_uid, 0 if k == middle else None
            )
        )
    return written


def write_multiframe(
    frames: Sequence[Phantom],
    path: Path,
    study: StudyInfo,
    slice_spacing_mm: float | None = None,
) -> WrittenImage:
    """Write ``frames`` (ordered along the slice normal) as one multi-frame MR file.

    Top-level ``ImagePositionPatient`` is that of the first frame; each frame's position is in
    ``PerFrameFunctionalGroupsSequence`` (``PlanePositionSequence``), pixel spacing and
    orientation also in ``SharedFunctionalGroupsSequence``. The labelled frame is the middle one.
    """
    if not frames:
        raise ValueError("a multi-frame image needs at least one frame")
    shapes = {f.pixels.shape for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"all frames must have the same shape, got {sorted(shapes)}")
    spacing = study.slice_thickness_mm if slice_spacing_mm is None else slice_spacing_mm
    middle = len(frames) // 2
    sop_uid = study.uid("sop", study.series_number, 1)
    ds = _base_dataset(study, sop_uid, frames[middle])
    offsets = slice_offsets_mm(len(frames), spacing)
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(frames)
    ds.ImagePositionPatient = _position(frames[0], offsets[0])
    ds.SpacingBetweenSlices = f"{spacing:g}"

    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = ds.PixelSpacing
    measures.SliceThickness = ds.SliceThickness
    measures.SpacingBetweenSlices = ds.SpacingBetweenSlices
    shared.PixelMeasuresSequence = DicomSequence([measures])
    orientation = Dataset()
    orientation.ImageOrientationPatient = ds.ImageOrientationPatient
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for frame, x_mm in zip(frames, offsets, strict=True):
        plane = Dataset()
        plane.ImagePositionPatient = _position(frame, x_mm)
        item = Dataset()
        item.PlanePositionSequence = DicomSequence([plane])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)

    ds.WindowCenter, ds.WindowWidth = window_of(frames[middle].pixels)
    stack = np.stack([f.pixels for f in frames])
    ds.PixelData = _check_pixels(stack).tobytes()
    _save(ds, path)
    return WrittenImage(Path(path), study.study_uid, study.series_uid, sop_uid, middle)
