"""Features: dense pretrained features of each labelled image of a study, in ``features.zarr``."""

import time

import dagster as dg
import pandas as pd

from labeling_pipeline.defs.ingestion.partitions import studies_partitions
from labeling_pipeline.defs.resources import FeatureModelResource, PipelineResource
from labeling_pipeline.features.materialize import materialize_features
from labeling_pipeline.features.store import FeatureStore
from labeling_pipeline.imaging.dicom import labelled_rows, study_digest
from labeling_pipeline.imaging.study import StudyImages, read_study_images


@dg.asset(
    partitions_def=studies_partitions,
    group_name="features",
    kinds={"pytorch", "zarr"},
    description=(
        "Dense features of each labelled image of the study (the catalogued most "
        "mid-sagittal slice or frame of its series), from the pretrained model of "
        "LABELING_FEATURE_MODEL, stored in features.zarr. "
        "Images whose pixels and feature settings are unchanged are not computed again."
    ),
)
def pixel_features(
    context: dg.AssetExecutionContext,
    dicom_catalog: pd.DataFrame,
    pipeline: PipelineResource,
    feature_model: FeatureModelResource,
) -> dg.Output:
    paths = pipeline.paths()
    key = context.partition_key
    if labelled_rows(dicom_catalog, key).empty:
        raise dg.Failure(
            f"the catalog has no image to label for study {key}; materialize dicom_catalog "
            "after adding its files"
        )
    images, unreadable = read_study_images(dicom_catalog, key, paths.data_dir)
    for key_of_file, reason in unreadable:
        context.log.warning(f"file {key_of_file} (catalog file_key): skipped, {reason}")
    if not images:
        raise dg.Failure(f"none of the labelled files of study {key} can be read any more")

    started = time.perf_counter()
    extractor = feature_model.extractor()
    store = FeatureStore(paths.features_path)
    report = materialize_features(store, key, images, extractor, feature_model.preparation())
    seconds = time.perf_counter() - started
    context.log.info(
        f"{key}: {len(report.computed)} feature maps computed, {len(report.reused)} reused"
    )
    unreadable_table = pd.DataFrame(unreadable, columns=["file_key", "reason"])
    return dg.Output(
        StudyImages(
            partition_key=key,
            study_digest=study_digest(dicom_catalog, key),
            feature_model=feature_model.model_name(),
            images=images,
            unreadable=unreadable,
        ),
        metadata={
            "images": len(images),
            "computed": len(report.computed),
            "reused": len(report.reused),
            "removed": len(report.removed),
            "unreadable": len(unreadable),
            "unreadable_files": dg.MetadataValue.md(
                unreadable_table.to_markdown(index=False) if unreadable else "none"
            ),
            "feature_model": feature_model.model_name(),
            "stored_bytes": store.nbytes(key),
            "seconds": round(seconds, 3),
        },
    )
