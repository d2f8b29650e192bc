"""Label-test building blocks: a small image and results along a straight synthetic spine."""

from __future__ import annotations

import math

import numpy as np

from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK, LandmarkResult
from labeling_pipeline.localization.template import TemplateLandmark, TemplateLandmarks

VERTEBRAE = ("L1", "L2", "L3", "L4", "L5")


def make_image(
    sop: str = "1.2.3.4.1",
    study: str = "1.2.3",
    spacing: tuple[float, float] = (0.5, 0.25),
    shape: tuple[int, int] = (120, 100),
    photometric: str = "MONOCHROME2",
) -> LabelImage:
    rows, columns = shape
    pixels = np.add.outer(np.arange(rows), np.arange(columns)).astype(np.float32)
    return LabelImage(
        study_uid=study,
        series_uid=study + ".9",
        sop_instance_uid=sop,
        study_date="20240315",
        modality="MR",
        pixels=pixels,
        pixel_spacing_mm=spacing,
        photometric_interpretation=photometric,
    )


def make_template() -> TemplateLandmarks:
    landmarks = []
    for index, name in enumerate(VERTEBRAE):
        landmarks.append(TemplateLandmark(name, "vertebra", 50.0, 20.0 + 20 * index))
        if index < len(VERTEBRAE) - 1:
            disc = f"{name}-{VERTEBRAE[index + 1]}"
            landmarks.append(TemplateLandmark(disc, "disc", 50.0, 30.0 + 20 * index))
    return TemplateLandmarks("lumbar", tuple(landmarks))


def make_results(review: tuple[str, ...] = (), missing: tuple[str, ...] = ()) -> list:
    """Results at the template's positions; ``review`` ones need review without a position."""
    results = []
    for lm in make_template().landmarks:
        if lm.name in missing:
            continue
        if lm.name in review:
            results.append(
                LandmarkResult(lm.name, lm.kind, math.nan, math.nan, 0.1, NEEDS_REVIEW, "far off")
            )
        else:
            results.append(
                LandmarkResult(lm.name, lm.kind, lm.x, lm.y, 0.9, OK, iterations=1, confidence=0.8)
            )
    return results
