"""new_study_sensor with a DICOMweb server (a real Orthanc): new server studies are retrieved by
a catalog run, then requested for labelling by the automation conditions like incoming ones."""

from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from labeling_pipeline.definitions import defs
from labeling_pipeline.defs.resources import PipelineResource
from labeling_pipeline.defs.settings import DATA_DIR_ENV, OUTPUT_DIR_ENV
from labeling_pipeline.labels.catalog import read_catalog
from labeling_pipeline_tests.defs.helpers import materialize_catalog, sensor_tick
from labeling_pipeline_tests.orthanc_server import SAMPLE_DATA


def _labels_requested(env: SimpleNamespace) -> set[str]:
    result = dg.evaluate_automation_conditions(defs=defs, instance=env.instance, cursor=env.cursor)
    env.cursor = result.cursor
    return set(result.get_requested_partitions(dg.AssetKey("label_dataset")))


def test_sensor_fetches_and_labels_new_server_studies(
    orthanc_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = orthanc_factory()
    server.upload(sorted((SAMPLE_DATA / "archive").rglob("*.dcm"))[:2])
    monkeypatch.setenv("LABELING_DICOMWEB_URL", server.dicomweb_url)
    monkeypatch.setenv("LABELING_DICOMWEB_LOOKBACK_DAYS", "3650")  # the samples are from 2026
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    pipeline = PipelineResource(data_dir=str(data), output_dir=str(tmp_path / "out"))
    monkeypatch.setenv(DATA_DIR_ENV, str(data))  # as the code location reads them
    monkeypatch.setenv(OUTPUT_DIR_ENV, str(tmp_path / "out"))
    with dg.instance_for_test() as instance:
        env = SimpleNamespace(instance=instance, pipeline=pipeline, cursor=None)
        instance.report_runless_asset_event(  # a template reference to label with
            dg.AssetMaterialization("template_reference", tags={"dagster/data_version": "t1"})
        )
        _labels_requested(env)  # automation's first tick, before any study
        first = sensor_tick(env)  # nothing in incoming/, but a server: catalogue (and retrieve)
        assert isinstance(first, dg.RunRequest) and first.job_name == "catalog_and_template_job"
        metadata = (
            materialize_catalog(env).asset_materializations_for_node("dicom_catalog")[0].metadata
        )
        assert metadata["dicomweb_server"].value == server.dicomweb_url
        assert metadata["dicomweb_sync"].value["retrieved"] == 2

        catalog = read_catalog(pipeline.paths().catalog_path)
        server_keys = set(catalog[catalog["source"] == "dicomweb"]["partition_key"])
        assert isinstance(sensor_tick(env), dg.SkipReason) and len(server_keys) == 2
        assert _labels_requested(env) == server_keys

        # A study that arrives later on the server: a catalog run retrieves it, then it is
        # labelled with the others.
        server.upload([SAMPLE_DATA / "archive/2026-07/study_0105/IM0001.dcm"])
        third = sensor_tick(env)
        assert isinstance(third, dg.RunRequest) and third.run_key.startswith("dicomweb-")
        materialize_catalog(env)
        catalog = read_catalog(pipeline.paths().catalog_path)
        keys = set(catalog[catalog["source"] == "dicomweb"]["partition_key"])
        # Only the new one: the two others were requested before (and are in progress or done).
        assert len(keys) == 3 and _labels_requested(env) == keys - server_keys
