"""One study's localization: every template landmark located in every labelled image."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from labeling_pipeline.features.store import FeatureStore
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.imaging.study import StudyImages
from labeling_pipeline.localization.bundle import TemplateBundle
from labeling_pipeline.localization.plausibility import flag_if_not_spine
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK, LandmarkResult
from labeling_pipeline.localization.search import localize
from labeling_pipeline.localization.settings import STRATEGIES, SearchSettings


@dataclass
class StudyLocalization:
    """One study's localization: ``results[i]`` holds one result per template landmark for
    ``images[i]`` (positions in that image's pixels, x = column, y = row)."""

    partition_key: str
    study_digest: str
    strategy: str
    feature_model: str
    images: list[LabelImage] = field(default_factory=list)
    results: list[list[LandmarkResult]] = field(default_factory=list)


def search_settings(strategy: str | None) -> SearchSettings:
    """Search settings for a strategy name (``None``: the localization package's default).

    Raises ``ValueError`` for a name that is not a strategy."""
    if strategy is None:
        return SearchSettings()
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown localization strategy {strategy!r}; choose one of {STRATEGIES}")
    return SearchSettings(strategy=strategy)


def localize_study(
    store: FeatureStore,
    study: StudyImages,
    template: TemplateBundle,
    settings: SearchSettings,
) -> StudyLocalization:
    """Locate every template landmark in every image of ``study`` from its stored features.

    Raises :class:`~labeling_pipeline.features.settings.FeatureSettingsMismatch` when the
    study's features and the template's were made with different settings.
    """
    localization = StudyLocalization(
        partition_key=study.partition_key,
        study_digest=study.study_digest,
        strategy=settings.strategy,
        feature_model=study.feature_model,
    )
    for image in study.images:
        feature_map = store.read(study.partition_key, image.sop_instance_uid)
        results = localize(feature_map, template.reference, template.domain, settings)
        # An image of another body part is never labelled ok (localization/plausibility.py).
        results = flag_if_not_spine(results, template.domain)
        localization.images.append(image)
        localization.results.append(results)
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
