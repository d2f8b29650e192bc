"""Scoring localization against known vertebra positions (benchmarks and tests).

A vertebra counts as identified when its label has status ``ok`` and lies within half the
distance from its true centre to the nearest neighbouring vertebra's true centre: closer to
the right vertebra than to any other.

Truth is keyed by the SOPInstanceUID of the slice it was drawn on; the pipeline may label
another slice of that series (its most mid-sagittal one). In-plane positions carry over between
parallel slices of a series, so :func:`match_truth_by_series` matches truth to the labelled
image by series.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from labeling_pipeline.localization.result import OK, LandmarkResult

IDENTIFIED = "identified"
REVIEW = "needs_review"
WRONG = "confidently_wrong"
FALSE_POSITIVE = "ok_but_absent"


@dataclass(frozen=True)
class Outcome:
    """How one vertebra of one image came out; ``error_mm`` is NaN when it has no position."""

    image: str
    landmark: str
    outcome: str
    error_mm: float


def score_image(
    image: str,
    results: Iterable[LandmarkResult],
    truth: Mapping[str, tuple[float, float]],
    spacing_mm: tuple[float, float],
) -> list[Outcome]:
    """Outcomes of the vertebrae in ``results`` against ``truth`` ({name: (x, y)} in pixels of
    the same image, vertebrae only; absent names are out of view). ``spacing_mm`` is (row,
    column) pixel spacing."""
    row_mm, col_mm = spacing_mm

    def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
        return math.hypot((a[0] - b[0]) * col_mm, (a[1] - b[1]) * row_mm)

    outcomes = []
    for result in results:
        if result.kind != "vertebra":
            continue
        true = truth.get(result.name)
        if true is None:
            if result.status == OK:
                outcomes.append(Outcome(image, result.name, FALSE_POSITIVE, math.nan))
            continue
        others = [distance(true, p) for n, p in truth.items() if n != result.name]
        tolerance = min(others) / 2 if others else math.inf
        error = distance(true, (result.x, result.y)) if result.found else math.nan
        if result.status != OK:
            kind = REVIEW
        elif error <= tolerance:
            kind = IDENTIFIED
        else:
            kind = WRONG
        outcomes.append(Outcome(image, result.name, kind, error))
    return outcomes


@dataclass(frozen=True)
class Summary:
    """Shares over the vertebrae present in the truth; ``mean_error_mm`` over identified ones."""

    vertebrae: int
    identified: float
    needs_review: float
    confidently_wrong: float
    ok_but_absent: int
    mean_error_mm: float


def summarize(outcomes: Iterable[Outcome]) -> Summary:
    items = list(outcomes)
    present = [o for o in items if o.outcome != FALSE_POSITIVE]
    total = max(len(present), 1)

    def share(kind: str) -> float:
        return sum(o.outcome == kind for o in present) / total

    errors = [o.error_mm for o in present if o.outcome == IDENTIFIED]
    return Summary(
        vertebrae=len(present),
        identified=share(IDENTIFIED),
        needs_review=share(REVIEW),
        confidently_wrong=share(WRONG),
        ok_but_absent=sum(o.outcome == FALSE_POSITIVE for o in items),
        mean_error_mm=sum(errors) / len(errors) if errors else math.nan,
    )


def match_truth_by_series(
    truth: Mapping[str, Mapping[str, Any]], labelled: Iterable[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """The truth entry of each labelled image, keyed by the labelled image's SOPInstanceUID.

    ``truth`` is keyed by the SOPInstanceUID of the slice (or multi-frame file) the truth was
    drawn on; an entry's ``series_uid`` (where it has one) names its series. ``labelled`` gives
    (SOPInstanceUID, SeriesInstanceUID) of each labelled image. A labelled image takes the entry
    of its own SOP, else the one entry of its series; each returned entry is a copy with
    ``truth_sop_instance_uid`` added (the slice the truth was drawn on). Images without truth
    are left out; two entries for one series raise, as the match would be ambiguous.
    """
    by_series: dict[str, str] = {}
    for sop, entry in truth.items():
        series = str(entry.get("series_uid", "") or "")
        if not series:
            continue
        if series in by_series:
            raise ValueError(f"two truth entries for series {series}: {by_series[series]}, {sop}")
        by_series[series] = sop
    matched: dict[str, dict[str, Any]] = {}
    for sop, series in labelled:
        key = sop if sop in truth else by_series.get(series)
        if key is None:
            continue
        matched[sop] = {**truth[key], "truth_sop_instance_uid": key}
    return matched
