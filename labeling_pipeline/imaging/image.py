"""The image that gets labelled, as ingestion hands it to the rest of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LabelImage:
    """One 2-D image chosen for labelling (a single frame, a series' most mid-sagittal slice
    or frame; ``slice_choice`` says which and why).

    ``pixels`` holds the stored values with the modality LUT applied (float32, rows x columns),
    not yet windowed or inverted. ``pixel_spacing_mm`` is (row spacing, column spacing) in mm,
    as DICOM PixelSpacing orders it. Identifiers are DICOM UIDs; no patient data is kept.
    """

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    study_date: str  # YYYYMMDD, "" when absent
    modality: str
    pixels: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    photometric_interpretation: str = "MONOCHROME2"
    window_center: float | None = None
    window_width: float | None = None
    frame_index: int = 0
    source_files: list[str] = field(default_factory=list)
    slice_choice: str = ""
    partition_key: str = ""  # the study's, as a scan of the data directory keys it

    @property
    def rows(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def columns(self) -> int:
        return int(self.pixels.shape[1])
