"""Does an image show the template's anatomy at all? A study-independent test on one image's
localization results, so that an image of another body part is never labelled ``ok``.

A spine image shows a chain of vertebrae: the template's vertebrae found in anatomical order,
each step between neighbours within the domain's distance and angle ranges, and matched with
confidence. An image of a liver, a head or a phantom of something else may match a landmark or
two by chance, never a long consistent chain. When the chain is missing, every landmark of the
image is flagged ``needs_review`` with :data:`NOT_SPINE_REASON`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from labeling_pipeline.anatomy import DomainKnowledge
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK, LandmarkResult

NOT_SPINE_REASON = "not_spine_anatomy"


@dataclass(frozen=True)
class PlausibilitySettings:
    """``min_chain``: fewest adjacent vertebrae (or all of the template's, when it has fewer)
    that must be found ``ok`` in a row with steps within the domain ranges;
    ``min_median_confidence``: the median confidence of those vertebrae."""

    min_chain: int = 3
    # Confidences are calibrated probabilities of being right (SearchSettings): a spine's chain
    # is typically far above this, an image of something else far below.
    min_median_confidence: float = 0.85


def _longest_consistent_chain(
    results: list[LandmarkResult], domain: DomainKnowledge
) -> list[LandmarkResult]:
    found = {r.name: r for r in results if r.kind == "vertebra" and r.status == OK and r.found}
    best: list[LandmarkResult] = []
    chain: list[LandmarkResult] = []
    for name in domain.order:  # caudal to cranial
        current = found.get(name)
        if current is not None and chain:
            previous = chain[-1]
            pair = domain.pair(previous.name, name)
            step = _step(previous, current)
            if pair is None or step is None or not pair.accepts(*step):
                chain = []
        chain = [*chain, current] if current is not None else []
        if len(chain) > len(best):
            best = chain
    return best


def _step(caudal: LandmarkResult, cranial: LandmarkResult) -> tuple[float, float] | None:
    # The results carry the step to the previous landmark in mm and degrees when measured.
    if math.isfinite(cranial.distance_to_previous_mm) and math.isfinite(
        cranial.angle_to_previous_deg
    ):
        return cranial.distance_to_previous_mm, cranial.angle_to_previous_deg
    return None


def implausibility(
    results: list[LandmarkResult],
    domain: DomainKnowledge,
    settings: PlausibilitySettings | None = None,
) -> str:
    """Why the image does not look like the template's anatomy ("" when it does)."""
    settings = settings or PlausibilitySettings()
    template_vertebrae = [r for r in results if r.kind == "vertebra" and r.name in domain.order]
    if not template_vertebrae:
        return ""  # a template of discs only: nothing to judge the chain by
    needed = min(settings.min_chain, len(template_vertebrae))
    chain = _longest_consistent_chain(results, domain)
    if len(chain) < needed:
        return (
            f"{NOT_SPINE_REASON}: {len(chain)} adjacent vertebrae found in a consistent chain, "
            f"{needed} needed"
        )
    confidences = sorted(r.confidence for r in chain)
    median = confidences[len(confidences) // 2]
    if median < settings.min_median_confidence:
        return (
            f"{NOT_SPINE_REASON}: median confidence {median:.2f} of the chain's vertebrae, "
            f"{settings.min_median_confidence:g} needed"
        )
    return ""


def flag_if_not_spine(
    results: list[LandmarkResult],
    domain: DomainKnowledge,
    settings: PlausibilitySettings | None = None,
) -> list[LandmarkResult]:
    """``results`` unchanged when the image looks like the template's anatomy; otherwise every
    landmark ``needs_review`` with the reason (positions kept, for a reviewer to judge)."""
    reason = implausibility(results, domain, settings)
    if not reason:
        return results
    return [replace(r, status=NEEDS_REVIEW, reason=reason) for r in results]
