"""Labels: the study's rows of the label dataset (Parquet) and its review overlays (PNG)."""

import time

import dagster as dg
import pandas as pd

from labeling_pipeline.defs.ingestion.partitions import studies_partitions
from labeling_pipeline.defs.resources import PipelineResource
from labeling_pipeline.imaging.dicom import image_key
from labeling_pipeline.labels.dataset import label_rows, read_labels, write_labels_partition
from labeling_pipeline.labels.overlay import render_overlay, write_overlay_index
from labeling_pipeline.labels.qa import status_summary
from labeling_pipeline.labels.schema import empty_labels
from labeling_pipeline.localization.bundle import TemplateBundle
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK
from labeling_pipeline.localization.study import StudyLocalization


@dg.asset(
    partitions_def=studies_partitions,
    group_name="labels",
    kinds={"parquet", "png"},
    description=(
        "The study's rows of the label dataset: one per (labelled image, template landmark), "
        "x = column and y = row in pixels of the labelled image, status ok or needs_review; "
        "written to `labels/<partition>.parquet`, with `overlays/<sop_instance_uid>.png` for "
        "review (partition key, status and reason drawn; `overlays/index.html` lists them, "
        "flagged first)."
    ),
)
def label_dataset(
    context: dg.AssetExecutionContext,
    vertebra_localization: StudyLocalization,
    template_reference: TemplateBundle,
    pipeline: PipelineResource,
) -> dg.Output:
    paths = pipeline.paths()
    key = context.partition_key
    localization = vertebra_localization
    extra = {"feature_model": localization.feature_model, "strategy": localization.strategy}
    started = time.perf_counter()
    frames, overlays = [], []
    for image, results in zip(localization.images, localization.results, strict=True):
        frames.append(label_rows(image, key, results, extra, template=template_reference.landmarks))
        overlay = paths.overlays_dir / f"{image_key(image.sop_instance_uid)}.png"
        overlays.append(render_overlay(image, frames[-1], overlay, partition_key=key))
    labels = pd.concat(frames, ignore_index=True) if frames else empty_labels()
    written = write_labels_partition(paths.labels_dir, key, labels)
    index = write_overlay_index(paths.overlays_dir, read_labels(paths.labels_dir))
    seconds = time.perf_counter() - started

    statuses = labels["status"].value_counts()
    summary = status_summary(labels)
    return dg.Output(
        labels,
        metadata={
            "rows": len(labels),
            "images": int(labels["sop_instance_uid"].nunique()),
            "landmarks_ok": int(statuses.get(OK, 0)),
            "landmarks_needs_review": int(statuses.get(NEEDS_REVIEW, 0)),
            # Names under the output directory, not paths (run metadata holds no paths).
            "labels_file": f"labels/{written.name}",
            "overlays": len(overlays),
            "overlays_index": dg.MetadataValue.path(str(index)),
            "status_by_landmark": dg.MetadataValue.md(
                summary.to_markdown(index=False) if not summary.empty else "no rows"
            ),
            "study_digest": localization.study_digest,
            "write_seconds": round(seconds, 3),
            "dagster/row_count": len(labels),
        },
    )
