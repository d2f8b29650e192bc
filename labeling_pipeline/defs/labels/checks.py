"""Quality checks of each study's labels, run after ``label_dataset`` in the same run.

- ``landmark_spacing_within_domain``: the step between adjacent vertebrae that are both ``ok``
  (distance in mm, angle against the image's upward direction in degrees) lies within the
  domain knowledge's range for that pair.
  With no two adjacent ``ok`` vertebrae there is nothing to check: a WARN that says so.
- ``one_row_per_landmark``: every labelled image has exactly one row per template landmark,
  with a known status, and every ``ok`` row has a position.
- ``landmarks_need_review``: WARN when a landmark of the study needs review.
"""

import warnings

import dagster as dg
import pandas as pd

from labeling_pipeline.anatomy import DomainKnowledge
from labeling_pipeline.defs.ingestion.partitions import studies_partitions
from labeling_pipeline.defs.labels.assets import label_dataset
from labeling_pipeline.labels.completeness import completeness_problems
from labeling_pipeline.labels.qa import adjacent_vertebra_steps, check_steps
from labeling_pipeline.localization.bundle import TemplateBundle
from labeling_pipeline.localization.result import NEEDS_REVIEW
from labeling_pipeline.localization.study import StudyLocalization

VIOLATION_COLUMNS = ["sop_instance_uid", "pair", "distance_mm", "angle_deg", "problem"]
MAX_TABLE_ROWS = 50  # longer tables are cut in the check's metadata (the counts stay exact)


def metadata_table(frame: pd.DataFrame) -> dg.MetadataValue:
    """A table as Markdown for check metadata, cut at :data:`MAX_TABLE_ROWS` rows."""
    shown = frame.head(MAX_TABLE_ROWS).round(2)
    text = shown.to_markdown(index=False) if not shown.empty else "none"
    if len(frame) > MAX_TABLE_ROWS:
        text += f"\n\n({len(frame) - MAX_TABLE_ROWS} more rows not shown)"
    return dg.MetadataValue.md(text)


# Partitioned asset checks (one result per study) are a Dagster "preview" feature; it is what
# makes each study's checks show on its partition, so the warning is silenced once here.
warnings.filterwarnings(
    "ignore", message=".*partitions_def on an AssetCheckSpec.*", category=dg.PreviewWarning
)


@dg.asset_check(
    asset=label_dataset,
    partitions_def=studies_partitions,
    additional_ins={"template_reference": dg.AssetIn("template_reference")},
    description="Distances (mm) and angles (deg) between adjacent ok vertebrae lie within the "
    "domain knowledge's ranges.",
)
def landmark_spacing_within_domain(
    label_dataset: pd.DataFrame, template_reference: TemplateBundle
) -> dg.AssetCheckResult:
    domain = template_reference.domain
    return spacing_check_result(adjacent_vertebra_steps(label_dataset, order=domain.order), domain)


def spacing_check_result(steps: pd.DataFrame, domain: DomainKnowledge) -> dg.AssetCheckResult:
    """The spacing check's result for ``steps``: fails on a step outside the domain ranges,
    WARNs (with the reason) when no step could be checked."""
    result = check_steps(steps, domain.to_ranges())
    metadata = {
        "steps_checked": result.n_checked,
        "steps_without_range": result.n_unchecked,
        "violations": len(result.violations),
        "checked_pairs": ", ".join(result.checked_pairs) or "none",
        "violation_table": metadata_table(result.violations[VIOLATION_COLUMNS]),
    }
    if result.n_checked == 0:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="nothing to check: no two adjacent vertebrae are both placed "
            f"within the {domain.region} ranges' pairs",
            metadata=metadata,
        )
    return dg.AssetCheckResult(
        passed=result.passed,
        description=f"{result.n_checked} steps checked, {len(result.violations)} outside the "
        f"{domain.region} ranges",
        metadata=metadata,
    )


@dg.asset_check(
    asset=label_dataset,
    partitions_def=studies_partitions,
    additional_ins={
        "template_reference": dg.AssetIn("template_reference"),
        "vertebra_localization": dg.AssetIn("vertebra_localization"),
    },
    description="Exactly one row per template landmark for every labelled image of the study.",
)
def one_row_per_landmark(
    label_dataset: pd.DataFrame,
    template_reference: TemplateBundle,
    vertebra_localization: StudyLocalization,
) -> dg.AssetCheckResult:
    images = [image.sop_instance_uid for image in vertebra_localization.images]
    names = template_reference.landmarks.names()
    problems = completeness_problems(label_dataset, images, names)
    expected = len(images) * len(names)
    return dg.AssetCheckResult(
        passed=problems.empty,
        description=f"{len(label_dataset)} rows for {len(images)} images x {len(names)} "
        f"landmarks ({expected} expected); {len(problems)} problems",
        metadata={
            "rows": len(label_dataset),
            "expected_rows": expected,
            "problems": len(problems),
            "problem_table": metadata_table(problems),
        },
    )


@dg.asset_check(
    asset=label_dataset,
    partitions_def=studies_partitions,
    description="No landmark of the study needs review (WARN lists those that do).",
)
def landmarks_need_review(label_dataset: pd.DataFrame) -> dg.AssetCheckResult:
    flagged = label_dataset[label_dataset["status"] == NEEDS_REVIEW]
    images = flagged["sop_instance_uid"].nunique()
    return dg.AssetCheckResult(
        passed=flagged.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{len(flagged)} landmarks in {images} images need review "
        "(`labeling-pipeline review`)"
        if len(flagged)
        else "every landmark was placed",
        metadata={
            "needs_review": len(flagged),
            "flagged_table": metadata_table(flagged[["sop_instance_uid", "landmark", "reason"]]),
        },
    )
