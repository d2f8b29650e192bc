"""Runs of the code location, made by the command line as the UI makes them, and waited for.

``run`` and ``backfill`` share this: :class:`CodeLocationRuns` loads ``workspace.yaml``'s
``labeling_pipeline`` location (its code server, started here, so no daemon or ``make ui`` is
needed), creates each run from it (the location's origin and snapshots: the UI can re-execute
it and shows it on the timeline) and launches it with the instance's run launcher, in a process
of its own, or submits it to the instance's run coordinator (the daemon's queue). What a run did
is read back from the event log (:class:`FinishedRun`). Also shared: the progress line
(:class:`Progress`), cancelling launched runs (:func:`cancel_runs`), a daemon for the
instance (:func:`daemon_for`) and the daemon's work done by the command itself
(:class:`DaemonDuties`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from labeling_pipeline.cli.instance import PROJECT_ROOT

LOCATION_NAME = "labeling_pipeline"  # workspace.yaml's location name
DEFINITIONS_MODULE = "labeling_pipeline.definitions"
WORKSPACE_FILE = PROJECT_ROOT / "workspace.yaml"
DAEMON_FRESH_S = 60.0  # a daemon whose heartbeat is older is taken for gone
CANCEL_WAIT_S = 60.0  # how long a canceled run gets to stop before the command returns
SERVER_STOP_S = 30.0  # how long the code server gets to stop (its last run process to exit)


class LocationUnavailable(RuntimeError):
    """The code location of ``workspace.yaml`` could not be loaded (its error in one line)."""


class DetachNeedsDaemon(RuntimeError):
    """``--detach`` hands runs to the daemon's queue, and no daemon runs for the instance."""


def paths_run_config(data_dir: Path, output_dir: Path) -> dict[str, Any]:
    """Run config naming the directories of a run: whichever process runs it (this command's
    code server, the daemon of ``make ui``, a re-execution from the UI) reads and writes the
    same places, whatever its environment says."""
    directories = {"data_dir": str(data_dir), "output_dir": str(output_dir)}
    return {"resources": {"pipeline": {"config": directories}}}


# Watches the process group of the command's code server (the server and the runs it launched).
# Told "reap" when the command closes it: gives the group SERVER_STOP_S to end (the last run's
# process to exit, the server to stop), then kills what is left. Its stdin closing without a
# word (the command was killed, even with SIGKILL): kills the group at once, so runs do not
# outlive the command, as runs executed in its own process did not (a run left STARTED is
# failed by the next command or the sensor).
_WATCHDOG = """
import os, signal, sys, time
group, grace = int(sys.argv[1]), float(sys.argv[2])
deadline = time.monotonic() + (grace if sys.stdin.buffer.read() == b"reap" else 0.0)
try:
    while time.monotonic() < deadline:
        os.killpg(group, 0)
        time.sleep(0.5)
    os.killpg(group, signal.SIGKILL)
except ProcessLookupError:
    pass
"""


@contextlib.contextmanager
def _own_session_for_code_server(started: list[subprocess.Popen]) -> Iterator[None]:
    """Start the code server (and so the runs it launches) in a session of its own: a Ctrl-C
    in the terminal then reaches this command only, which cancels its runs through the run
    launcher, rather than killing the server and failing the runs midway. The processes
    started are appended to ``started``."""
    try:
        from dagster._grpc import server
    except ImportError:  # another layout of Dagster's private modules: no change
        yield
        return
    original = getattr(server, "open_ipc_subprocess", None)
    if original is None:
        yield
        return

    def in_own_session(parts: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        process = original(parts, start_new_session=True, **kwargs)
        started.append(process)
        return process

    server.open_ipc_subprocess = in_own_session
    try:
        yield
    finally:
        server.open_ipc_subprocess = original


class CodeLocationRuns:
    """Creates, launches and submits runs of ``workspace.yaml``'s code location.

    Used as a context manager: entering loads the location (a code server process that
    inherits this process's environment, so ``LABELING_*`` settings reach the runs it
    launches); leaving stops it. The server and the runs it launches belong to this command:
    if the command is killed, a watchdog process kills them too (runs handed to the daemon's
    queue with :meth:`submit` are the daemon's).
    """

    def __init__(self, instance: Any, workspace_file: Path = WORKSPACE_FILE) -> None:
        self.instance = instance
        self.workspace_file = workspace_file
        self._stack = contextlib.ExitStack()
        self._loader: threading.Thread | None = None
        self._load_error: BaseException | None = None
        self._watchdogs: list[subprocess.Popen] = []

    def start_loading(self) -> CodeLocationRuns:
        """Start the code server in the background: it takes seconds (imports, definitions),
        which the caller spends on its own preparations meanwhile. Entering waits for it."""
        if self._loader is None:
            self._loader = threading.Thread(target=self._load, name="code-location", daemon=True)
            self._loader.start()
        return self

    def _load(self) -> None:
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import ModuleTarget, WorkspaceFileTarget

        # An installed package has no workspace.yaml beside it: the same location by module.
        target = (
            WorkspaceFileTarget(paths=[str(self.workspace_file)])
            if self.workspace_file.is_file()
            else ModuleTarget(DEFINITIONS_MODULE, None, None, LOCATION_NAME)
        )
        servers: list[subprocess.Popen] = []
        try:
            with _own_session_for_code_server(servers):
                process_context = self._stack.enter_context(
                    WorkspaceProcessContext(self.instance, target, code_server_log_level="WARNING")
                )
            for server in servers:  # its session's process group: the server and its runs
                self._watchdogs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", _WATCHDOG, str(server.pid), str(SERVER_STOP_S)],
                        stdin=subprocess.PIPE,
                        start_new_session=True,
                    )
                )
            self.process_context = process_context
            self.workspace = process_context.create_request_context()
        except BaseException as error:  # re-raised by __enter__, in the caller's thread
            self._load_error = error

    def __enter__(self) -> CodeLocationRuns:
        self.start_loading()
        try:
            assert self._loader is not None
            self._loader.join()
            if self._load_error is not None:
                raise self._load_error
            error = self.workspace.get_code_location_error(LOCATION_NAME)
            if error is not None:
                from labeling_pipeline.cli.errors import root_cause

                raise LocationUnavailable(
                    f"code location {LOCATION_NAME} of {self.workspace_file} could not be "
                    f"loaded: {root_cause(error)}"
                )
            self.location = self.workspace.get_code_location(LOCATION_NAME)
            [self.repository] = self.location.get_repositories().values()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the code server, also when it is still loading. The command's runs have ended
        by then (or were canceled): the watchdog kills what is left of the server's process
        group after a grace period (a server that does not stop, a run process that hangs),
        without this command waiting for it."""
        if self._loader is not None:
            self._loader.join()
        self._stack.close()
        while self._watchdogs:
            watchdog = self._watchdogs.pop()
            with contextlib.suppress(OSError):
                assert watchdog.stdin is not None
                watchdog.stdin.write(b"reap")
                watchdog.stdin.close()

    def create_run(
        self,
        job_name: str,
        tags: Mapping[str, str],
        run_config: Mapping[str, Any],
        asset_selection: Sequence[Any] | None = None,
    ) -> Any:
        """A run of ``job_name`` (only ``asset_selection`` when given) in the instance, not
        started, made from the code location as the UI makes one."""
        from dagster._core.definitions.selector import JobSubsetSelector

        selection = frozenset(asset_selection) if asset_selection else None
        remote_job = self.location.get_job(
            JobSubsetSelector(
                location_name=LOCATION_NAME,
                repository_name=self.repository.name,
                job_name=job_name,
                op_selection=None,
                asset_selection=selection,
            )
        )
        plan = self.location.get_execution_plan(
            remote_job, dict(run_config), step_keys_to_execute=None, known_state=None
        ).execution_plan_snapshot
        return self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=dict(run_config),
            status=None,
            tags={**remote_job.tags, **tags},
            root_run_id=None,
            parent_run_id=None,
            step_keys_to_execute=plan.step_keys_to_execute,
            execution_plan_snapshot=plan,
            job_snapshot=remote_job.job_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            asset_selection=selection,
            asset_check_selection=None,
            resolved_op_selection=remote_job.resolved_op_selection,
            op_selection=None,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_graph=self.repository.asset_graph,
        )

    def launch(
        self,
        job_name: str,
        tags: Mapping[str, str],
        run_config: Mapping[str, Any],
        asset_selection: Sequence[Any] | None = None,
    ) -> str:
        """Create a run and start it now with the instance's run launcher (its own process,
        from this command's code server); returns its id."""
        run = self.create_run(job_name, tags, run_config, asset_selection)
        self.instance.launch_run(run.run_id, self.workspace)
        return run.run_id

    def submit(self, job_name: str, tags: Mapping[str, str], run_config: Mapping[str, Any]) -> str:
        """Create a run and hand it to the instance's run coordinator (the daemon's queue, its
        run and pool limits); returns its id."""
        run = self.create_run(job_name, tags, run_config)
        self.instance.submit_run(run.run_id, self.workspace)
        return run.run_id


@dataclass
class FinishedRun:
    """What a launched run did, read from its event log: the parts of Dagster's in-process
    execution result the command line reports."""

    run_id: str
    status: Any  # DagsterRunStatus
    events: list[Any]  # DagsterEvent

    @classmethod
    def read(cls, instance: Any, run_id: str) -> FinishedRun:
        run = instance.get_run_by_id(run_id)
        records = instance.all_logs(run_id)
        events = [record.dagster_event for record in records if record.dagster_event]
        return cls(run_id, run.status, events)

    @property
    def success(self) -> bool:
        import dagster as dg

        return self.status == dg.DagsterRunStatus.SUCCESS

    def _of_type(self, name: str) -> list[Any]:
        return [event for event in self.events if event.event_type_value == name]

    def is_node_success(self, node_name: str) -> bool:
        return any(event.step_key == node_name for event in self._of_type("STEP_SUCCESS"))

    def asset_materializations_for_node(self, node_name: str) -> list[Any]:
        return [
            event.step_materialization_data.materialization
            for event in self._of_type("ASSET_MATERIALIZATION")
            if event.step_key == node_name
        ]

    def get_step_failure_events(self) -> list[Any]:
        return self._of_type("STEP_FAILURE")

    def get_asset_check_evaluations(self) -> list[Any]:
        return [
            event.asset_check_evaluation_data for event in self._of_type("ASSET_CHECK_EVALUATION")
        ]

    def run_failure_error(self) -> Any:
        """The error a run failure event carries (a failure outside the steps), or None."""
        for event in self._of_type("PIPELINE_FAILURE"):
            data = event.event_specific_data
            if data is not None and getattr(data, "error", None) is not None:
                return data.error
        return None

    def run_failure_message(self) -> str:
        for event in self._of_type("PIPELINE_FAILURE") + self._of_type("PIPELINE_CANCELED"):
            return event.message or ""
        return ""


def wait_for_runs(
    instance: Any,
    run_ids: Sequence[str],
    pending_signal: Callable[[], int],
    on_poll: Callable[[], None] | None = None,
    poll_s: float = 0.5,
) -> int:
    """Wait until every run of ``run_ids`` has ended, calling ``on_poll`` on each look.
    Returns 0, or the signal ``pending_signal`` reported (waiting stops; the runs go on)."""
    import dagster as dg

    while True:
        if on_poll is not None:
            on_poll()
        runs = instance.get_runs(filters=dg.RunsFilter(run_ids=list(run_ids)))
        if len(runs) == len(run_ids) and all(run.is_finished for run in runs):
            return 0
        signum = pending_signal()
        if signum:
            return signum
        time.sleep(poll_s)


def cancel_runs(instance: Any, run_ids: Sequence[str], wait_s: float = CANCEL_WAIT_S) -> list[str]:
    """Cancel the runs of ``run_ids`` that have not ended (a queued one leaves the queue, a
    running one is terminated through the run launcher) and wait up to ``wait_s`` for them to
    stop; returns the ids of those that ended canceled (one that finished before the request
    took effect is not counted). A run that stays unfinished is marked canceled."""
    import dagster as dg

    unfinished = [
        run
        for run in instance.get_runs(filters=dg.RunsFilter(run_ids=list(run_ids)))
        if not run.is_finished
    ]
    for run in unfinished:
        with contextlib.suppress(Exception):  # it ended meanwhile, or its server is gone
            instance.run_coordinator.cancel_run(run.run_id)
    ids = [run.run_id for run in unfinished]
    deadline = time.monotonic() + wait_s
    while ids and time.monotonic() < deadline:
        runs = instance.get_runs(filters=dg.RunsFilter(run_ids=ids))
        if all(run.is_finished for run in runs):
            break
        time.sleep(0.5)
    canceled = []
    for run in instance.get_runs(filters=dg.RunsFilter(run_ids=ids)) if ids else []:
        if not run.is_finished:
            instance.report_run_canceled(run, "labeling-pipeline canceled this run")
            canceled.append(run.run_id)
        elif run.status == dg.DagsterRunStatus.CANCELED:
            canceled.append(run.run_id)
    return [run_id for run_id in ids if run_id in canceled]


def daemon_running(instance: Any) -> bool:
    """Whether a Dagster daemon has recently reported for this instance."""
    now = time.time()
    return any(
        now - beat.timestamp < DAEMON_FRESH_S
        for beat in instance.get_daemon_heartbeats().values()
        if beat.daemon_type == "BACKFILL"
    )


class DaemonDuties:
    """The daemon's work for a command's backfill, done by the command (when no daemon runs for
    the instance): the backfill loop, which turns the backfill into batched runs and marks it
    ended, and the run queue, which starts queued runs within the instance's run and pool
    limits, from the command's code server (``location``). These are the daemon's own
    iterations, called on the command's clock: a daemon's backfill loop passes every 30 s (it
    saw a finished backfill up to half a minute late), and a daemon process with a code server
    of its own takes about ten seconds to start on 2 cores."""

    def __init__(
        self, location: CodeLocationRuns, backfill_id: str, backfill_every_s: float = 30.0
    ) -> None:
        from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
            QueuedRunCoordinatorDaemon,
        )

        from labeling_pipeline.defs.ingestion.partitions import FEATURE_MODEL_POOL

        self._context = location.process_context
        self._instance = location.instance
        self._backfill_id = backfill_id
        self._queue = QueuedRunCoordinatorDaemon(interval_seconds=1)
        self._logger = logging.getLogger("labeling_pipeline.cli.backfill")
        self._backfill_every_s = backfill_every_s
        self._last_backfill = -backfill_every_s
        # The queue sets a pool to the instance's default limit in the pass that first meets
        # it, and that pass does not hold runs back for it: on a fresh instance two batches'
        # runs then started together. Set now, the first pass respects it as later ones do.
        if self._instance.global_op_concurrency_default_limit:
            self._instance.event_log_storage.initialize_concurrency_limit_to_default(
                FEATURE_MODEL_POOL
            )

    def tick(self, backfill_due: bool) -> None:
        """One pass of the run queue, after one of the backfill loop when ``backfill_due`` (the
        backfill may have runs to request or an ending to record) or when it last ran
        ``backfill_every_s`` ago. An asset backfill's pass costs more than the queue's, so it
        is not repeated while the backfill's runs are in flight."""
        from dagster._daemon.backfill import execute_backfill_iteration

        from labeling_pipeline.defs.runs import ended_runs_still_exiting

        now = time.monotonic()
        if backfill_due or now - self._last_backfill >= self._backfill_every_s:
            self._last_backfill = now
            self._report(execute_backfill_iteration(self._context, self._logger))
        # The queue frees a run's slot when the run is marked ended, while its process still
        # holds the model and a batch of images for a few seconds: the next run waits for it,
        # so that the backfill's memory is one run's, however many batches it has.
        if not ended_runs_still_exiting(self._instance, {"dagster/backfill": self._backfill_id}):
            self._report(self._queue.run_iteration(self._context))

    def _report(self, iteration: Iterator[Any]) -> None:
        from dagster._utils.error import SerializableErrorInfo

        for item in iteration:
            if isinstance(item, SerializableErrorInfo):  # the daemon would show it in the UI
                self._logger.warning("dagster daemon iteration failed: %s", item.to_string())

    def close(self) -> None:
        self._queue.__exit__(None, None, None)


@contextlib.contextmanager
def daemon_for(instance: Any, home: Path) -> Iterator[bool]:
    """A Dagster daemon for the instance at ``home`` while the block runs: the running one, or
    one started here (over ``workspace.yaml``) and stopped afterwards. Yields whether it was
    started here."""
    if daemon_running(instance):
        yield False
        return
    daemon = Path(sys.executable).with_name("dagster-daemon")
    command = [str(daemon)] if daemon.exists() else [sys.executable, "-m", "dagster._daemon"]
    process = subprocess.Popen(
        [*command, "run", "-w", str(WORKSPACE_FILE)],
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


class Progress:
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

    def say(self, text: str) -> None:
        """A line of its own (not overwritten by the next progress line), even when quiet."""
        self.stream.write(("\r\x1b[K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.quiet and self.tty:
            self.stream.write("\n")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class LabelledSoFar:
    """Studies of ``keys`` with a ``curated_labels`` materialization after the cursor (done),
    and their labelled images (from the batch metadata of ``label_dataset``), followed look by
    look: each look reads only what was recorded since the previous one. (Every study's
    materialization carries its whole batch's metadata, so reading them all again on each look
    cost the command seconds of CPU per batch, taken from the runs it waits for.)"""

    def __init__(self, keys: set[str], after_storage_id: int) -> None:
        self.keys = set(keys)
        self.done: set[str] = set()
        self._images: dict[str, int] = {}
        self._after = {"curated_labels": after_storage_id, "label_dataset": after_storage_id}

    def update(self, instance: Any) -> tuple[set[str], int]:
        """Look again; returns (studies done, their labelled images)."""
        from labeling_pipeline.defs.labels.assets import study_metadata

        for record in self._new_records(instance, "label_dataset"):
            materialization = record.asset_materialization
            if materialization.partition in self.keys:
                study = study_metadata(dict(materialization.metadata), materialization.partition)
                self._images[materialization.partition] = int(study.get("images", 0))
        for record in self._new_records(instance, "curated_labels"):
            if record.asset_materialization.partition in self.keys:
                self.done.add(record.asset_materialization.partition)
        return set(self.done), sum(self._images.get(key, 0) for key in self.done)

    def _new_records(self, instance: Any, asset: str) -> list[Any]:
        import dagster as dg

        records = list(_records(instance, dg.AssetKey(asset), self._after[asset]))
        if records:
            self._after[asset] = max(record.storage_id for record in records)
        return records


def _records(instance: Any, asset_key: Any, after_storage_id: int) -> Iterator[Any]:
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
