"""deploy/dagster-postgres.yaml against a real PostgreSQL: the instance it describes stores runs,
event logs (materializations, dynamic partitions) and schedule state in the database, and the
pipeline's jobs run on it."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from labeling_pipeline.defs.ingestion.partitions import STUDIES_PARTITION_NAME
from labeling_pipeline_tests.postgres_server import PostgresServer

pytestmark = pytest.mark.slow

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def test_pipeline_runs_are_recorded_in_postgres(
    postgres: PostgresServer,
    postgres_home: tuple[Path, dict[str, str]],
    tiny_data: tuple[Path, Path],
) -> None:
    from labeling_pipeline.definitions import defs

    _, environment = postgres_home
    _, output = tiny_data
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)

        prepare = defs.resolve_job_def("catalog_and_template_job").execute_in_process(
            instance=instance, run_config=QUIET
        )
        assert prepare.success
        [key] = instance.get_dynamic_partitions(STUDIES_PARTITION_NAME)
        label = defs.resolve_job_def("label_study_job").execute_in_process(
            instance=instance, partition_key=key, run_config=QUIET
        )
        assert label.success
        runs = {run.run_id: run for run in instance.get_runs()}
        assert set(runs) == {prepare.run_id, label.run_id}
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs.values())
        materialized = instance.get_latest_materialization_event(dg.AssetKey("label_dataset"))
        assert materialized is not None and materialized.run_id == label.run_id
        assert materialized.asset_materialization.partition == key

    labels = pd.read_parquet(output / "labels")
    assert set(labels["partition_key"]) == {key}

    # What the instance reported is in the database itself, not in files under DAGSTER_HOME.
    with closing(postgres.connect(environment["DAGSTER_POSTGRES_DB"])) as db, db.cursor() as cur:
        cur.execute("SELECT run_id, status FROM runs")
        assert dict(cur.fetchall()) == {prepare.run_id: "SUCCESS", label.run_id: "SUCCESS"}
        cur.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND asset_key = %s "
            "AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (label.run_id, dg.AssetKey("label_dataset").to_string()),
        )
        assert cur.fetchone()[0] == 1
        cur.execute(
            "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s",
            (STUDIES_PARTITION_NAME,),
        )
        assert [row[0] for row in cur.fetchall()] == [key]
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        tables = {row[0] for row in cur.fetchall()}
    assert {"runs", "event_logs", "jobs", "job_ticks", "instigators"} <= tables
