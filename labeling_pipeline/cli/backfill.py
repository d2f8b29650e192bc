"""``labeling-pipeline backfill``: a Dagster backfill of the studies of a StudyDate range.

The catalog is brought up to date first (and the template reference, when what it is made from
changed), in this process. Then one asset backfill of the chosen studies' per-study assets
(features, localization, labels, curated labels) is added to the instance; the Dagster daemon
runs it in batches of up to ``STUDIES_PER_RUN`` studies per run (the assets' backfill policy),
as a backfill launched from the UI does, and the runs show in the UI like those. When no daemon
is running for the instance, the command starts one for as long as it waits.

Resumable: studies already labelled from their current files by the current code are left out,
so running the same command again after an interruption labels only what is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from labeling_pipeline.cli.errors import failure_text
from labeling_pipeline.cli.instance import PROJECT_ROOT, environment_variables, instance_at
from labeling_pipeline.defs.settings import DATA_DIR_ENV, OUTPUT_DIR_ENV, PipelinePaths

SOURCES = ("archive", "incoming", "dicomweb")
BACKFILL_ASSETS = ("pixel_features", "vertebra_localization", "label_dataset", "curated_labels")
DAEMON_FRESH_S = 60.0  # a daemon whose heartbeat is older is taken for gone
ENDING_WAIT_S = 35.0  # how long a daemon started here gets to mark an ended backfill so


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
    canceled_runs: int = 0
    detached: bool = False
    error: str = ""
    daemon_started: bool = False

    @property
    def succeeded(self) -> bool:
        return not (self.error or self.interrupted_by or self.studies_failed) and (
            self.detached or self.studies_done == self.studies_selected
        )


def format_backfill_summary(summary: BackfillSummary) -> str:
    lines = [f"backfill:         {summary.backfill_id or '(none launched)'}"]
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
            f"INTERRUPTED by {name}: backfill canceled, {summary.canceled_runs} runs canceled; "
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


def daemon_running(instance) -> bool:
    """Whether a Dagster daemon has recently reported for this instance."""
    now = time.time()
    return any(
        now - beat.timestamp < DAEMON_FRESH_S
        for beat in instance.get_daemon_heartbeats().values()
        if beat.daemon_type == "BACKFILL"
    )


@contextlib.contextmanager
def daemon_for(instance, home: Path) -> Iterator[bool]:
    """A Dagster daemon for the instance at ``home`` while the block runs: the running one, or
    one started here (over ``workspace.yaml``) and stopped afterwards. Yields whether it was
    started here."""
    if daemon_running(instance):
        yield False
        return
    workspace = PROJECT_ROOT / "workspace.yaml"
    daemon = Path(sys.executable).with_name("dagster-daemon")
    command = [str(daemon)] if daemon.exists() else [sys.executable, "-m", "dagster._daemon"]
    process = subprocess.Popen(
        [*command, "run", "-w", str(workspace)],
        cwd=home,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C in the terminal is ours to handle, not its
    )
    try:
        yield True
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _Progress:
    """Studies done of total, images per second and time left, on one line (a terminal) or
    one line every ``every_s`` seconds (a log)."""

    def __init__(self, total: int, stream: TextIO, quiet: bool, every_s: float = 10.0) -> None:
        self.total, self.stream, self.quiet, self.every_s = total, stream, quiet, every_s
        self.started = time.perf_counter()
        self.last = 0.0
        self.shown: tuple[int, int] = (-1, -1)
        self.tty = stream.isatty()

    def show(self, done: int, images: int, failed: int) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        changed = (done, failed) != self.shown
        if not self.tty and not changed and now - self.last < self.every_s:
            return
        self.last, self.shown = now, (done, failed)
        elapsed = now - self.started
        rate = images / elapsed if elapsed > 0 else 0.0
        left = (self.total - done - failed) * elapsed / done if done else None
        text = (
            f"studies {done}/{self.total} done"
            + (f", {failed} failed" if failed else "")
            + f", {rate:.2f} images/s"
            + (f", about {_duration(left)} left" if left is not None else "")
        )
        self.stream.write(("\r" + text + "\x1b[K") if self.tty else text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.quiet and self.tty:
            self.stream.write("\n")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _labelled_so_far(instance, keys: set[str], after_storage_id: int) -> tuple[set[str], int]:
    """Studies of ``keys`` with a ``curated_labels`` materialization after the cursor (done),
    and their labelled images (from the batch metadata of ``label_dataset``)."""
    import dagster as dg

    from labeling_pipeline.defs.labels.assets import study_metadata

    done: set[str] = set()
    for record in _records(instance, dg.AssetKey("curated_labels"), after_storage_id):
        partition = record.asset_materialization.partition
        if partition in keys:
            done.add(partition)
    images = 0
    for record in _records(instance, dg.AssetKey("label_dataset"), after_storage_id):
        materialization = record.asset_materialization
        if materialization.partition in done:
            study = study_metadata(dict(materialization.metadata), materialization.partition)
            images += int(study.get("images", 0))
    return done, images


def _records(instance, asset_key, after_storage_id: int):
    import dagster as dg

    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, after_storage_id=after_storage_id),
            limit=1000,
            cursor=cursor,
        )
        yield from result.records
        if not result.has_more:
            return
        cursor = result.cursor


def _cancel(instance, backfill_id: str) -> int:
    """Cancel the backfill and every unfinished run it launched; returns how many runs."""
    import dagster as dg
    from dagster._core.execution.backfill import BulkActionStatus

    backfill = instance.get_backfill(backfill_id)
    if backfill is not None and backfill.status == BulkActionStatus.REQUESTED:
        instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))
    canceled = 0
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            tags={"dagster/backfill": backfill_id},
            statuses=[
                dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
            ],
        )
    )
    for run in runs:
        with contextlib.suppress(Exception):  # a run that ended meanwhile
            instance.run_coordinator.cancel_run(run.run_id)
        canceled += 1
    return canceled


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
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

    from labeling_pipeline.cli.run import _SignalWatch, current_template_run
    from labeling_pipeline.definitions import defs
    from labeling_pipeline.defs.ingestion.assets import dicom_catalog
    from labeling_pipeline.defs.jobs import catalog_and_template_job
    from labeling_pipeline.defs.runs import fail_runs_of_dead_processes, process_tags
    from labeling_pipeline.imaging.dicom import studies_between
    from labeling_pipeline.labels.catalog import read_catalog

    stream = stream or sys.stderr
    summary = BackfillSummary()
    started = time.perf_counter()
    environment = {DATA_DIR_ENV: str(paths.data_dir), OUTPUT_DIR_ENV: str(paths.output_dir)}
    watch = _SignalWatch()
    with (
        watch.installed(),
        environment_variables(environment),
        instance_at(dagster_home) as instance,
    ):
        fail_runs_of_dead_processes(instance)
        template_run = current_template_run(instance, paths)
        prepare = defs.resolve_job_def(catalog_and_template_job.name).execute_in_process(
            instance=instance,
            raise_on_error=False,
            tags=process_tags(),
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            asset_selection=[dicom_catalog.key] if template_run else None,
        )
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
            asset_graph=defs.resolve_asset_graph(),
            partition_names=todo,
            asset_selection=[dg.AssetKey(name) for name in BACKFILL_ASSETS],
            backfill_timestamp=time.time(),
            tags={"labeling/trigger": "labeling-pipeline backfill"},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=f"StudyDate {first_date}-{last_date}" + (f" ({source})" if source else ""),
            description=f"labeling-pipeline backfill of {len(todo)} studies",
            run_config=None,
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

        wanted = set(todo)
        progress = _Progress(len(todo), stream, quiet)
        with daemon_for(instance, dagster_home) as started_here:
            summary.daemon_started = started_here
            ended_at = 0.0
            try:
                while True:
                    done, images = _labelled_so_far(instance, wanted, cursor)
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
                    if len(done) + len(failed) == len(wanted) and not _runs_in_flight(
                        instance, backfill_id
                    ):
                        # Every study has ended; the daemon marks the backfill so on its next
                        # pass (up to half a minute later): a daemon of ours waits for that,
                        # one that goes on running does it without us.
                        ended_at = ended_at or time.perf_counter()
                        if not started_here or time.perf_counter() - ended_at > ENDING_WAIT_S:
                            summary.status = "COMPLETED_FAILED" if failed else "COMPLETED_SUCCESS"
                            break
                    if watch.pending():
                        raise_interrupt(watch.pending())
                    time.sleep(poll_s)
            except BaseException as error:
                signum = getattr(error, "signum", 0) or (
                    signal.SIGINT if isinstance(error, KeyboardInterrupt) else 0
                )
                if not signum:
                    raise
                summary.interrupted_by = signum
                summary.canceled_runs = _cancel(instance, backfill_id)
                summary.status = "canceled"
            finally:
                progress.close()
        summary.seconds = time.perf_counter() - started
    return summary


def raise_interrupt(signum: int) -> None:
    from labeling_pipeline.cli.run import Interrupted

    raise Interrupted(signum)


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
