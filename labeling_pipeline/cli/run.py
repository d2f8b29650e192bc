"""The run loop: catalogue and template first, then one ``label_study_job`` run per batch of
studies (up to ``STUDIES_PER_RUN``, a contiguous range of partition keys), the QA report, then
the outputs of images no longer labelled removed. Every run is a run of the code location,
launched as the UI launches one (:mod:`labeling_pipeline.cli.launch`).

A SIGINT or SIGTERM ends the whole command, not only the current study: the run in progress is
canceled (through the run launcher), no further study is started, and the summary of what was
done is returned with the signal (the exit status is then 128 + the signal's number: 130, 143).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import pandas as pd

from labeling_pipeline.cli.errors import failure_text
from labeling_pipeline.cli.instance import environment_variables, instance_at
from labeling_pipeline.defs.settings import DATA_DIR_ENV, OUTPUT_DIR_ENV, PipelinePaths

# The code location's jobs and assets the command line runs and reads (defs/jobs.py).
CATALOG_AND_TEMPLATE_JOB = "catalog_and_template_job"
LABEL_STUDY_JOB = "label_study_job"
QA_REPORT_JOB = "qa_report_job"
DICOM_CATALOG = "dicom_catalog"
TEMPLATE_REFERENCE = "template_reference"
TRIGGER_TAG = "labeling/trigger"  # which command made a run (the backfill's runs have it too)


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
    sr_store: dict[str, int] = field(default_factory=dict)  # SR write-back counts (cli/pacs.py)


@dataclass
class RunSummary:
    """What ``labeling-pipeline run`` did, for the printed report and for callers.

    ``interrupted_by``: the signal that ended the command early (0 when none).
    ``reconciled``: images whose outputs were removed because the catalog no longer labels
    them (None when reconciliation did not run: partial scan, chosen partitions, interrupted).
    ``stale_runs_failed``: runs left unfinished by dead processes, marked failed on start.
    ``canceled_runs``: runs an interruption canceled. ``detached_runs``: label runs handed
    to the daemon's queue (``--detach``).
    """

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
    interrupted_by: int = 0
    studies_planned: int = 0
    reconciled: int | None = None
    reconcile_skipped: str = ""
    stale_runs_failed: list[str] = field(default_factory=list)
    temporary_files_swept: int = 0
    dicomweb: str = ""  # what the catalog run did with LABELING_DICOMWEB_URL ("" when unset)
    canceled_runs: list[str] = field(default_factory=list)
    detached_runs: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return (
            not self.prepare_error
            and not self.interrupted_by
            and all(study.success for study in self.studies)
        )


class Interrupted(BaseException):
    """A SIGINT or SIGTERM arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _SignalWatch:
    """Notices SIGINT and SIGTERM (raising :class:`Interrupted`), also while another handler
    is installed for a while: the wakeup file descriptor receives the number of every signal
    that has a Python handler."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def _handler(self, signum: int, _frame: object) -> None:
        self.received.append(signum)
        raise Interrupted(signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[_SignalWatch]:
        read, write = socketpair = socket.socketpair()
        read.setblocking(False)
        write.setblocking(False)
        previous_fd = signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for signum in previous:
            signal.signal(signum, self._handler)
        self._read = read
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_fd)
            for end in socketpair:
                end.close()

    def pending(self) -> int:
        """The first SIGINT/SIGTERM received so far (0 when none)."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while data := self._read.recv(64):
                self.received.extend(b for b in data if b in (signal.SIGINT, signal.SIGTERM))
        return self.received[0] if self.received else 0


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
    return f"{server} StudyDate {dates}: {sync_counts_text(sync)}" + (
        f" (failed: {', '.join(reasons)})" if reasons else ""
    )


def sync_counts_text(counts: dict[str, int]) -> str:
    """``found 4, evicted 0, retrieved 4``: found and evicted first, then each status (the
    event log stores the counts with their keys sorted)."""
    first = [name for name in ("found", "evicted") if name in counts]
    rest = sorted(name for name in counts if name not in first)
    return ", ".join(f"{name} {counts[name]}" for name in first + rest)


def _console_config(log_level: str) -> dict:
    # Only what is printed; the instance's event log records every event whatever the level.
    return {"loggers": {"console": {"config": {"log_level": log_level}}}}


def run_pipeline(
    paths: PipelinePaths,
    partitions: Sequence[str] | None = None,
    log_level: str = "WARNING",
    dagster_home: Path | None = None,
    quiet: bool = False,
    detach: bool = False,
    stream: TextIO | None = None,
) -> RunSummary:
    """Catalogue the data directory, build the template reference, then label each study
    (every study with an image to label, or only ``partitions``), one Dagster run per batch of
    studies (the model is loaded once; a study's images go through it with the batch's), then
    write the QA report.

    Each run is a run of ``workspace.yaml``'s code location, launched by the instance's run
    launcher in a process of its own (:mod:`labeling_pipeline.cli.launch`), as the UI launches
    them; this command waits for each, showing progress on ``stream`` (stderr) unless
    ``quiet``. With ``detach`` the label runs go to the daemon's queue once the catalog is made
    and the command returns (no QA report then). ``paths`` are exported as
    ``LABELING_DATA_DIR`` / ``LABELING_OUTPUT_DIR`` (the code server and its runs inherit them)
    and given to every run in its run config (the UI's re-execution of a run uses them too).
    A study whose run fails does not stop the others; a SIGINT or SIGTERM stops waiting and
    cancels the runs launched (``RunSummary.interrupted_by``, ``canceled_runs``). Raises
    :class:`~labeling_pipeline.locks.OutputDirectoryBusy` when another live process uses the
    output directory for another data directory or template, and
    :class:`~labeling_pipeline.cli.launch.DetachNeedsDaemon` for ``detach`` without a daemon.
    """
    # Imported here, not at the top: Dagster takes seconds to import, and argument errors and
    # --help should not wait for it.
    from labeling_pipeline.atomic import sweep_interrupted_writes
    from labeling_pipeline.cli.launch import (
        CodeLocationRuns,
        DetachNeedsDaemon,
        daemon_running,
        paths_run_config,
    )
    from labeling_pipeline.defs.runs import fail_runs_of_dead_processes
    from labeling_pipeline.locks import OutputDirectoryLock, ProcessIdentity

    started = time.perf_counter()
    summary = RunSummary(paths=paths, dagster_home=str(dagster_home or "(temporary)"))
    work = _Work()
    environment = {DATA_DIR_ENV: str(paths.data_dir), OUTPUT_DIR_ENV: str(paths.output_dir)}
    watch = _SignalWatch()
    with (
        watch.installed(),
        environment_variables(environment),
        _instance_home(dagster_home) as home,
        instance_at(home) as instance,
        OutputDirectoryLock(paths.output_dir, paths.inputs_digest()) as holder,
    ):
        if detach and not daemon_running(instance):
            raise DetachNeedsDaemon(
                "--detach hands the label runs to the Dagster daemon's queue, and no daemon "
                "is running for this instance: start one (make ui) or run without --detach"
            )
        runs: _Runs | None = None
        # The code server loads (seconds) while this process prepares.
        location = CodeLocationRuns(instance).start_loading()
        try:
            summary.stale_runs_failed = fail_runs_of_dead_processes(instance)
            here = holder.identity.host
            summary.temporary_files_swept = len(
                sweep_interrupted_writes(
                    paths.output_dir,
                    writer_alive=lambda pid: ProcessIdentity(pid, here, None, "").is_alive(),
                    sweep_unowned=not holder.others_alive(),
                )
            )
            # The template reference is made again only when what it is made from changed.
            template_run = current_template_run(instance, paths)
            with location:
                runs = _Runs(instance, location, watch, stream or sys.stderr, quiet)
                runs.run_config = {
                    **_console_config(log_level),
                    **paths_run_config(paths.data_dir, paths.output_dir),
                }
                try:
                    finished = _label(runs, summary, work, template_run, partitions, detach)
                except Interrupted:
                    # While the code server that launched them still runs: it stops them.
                    summary.canceled_runs = runs.cancel_all()
                    raise
            if finished:
                _reconcile(summary, work, partitions)
        except Interrupted as interruption:
            summary.interrupted_by = interruption.signum
            launched = runs.launched if runs is not None else []
            _interrupted_outcomes(summary, instance, launched)
        finally:
            location.close()  # when it was never entered (an error or a signal before)
    return _finished(summary, work.frames, started, work.keys)


@dataclass
class _Work:
    """What the run loop gathered: the catalog, the studies to label, their labels."""

    catalog: pd.DataFrame | None = None
    keys: list[str] = field(default_factory=list)
    frames: list[pd.DataFrame] = field(default_factory=list)


class _Runs:
    """Launches this command's runs one at a time and waits for each (progress, signals)."""

    def __init__(self, instance, location, watch: _SignalWatch, stream: TextIO, quiet: bool):
        from labeling_pipeline.cli.launch import Progress

        self.instance, self.location, self.watch = instance, location, watch
        self.stream, self.quiet = stream, quiet
        self.run_config: dict = {}
        self.launched: list[str] = []
        self.progress = Progress(0, stream, quiet=True)

    def run_to_end(self, job_name: str, tags: dict, asset_selection=None, on_poll=None):
        """Launch a run, wait for it to end; what it did (a ``FinishedRun``)."""
        from labeling_pipeline.cli.launch import FinishedRun, wait_for_runs

        run_id = self.location.launch(job_name, tags, self.run_config, asset_selection)
        self.launched.append(run_id)
        signum = wait_for_runs(self.instance, [run_id], self.watch.pending, on_poll)
        if signum:
            raise Interrupted(signum)
        return FinishedRun.read(self.instance, run_id)

    def cancel_all(self) -> list[str]:
        from labeling_pipeline.cli.launch import cancel_runs

        self.progress.close()
        self.progress.say("interrupted: canceling the runs this command launched ...")
        canceled = cancel_runs(self.instance, self.launched)
        self.progress.say(f"{len(canceled)} run{'' if len(canceled) == 1 else 's'} canceled")
        return canceled


def _label(
    runs: _Runs,
    summary: RunSummary,
    work: _Work,
    template_run: str | None,
    partitions: Sequence[str] | None,
    detach: bool,
) -> bool:
    """The runs: catalog and template, the label batches, the QA report. Returns whether they
    all ran here (False: the catalog failed, or the label runs were detached)."""
    import dagster as dg

    from labeling_pipeline.cli.launch import LabelledSoFar, Progress
    from labeling_pipeline.cli.pacs import sr_store_counts
    from labeling_pipeline.defs.ingestion.partitions import (
        STUDIES_PARTITION_NAME,
        STUDIES_PER_RUN,
        contiguous_batches,
    )
    from labeling_pipeline.defs.resources import pinned_input_tag
    from labeling_pipeline.imaging.dicom import (
        CatalogOutcome,
        catalog_to_frame,
        labelled_partition_keys,
    )
    from labeling_pipeline.labels.catalog import read_catalog
    from labeling_pipeline.labels.dataset import read_labels_partition

    paths, instance = summary.paths, runs.instance
    tags = {TRIGGER_TAG: "labeling-pipeline run"}
    prepare = runs.run_to_end(
        CATALOG_AND_TEMPLATE_JOB,
        tags,
        asset_selection=[dg.AssetKey(DICOM_CATALOG)] if template_run else None,
    )
    summary.prepare_run_id = prepare.run_id
    # A catalog left by an earlier run is not this run's: report it only when it was made.
    scanned = prepare.is_node_success(DICOM_CATALOG)
    catalog = read_catalog(paths.catalog_path) if scanned else catalog_to_frame([])
    work.catalog = catalog
    summary.files_seen = len(catalog)
    if scanned:
        summary.dicomweb = _dicomweb_line(prepare, DICOM_CATALOG)
    rejected = catalog[catalog["outcome"] == CatalogOutcome.REJECTED]
    summary.rejected_files = len(rejected)
    summary.rejections = {str(k): int(v) for k, v in rejected["reason_code"].value_counts().items()}
    if not prepare.success:
        summary.prepare_error = failure_text(prepare)
        return False

    keys = labelled_partition_keys(catalog)
    if partitions:
        unknown = sorted(set(partitions) - set(keys))
        if unknown:
            raise ValueError(
                f"no study with an image to label has partition key {unknown}; known keys: {keys}"
            )
        keys = [key for key in keys if key in set(partitions)]
    summary.studies_planned = len(keys)

    # Every label run reads the catalog and the template reference this command made,
    # whatever another process sharing the output directory materializes meanwhile.
    template_tag = pinned_input_tag(dg.AssetKey(TEMPLATE_REFERENCE))
    label_tags = {**tags, template_tag: template_run or prepare.run_id}
    ordered = list(instance.get_dynamic_partitions(STUDIES_PARTITION_NAME))
    queue = contiguous_batches(ordered, keys, STUDIES_PER_RUN)
    if detach:
        for batch in queue:
            batch_tags = {**label_tags, **_batch_tags(batch)}
            summary.detached_runs.append(
                runs.location.submit(LABEL_STUDY_JOB, batch_tags, runs.run_config)
            )
        return False

    work.keys = keys
    runs.progress = progress = Progress(len(keys), runs.stream, runs.quiet)
    cursor = instance.event_log_storage.get_maximum_record_id() or 0
    failed: set[str] = set()

    labelled = LabelledSoFar(set(keys), cursor)

    def show_progress() -> None:
        done, images = labelled.update(instance)
        progress.show(len(done), images, len(failed - done))

    while queue:
        batch = queue.pop(0)
        result = runs.run_to_end(
            LABEL_STUDY_JOB, {**label_tags, **_batch_tags(batch)}, on_poll=show_progress
        )
        named = failed_studies(result)
        if not result.success and named and set(named) < set(batch):
            # The batch is materialized as a whole: label its other studies again (their
            # features are reused) in runs of their own, and report the named ones.
            rest = [key for key in batch if key not in named]
            queue[:0] = contiguous_batches(ordered, rest, STUDIES_PER_RUN)
            outcomes = [StudyOutcome(key, result.run_id, False, named[key]) for key in named]
            batch = list(named)
        else:
            outcomes = _batch_outcomes(batch, result)
        summary.studies.extend(outcomes)
        failed.update(outcome.partition_key for outcome in outcomes if not outcome.success)
        # The batch's SR write-back counts, once (on its first study): totals add up.
        outcomes[0].sr_store = sr_store_counts(result)
        for key in batch:
            work.frames.append(read_labels_partition(paths.labels_dir, key))
    if keys:
        show_progress()
        progress.close()
        report = runs.run_to_end(QA_REPORT_JOB, tags)
        summary.qa_report_error = "" if report.success else failure_text(report)
    return True


def _reconcile(summary: RunSummary, work: _Work, partitions: Sequence[str] | None) -> None:
    """Remove the outputs of images the catalog no longer labels, after a complete run."""
    from labeling_pipeline.imaging.dicom import scan_is_complete
    from labeling_pipeline.labels.reconcile import reconcile_outputs

    paths = summary.paths
    if partitions:
        summary.reconcile_skipped = "only chosen partitions were labelled"
    elif work.catalog is None or not scan_is_complete(work.catalog):
        summary.reconcile_skipped = "the scan could not read every folder"
    elif not (paths.incoming_dir.is_dir() or paths.archive_dir.is_dir()):
        summary.reconcile_skipped = "neither incoming/ nor archive/ was found"
    else:
        report = reconcile_outputs(
            work.catalog,
            paths.labels_dir,
            paths.overlays_dir,
            paths.features_path,
            paths.sr_dir,
            paths.curated_dir,
        )
        summary.reconciled = len(report.images)


def _batch_tags(batch: list[str]) -> dict[str, str]:
    """A label run's partition tags: one study's key, or the range of a batch."""
    from labeling_pipeline.defs.ingestion.partitions import range_tags

    return {"dagster/partition": batch[0]} if len(batch) == 1 else range_tags(batch)


def _interrupted_outcomes(summary: RunSummary, instance, launched: list[str]) -> None:
    """The label run an interruption stopped counts as failed for each of its studies."""
    import dagster as dg

    reported = {study.partition_key for study in summary.studies}
    for run in instance.get_runs(filters=dg.RunsFilter(run_ids=launched)) if launched else []:
        if run.job_name != LABEL_STUDY_JOB or run.status == dg.DagsterRunStatus.SUCCESS:
            continue
        tags = run.tags
        batch = (
            [tags["dagster/partition"]]
            if tags.get("dagster/partition")
            else _range_keys(instance, tags)
        )
        for key in batch:
            if key not in reported:
                summary.studies.append(StudyOutcome(key, run.run_id, False, "interrupted"))


def _range_keys(instance, tags) -> list[str]:
    from labeling_pipeline.defs.ingestion.partitions import STUDIES_PARTITION_NAME

    ordered = list(instance.get_dynamic_partitions(STUDIES_PARTITION_NAME))
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    if start not in ordered or end not in ordered:
        return []
    return ordered[ordered.index(start) : ordered.index(end) + 1]


@contextlib.contextmanager
def _instance_home(home: Path | None) -> Iterator[Path]:
    """``home``, or a temporary instance directory for the command's runs when there is none
    (launched runs run in processes of their own, which an in-memory instance cannot reach)."""
    if home is not None:
        yield home
        return
    with tempfile.TemporaryDirectory(prefix="labeling-dagster-") as temporary:
        yield Path(temporary)


def current_template_run(instance, paths: PipelinePaths) -> str | None:
    """The run whose ``template_reference`` is current for ``paths`` (same data version and
    code version as it would be made with now, its value in this output directory), or None
    when it must be made again."""
    from labeling_pipeline.defs.resources import FeatureModelResource, PipelineResource
    from labeling_pipeline.defs.template.assets import (
        TEMPLATE_CODE_VERSION,
        template_reference,
        template_version,
    )

    records = instance.fetch_materializations(template_reference.key, limit=1).records
    if not records:
        return None
    record = records[0]
    tags = record.asset_materialization.tags or {}
    try:
        version = template_version(PipelineResource(), FeatureModelResource())
    except ValueError:
        return None  # a setting the asset will reject: let it say so
    value = paths.intermediate_dir / "template_reference" / "__all__" / f"{record.run_id}.pkl"
    current = (
        tags.get("dagster/data_version") == version
        and tags.get("dagster/code_version") == TEMPLATE_CODE_VERSION
        and value.is_file()
    )
    return record.run_id if current else None


def failed_studies(result) -> dict[str, str]:
    """The studies a failed batch run names as failed (partition key -> why), from its step
    failure's ``failed_studies`` metadata ({} when the run failed otherwise)."""
    named: dict[str, str] = {}
    for event in result.get_step_failure_events():
        failure = event.step_failure_data.user_failure_data
        value = failure.metadata.get("failed_studies") if failure is not None else None
        if value is not None:
            named.update({str(k): str(v) for k, v in dict(value.value).items()})
    return named


def _batch_outcomes(batch: list[str], result) -> list[StudyOutcome]:
    """Each study's outcome from the run that labelled its batch: the run's success, and the
    checks as they went for that study (batch check results name the studies that did not
    pass in their ``studies`` metadata)."""
    import dagster as dg

    outcomes = {key: StudyOutcome(key, result.run_id, result.success) for key in batch}
    if not result.success:
        error = failure_text(result)
        for outcome in outcomes.values():
            outcome.error = error
    for evaluation in result.get_asset_check_evaluations():
        named = evaluation.metadata.get("studies")
        not_passed = (
            set(named.value) if named is not None else (set() if evaluation.passed else set(batch))
        )
        for key, outcome in outcomes.items():
            if key not in not_passed:
                outcome.checks_passed += 1
                continue
            text = (named.value.get(key) if named is not None else evaluation.description) or ""
            if evaluation.severity == dg.AssetCheckSeverity.WARN:
                outcome.warned_checks.append(f"{evaluation.check_name}: {text or 'warning'}")
            else:
                outcome.failed_checks.append(f"{evaluation.check_name}: {text or 'failed'}")
    return list(outcomes.values())


def _finished(
    summary: RunSummary, frames: list[pd.DataFrame], started: float, keys: list[str]
) -> RunSummary:
    labels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not labels.empty:
        summary.images_labelled = int(labels["sop_instance_uid"].nunique())
        summary.landmarks_ok = int((labels["status"] == "ok").sum())
        summary.landmarks_needs_review = int((labels["status"] == "needs_review").sum())
        curated = [summary.paths.curated_dir / f"{key}.parquet" for key in keys]
        present = [path for path in curated if path.exists()]
        if present:
            statuses = pd.concat([pd.read_parquet(p, columns=["status"]) for p in present])
            summary.curated_statuses = {
                str(k): int(v) for k, v in statuses["status"].value_counts().items()
            }
    summary.seconds = time.perf_counter() - started
    return summary
