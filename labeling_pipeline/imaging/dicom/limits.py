"""What an image must look like to be labelled at all: bounds checked on the header, before
any pixel is decoded, so that neither a hostile nor a foreign file can cost unbounded memory
or be labelled as if it were a sagittal spine image."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Body parts (BodyPartExamined, upper case) that are, or contain, the spine.
SPINE_BODY_PARTS = ("SPINE", "SPIN", "LUMB", "SACR", "COCCYX", "CERV", "NECK", "BACK", "WHOLE")
#: Modalities whose objects are not images of a patient (segmentations, dose grids, reports,
#: presentation states, waveforms...).
NON_IMAGE_MODALITIES = frozenset(
    {"SEG", "RTDOSE", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "KO", "PR", "ECG", "REG", "DOC",
     "PLAN", "RWV", "AU", "HD", "EPS", "HC"}
)  # fmt: skip


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on the images that are labelled.

    ``min_pixel_spacing_mm``..``max_pixel_spacing_mm``: plausible pixel spacing of spine
    imaging (MR 0.3-1.5 mm, CT 0.2-1 mm, radiographs 0.1-0.2 mm). ``max_pixels``: rows x
    columns of one frame. ``max_field_of_view_mm``: the longer side in mm (a whole spine is
    about 700 mm). Together they bound the memory one image costs, whatever its header says.
    ``require_sagittal``: an image with ImageOrientationPatient must be sagittal within
    ``sagittal_tolerance_deg`` (the slice normal against the patient's left-right axis);
    images without orientation (projections) are not refused for it.
    """

    min_pixel_spacing_mm: float = 0.1
    max_pixel_spacing_mm: float = 5.0
    max_pixels: int = 4096 * 4096
    max_field_of_view_mm: float = 1000.0
    require_sagittal: bool = True
    sagittal_tolerance_deg: float = 30.0

    def __post_init__(self) -> None:
        if not (
            math.isfinite(self.min_pixel_spacing_mm)
            and math.isfinite(self.max_pixel_spacing_mm)
            and 0 < self.min_pixel_spacing_mm < self.max_pixel_spacing_mm
        ):
            raise ValueError(
                "pixel spacing range must be two finite numbers 0 < min < max, got "
                f"{self.min_pixel_spacing_mm}-{self.max_pixel_spacing_mm}"
            )
        if self.max_pixels < 32 * 32:
            raise ValueError(f"max_pixels must be at least {32 * 32}, got {self.max_pixels}")
        if not (math.isfinite(self.max_field_of_view_mm) and self.max_field_of_view_mm > 0):
            raise ValueError(f"max_field_of_view_mm must be positive: {self.max_field_of_view_mm}")
        if not 0 <= self.sagittal_tolerance_deg < 90:
            raise ValueError(
                f"sagittal_tolerance_deg must be in [0, 90), got {self.sagittal_tolerance_deg}"
            )
