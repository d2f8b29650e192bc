"""Localization: every template landmark located in every labelled image of a study."""

import time

import dagster as dg

from labeling_pipeline.defs.ingestion.partitions import studies_partitions
from labeling_pipeline.defs.resources import PipelineResource
from labeling_pipeline.features.settings import FeatureSettingsMismatch
from labeling_pipeline.features.store import FeatureStore
from labeling_pipeline.imaging.study import StudyImages
from labeling_pipeline.localization.bundle import TemplateBundle
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK
from labeling_pipeline.localization.study import image_table, localize_study, search_settings


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
    pipeline: PipelineResource,
) -> dg.Output:
    paths = pipeline.paths()
    try:
        settings = search_settings(pipeline.strategy())
    except ValueError as error:
        raise dg.Failure(str(error)) from error
    store = FeatureStore(paths.features_path)
    started = time.perf_counter()
    try:
        localization = localize_study(store, pixel_features, template_reference, settings)
    except FeatureSettingsMismatch as error:
        raise dg.Failure(
            f"{error}. Materialize template_reference and pixel_features again with the "
            "current feature model."
        ) from error
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
