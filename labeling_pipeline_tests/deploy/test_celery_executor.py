"""label_study_celery_job with dagster-celery: a real Redis broker, a Celery worker process
started with dagster-celery's own command, the instance on a real PostgreSQL. The steps of the
study graph run in the worker, their events land in PostgreSQL, the labels on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml
from dagster._core.definitions.reconstruct import ReconstructableRepository

from labeling_pipeline.cli import PROJECT_ROOT
from labeling_pipeline.defs.ingestion.partitions import STUDIES_PARTITION_NAME
from labeling_pipeline_tests.redis_server import RedisServer, find_redis

pytestmark = pytest.mark.slow

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
WORKER_READY_S = 180


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if find_redis() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def _wait_for_worker(broker: str, worker: subprocess.Popen, log: Path) -> None:
    from dagster_celery.make_app import make_app

    app = make_app({"broker_url": broker, "result_backend": broker})
    deadline = time.monotonic() + WORKER_READY_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            break
        if app.control.ping(timeout=1.0):
            return
    raise AssertionError(
        "the Celery worker did not answer: " + log.read_text(errors="replace")[-3000:]
    )


def test_study_graph_runs_on_a_celery_worker(
    postgres_home: tuple[Path, dict[str, str]],
    tiny_data: tuple[Path, Path],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    from labeling_pipeline.definitions import defs

    home, _ = postgres_home
    _, output = tiny_data
    broker = redis_server.url
    celery_config = tmp_path / "celery.yaml"
    # The executor's run config, which dagster-celery's worker command reads as well.
    executor_config = {"execution": {"config": {"broker": broker, "backend": broker}}}
    celery_config.write_text(yaml.safe_dump(executor_config))
    # The worker gets this test's environment: the instance (DAGSTER_HOME and its PostgreSQL
    # variables), the data and output directories, and this checkout on the path.
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), environment.get("PYTHONPATH", "")) if p
    )
    environment["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), environment["PATH"]))
    log_path = tmp_path / "worker.log"
    command = [
        str(Path(sys.executable).parent / "dagster-celery"),
        "worker", "start", "-A", "dagster_celery.app", "-y", str(celery_config),
        "--name", f"labeling-test-{os.getpid()}", "--loglevel", "INFO",
        "--", "--pool=solo",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        # Its own session: the command starts celery as a child; both stop with the group.
        worker = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with dg.DagsterInstance.get() as instance:
            prepare = defs.resolve_job_def("catalog_and_template_job").execute_in_process(
                instance=instance, run_config=QUIET
            )
            assert prepare.success
            [key] = instance.get_dynamic_partitions(STUDIES_PARTITION_NAME)
            _wait_for_worker(broker, worker, log_path)

            job = ReconstructableRepository.for_module(
                "labeling_pipeline.definitions", "defs", working_directory=str(PROJECT_ROOT)
            ).get_reconstructable_job("label_study_celery_job")
            run_config = {**executor_config, **QUIET}
            with dg.execute_job(
                job, instance, run_config=run_config, tags={"dagster/partition": key}
            ) as result:
                assert result.success, log_path.read_text(errors="replace")[-3000:]
                run_id = result.run_id

            run = instance.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
            records = instance.get_records_for_run(run_id).records
            events = [r.event_log_entry.dagster_event for r in records]
            started = {e.step_key: e.pid for e in events if e and e.is_step_start}
            succeeded = {e.step_key for e in events if e and e.is_step_success}
            # Every step of the study graph (one step makes the features, localization and labels
            # of the batch; then the curated labels and SRs) ran in the worker, not this process.
            assert {"label_studies", "curated_labels"} <= set(started) == succeeded
            assert os.getpid() not in set(started.values())
            assert any(
                e and e.is_engine_event and "celery" in (e.message or "").lower() for e in events
            )
            latest = instance.get_latest_materialization_event(dg.AssetKey("label_dataset"))
            assert latest is not None and latest.run_id == run_id
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()

    labels = pd.read_parquet(output / "labels")
    assert set(labels["partition_key"]) == {key}
    assert (home / "dagster_celery" / "config").is_dir()  # the worker's config, from the instance
