"""Curated: machine labels joined with the reviewers' corrections, with SRs and the QA report.

``review_corrections`` is the append-only folder the review app writes (observed, not
materialized: people make it), so the UI shows the lineage from corrections to curated labels.
"""

import dagster as dg

from labeling_pipeline.corrections import read_corrections, read_curated
from labeling_pipeline.corrections.publish import publish_curated_partition
from labeling_pipeline.corrections.store import correction_files
from labeling_pipeline.defs.ingestion.partitions import (
    studies_backfill_policy,
    studies_partitions,
)
from labeling_pipeline.defs.labels.schedules import follow_labels_condition
from labeling_pipeline.defs.resources import PipelineResource
from labeling_pipeline.labels.catalog import read_catalog
from labeling_pipeline.labels.dataset import read_labels_partition
from labeling_pipeline.labels.qa_report import image_headers, write_qa_report
from labeling_pipeline.localization.bundle import TemplateBundle


@dg.observable_source_asset(
    name="review_corrections",
    group_name="curated",
    tags={"dagster/kind/parquet": ""},  # what `kinds` sets on other assets
    required_resource_keys={"pipeline"},
    description="Review decisions made in the review app (`labeling-pipeline review`): one "
    "record per action, appended as Parquet files under `corrections/`, never rewritten.",
)
def review_corrections(context: dg.AssetExecutionContext) -> dg.DataVersion:
    files = correction_files(context.resources.pipeline.paths().corrections_dir)
    # Files are only ever added: their count and the newest name identify the content.
    return dg.DataVersion(f"{len(files)}:{files[-1].name if files else ''}")


@dg.asset(
    partitions_def=studies_partitions,
    backfill_policy=studies_backfill_policy,
    group_name="curated",
    kinds={"parquet", "dicom"},
    deps=[review_corrections, "label_dataset"],
    code_version="1",
    automation_condition=follow_labels_condition(),
    description=(
        "The study's labels with the latest review decision per landmark (statuses ok, "
        "needs_review, corrected, confirmed, not_in_view; `source` machine or reviewer), "
        "written to `curated/<partition>.parquet`; and a DICOM SR per labelled image in `sr/`."
    ),
)
def curated_labels(
    context: dg.AssetExecutionContext,
    template_reference: TemplateBundle,
    pipeline: PipelineResource,
) -> dg.MaterializeResult:
    paths = pipeline.paths()
    catalog = read_catalog(paths.catalog_path)
    corrections = read_corrections(paths.corrections_dir)
    domain = template_reference.domain
    totals: dict[str, int] = {}
    rows = reviewed = sr_files = sr_written = 0
    for key in context.partition_keys:  # a batch of studies, or one
        published = publish_curated_partition(
            key,
            read_labels_partition(paths.labels_dir, key),
            corrections,
            catalog,
            paths.data_dir,
            paths.curated_dir,
            paths.sr_dir,
            domain.order,
        )
        for status, n in published.counts().items():
            totals[status] = totals.get(status, 0) + n
        rows += len(published.curated)
        reviewed += published.reviewed()
        sr_files += len(published.sr_paths)
        sr_written += published.sr_written
    return dg.MaterializeResult(
        metadata={
            **{f"landmarks_{status}": n for status, n in totals.items()},
            "studies_in_run": len(context.partition_keys),
            "reviewed_landmarks": reviewed,
            "curated_dir": dg.MetadataValue.path(str(paths.curated_dir)),
            "sr_files": sr_files,
            "sr_written": sr_written,
            "sr_dir": dg.MetadataValue.path(str(paths.sr_dir)),
            "dagster/row_count": rows,
        },
    )


@dg.asset(
    group_name="curated",
    kinds={"html"},
    deps=[curated_labels],
    description="The dataset QA report `qa/report.html`: distances and angles per adjacent "
    "pair over every curated image (plots), the images that are outliers for this dataset, "
    "and the flagged share per landmark, study month, site, scanner and sequence.",
)
def qa_report(template_reference: TemplateBundle, pipeline: PipelineResource) -> dg.Output:
    paths = pipeline.paths()
    domain = template_reference.domain
    curated = read_curated(paths.curated_dir)
    report = write_qa_report(
        curated,
        paths.qa_dir,
        image_headers(read_catalog(paths.catalog_path), paths.data_dir),
        domain.to_ranges(),
        domain.order,
    )
    flagged = report.rates["landmark"]
    return dg.Output(
        None,
        metadata={
            "report": dg.MetadataValue.path(str(report.path)),
            "images": int(curated["sop_instance_uid"].nunique()) if len(curated) else 0,
            "outlier_steps": len(report.outliers),
            "outlier_table": dg.MetadataValue.md(
                report.outliers.round(2).to_markdown(index=False)
                if len(report.outliers)
                else "none"
            ),
            "flagged_share_by_landmark": dg.MetadataValue.md(
                flagged.round(3).to_markdown(index=False) if len(flagged) else "none"
            ),
        },
    )
