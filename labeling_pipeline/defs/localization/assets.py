"""Localization: every template landmark located in every labelled image of a study."""

import time
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from labeling_pipeline.defs.features.assets import StudyImages
from labeling_pipeline.defs.ingestion.partitions import studies_partitions
from labeling_pipeline.defs.resources import PipelineConfig
from labeling_pipeline.defs.template.assets import TemplateBundle
from labeling_pipeline.features.settings import FeatureSettingsMismatch
from labeling_pipeline.features.store import FeatureStore
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK, LandmarkResult
from labeling_pipeline.localization.search import STRATEGIES, SearchSettings, localize


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
    """Search settings for a strategy name (``None``: the localization package's default)."""
    if strategy is None:
        return SearchSettings()
    if strategy not in STRATEGIES:
        raise dg.Failure(f"unknown localization strategy {strategy!r}; choose one of {STRATEGIES}")
    return SearchSettings(strategy=strategy)


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


@dg.asset(
    partitions_def=studies_partitions,
    group_name="localization",
    kinds={"pytorch"},
    description=(
        "Each template landmark located in each labelled image of the study: the best match "
        "of its reference features within the search regions that the domain knowledge allows; "
        "landmarks outside the spatial criteria are marked needs_review."
    ),
)
def vertebra_localization(
    context: dg.AssetExecutionContext,
    pixel_features: StudyImages,
    template_reference: TemplateBundle,
    pipeline: PipelineConfig,
) -> dg.Output:
    paths = pipeline.paths()
    settings = search_settings(pipeline.strategy())
    store = FeatureStore(paths.features_path)
    localization = StudyLocalization(
        partition_key=context.partition_key,
        study_digest=pixel_features.study_digest,
        strategy=settings.strategy,
        feature_model=pixel_features.feature_model,
    )
    started = time.perf_counter()
    for image in pixel_features.images:
        feature_map = store.read(pixel_features.partition_key, image.sop_instance_uid)
        try:
            results = localize(
                feature_map, template_reference.reference, template_reference.domain, settings
            )
        except FeatureSettingsMismatch as error:
            raise dg.Failure(
                f"{error}. Materialize template_reference and pixel_features again with the "
                "current feature model."
            ) from error
        localization.images.append(image)
        localization.results.append(results)
    seconds = time.perf_counter() - started

    statuses = [r.status for results in localization.results for r in results]
    ok, review = statuses.count(OK), statuses.count(NEEDS_REVIEW)
    context.log.info(
        f"{context.partition_key}: {len(localization.images)} images, {ok} landmarks ok, "
        f"{review} need review ({settings.strategy})"
    )
    return dg.Output(
        localization,
        metadata={
            "images": len(localization.images),
            "landmarks_ok": ok,
            "landmarks_needs_review": review,
            "strategy": settings.strategy,
            "localize_seconds": round(seconds, 3),
            "images_table": dg.MetadataValue.md(image_table(localization).to_markdown(index=False)),
        },
    )
