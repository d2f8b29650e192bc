"""``labeling-pipeline backfill``: a Dagster backfill of the studies of a StudyDate range.

With ``LABELING_DICOMWEB_URL`` set, the server's studies of the range are retrieved first (into
the data directory's DICOMweb cache, :func:`sync_dicomweb_range`). The catalog is brought up to
date then (and the template reference, when what it is made from changed) by a run of the code
location launched as the UI launches one (:mod:`labeling_pipeline.cli.launch`). Then one asset
backfill of the chosen studies' per-study assets (features, localization, labels, curated
labels) is added to the instance and run in batches of up to ``STUDIES_PER_RUN`` studies per
run (the assets' backfill policy), as a backfill launched from the UI is; the runs show in the
UI like those. A Dagster daemon running for the instance (``make ui``) runs it; without one,
the command does the daemon's work for its backfill itself, as long as it waits
(:class:`~labeling_pipeline.cli.launch.DaemonDuties`: the daemon's own backfill and run-queue
iterations, from the command's code server). Every run's config names the command's data and
output directories, whoever runs it.

Resumable: studies already labelled from their current files by the current code are left out,
so running the same command again after an interruption labels only what is left.
"""

from __future__ import annotations

import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from labeling_pipeline.cli.errors import failure_text
from labeling_pipeline.cli.instance import environment_variables, instance_at
from labeling_pipeline.defs.settings import DATA_DIR_ENV, OUTPUT_DIR_ENV, PipelinePaths

SOURCES = ("archive", "incoming", "dicomweb")
BACKFILL_ASSETS = ("pixel_features", "vertebra_localization", "label_dataset", "curated_labels")


@dataclass
class BackfillSummary:
    """What ``labeling-pipeline backfill`` did."""

    backfill_id: str = ""
    studies_selected: int = 0
    studies_finished_before: int = 0  # already labelled from their current files: left out
    studies_done: int = 0
    studies_failed: list[str] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0
    status: str = ""
    interrupted_by: int = 0
    canceled_runs: list[str] = field(default_factory=list)
    detached: bool = False
    error: str = ""
    run_by: str = ""  # "the daemon" (one runs for the instance) or "this command"
    dicomweb: str = ""  # the sync of the range from LABELING_DICOMWEB_URL ("" when unset)
    dicomweb_failed: bool = False  # the server could not be searched, or a study not retrieved

    @property
    def succeeded(self) -> bool:
        bad = self.error or self.interrupted_by or self.studies_failed or self.dicomweb_failed
        return not bad and (self.detached or self.studies_done == self.studies_selected)


def format_backfill_summary(summary: BackfillSummary) -> str:
    lines = [f"backfill:         {summary.backfill_id or '(none launched)'}"]
    if summary.dicomweb:
        lines.append(f"dicomweb:         {summary.dicomweb}")
    if summary.run_by:
        lines.append(f"run by:           {summary.run_by}")
    lines.append(
        f"studies:          {summary.studies_selected} to label"
        f" ({summary.studies_finished_before} already labelled from their current files)"
    )
    if summary.error:
        lines.append(f"FAILED: {summary.error}")
        return "\n".join(lines)
    if summary.detached:
        lines.append("detached:         the daemon goes on; follow it in the UI (make ui)")
        return "\n".join(lines)
    rate = summary.images / summary.seconds if summary.seconds else 0.0
    lines.append(
        f"labelled:         {summary.studies_done} studies, {summary.images} images in "
        f"{summary.seconds:.1f} s ({rate:.2f} images/s)"
    )
    if summary.studies_failed:
        shown = ", ".join(summary.studies_failed[:10])
        more = len(summary.studies_failed) - 10
        lines.append(
            f"failed:           {len(summary.studies_failed)} studies: {shown}"
            + (f" (+{more} more)" if more > 0 else "")
        )
    if summary.interrupted_by:
        name = signal.Signals(summary.interrupted_by).name
        lines.append(
            f"INTERRUPTED by {name}: backfill canceled, {len(summary.canceled_runs)} runs "
            "canceled; "
            "run the same command again to label the rest"
        )
    lines.append(f"status:           {summary.status}")
    return "\n".join(lines)


def finished_studies(instance, catalog, keys: list[str]) -> set[str]:
    """The studies of ``keys`` whose curated labels and labels were made from their current
    files (study digest) by the current code (code version): a backfill leaves them out."""
    import dagster as dg

    from labeling_pipeline.defs.ingestion.sensors import labelled_digest
    from labeling_pipeline.defs.labels.assets import LABEL_CODE_VERSION
    from labeling_pipeline.imaging.dicom import study_digest

    curated = set(instance.get_materialized_partitions(dg.AssetKey("curated_labels")))
    done = set()
    for key in keys:
        if key not in curated or labelled_digest(instance, key) != study_digest(catalog, key):
            continue
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("label_dataset"), asset_partitions=[key]),
            limit=1,
        ).records[0]
        tags = record.asset_materialization.tags or {}
        if tags.get("dagster/code_version") == LABEL_CODE_VERSION:
            done.add(key)
    return done


def sync_dicomweb_range(data_dir: Path, first_date: str, last_date: str) -> tuple[str, bool]:
    """With ``LABELING_DICOMWEB_URL`` set, retrieve the server's studies of the StudyDate range
    into the data directory's DICOMweb cache (the catalog then lists them, source
    ``dicomweb``). Returns one line for the summary ("" without a server) and whether the
    server could not be searched or a study failed to come (tried again next time)."""
    from labeling_pipeline.imaging.dicomweb import (
        DateRange,
        DicomwebConfigError,
        DicomwebError,
        DicomwebSettings,
        sync_data_dir,
    )

    try:
        settings = DicomwebSettings.from_env()
    except DicomwebConfigError as error:
        return f"DICOMweb settings: {error}", True
    if settings is None:
        return "", False
    dates = DateRange(first_date, last_date)
    try:
        report = sync_data_dir(settings, data_dir, dates)
    except DicomwebError as error:
        return f"{settings.server_url}: NOT SEARCHED, {error.message}", True
    from labeling_pipeline.cli.run import sync_counts_text

    failed = report.by_status("failed")
    reasons = sorted({outcome.reason for outcome in failed})
    line = f"{settings.server_url} StudyDate {dates.query()}: {sync_counts_text(report.counts())}"
    return line + (f" (failed: {', '.join(reasons)})" if reasons else ""), bool(failed)


def _cancel(instance, backfill_id: str) -> list[str]:
    """Cancel the backfill and every unfinished run it launched; returns their ids."""
    import dagster as dg
    from dagster._core.execution.backfill import BulkActionStatus

    from labeling_pipeline.cli.launch import cancel_runs

    backfill = instance.get_backfill(backfill_id)
    if backfill is not None and backfill.status == BulkActionStatus.REQUESTED:
        instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    return cancel_runs(instance, [run.run_id for run in runs])


def launch_backfill(
    paths: PipelinePaths,
    first_date: str,
    last_date: str,
    source: str | None,
    dagster_home: Path,
    quiet: bool = False,
    detach: bool = False,
    poll_s: float = 2.0,
    stream: TextIO | None = None,
) -> BackfillSummary:
    """Catalogue, select the studies of ``[first_date, last_date]`` (``YYYYMMDD``) from
    ``source`` that are not labelled yet from their current files, launch a Dagster backfill
    of them and (unless ``detach``) wait for it, showing progress on ``stream`` (stderr).
    A SIGINT/SIGTERM while waiting cancels the backfill and its runs."""
    import dagster as dg
    from dagster._core.execution.backfill import PartitionBackfill

    from labeling_pipeline.cli.launch import (
        CodeLocationRuns,
        DaemonDuties,
        FinishedRun,
        cancel_runs,
        daemon_running,
        paths_run_config,
        wait_for_runs,
    )
    from labeling_pipeline.cli.run import (
        CATALOG_AND_TEMPLATE_JOB,
        DICOM_CATALOG,
        TRIGGER_TAG,
        Interrupted,
        _console_config,
        _SignalWatch,
        current_template_run,
    )
    from labeling_pipeline.defs.runs import fail_runs_of_dead_processes
    from labeling_pipeline.imaging.dicom import studies_between
    from labeling_pipeline.labels.catalog import read_catalog

    stream = stream or sys.stderr
    summary = BackfillSummary()
    started = time.perf_counter()
    environment = {DATA_DIR_ENV: str(paths.data_dir), OUTPUT_DIR_ENV: str(paths.output_dir)}
    # The backfill's runs read and write the command's directories whichever daemon runs them.
    paths_config = paths_run_config(paths.data_dir, paths.output_dir)
    watch = _SignalWatch()
    with (
        watch.installed(),
        environment_variables(environment),
        instance_at(dagster_home) as instance,
    ):
        fail_runs_of_dead_processes(instance)
        summary.dicomweb, summary.dicomweb_failed = sync_dicomweb_range(
            paths.data_dir, first_date, last_date
        )
        template_run = current_template_run(instance, paths)
        with CodeLocationRuns(instance) as location:
            run_id = location.launch(
                CATALOG_AND_TEMPLATE_JOB,
                {TRIGGER_TAG: "labeling-pipeline backfill"},
                _console_config("WARNING") | paths_config,
                asset_selection=[dg.AssetKey(DICOM_CATALOG)] if template_run else None,
            )
            try:
                signum = wait_for_runs(instance, [run_id], watch.pending)
            except Interrupted as interruption:
                signum = interruption.signum
            if signum:
                cancel_runs(instance, [run_id])
                summary.interrupted_by = signum
                summary.error = f"interrupted while cataloguing (run {run_id} canceled)"
                return summary
            prepare = FinishedRun.read(instance, run_id)
            if not prepare.success:
                summary.error = f"catalog or template run {prepare.run_id}: {failure_text(prepare)}"
                return summary
            catalog = read_catalog(paths.catalog_path)
            keys = studies_between(catalog, first_date, last_date, source)
            finished = finished_studies(instance, catalog, keys)
            todo = [key for key in keys if key not in finished]
            summary.studies_finished_before = len(finished)
            summary.studies_selected = len(todo)
            if not todo:
                summary.status = "nothing to do"
                summary.seconds = time.perf_counter() - started
                return summary

            cursor = instance.event_log_storage.get_maximum_record_id() or 0
            backfill_id = uuid.uuid4().hex[:8]
            backfill = PartitionBackfill.from_asset_partitions(
                backfill_id=backfill_id,
                asset_graph=location.repository.asset_graph,
                partition_names=todo,
                asset_selection=[dg.AssetKey(name) for name in BACKFILL_ASSETS],
                backfill_timestamp=time.time(),
                tags={TRIGGER_TAG: "labeling-pipeline backfill"},
                dynamic_partitions_store=instance,
                all_partitions=False,
                title=f"StudyDate {first_date}-{last_date}" + (f" ({source})" if source else ""),
                description=f"labeling-pipeline backfill of {len(todo)} studies",
                # Its runs log warnings and errors to the console of whoever runs them (this
                # command, or the daemon); the UI's event log holds everything.
                run_config=_console_config("WARNING") | paths_config,
            )
            instance.add_backfill(backfill)
            summary.backfill_id = backfill_id
            if detach:
                summary.detached = True
                if not daemon_running(instance):
                    summary.error = (
                        "no Dagster daemon is running for this instance: start one (make ui) or "
                        "run without --detach"
                    )
                return summary
            # A daemon of the instance (make ui) runs the backfill; without one, this command
            # does the daemon's work for it.
            duties = None if daemon_running(instance) else DaemonDuties(location, backfill_id)
            summary.run_by = "the daemon" if duties is None else "this command"
            try:
                _follow(
                    instance,
                    backfill_id,
                    set(todo),
                    cursor,
                    summary,
                    duties,
                    watch,
                    stream,
                    quiet,
                    poll_s,
                )
            finally:
                if duties is not None:
                    duties.close()
        summary.seconds = time.perf_counter() - started
    return summary


def _follow(
    instance,
    backfill_id: str,
    wanted: set[str],
    cursor: int,
    summary: BackfillSummary,
    duties,
    watch,
    stream: TextIO,
    quiet: bool,
    poll_s: float,
) -> None:
    """Wait for the backfill to end (doing the daemon's work when ``duties`` is given), showing
    progress; a SIGINT/SIGTERM cancels the backfill and its runs."""
    from dagster._core.execution.backfill import BulkActionStatus

    from labeling_pipeline.cli.launch import LabelledSoFar, Progress
    from labeling_pipeline.cli.run import Interrupted

    labelled = LabelledSoFar(wanted, cursor)
    progress = Progress(len(wanted), stream, quiet)
    try:
        while True:
            in_flight = _runs_in_flight(instance, backfill_id)
            if duties is not None:
                duties.tick(backfill_due=not in_flight)
            done, images = labelled.update(instance)
            failed = _failed_studies(instance, backfill_id, wanted - done)
            summary.studies_done, summary.images = len(done), images
            summary.studies_failed = sorted(failed)
            progress.show(len(done), images, len(failed))
            state = instance.get_backfill(backfill_id)
            if state is not None and state.status not in (
                BulkActionStatus.REQUESTED,
                BulkActionStatus.CANCELING,
            ):
                summary.status = state.status.value
                break
            if duties is None and len(done) + len(failed) == len(wanted) and not in_flight:
                # Every study has ended; the running daemon records the backfill's end on its
                # next pass (up to half a minute later) without us.
                summary.status = "COMPLETED_FAILED" if failed else "COMPLETED_SUCCESS"
                break
            if watch.pending():
                raise Interrupted(watch.pending())
            time.sleep(poll_s)
    except BaseException as error:
        signum = getattr(error, "signum", 0) or (
            signal.SIGINT if isinstance(error, KeyboardInterrupt) else 0
        )
        if not signum:
            raise
        summary.interrupted_by = signum
        progress.close()
        progress.say("interrupted: canceling the backfill and the runs it launched ...")
        summary.canceled_runs = _cancel(instance, backfill_id)
        if duties is not None:
            duties.tick(backfill_due=True)  # records the cancellation once its runs ended
        summary.status = "canceled"
    finally:
        progress.close()


def _runs_in_flight(instance, backfill_id: str) -> bool:
    import dagster as dg

    from labeling_pipeline.defs.runs import UNFINISHED_STATUSES

    return bool(
        instance.get_runs(
            filters=dg.RunsFilter(
                tags={"dagster/backfill": backfill_id},
                statuses=[dg.DagsterRunStatus.QUEUED, *UNFINISHED_STATUSES],
            ),
            limit=1,
        )
    )


def _failed_studies(instance, backfill_id: str, pending: set[str]) -> set[str]:
    """Studies of ``pending`` whose run of this backfill failed (their batch's range)."""
    import dagster as dg

    from labeling_pipeline.defs.ingestion.partitions import STUDIES_PARTITION_NAME

    runs = instance.get_runs(
        filters=dg.RunsFilter(
            tags={"dagster/backfill": backfill_id},
            statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED],
        )
    )
    if not runs:
        return set()
    ordered = list(instance.get_dynamic_partitions(STUDIES_PARTITION_NAME))
    failed: set[str] = set()
    for run in runs:
        tags = run.tags
        if tags.get("dagster/partition"):
            failed.add(tags["dagster/partition"])
            continue
        start = tags.get("dagster/asset_partition_range_start")
        end = tags.get("dagster/asset_partition_range_end")
        if start in ordered and end in ordered:
            failed.update(ordered[ordered.index(start) : ordered.index(end) + 1])
    return failed & pending
