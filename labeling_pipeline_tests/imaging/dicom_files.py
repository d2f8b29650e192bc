"""Small DICOM files for tests, written with pydicom (no dependence on the phantom generator).

Pixel values encode which slice/frame a file holds: every pixel of slice ``k`` is
``base + 10 * k`` plus a small column gradient, so a test can tell which one was chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # rows along +y (anterior->posterior), cols along -z


def slice_pixels(value: int, rows: int = 48, columns: int = 40) -> np.ndarray:
    """uint16 pixels: ``value`` everywhere plus the column index (a gradient to check layout)."""
    return np.full((rows, columns), value, dtype=np.uint16) + np.arange(columns, dtype=np.uint16)


def make_dataset(
    *,
    pixels: np.ndarray | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    study_date: str | None = "20240315",
    position: Sequence[float] | None = (0.0, 0.0, 0.0),
    orientation: Sequence[float] | None = SAGITTAL,
    instance: int | None = 1,
    spacing: Sequence[float] | None = (0.8, 0.6),
    photometric: str = "MONOCHROME2",
    patient_name: str = "Doe^Jane",
    patient_id: str = "SECRET-ID-123",
) -> Dataset:
    """A valid single-frame MR dataset (16-bit unsigned grayscale unless ``pixels`` says so)."""
    if pixels is None:
        pixels = slice_pixels(100)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    if study_date is not None:
        ds.StudyDate = study_date
    ds.Modality = "MR"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    if instance is not None:
        ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = list(position)
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
    if spacing is not None:
        ds.PixelSpacing = list(spacing)
    set_pixels(ds, pixels, photometric)
    return ds


def set_pixels(ds: Dataset, pixels: np.ndarray, photometric: str = "MONOCHROME2") -> None:
    """Store ``pixels`` (rows x cols, frames x rows x cols, or rows x cols x 3 for RGB)."""
    rgb = photometric == "RGB"
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = photometric
    if rgb:
        ds.PlanarConfiguration = 0
    frames = pixels.shape[0] if (pixels.ndim == 3 and not rgb) else 1
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if rgb else pixels.shape[-2:]
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def write(ds: Dataset, path: Path) -> Path:
    """Save ``ds`` as a DICOM file (with preamble and meta header), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(
    folder: Path,
    positions_mm: Sequence[float],
    names: Sequence[str] | None = None,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    geometry: bool = True,
    instances: Sequence[int] | None = None,
) -> list[tuple[Path, Dataset]]:
    """One sagittal series: slice ``k`` lies at ``positions_mm[k]`` along x (the normal's axis)
    and holds pixel value ``100 + 10 * k``. Returns (path, dataset) per slice, in ``k`` order."""
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    names = names or [f"slice_{k:02d}.dcm" for k in range(len(positions_mm))]
    written = []
    for k, (x, name) in enumerate(zip(positions_mm, names, strict=True)):
        ds = make_dataset(
            pixels=slice_pixels(100 + 10 * k),
            study_uid=study_uid,
            series_uid=series_uid,
            position=(x, -50.0, 80.0) if geometry else None,
            orientation=SAGITTAL if geometry else None,
            instance=None if instances is None else instances[k],
        )
        written.append((write(ds, folder / name), ds))
    return written
