"""new_study_sensor: catalogue when incoming/ changes, then register and label new studies once;
and the nightly schedule that labels incoming studies again."""

import datetime
import shutil
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from labeling_pipeline.defs.ingestion.assets import dicom_catalog
from labeling_pipeline.defs.ingestion.partitions import STUDIES_PARTITION_NAME
from labeling_pipeline.defs.ingestion.sensors import new_study_sensor
from labeling_pipeline.defs.labels.schedules import nightly_relabel_schedule
from labeling_pipeline.defs.resources import (
    CatalogIOManager,
    IntermediateIOManager,
    PipelineResource,
)
from labeling_pipeline.imaging.dicom import study_digest
from labeling_pipeline.labels.catalog import read_catalog
from labeling_pipeline.synthetic.sample_data import build_dataset

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@pytest.fixture(scope="module")
def source_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three generated studies: two in incoming/, one moved to archive/."""
    data = tmp_path_factory.mktemp("sensor") / "data"
    build_dataset(data, 3, seed=4)
    (data / "archive").mkdir()
    shutil.move(data / "incoming" / "case_0002", data / "archive" / "case_0002")
    return data


@pytest.fixture
def env(source_data: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(source_data, data)
    pipeline = PipelineResource(data_dir=str(data), output_dir=str(tmp_path / "out"))
    with dg.instance_for_test() as instance:
        yield SimpleNamespace(data=data, pipeline=pipeline, instance=instance)


def _tick(env: SimpleNamespace):
    # Closed at once: an evaluation context left open holds the instance's state storage
    # context, and garbage-collecting it later restores a dead instance's storage as current.
    with dg.build_sensor_context(
        instance=env.instance, resources={"pipeline": env.pipeline}
    ) as context:
        return new_study_sensor(context)


def _catalog(env: SimpleNamespace) -> None:
    resources = {
        "pipeline": env.pipeline,
        "io_manager": IntermediateIOManager(pipeline=env.pipeline),
        "catalog_io_manager": CatalogIOManager(pipeline=env.pipeline),
    }
    result = dg.materialize(
        [dicom_catalog], instance=env.instance, resources=resources, run_config=QUIET
    )
    assert result.success


def test_empty_incoming_is_skipped(env: SimpleNamespace) -> None:
    shutil.rmtree(env.data / "incoming")
    assert isinstance(_tick(env), dg.SkipReason)


def test_new_files_ask_for_a_catalog_run_once_per_listing(env: SimpleNamespace) -> None:
    first = _tick(env)
    assert isinstance(first, dg.RunRequest)
    assert first.job_name == "catalog_and_template_job"
    assert _tick(env).run_key == first.run_key  # the same listing, the same (deduplicated) key
    (env.data / "incoming" / "extra.txt").write_text("new file")
    assert _tick(env).run_key != first.run_key


def test_current_catalog_gives_one_label_run_per_incoming_study(env: SimpleNamespace) -> None:
    _catalog(env)
    catalog = read_catalog(Path(env.pipeline.output_dir) / "catalog.parquet")
    incoming = sorted(set(catalog[catalog["source"] == "incoming"]["partition_key"]))
    archived = set(catalog[catalog["source"] == "archive"]["partition_key"])
    assert len(incoming) == 2 and len(archived) == 1

    # A partition lost from the instance is registered again by the sensor.
    env.instance.delete_dynamic_partition(STUDIES_PARTITION_NAME, incoming[0])
    result = _tick(env)
    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests] == incoming  # archive is left alone
    assert all(r.job_name == "label_study_job" for r in result.run_requests)
    [add] = result.dynamic_partitions_requests
    assert list(add.partition_keys) == [incoming[0]]

    # Once a study's labels were made from exactly these files, it is not asked for again.
    env.instance.add_dynamic_partitions(STUDIES_PARTITION_NAME, [incoming[0]])
    env.instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="label_dataset",
            partition=incoming[0],
            metadata={"study_digest": study_digest(catalog, incoming[0])},
        )
    )
    again = _tick(env)
    assert [r.partition_key for r in again.run_requests] == incoming[1:]


def test_nightly_schedule_relabels_every_incoming_study(env: SimpleNamespace) -> None:
    with dg.build_schedule_context(
        instance=env.instance,
        scheduled_execution_time=datetime.datetime(2026, 9, 5, 2, 0),
        resources={"pipeline": env.pipeline},
    ) as context:
        assert isinstance(nightly_relabel_schedule(context), dg.SkipReason)  # no catalog yet
        _catalog(env)
        requests = nightly_relabel_schedule(context)
    catalog = read_catalog(Path(env.pipeline.output_dir) / "catalog.parquet")
    incoming = sorted(set(catalog[catalog["source"] == "incoming"]["partition_key"]))
    assert [r.partition_key for r in requests] == incoming
    assert all(r.run_key.startswith("nightly-20260905-") for r in requests)
