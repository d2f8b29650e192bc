"""Features: dense pretrained features of each labelled image of a study, in ``features.zarr``."""

import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd

from labeling_pipeline.defs.ingestion.partitions import studies_partitions
from labeling_pipeline.defs.resources import FeatureModelConfig, PipelineConfig
from labeling_pipeline.features.materialize import materialize_features
from labeling_pipeline.features.store import FeatureStore
from labeling_pipeline.imaging.dicom import (
    CatalogOutcome,
    DicomValidationError,
    read_label_image,
    study_digest,
)
from labeling_pipeline.imaging.image import LabelImage


@dataclass
class StudyImages:
    """The labelled images of one study, whose features are in ``features.zarr`` under
    (``partition_key``, SOPInstanceUID). ``unreadable`` lists (catalog path, reason) of
    labelled files that could no longer be read (changed or removed since the catalog)."""

    partition_key: str
    study_digest: str
    feature_model: str
    images: list[LabelImage] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def labelled_rows(catalog: pd.DataFrame, partition_key: str) -> pd.DataFrame:
    """The catalog rows of the images to label in one study, one per SOP instance."""
    rows = catalog[
        (catalog["outcome"] == CatalogOutcome.LABELLED)
        & (catalog["partition_key"] == partition_key)
    ]
    return rows.sort_values("path", kind="stable").drop_duplicates("sop_instance_uid")


def read_study_images(
    catalog: pd.DataFrame, partition_key: str, data_dir: Path
) -> tuple[list[LabelImage], list[tuple[str, str]]]:
    """Read the labelled image (the catalogued frame) of each series of the study again.

    A file that fails is returned in the second list with its reason; the others go on.
    """
    images, unreadable = [], []
    for row in labelled_rows(catalog, partition_key).itertuples(index=False):
        try:
            image = read_label_image(data_dir / row.path, frame_index=int(row.frame_index))
        except (DicomValidationError, OSError, ValueError) as error:
            unreadable.append((row.path, str(error)))
            continue
        image.study_date = row.study_date  # the study's date, as the partition key has it
        images.append(image)
    return images, unreadable


@dg.asset(
    partitions_def=studies_partitions,
    group_name="features",
    kinds={"pytorch", "zarr"},
    description=(
        "Dense features of each labelled image of the study (the catalogued middle slice or "
        "frame), from the pretrained model of LABELING_FEATURE_MODEL, stored in features.zarr. "
        "Images whose pixels and feature settings are unchanged are not computed again."
    ),
)
def pixel_features(
    context: dg.AssetExecutionContext,
    dicom_catalog: pd.DataFrame,
    pipeline: PipelineConfig,
    feature_model: FeatureModelConfig,
) -> dg.Output:
    paths = pipeline.paths()
    key = context.partition_key
    if labelled_rows(dicom_catalog, key).empty:
        raise dg.Failure(
            f"the catalog has no image to label for study {key}; materialize dicom_catalog "
            "after adding its files"
        )
    images, unreadable = read_study_images(dicom_catalog, key, paths.data_dir)
    for path, reason in unreadable:
        context.log.warning(f"{path}: skipped, {reason}")
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
    unreadable_table = pd.DataFrame(unreadable, columns=["path", "reason"])
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
            "features_path": dg.MetadataValue.path(str(paths.features_path)),
            "stored_bytes": store.nbytes(key),
            "seconds": round(seconds, 3),
        },
    )
