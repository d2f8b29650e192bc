"""Checks of each study's curated labels (run after ``curated_labels`` in the same run).

- ``curated_spacing_within_domain``: as ``landmark_spacing_within_domain``, over the
  positions that count after review (ok, corrected, confirmed); WARN when there was nothing
  to check.
- ``curated_needs_review``: WARN while a landmark of the study still needs review.
- ``curated_dataset_outliers``: WARN when a step of the study is an outlier for the whole
  dataset although inside the domain ranges (see ``qa/report.html``).
"""

import dagster as dg
import pandas as pd

from labeling_pipeline.corrections import read_curated
from labeling_pipeline.corrections.curated import read_curated_partition
from labeling_pipeline.defs.curated.assets import curated_labels
from labeling_pipeline.defs.labels.checks import (
    batch_result,
    metadata_table,
    review_result,
    run_partitions,
    spacing_check_result,
)
from labeling_pipeline.defs.resources import PipelineResource
from labeling_pipeline.labels.qa_report import placed_steps, step_outliers
from labeling_pipeline.localization.bundle import TemplateBundle


def run_curated(context: dg.AssetCheckExecutionContext, curated_dir) -> dict[str, pd.DataFrame]:
    """The curated labels of each study of the run (partition key -> its rows)."""
    return run_partitions(context, read_curated_partition, curated_dir)


@dg.asset_check(
    asset=curated_labels,
    additional_ins={"template_reference": dg.AssetIn("template_reference")},
    description="Distances (mm) and angles (deg) between adjacent vertebrae placed by the "
    "machine or a reviewer lie within the domain knowledge's ranges.",
)
def curated_spacing_within_domain(
    context: dg.AssetCheckExecutionContext,
    template_reference: TemplateBundle,
    pipeline: PipelineResource,
) -> dg.AssetCheckResult:
    domain = template_reference.domain
    return batch_result(
        {
            key: spacing_check_result(placed_steps(curated, domain.order), domain)
            for key, curated in run_curated(context, pipeline.paths().curated_dir).items()
        }
    )


@dg.asset_check(
    asset=curated_labels,
    description="No landmark of the study still needs review (WARN lists those that do).",
)
def curated_needs_review(
    context: dg.AssetCheckExecutionContext, pipeline: PipelineResource
) -> dg.AssetCheckResult:
    return batch_result(
        {
            key: curated_review_result(curated)
            for key, curated in run_curated(context, pipeline.paths().curated_dir).items()
        },
        severity=dg.AssetCheckSeverity.WARN,
    )


def curated_review_result(curated_labels: pd.DataFrame) -> dg.AssetCheckResult:
    """One study's WARN while landmarks still need review."""
    return review_result(curated_labels, none_flagged="every landmark is placed or decided")


@dg.asset_check(
    asset=curated_labels,
    description="No step between adjacent vertebrae of the study is an outlier for the whole "
    "curated dataset (robust z-score; see qa/report.html).",
)
def curated_dataset_outliers(
    context: dg.AssetCheckExecutionContext, pipeline: PipelineResource
) -> dg.AssetCheckResult:
    paths = pipeline.paths()
    dataset = read_curated(paths.curated_dir)
    curated_labels = pd.concat(run_curated(context, paths.curated_dir).values())
    outliers = step_outliers(placed_steps(dataset))
    mine = outliers[outliers["sop_instance_uid"].isin(set(curated_labels["sop_instance_uid"]))]
    return dg.AssetCheckResult(
        passed=mine.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{len(mine)} steps are outliers among "
        f"{dataset['sop_instance_uid'].nunique()} images of the dataset",
        metadata={
            "outliers": len(mine),
            "outlier_table": metadata_table(mine),
            "qa_report": dg.MetadataValue.path(str(paths.qa_dir / "report.html")),
        },
    )
