"""What localization says about each landmark of the template in one image."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

OK = "ok"
NEEDS_REVIEW = "needs_review"


@dataclass
class LandmarkResult:
    """The located position of one template landmark in one image.

    ``x, y`` are column and row in pixels of the original (labelled) image, NaN when nothing
    acceptable was found. ``score`` is the cosine similarity of the match (-1..1).
    ``status`` is ``ok`` or ``needs_review``; ``reason`` says why review is needed.
    ``distance_to_previous_mm`` / ``angle_to_previous_deg`` measure the step from the previous
    landmark of the same kind in anatomical order (caudal to cranial); the angle is that of
    the step vector against the image's upward direction (0 = straight up, positive = towards
    larger x). ``confidence`` estimates the probability that the label is right (0..1).
    """

    name: str
    kind: str
    x: float
    y: float
    score: float
    status: str
    reason: str = ""
    iterations: int = 0
    confidence: float = 0.0
    distance_to_previous_mm: float = math.nan
    angle_to_previous_deg: float = math.nan

    @property
    def found(self) -> bool:
        return not (math.isnan(self.x) or math.isnan(self.y))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


OUTSIDE_IMAGE_REASON = "placed beyond the image's edge: its centre is out of view"


def flag_outside_image(
    results: list[LandmarkResult], rows: int, columns: int
) -> list[LandmarkResult]:
    """``results`` with every ``ok`` landmark whose position lies beyond the image (more than
    half a pixel outside its pixel centres) flagged for review: the search grid covers whole
    feature cells, a little more than the image, and a body whose centre is out of view cannot
    be checked on this image (a sacrum at row 225 of 224)."""

    def outside(result: LandmarkResult) -> bool:
        return not (-0.5 <= result.x <= columns - 0.5 and -0.5 <= result.y <= rows - 0.5)

    return [
        replace(r, status=NEEDS_REVIEW, reason=OUTSIDE_IMAGE_REASON, confidence=0.0)
        if r.status == OK and r.found and outside(r)
        else r
        for r in results
    ]
