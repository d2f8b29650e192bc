"""Runs that say which process executes them, and runs whose process died marked failed.

Every run of this code location records the process that executes it in its tags
(``labeling/pid``, ``labeling/host``, ``labeling/process_start``); a run still ``STARTED``
(or starting, or being canceled) whose process is gone can never finish, and would hold one of
the queue's ``max_concurrent_runs`` slots for good. :func:`fail_runs_of_dead_processes` marks
such runs failed; ``labeling-pipeline run`` calls it on start and the sensor on each tick.
Runs killed before they could tag themselves are left to Dagster's run monitoring
(``dagster.yaml``: ``max_runtime_seconds``).
"""

from __future__ import annotations

import time

import dagster as dg

from labeling_pipeline.locks import ProcessIdentity

PID_TAG = "labeling/pid"
HOST_TAG = "labeling/host"
PROCESS_START_TAG = "labeling/process_start"
STARTED_AT_TAG = "labeling/started_at"

UNFINISHED_STATUSES = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def process_tags(identity: ProcessIdentity | None = None) -> dict[str, str]:
    """Run tags naming the process that executes a run."""
    identity = identity or ProcessIdentity.current()
    return {
        PID_TAG: str(identity.pid),
        HOST_TAG: identity.host,
        PROCESS_START_TAG: "" if identity.start_ticks is None else str(identity.start_ticks),
        STARTED_AT_TAG: identity.started_at,
    }


def process_of(run: dg.DagsterRun) -> ProcessIdentity | None:
    """The process recorded in a run's tags, or None for a run that has none."""
    tags = run.tags
    try:
        pid = int(tags[PID_TAG])
    except (KeyError, ValueError):
        return None
    start = tags.get(PROCESS_START_TAG, "")
    return ProcessIdentity(
        pid=pid,
        host=tags.get(HOST_TAG, ""),
        start_ticks=int(start) if start.isdigit() else None,
        started_at=tags.get(STARTED_AT_TAG, ""),
    )


def fail_runs_of_dead_processes(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every unfinished run whose recorded process is gone; returns their ids."""
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED_STATUSES)):
        process = process_of(run)
        if process is None or process.is_alive():
            continue
        message = (
            f"the process that ran this run ({process.describe()}) ended without finishing it "
            "(killed?); marked failed so that the queue is not blocked"
        )
        if run.status == dg.DagsterRunStatus.NOT_STARTED:
            instance.report_run_canceled(run, message)
        else:
            instance.report_run_failed(run, message)
        # A step killed inside the `feature_model` pool would hold its slot for good.
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        failed.append(run.run_id)
    return failed


def ended_runs_still_exiting(
    instance: dg.DagsterInstance, tags: dict[str, str], grace_s: float = 60.0
) -> list[str]:
    """Ids of the runs with ``tags`` that ended less than ``grace_s`` ago while their recorded
    process is still alive: it tears down (the model, a batch of images) for a few seconds
    after the run is marked ended. One that takes longer is not waited for."""
    now = time.time()
    return [
        record.dagster_run.run_id
        for record in instance.get_run_records(filters=dg.RunsFilter(tags=tags))
        if record.dagster_run.is_finished
        and record.end_time is not None
        and now - record.end_time < grace_s
        and (process := process_of(record.dagster_run)) is not None
        and process.is_alive()
    ]
