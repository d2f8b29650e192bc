"""Declarative automation (``defs/labels/schedules.py``) evaluated with Dagster's own tester on
the code location's definitions: new incoming studies are requested, archive ones and fresh ones
are not, a study whose files changed is, a template change with a new data version makes every
incoming study stale (the same version makes none), and the nightly pass fires at 02:00."""

import datetime
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pandas as pd
import pytest
from dagster._core.definitions.automation_tick_evaluation_context import (
    build_run_requests_with_backfill_policies,
)
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.definitions.partitions.context import partition_loading_context

from labeling_pipeline.definitions import defs
from labeling_pipeline.defs.ingestion.partitions import STUDIES_PARTITION_NAME
from labeling_pipeline.defs.labels.assets import STUDY_ASSET_SPECS
from labeling_pipeline.defs.settings import DATA_DIR_ENV, OUTPUT_DIR_ENV
from labeling_pipeline.labels.catalog import read_catalog
from labeling_pipeline_tests.defs.helpers import generated_studies, materialize_catalog

LABELS = dg.AssetKey("label_dataset")
STUDY_ASSETS = [spec.key for spec in STUDY_ASSET_SPECS]
DAY = datetime.datetime(2026, 9, 5, 10, 0, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def source_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four generated studies: three in incoming/, one moved to archive/."""
    return generated_studies(tmp_path_factory.mktemp("automation"), 4, 11, "case_0001")


@pytest.fixture
def env(env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    # The code location reads the same variables (the assets read the catalog there).
    monkeypatch.setenv(DATA_DIR_ENV, str(env.data))
    monkeypatch.setenv(OUTPUT_DIR_ENV, str(env.out))
    return env


def _tick(env: SimpleNamespace, when: datetime.datetime = DAY):
    result = dg.evaluate_automation_conditions(
        defs=defs, instance=env.instance, cursor=env.cursor, evaluation_time=when
    )
    env.cursor = result.cursor
    return result


def _requested(result, key: dg.AssetKey = LABELS) -> set[str]:
    return set(result.get_requested_partitions(key))


def _catalog(env: SimpleNamespace) -> dict[str, set[str]]:
    materialize_catalog(env)
    catalog = read_catalog(env.out / "catalog.parquet")
    studies = {
        source: set(catalog[catalog["source"] == source]["partition_key"])
        for source in ("incoming", "archive")
    }
    for source, keys in studies.items():  # the key names the folder
        assert all(key.startswith(f"{source}-") for key in keys), keys
    return studies


def _template(env: SimpleNamespace, version: str) -> None:
    env.instance.report_runless_asset_event(
        dg.AssetMaterialization("template_reference", tags={"dagster/data_version": version})
    )


def _labelled(env: SimpleNamespace, keys: set[str]) -> None:
    """What a label run records: the three study assets of each study."""
    for key in sorted(keys):
        for asset_key in STUDY_ASSETS:
            env.instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key, partition=key)
            )


def test_new_incoming_studies_are_labelled_archive_ones_are_not(env: SimpleNamespace) -> None:
    _template(env, "t1")
    assert _requested(_tick(env)) == set()  # nothing catalogued yet
    studies = _catalog(env)
    assert len(studies["incoming"]) == 3 and len(studies["archive"]) == 1

    result = _tick(env)
    assert _requested(result) == studies["incoming"]
    # The three study assets of the one step are requested together.
    for key in STUDY_ASSETS:
        assert _requested(result, key) == studies["incoming"]
    # Curated labels and SRs of the same studies follow in the same request.
    assert _requested(result, dg.AssetKey("curated_labels")) == studies["incoming"]
    # SRs are stored on a server only with LABELING_DICOMWEB_STORE=1: not asked for here.
    assert _requested(result, dg.AssetKey("pacs_structured_reports")) == set()

    # One batch, not one run per study: the incoming studies were registered together after
    # the archive's, so they are one range of keys for the backfill policy.
    with partition_loading_context(dynamic_partitions_store=env.instance):
        runs = build_run_requests_with_backfill_policies(
            [AssetKeyPartitionKey(LABELS, key) for key in studies["incoming"]],
            defs.resolve_asset_graph(),
            env.instance,
        )
    assert len(runs) == 1
    ordered = env.instance.get_dynamic_partitions(STUDIES_PARTITION_NAME)
    assert set(ordered[-3:]) == studies["incoming"]

    # Labelled now: nothing is requested again.
    _labelled(env, studies["incoming"])
    assert _requested(_tick(env)) == set()


def test_the_template_reference_is_made_first_then_the_new_studies(env: SimpleNamespace) -> None:
    template = dg.AssetKey("template_reference")
    assert _tick(env).get_num_requested(template) == 1  # a new instance: missing
    studies = _catalog(env)
    # Without a template reference a label run could only fail: the new studies wait...
    assert _requested(_tick(env)) == set()
    _template(env, "t1")
    result = _tick(env)
    assert _requested(result) == studies["incoming"]  # ...and are requested once it is made
    assert result.get_num_requested(template) == 0


def test_a_study_whose_files_changed_is_labelled_again(env: SimpleNamespace) -> None:
    _template(env, "t1")
    _tick(env)
    studies = _catalog(env)
    _labelled(env, studies["incoming"])
    _tick(env)
    assert _requested(_tick(env)) == set()

    # A file added to one incoming study: the catalog records a new version of its files.
    study_dir = next((env.data / "incoming").iterdir())
    source_file = next(p for p in sorted(study_dir.rglob("*")) if p.is_file())
    shutil.copy(source_file, source_file.with_name("copy_" + source_file.name))
    before = read_catalog(env.out / "catalog.parquet")
    _catalog(env)
    after = read_catalog(env.out / "catalog.parquet")
    changed = {
        key
        for key in studies["incoming"]
        if len(after[after["partition_key"] == key]) != len(before[before["partition_key"] == key])
    }
    assert len(changed) == 1
    assert _requested(_tick(env)) == changed
    _labelled(env, changed)
    assert _requested(_tick(env)) == set()


def test_template_change_makes_incoming_studies_stale_same_version_does_not(
    env: SimpleNamespace,
) -> None:
    _template(env, "t1")
    _tick(env)
    studies = _catalog(env)
    _labelled(env, studies["incoming"])
    _tick(env)

    _template(env, "t1")  # made again from the same template, domain and model
    assert _requested(_tick(env)) == set()
    _template(env, "t2")  # the template changed
    assert _requested(_tick(env)) == studies["incoming"]  # the archive waits for a backfill


def test_nightly_pass_refreshes_catalog_and_template_at_its_tick(env: SimpleNamespace) -> None:
    _template(env, "t1")
    _catalog(env)
    catalog_and_template = {dg.AssetKey("dicom_catalog"), dg.AssetKey("template_reference")}
    evening = datetime.datetime(2026, 9, 5, 23, 0, tzinfo=datetime.UTC)
    _tick(env, evening)
    assert _tick(env, evening + datetime.timedelta(hours=2)).total_requested == 0  # 01:00
    night = _tick(env, evening + datetime.timedelta(hours=3, minutes=1))  # 02:01
    assert {key for key in catalog_and_template if night.get_num_requested(key)} == (
        catalog_and_template
    )
    later = _tick(env, evening + datetime.timedelta(hours=3, minutes=2))
    assert not any(later.get_num_requested(key) for key in catalog_and_template)


def test_the_source_is_read_from_the_key_alone(env: SimpleNamespace) -> None:
    """No catalog on disk: the condition decides from the keys. Keys of the old format
    (``YYYYMMDD-<8 hex>``, left in an instance made before) are never requested."""
    _template(env, "t1")
    _tick(env)
    keys = {
        "incoming": "incoming-20260901-aaaaaaaa",
        "dicomweb": "dicomweb-20260902-bbbbbbbb",
        "archive": "archive-20260903-cccccccc",
        "legacy": "20260904-dddddddd",
    }
    env.instance.add_dynamic_partitions(STUDIES_PARTITION_NAME, sorted(keys.values()))
    for key in keys.values():  # what dicom_catalog records of each study's files
        env.instance.report_runless_asset_event(
            dg.AssetObservation("study_files", partition=key, tags={"dagster/data_version": key})
        )
    assert not (env.out / "catalog.parquet").exists()
    assert _requested(_tick(env)) == {keys["incoming"], keys["dicomweb"]}


def _label_file(env: SimpleNamespace, key: str, statuses: list[str], modified_s: float) -> None:
    """The label file a run writes, as far as the retry condition reads it."""
    labels = env.out / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    path = labels / f"{key}.parquet"
    pd.DataFrame({"status": statuses}).to_parquet(path)
    os.utime(path, (modified_s, modified_s))


def test_still_flagged_studies_are_labelled_again_once_the_review_bank_changes(
    env: SimpleNamespace,
) -> None:
    _template(env, "t1")
    _tick(env)
    studies = _catalog(env)
    _labelled(env, studies["incoming"])
    flagged, *clean = sorted(studies["incoming"])
    _label_file(env, flagged, ["ok", "needs_review"], 1000)
    for key in clean:
        _label_file(env, key, ["ok", "ok"], 1000)
    _tick(env)
    assert _requested(_tick(env)) == set()

    # A reviewer finishes an image: the bank gains an entry.
    entry = env.out / "template_bank" / "reviewed-0123"
    entry.mkdir(parents=True)
    (entry / "landmarks.json").write_text("{}")
    assert _requested(_tick(env)) == {flagged}  # only the study still left for review

    # Labelled again with the bank (its file rewritten): not asked again, even if still flagged.
    _labelled(env, {flagged})
    _label_file(env, flagged, ["ok", "needs_review"], time.time() + 10)
    _tick(env)
    assert _requested(_tick(env)) == set()
