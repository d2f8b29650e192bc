"""One study's localization: every template landmark located in every labelled image.

With several templates, each image is searched with the default template first. Only where it
leaves landmarks for review are the other templates tried (at most
``TemplateChoice.max_alternatives``, so the search cost stays bounded: about one default
search per image, plus one per alternative on the flagged images). An alternative may only
add: it fills landmarks the default left for review, never moves or unflags what the default
placed. It is used only when

- it agrees with the default on every landmark both place ``ok`` (within
  ``agreement_fraction`` of the template's median vertebra step): the two chains count the
  same levels, so what it adds is anchored by what the default found;
- the merged vertebrae still form a chain whose adjacent ``ok`` steps lie within the domain's
  distance and angle ranges;
- it yields more ``ok`` landmarks than the default alone (ties: higher mean confidence).

Each landmark records which template placed it (``templates``; ``default`` for the default).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from labeling_pipeline.anatomy import DomainKnowledge
from labeling_pipeline.features.feature_map import FeatureMap
from labeling_pipeline.features.store import FeatureStore
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.imaging.study import StudyImages
from labeling_pipeline.localization.bundle import NamedTemplate, TemplateBundle
from labeling_pipeline.localization.plausibility import flag_if_not_spine
from labeling_pipeline.localization.reference import TemplateReference, step_angle_deg
from labeling_pipeline.localization.result import (
    NEEDS_REVIEW,
    OK,
    LandmarkResult,
    flag_outside_image,
)
from labeling_pipeline.localization.search import localize
from labeling_pipeline.localization.settings import STRATEGIES, SearchSettings
from labeling_pipeline.localization.template import DEFAULT_TEMPLATE


@dataclass(frozen=True)
class TemplateChoice:
    """How an image's template is chosen among several (module docstring).

    ``max_alternatives``: most other templates tried on one image (each costs one search,
    about 30 ms); ``agreement_fraction``: how close (share of the default template's median
    vertebra step, ~35 mm lumbar) an alternative's ``ok`` landmark must lie to the default's."""

    max_alternatives: int = 16
    agreement_fraction: float = 0.3


@dataclass
class ImageLocalization:
    """One image's results (one per landmark of the default template, in its order) and the
    template that placed each."""

    results: list[LandmarkResult]
    templates: list[str]
    tried: int = 1  # searches run: the default plus the alternatives tried

    @property
    def template(self) -> str:
        """The template that placed most of the image's landmarks (``default`` on a tie)."""
        others = [name for name in self.templates if name != DEFAULT_TEMPLATE]
        if not others or len(others) * 2 <= len(self.templates):
            return DEFAULT_TEMPLATE
        return max(set(others), key=others.count)


@dataclass
class StudyLocalization:
    """One study's localization: ``results[i]`` holds one result per template landmark for
    ``images[i]`` (positions in that image's pixels, x = column, y = row) and ``templates[i]``
    the name of the template that placed each of them."""

    partition_key: str
    study_digest: str
    strategy: str
    feature_model: str
    images: list[LabelImage] = field(default_factory=list)
    results: list[list[LandmarkResult]] = field(default_factory=list)
    templates: list[list[str]] = field(default_factory=list)
    searches: int = 0  # template searches run over the study's images


def search_settings(strategy: str | None) -> SearchSettings:
    """Search settings for a strategy name (``None``: the localization package's default).

    Raises ``ValueError`` for a name that is not a strategy."""
    if strategy is None:
        return SearchSettings()
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown localization strategy {strategy!r}; choose one of {STRATEGIES}")
    return SearchSettings(strategy=strategy)


def _search(
    fmap: FeatureMap,
    reference: TemplateReference,
    domain: DomainKnowledge,
    settings: SearchSettings,
) -> list[LandmarkResult]:
    results = localize(fmap, reference, domain, settings)
    # An image of another body part is never labelled ok (localization/plausibility.py).
    return flag_if_not_spine(results, domain)


def _median_step_mm(reference: TemplateReference) -> float:
    steps = [
        reference.step(caudal, cranial)[0]
        for caudal, cranial in zip(reference.vertebrae, reference.vertebrae[1:], strict=False)
    ]
    return statistics.median(steps) if steps else 30.0


def _distance_mm(a: LandmarkResult, b: LandmarkResult, spacing_mm: tuple[float, float]) -> float:
    row_mm, col_mm = spacing_mm
    return math.hypot((a.x - b.x) * col_mm, (a.y - b.y) * row_mm)


def _with_steps(
    results: list[LandmarkResult], domain: DomainKnowledge, spacing_mm: tuple[float, float]
) -> list[LandmarkResult]:
    """``results`` with the step to the previous landmark of the same kind measured again (the
    same rule as the search: vertebrae in anatomical order, a disc just above its caudal
    vertebra; mm from the image's pixel spacing)."""
    row_mm, col_mm = spacing_mm

    def rank(result: LandmarkResult) -> float | None:
        if result.kind == "disc" and result.name in domain.discs:
            return domain.rank(domain.discs[result.name][1]) + 0.5
        return float(domain.rank(result.name)) if result.name in domain.order else None

    out = list(results)
    for kind in {r.kind for r in results}:
        ranked = sorted(
            (rank(r), i) for i, r in enumerate(results) if r.kind == kind and rank(r) is not None
        )
        for position, (_, index) in enumerate(ranked):
            current = results[index]
            distance = angle = math.nan
            if position > 0 and current.found:
                previous = results[ranked[position - 1][1]]
                if previous.found:
                    dx = (current.x - previous.x) * col_mm
                    dy = (current.y - previous.y) * row_mm
                    distance, angle = math.hypot(dx, dy), step_angle_deg(dx, dy)
            out[index] = replace(
                current, distance_to_previous_mm=distance, angle_to_previous_deg=angle
            )
    return out


def _chain_consistent(
    results: list[LandmarkResult], domain: DomainKnowledge, spacing_mm: tuple[float, float]
) -> bool:
    """Every pair of adjacent vertebrae placed ``ok`` keeps the domain's distance and angle."""
    placed = {r.name: r for r in results if r.kind == "vertebra" and r.status == OK and r.found}
    row_mm, col_mm = spacing_mm
    for caudal, cranial in zip(domain.order, domain.order[1:], strict=False):
        low, high = placed.get(caudal), placed.get(cranial)
        pair = domain.pair(caudal, cranial)
        if low is None or high is None or pair is None:
            continue
        dx, dy = (high.x - low.x) * col_mm, (high.y - low.y) * row_mm
        if not pair.accepts(math.hypot(dx, dy), step_angle_deg(dx, dy)):
            return False
    return True


def merge_alternative(
    default: list[LandmarkResult],
    alternative: list[LandmarkResult],
    name: str,
    domain: DomainKnowledge,
    spacing_mm: tuple[float, float],
    tolerance_mm: float,
) -> tuple[list[LandmarkResult], list[str]] | None:
    """The default's results with the landmarks it left for review taken from
    ``alternative`` where that places them ``ok``; ``None`` when the two disagree on a
    landmark both place ``ok`` or the merged chain breaks the domain's ranges. Returns the
    merged results (the default's order) and the template of each."""
    by_name = {r.name: r for r in alternative}
    merged: list[LandmarkResult] = []
    sources: list[str] = []
    for result in default:
        other = by_name.get(result.name)
        other_ok = other is not None and other.status == OK and other.found
        if result.status == OK:
            if other_ok and _distance_mm(result, other, spacing_mm) > tolerance_mm:
                return None
            merged.append(result)
            sources.append(DEFAULT_TEMPLATE)
        elif other_ok:
            merged.append(other)
            sources.append(name)
        else:
            merged.append(result)
            sources.append(DEFAULT_TEMPLATE)
    if not _chain_consistent(merged, domain, spacing_mm):
        return None
    return merged, sources


def _quality(results: Sequence[LandmarkResult]) -> tuple[int, float]:
    ok = [r.confidence for r in results if r.status == OK]
    return len(ok), (sum(ok) / len(ok) if ok else 0.0)


def localize_image(
    fmap: FeatureMap,
    bundle: TemplateBundle,
    settings: SearchSettings,
    spacing_mm: tuple[float, float],
    alternatives: Sequence[NamedTemplate] = (),
    choice: TemplateChoice | None = None,
) -> ImageLocalization:
    """Locate every landmark of the default template in one image, trying ``alternatives``
    where the default leaves landmarks for review (module docstring)."""
    choice = choice or TemplateChoice()
    domain = bundle.domain
    results = _search(fmap, bundle.reference, domain, settings)
    best = ImageLocalization(results, [DEFAULT_TEMPLATE] * len(results))
    if all(r.status == OK for r in results) or not alternatives:
        return best
    tolerance = choice.agreement_fraction * _median_step_mm(bundle.reference)
    best_quality = _quality(results)
    tried = 1
    for template in list(alternatives)[: choice.max_alternatives]:
        tried += 1
        found = _search(fmap, template.reference, domain, settings)
        merged = merge_alternative(results, found, template.name, domain, spacing_mm, tolerance)
        if merged is None:
            continue
        quality = _quality(merged[0])
        if quality[0] > best_quality[0] or (
            quality[0] == best_quality[0] > _quality(results)[0] and quality[1] > best_quality[1]
        ):
            best, best_quality = ImageLocalization(*merged), quality
    if best.results is not results:
        best.results = _with_steps(best.results, domain, spacing_mm)
    best.tried = tried
    return best


def localize_study(
    store: FeatureStore,
    study: StudyImages,
    template: TemplateBundle,
    settings: SearchSettings,
    alternatives: Sequence[NamedTemplate] | None = None,
    choice: TemplateChoice | None = None,
) -> StudyLocalization:
    """Locate every template landmark in every image of ``study`` from its stored features.

    ``alternatives``: the other templates to try where the default leaves landmarks for review
    (``None``: the bundle's own, from ``template/<name>/``).

    Raises :class:`~labeling_pipeline.features.settings.FeatureSettingsMismatch` when the
    study's features and the template's were made with different settings.
    """
    if alternatives is None:
        alternatives = template.other_templates()
    localization = StudyLocalization(
        partition_key=study.partition_key,
        study_digest=study.study_digest,
        strategy=settings.strategy,
        feature_model=study.feature_model,
    )
    for image in study.images:
        feature_map = store.read(study.partition_key, image.sop_instance_uid)
        located = localize_image(
            feature_map, template, settings, image.pixel_spacing_mm, alternatives, choice
        )
        localization.images.append(image)
        localization.results.append(flag_outside_image(located.results, image.rows, image.columns))
        localization.templates.append(located.templates)
        localization.searches += located.tried
    return localization


def image_table(localization: StudyLocalization) -> pd.DataFrame:
    """Per image: landmarks ok and needing review, and the mean match score of the ok ones."""
    rows = []
    for image, results in zip(localization.images, localization.results, strict=True):
        ok = [r for r in results if r.status == OK]
        rows.append(
            {
                "sop_instance_uid": image.sop_instance_uid,
                "ok": len(ok),
                "needs_review": sum(r.status == NEEDS_REVIEW for r in results),
                "mean_ok_score": round(sum(r.score for r in ok) / len(ok), 3) if ok else None,
            }
        )
    return pd.DataFrame(rows, columns=["sop_instance_uid", "ok", "needs_review", "mean_ok_score"])
