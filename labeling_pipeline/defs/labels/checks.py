"""Quality checks of the labels of a run's studies, run after ``label_dataset`` in the same run.

A run labels a batch of studies, so each check covers the run's studies (read from
``labels/<partition>.parquet``) and names the studies that fail in its description and in its
``studies`` metadata (study -> problem).

- ``landmark_spacing_within_domain``: the step between adjacent vertebrae that are both ``ok``
  (distance in mm, angle against the image's upward direction in degrees) lies within the
  domain knowledge's range for that pair.
  With no two adjacent ``ok`` vertebrae there is nothing to check: a WARN that says so.
- ``one_row_per_landmark``: every labelled image has exactly one row per template landmark,
  with a known status, and every ``ok`` row has a position.
- ``landmarks_need_review``: WARN when a landmark of the study needs review.
"""

import functools
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd

from labeling_pipeline.anatomy import DomainKnowledge
from labeling_pipeline.defs.resources import PipelineResource
from labeling_pipeline.features.store import FeatureStore
from labeling_pipeline.labels.completeness import completeness_problems
from labeling_pipeline.labels.dataset import read_labels_partition
from labeling_pipeline.labels.qa import adjacent_vertebra_steps, check_steps
from labeling_pipeline.localization.bundle import TemplateBundle
from labeling_pipeline.localization.result import NEEDS_REVIEW

VIOLATION_COLUMNS = ["sop_instance_uid", "pair", "distance_mm", "angle_deg", "problem"]
MAX_TABLE_ROWS = 50  # longer tables are cut in the check's metadata (the counts stay exact)


def metadata_table(frame: pd.DataFrame) -> dg.MetadataValue:
    """A table as Markdown for check metadata, cut at :data:`MAX_TABLE_ROWS` rows."""
    shown = frame.head(MAX_TABLE_ROWS).round(2)
    text = shown.to_markdown(index=False) if not shown.empty else "none"
    if len(frame) > MAX_TABLE_ROWS:
        text += f"\n\n({len(frame) - MAX_TABLE_ROWS} more rows not shown)"
    return dg.MetadataValue.md(text)


def run_labels(context: dg.AssetCheckExecutionContext, labels_dir) -> dict[str, pd.DataFrame]:
    """The labels of each study of the run (partition key -> its rows)."""
    return run_partitions(context, read_labels_partition, labels_dir)


def run_partitions(
    context: dg.AssetCheckExecutionContext,
    read: Callable[[Path, str], pd.DataFrame],
    directory,
) -> dict[str, pd.DataFrame]:
    """``read(directory, key)`` for each study of the run, read once for all the checks of the
    run (they run one after another in its process, after the step that wrote the files);
    each check gets its own copies."""
    frames = _read_for_run(context.run.run_id, read, Path(directory), tuple(context.partition_keys))
    return {key: frame.copy() for key, frame in frames.items()}


@functools.lru_cache(maxsize=2)  # the labels and the curated labels of the current run
def _read_for_run(
    run_id: str, read: Callable[[Path, str], pd.DataFrame], directory: Path, keys: tuple[str, ...]
) -> dict[str, pd.DataFrame]:
    return {key: read(directory, key) for key in keys}


def batch_result(
    results: dict[str, dg.AssetCheckResult], severity=dg.AssetCheckSeverity.ERROR
) -> dg.AssetCheckResult:
    """One check result for a run's studies from each study's: passed when all passed; the
    description says how many did not and names the first; ``studies`` maps each study
    that did not pass to its description."""
    failing = {key: r for key, r in results.items() if not r.passed}
    worst = (
        dg.AssetCheckSeverity.ERROR
        if any(r.severity == dg.AssetCheckSeverity.ERROR for r in failing.values())
        else dg.AssetCheckSeverity.WARN
    )
    if len(results) == 1:
        [only] = results.values()
        return only
    first = next(iter(failing.items()), None)
    description = f"{len(results) - len(failing)} of {len(results)} studies passed" + (
        f"; {first[0]}: {first[1].description}" if first else ""
    )
    return dg.AssetCheckResult(
        passed=not failing,
        severity=worst if failing else severity,
        description=description,
        metadata={
            "studies_checked": len(results),
            "studies_not_passed": len(failing),
            "studies": dg.MetadataValue.json(
                {key: r.description or "" for key, r in failing.items()}
            ),
        },
    )


@dg.asset_check(
    asset="label_dataset",
    additional_ins={"template_reference": dg.AssetIn("template_reference")},
    description="Distances (mm) and angles (deg) between adjacent ok vertebrae lie within the "
    "domain knowledge's ranges.",
)
def landmark_spacing_within_domain(
    context: dg.AssetCheckExecutionContext,
    template_reference: TemplateBundle,
    pipeline: PipelineResource,
) -> dg.AssetCheckResult:
    domain = template_reference.domain
    return batch_result(
        {
            key: spacing_check_result(adjacent_vertebra_steps(labels, order=domain.order), domain)
            for key, labels in run_labels(context, pipeline.paths().labels_dir).items()
        }
    )


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
    asset="label_dataset",
    additional_ins={"template_reference": dg.AssetIn("template_reference")},
    description="Exactly one row per template landmark for every labelled image of the study "
    "(every image with features in `features.zarr`).",
)
def one_row_per_landmark(
    context: dg.AssetCheckExecutionContext,
    template_reference: TemplateBundle,
    pipeline: PipelineResource,
) -> dg.AssetCheckResult:
    paths = pipeline.paths()
    store = FeatureStore(paths.features_path)
    names = template_reference.landmarks.names()
    return batch_result(
        {
            key: completeness_result(labels, store.image_keys(key), names)
            for key, labels in run_labels(context, paths.labels_dir).items()
        }
    )


def completeness_result(
    labels: pd.DataFrame, images: list[str], names: list[str]
) -> dg.AssetCheckResult:
    """One study's completeness: one row per (image, landmark) with a known status."""
    problems = completeness_problems(labels, images, names)
    expected = len(images) * len(names)
    return dg.AssetCheckResult(
        passed=problems.empty,
        description=f"{len(labels)} rows for {len(images)} images x {len(names)} "
        f"landmarks ({expected} expected); {len(problems)} problems",
        metadata={
            "rows": len(labels),
            "expected_rows": expected,
            "problems": len(problems),
            "problem_table": metadata_table(problems),
        },
    )


@dg.asset_check(
    asset="label_dataset",
    description="No landmark of the study needs review (WARN lists those that do).",
)
def landmarks_need_review(
    context: dg.AssetCheckExecutionContext, pipeline: PipelineResource
) -> dg.AssetCheckResult:
    return batch_result(
        {
            key: review_result(labels)
            for key, labels in run_labels(context, pipeline.paths().labels_dir).items()
        },
        severity=dg.AssetCheckSeverity.WARN,
    )


def review_result(
    label_dataset: pd.DataFrame, none_flagged: str = "every landmark was placed"
) -> dg.AssetCheckResult:
    """One study's WARN while landmarks need review (``none_flagged`` says it when none do)."""
    flagged = label_dataset[label_dataset["status"] == NEEDS_REVIEW]
    images = flagged["sop_instance_uid"].nunique()
    return dg.AssetCheckResult(
        passed=flagged.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{len(flagged)} landmarks in {images} images need review "
        "(`labeling-pipeline review`)"
        if len(flagged)
        else none_flagged,
        metadata={
            "needs_review": len(flagged),
            "flagged_table": metadata_table(flagged[["sop_instance_uid", "landmark", "reason"]]),
        },
    )
