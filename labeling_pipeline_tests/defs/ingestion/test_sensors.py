"""new_study_sensor: a catalog run when incoming/ changes, partitions the instance lost registered
again; labelling is left to declarative automation (``defs/labels/test_automation.py``)."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pandas as pd
import pytest

from labeling_pipeline.defs.ingestion.partitions import SOURCE_ORDER, STUDIES_PARTITION_NAME
from labeling_pipeline.labels.catalog import read_catalog
from labeling_pipeline_tests.defs.helpers import generated_studies, materialize_catalog, sensor_tick


@pytest.fixture(scope="module")
def source_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three generated studies: two in incoming/, one moved to archive/."""
    return generated_studies(tmp_path_factory.mktemp("sensor"), 3, 4, "case_0002")


def test_empty_incoming_is_skipped(env: SimpleNamespace) -> None:
    shutil.rmtree(env.data / "incoming")
    assert isinstance(sensor_tick(env), dg.SkipReason)


def test_new_files_ask_for_a_catalog_run_once_per_listing(env: SimpleNamespace) -> None:
    first = sensor_tick(env)
    assert isinstance(first, dg.RunRequest)
    assert first.job_name == "catalog_and_template_job"
    # Only the catalog: the template reference (which loads the model) is not made per new file.
    assert first.asset_selection == [dg.AssetKey("dicom_catalog")]
    assert (
        sensor_tick(env).run_key == first.run_key
    )  # the same listing, the same (deduplicated) key
    (env.data / "incoming" / "extra.txt").write_text("new file")
    assert sensor_tick(env).run_key != first.run_key


def test_current_catalog_registers_lost_partitions_and_requests_no_label_run(
    env: SimpleNamespace,
) -> None:
    materialize_catalog(env)
    catalog = read_catalog(Path(env.pipeline.output_dir) / "catalog.parquet")
    incoming = sorted(set(catalog[catalog["source"] == "incoming"]["partition_key"]))
    archived = set(catalog[catalog["source"] == "archive"]["partition_key"])
    assert len(incoming) == 2 and len(archived) == 1
    assert isinstance(sensor_tick(env), dg.SkipReason)  # current: automation labels what is new

    # A partition lost from the instance is registered again by the sensor.
    env.instance.delete_dynamic_partition(STUDIES_PARTITION_NAME, incoming[0])
    result = sensor_tick(env)
    assert isinstance(result, dg.SensorResult) and not result.run_requests
    [add] = result.dynamic_partitions_requests
    assert list(add.partition_keys) == [incoming[0]]


def test_catalog_registers_each_source_together_and_says_how_to_select_it(
    env: SimpleNamespace,
) -> None:
    metadata = materialize_catalog(env).asset_materializations_for_node("dicom_catalog")[0].metadata
    catalog = read_catalog(Path(env.pipeline.output_dir) / "catalog.parquet")
    ordered = env.instance.get_dynamic_partitions(STUDIES_PARTITION_NAME)
    by_source = {
        source: set(catalog[catalog["source"] == source]["partition_key"])
        for source in ("incoming", "archive")
    }
    # Archive first, then incoming: each source one contiguous range of the instance's order.
    assert set(ordered[:1]) == by_source["archive"] and set(ordered[1:]) == by_source["incoming"]
    assert metadata["archive_partitions"].value == ordered[0]
    assert metadata["incoming_partitions"].value == f"[{ordered[1]}...{ordered[2]}]"
    assert set(SOURCE_ORDER) == {"archive", "incoming", "dicomweb"}
    assert metadata["dicomweb_partitions"].value == "none"


def test_a_study_moved_to_the_archive_retires_its_old_key_and_outputs(env: SimpleNamespace) -> None:
    materialize_catalog(env)
    catalog = read_catalog(env.pipeline.paths().catalog_path)
    moved_dir = env.data / "incoming" / "case_0001"
    old_key = catalog[catalog["path"].str.startswith("incoming/case_0001/")]["partition_key"].iloc[
        0
    ]
    assert old_key.startswith("incoming-")
    # What a label run left for it (the label dataset reads every file of labels/ as one table).
    paths = env.pipeline.paths()
    for folder in (paths.labels_dir, paths.curated_dir):
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"partition_key": [old_key]}).to_parquet(folder / f"{old_key}.parquet")

    shutil.move(moved_dir, env.data / "archive" / "case_0001")
    result = materialize_catalog(env)
    new_key = "archive-" + old_key.split("-", 1)[1]
    partitions = set(env.instance.get_dynamic_partitions(STUDIES_PARTITION_NAME))
    assert new_key in partitions and old_key not in partitions
    assert not (paths.labels_dir / f"{old_key}.parquet").exists()
    assert not (paths.curated_dir / f"{old_key}.parquet").exists()
    [materialization] = result.asset_materializations_for_node("dicom_catalog")
    assert materialization.metadata["moved_studies_old_keys_retired"].value == 1
