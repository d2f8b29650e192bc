"""``labeling-pipeline``: label every study of a data directory, recording the runs in Dagster.

``labeling-pipeline run [--data-dir DIR] [--output-dir DIR] [--partition KEY ...]`` runs the
same Dagster jobs as the UI, sensor and schedule (``labeling_pipeline.defs.jobs``), in this
process, in the Dagster instance at ``DAGSTER_HOME`` (default: the repository root, whose
``dagster.yaml`` keeps storage under ``.dagster/``), so ``make ui`` shows the runs afterwards.

Exit status: 0 when every run finished (inputs that were rejected are reported, not fatal),
1 when a run failed, 2 for a usage error (e.g. a missing data directory).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from labeling_pipeline.defs.settings import (
    DATA_DIR_ENV,
    FEATURE_WEIGHTS_ENV,
    OUTPUT_DIR_ENV,
    PipelinePaths,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
PROJECT_ROOT = Path(__file__).resolve().parents[1]


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

    @property
    def succeeded(self) -> bool:
        return not self.prepare_error and all(study.success for study in self.studies)


def find_dagster_home() -> Path | None:
    """``DAGSTER_HOME`` when set, else the repository root when it holds ``dagster.yaml``
    (an editable install, as ``make`` makes), else ``None`` (runs are not recorded)."""
    configured = os.environ.get("DAGSTER_HOME", "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    if (PROJECT_ROOT / "dagster.yaml").is_file():
        return PROJECT_ROOT
    return None


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore the old values."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _instance(home: Path | None) -> Iterator[object]:
    """The Dagster instance at ``home`` (ephemeral when ``None``).

    ``dagster.yaml`` names its storage relative to DAGSTER_HOME, and Dagster resolves relative
    paths against the working directory, so the run works from inside ``home``; the caller's
    working directory is restored afterwards.
    """
    import dagster as dg

    if home is None:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance
        return
    previous_home, previous_cwd = os.environ.get("DAGSTER_HOME"), Path.cwd()
    os.environ["DAGSTER_HOME"] = str(home)
    os.chdir(home)
    try:
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        os.chdir(previous_cwd)
        if previous_home is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous_home


def root_cause(error: object) -> str:
    """One line naming the error that the pipeline's code raised, from a Dagster error
    (``SerializableErrorInfo``): ``FeatureWeightsError: open_clip:ViT-B-16: no weights
    given...`` rather than Dagster's wrapper ("Error occurred while executing op ...")."""
    while getattr(error, "cause", None) is not None and str(
        getattr(error, "cls_name", "")
    ).startswith("Dagster"):
        error = error.cause  # type: ignore[attr-defined]
    lines = str(getattr(error, "message", "") or "").strip().splitlines()
    if not lines:
        return "step failed"
    name, separator, rest = lines[0].partition(": ")
    if not separator:
        return lines[0]
    name = name.rsplit(".", 1)[-1]  # "package.module.SomeError: text" -> "SomeError: text"
    return rest if name == "Failure" else f"{name}: {rest}"  # a Failure's text says it all


def _failure_text(result: object) -> str:
    """The first step failure of a run, in one line."""
    for event in result.get_step_failure_events():  # type: ignore[attr-defined]
        return f"{event.step_key}: {root_cause(event.step_failure_data.error)}"
    return "run failed"


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
    from labeling_pipeline.definitions import defs
    from labeling_pipeline.defs.ingestion.assets import dicom_catalog
    from labeling_pipeline.defs.jobs import catalog_and_template_job, label_study_job
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
    with _environment(environment), _instance(dagster_home) as instance:
        prepare = defs.resolve_job_def(catalog_and_template_job.name).execute_in_process(
            instance=instance, raise_on_error=False, run_config=run_config
        )
        summary.prepare_run_id = prepare.run_id
        # A catalog left by an earlier run is not this run's: report it only when it was made.
        scanned = prepare.is_node_success(dicom_catalog_name)
        catalog = read_catalog(paths.catalog_path) if scanned else catalog_to_frame([])
        summary.files_seen = len(catalog)
        rejected = catalog[catalog["outcome"] == CatalogOutcome.REJECTED]
        summary.rejected_files = len(rejected)
        summary.rejections = {
            str(k): int(v) for k, v in rejected["reason_code"].value_counts().items()
        }
        if not prepare.success:
            summary.prepare_error = _failure_text(prepare)
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
                outcome.error = _failure_text(result)
            for evaluation in result.get_asset_check_evaluations():
                if evaluation.passed:
                    outcome.checks_passed += 1
                else:
                    text = evaluation.description or "failed"
                    outcome.failed_checks.append(f"{evaluation.check_name}: {text}")
            summary.studies.append(outcome)
            frames.append(read_labels_partition(paths.labels_dir, key))

    labels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not labels.empty:
        summary.images_labelled = int(labels["sop_instance_uid"].nunique())
        summary.landmarks_ok = int((labels["status"] == "ok").sum())
        summary.landmarks_needs_review = int((labels["status"] == "needs_review").sum())
    summary.seconds = time.perf_counter() - started
    return summary


def format_summary(summary: RunSummary) -> str:
    """The report printed at the end of ``labeling-pipeline run`` (no patient data in it)."""
    done = sum(study.success for study in summary.studies)
    lines = [
        f"data directory:   {summary.paths.data_dir}",
        f"output directory: {summary.paths.output_dir}",
        f"dagster instance: {summary.dagster_home}",
        f"files seen:       {summary.files_seen}",
        f"rejected files:   {summary.rejected_files}"
        + (
            " (" + ", ".join(f"{k}: {v}" for k, v in sorted(summary.rejections.items())) + ")"
            if summary.rejections
            else ""
        ),
    ]
    if summary.prepare_error:
        lines.append(f"FAILED before labelling (run {summary.prepare_run_id}):")
        lines.append(f"  {summary.prepare_error}")
        return "\n".join(lines)
    lines += [
        f"studies:          {len(summary.studies)} ({done} labelled, "
        f"{len(summary.studies) - done} failed)",
        f"images labelled:  {summary.images_labelled}",
        f"landmarks:        {summary.landmarks_ok} ok, "
        f"{summary.landmarks_needs_review} needs_review",
    ]
    checks_failed = [c for s in summary.studies for c in s.failed_checks]
    checks_passed = sum(s.checks_passed for s in summary.studies)
    lines.append(f"label checks:     {checks_passed} passed, {len(checks_failed)} failed")
    for study in summary.studies:
        if not study.success:
            lines.append(f"  FAILED {study.partition_key} (run {study.run_id}): {study.error}")
        for check in study.failed_checks:
            lines.append(f"  check {study.partition_key}: {check}")
    lines.append(f"time:             {summary.seconds:.1f} s")
    return "\n".join(lines)


def _absolute_weights_setting() -> None:
    # A relative checkpoint path must survive the change into DAGSTER_HOME.
    weights = os.environ.get(FEATURE_WEIGHTS_ENV, "").strip()
    if weights and Path(weights).expanduser().exists():
        os.environ[FEATURE_WEIGHTS_ENV] = str(Path(weights).expanduser().resolve())


def _run_command(args: argparse.Namespace) -> int:
    paths = PipelinePaths.resolve(args.data_dir, args.output_dir)
    if not paths.data_dir.is_dir():
        print(f"labeling-pipeline: data directory {paths.data_dir} does not exist", file=sys.stderr)
        return EXIT_USAGE
    _absolute_weights_setting()
    home = find_dagster_home()
    if home is None:
        print(
            "labeling-pipeline: DAGSTER_HOME is not set and no dagster.yaml was found; "
            "runs are not recorded",
            file=sys.stderr,
        )
    elif not home.is_dir():
        print(f"labeling-pipeline: DAGSTER_HOME {home} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    try:
        summary = run_pipeline(paths, args.partition, args.log_level, home)
    except ValueError as error:
        print(f"labeling-pipeline: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(format_summary(summary))
    return EXIT_OK if summary.succeeded else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labeling-pipeline",
        description="Label vertebrae in spine DICOM studies from one labelled template image.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="label every study under the data directory",
        description="Catalogue incoming/ and archive/, build the template reference and label "
        "every study, recording the runs in the Dagster instance at DAGSTER_HOME.",
    )
    run.add_argument(
        "--data-dir",
        help=f"data directory (default: ${DATA_DIR_ENV}, else 'data')",
    )
    run.add_argument(
        "--output-dir",
        help=f"output directory (default: ${OUTPUT_DIR_ENV}, else 'data/outputs')",
    )
    run.add_argument(
        "--partition",
        action="append",
        metavar="KEY",
        help="label only this study partition (YYYYMMDD-xxxxxxxx); repeat for several",
    )
    run.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Dagster events printed while running (default: WARNING)",
    )
    run.set_defaults(handler=_run_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("labeling-pipeline: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
