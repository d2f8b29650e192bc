"""The run loop: catalogue and template first, then one ``label_study_job`` run per study."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from labeling_pipeline.cli.errors import failure_text
from labeling_pipeline.cli.instance import environment_variables, instance_at
from labeling_pipeline.defs.settings import DATA_DIR_ENV, OUTPUT_DIR_ENV, PipelinePaths


@dataclass
class StudyOutcome:
    """One study's ``label_study_job`` run: its id, whether it succeeded, what went wrong,
    and the asset checks that failed (``check name: description``)."""

    partition_key: str
    run_id: str
    success: bool
    error: str = ""
    failed_checks: list[str] = field(default_factory=list)
    checks_passed: int = 0
    warned_checks: list[str] = field(default_factory=list)  # WARN severity: worth a look


@dataclass
class RunSummary:
    """What ``labeling-pipeline run`` did, for the printed report and for callers."""

    paths: PipelinePaths
    dagster_home: str
    prepare_run_id: str = ""
    prepare_error: str = ""
    studies: list[StudyOutcome] = field(default_factory=list)
    files_seen: int = 0
    rejected_files: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    images_labelled: int = 0
    landmarks_ok: int = 0
    landmarks_needs_review: int = 0
    seconds: float = 0.0
    curated_statuses: dict[str, int] = field(default_factory=dict)  # after review decisions
    qa_report_error: str = ""  # why qa/report.html could not be written (the labels stand)
    dicomweb: str = ""  # what the catalog run did with LABELING_DICOMWEB_URL ("" when unset)

    @property
    def succeeded(self) -> bool:
        return not self.prepare_error and all(study.success for study in self.studies)


def _dicomweb_line(result, node_name: str) -> str:
    """The catalog run's DICOMweb metadata in one line: server, window and counts, or why the
    server could not be searched ("" when no server is configured)."""
    materializations = result.asset_materializations_for_node(node_name)
    metadata = materializations[0].metadata if materializations else {}
    if "dicomweb_server" not in metadata:
        return ""
    server = metadata["dicomweb_server"].value
    if "dicomweb_error" in metadata:
        return f"{server}: NOT SEARCHED, {metadata['dicomweb_error'].value}"
    sync = dict(metadata["dicomweb_sync"].value)
    dates, reasons = sync.pop("dates"), sync.pop("failed_reasons", [])
    counts = ", ".join(f"{k} {v}" for k, v in sync.items())
    return f"{server} StudyDate {dates}: {counts}" + (
        f" (failed: {', '.join(reasons)})" if reasons else ""
    )


def _console_config(log_level: str) -> dict:
    # Only what is printed; the instance's event log records every event whatever the level.
    return {"loggers": {"console": {"config": {"log_level": log_level}}}}


def run_pipeline(
    paths: PipelinePaths,
    partitions: Sequence[str] | None = None,
    log_level: str = "WARNING",
    dagster_home: Path | None = None,
) -> RunSummary:
    """Catalogue the data directory, build the template reference, then label each study
    (every study with an image to label, or only ``partitions``), one Dagster run per study.

    ``paths`` are exported as ``LABELING_DATA_DIR`` / ``LABELING_OUTPUT_DIR`` so that the
    resources of the code location read them. A study whose run fails does not stop the others.
    """
    # Imported here, not at the top: Dagster and torch take seconds to import, and argument
    # errors and --help should not wait for them.
    import dagster as dg

    from labeling_pipeline.definitions import defs
    from labeling_pipeline.defs.ingestion.assets import dicom_catalog
    from labeling_pipeline.defs.jobs import (
        catalog_and_template_job,
        label_study_job,
        qa_report_job,
    )
    from labeling_pipeline.imaging.dicom import (
        CatalogOutcome,
        catalog_to_frame,
        labelled_partition_keys,
    )
    from labeling_pipeline.labels.catalog import read_catalog
    from labeling_pipeline.labels.dataset import read_labels_partition

    dicom_catalog_name = dicom_catalog.op.name
    started = time.perf_counter()
    summary = RunSummary(paths=paths, dagster_home=str(dagster_home or "(ephemeral)"))
    run_config = _console_config(log_level)

    environment = {DATA_DIR_ENV: str(paths.data_dir), OUTPUT_DIR_ENV: str(paths.output_dir)}
    with environment_variables(environment), instance_at(dagster_home) as instance:
        prepare = defs.resolve_job_def(catalog_and_template_job.name).execute_in_process(
            instance=instance, raise_on_error=False, run_config=run_config
        )
        summary.prepare_run_id = prepare.run_id
        # A catalog left by an earlier run is not this run's: report it only when it was made.
        scanned = prepare.is_node_success(dicom_catalog_name)
        catalog = read_catalog(paths.catalog_path) if scanned else catalog_to_frame([])
        summary.files_seen = len(catalog)
        if scanned:
            summary.dicomweb = _dicomweb_line(prepare, dicom_catalog_name)
        rejected = catalog[catalog["outcome"] == CatalogOutcome.REJECTED]
        summary.rejected_files = len(rejected)
        summary.rejections = {
            str(k): int(v) for k, v in rejected["reason_code"].value_counts().items()
        }
        if not prepare.success:
            summary.prepare_error = failure_text(prepare)
            summary.seconds = time.perf_counter() - started
            return summary

        keys = labelled_partition_keys(catalog)
        if partitions:
            unknown = sorted(set(partitions) - set(keys))
            if unknown:
                raise ValueError(
                    f"no study with an image to label has partition key {unknown}; "
                    f"known keys: {keys}"
                )
            keys = [key for key in keys if key in set(partitions)]

        label_job = defs.resolve_job_def(label_study_job.name)
        frames = []
        for key in keys:
            result = label_job.execute_in_process(
                instance=instance, partition_key=key, raise_on_error=False, run_config=run_config
            )
            outcome = StudyOutcome(key, result.run_id, result.success)
            if not result.success:
                outcome.error = failure_text(result)
            for evaluation in result.get_asset_check_evaluations():
                if evaluation.passed:
                    outcome.checks_passed += 1
                elif evaluation.severity == dg.AssetCheckSeverity.WARN:
                    text = evaluation.description or "warning"
                    outcome.warned_checks.append(f"{evaluation.check_name}: {text}")
                else:
                    text = evaluation.description or "failed"
                    outcome.failed_checks.append(f"{evaluation.check_name}: {text}")
            summary.studies.append(outcome)
            frames.append(read_labels_partition(paths.labels_dir, key))
        if keys:
            report = defs.resolve_job_def(qa_report_job.name).execute_in_process(
                instance=instance, raise_on_error=False, run_config=run_config
            )
            summary.qa_report_error = "" if report.success else failure_text(report)

    labels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not labels.empty:
        summary.images_labelled = int(labels["sop_instance_uid"].nunique())
        summary.landmarks_ok = int((labels["status"] == "ok").sum())
        summary.landmarks_needs_review = int((labels["status"] == "needs_review").sum())
        curated = [paths.curated_dir / f"{key}.parquet" for key in keys]
        present = [path for path in curated if path.exists()]
        if present:
            statuses = pd.concat([pd.read_parquet(p, columns=["status"]) for p in present])
            summary.curated_statuses = {
                str(k): int(v) for k, v in statuses["status"].value_counts().items()
            }
    summary.seconds = time.perf_counter() - started
    return summary
