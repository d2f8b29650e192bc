"""The whole Dagster code location loads, and its asset graph is the one the README describes."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from labeling_pipeline.definitions import defs
from labeling_pipeline.defs.ingestion.partitions import (
    FEATURE_MODEL_POOL,
    STUDIES_PARTITION_NAME,
    STUDIES_PER_RUN,
)

REPO = Path(__file__).resolve().parents[1]

# asset -> (group, partitioned, upstream assets)
EXPECTED_GRAPH = {
    "dicom_catalog": ("ingestion", False, set()),
    "study_files": ("ingestion", True, set()),
    "pixel_features": ("features", True, {"study_files"}),
    "template_reference": ("template", False, set()),
    "vertebra_localization": ("localization", True, {"pixel_features", "template_reference"}),
    "label_dataset": ("labels", True, {"vertebra_localization", "template_reference"}),
    "review_corrections": ("curated", False, set()),
    "curated_labels": (
        "curated",
        True,
        {"label_dataset", "template_reference", "review_corrections"},
    ),
    "qa_report": ("curated", False, {"curated_labels", "template_reference"}),
    # Made from the reviewed labels; the label assets read it at run time, not as an input.
    "template_bank": (
        "template",
        False,
        {"curated_labels", "review_corrections", "template_reference"},
    ),
    "pacs_structured_reports": ("curated", True, {"curated_labels"}),
}


@pytest.fixture(scope="module")
def graph():
    return defs.resolve_asset_graph()


def test_asset_graph_matches_the_data_flow(graph) -> None:
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == set(EXPECTED_GRAPH)
    for name, (group, partitioned, parents) in EXPECTED_GRAPH.items():
        node = graph.get(dg.AssetKey(name))
        assert {p.to_user_string() for p in node.parent_keys} == parents, name
        assert node.group_name == group, name
        if partitioned:
            assert isinstance(node.partitions_def, dg.DynamicPartitionsDefinition), name
            assert node.partitions_def.name == STUDIES_PARTITION_NAME
        else:
            assert node.partitions_def is None, name
    for spec in defs.resolve_all_asset_specs():
        assert spec.description and len(spec.description) > 40, f"{spec.key} needs a description"
        assert spec.kinds, f"{spec.key} needs kinds tags"
        # The UI renders descriptions as Markdown: a bare <name> is taken for an HTML tag and
        # vanishes ("labels/.parquet"); paths with placeholders belong in backticks.
        outside_code = re.sub(r"`[^`]*`", "", spec.description)
        assert not re.search(r"<[A-Za-z_]", outside_code), f"{spec.key}: {spec.description}"


def test_label_checks_cover_the_labels_and_curated_labels(graph) -> None:
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert checks == {
        ("label_dataset", "landmark_spacing_within_domain"),
        ("label_dataset", "one_row_per_landmark"),
        ("label_dataset", "landmarks_need_review"),
        ("curated_labels", "curated_spacing_within_domain"),
        ("curated_labels", "curated_needs_review"),
        ("curated_labels", "curated_dataset_outliers"),
    }


def test_jobs_select_the_two_halves_of_the_graph() -> None:
    prepare = defs.resolve_job_def("catalog_and_template_job")
    label = defs.resolve_job_def("label_study_job")
    assert {k.to_user_string() for k in prepare.asset_layer.executable_asset_keys} == {
        "dicom_catalog",
        "template_reference",
    }
    assert {k.to_user_string() for k in label.asset_layer.executable_asset_keys} == {
        "pixel_features",
        "vertebra_localization",
        "label_dataset",
        "curated_labels",
        "pacs_structured_reports",
    }
    assert label.partitions_def is not None
    assert label.partitions_def.name == STUDIES_PARTITION_NAME
    # The label checks run in the same run as the labels.
    assert {k.name for k in label.asset_layer.asset_graph.asset_check_keys} >= {
        "landmark_spacing_within_domain",
        "one_row_per_landmark",
    }


def test_study_assets_run_in_batches_in_one_step_in_the_model_pool(graph) -> None:
    # Features, localization and labels are one step (values stay in their files); a backfill
    # gives each run up to STUDIES_PER_RUN studies; the step holds the feature_model pool.
    study_assets = ("pixel_features", "vertebra_localization", "label_dataset")
    nodes = [graph.get(dg.AssetKey(name)) for name in study_assets]
    assert {node.assets_def.node_def.name for node in nodes} == {"label_studies"}
    for node in [*nodes, graph.get(dg.AssetKey("curated_labels"))]:
        policy = node.backfill_policy
        assert policy is not None and policy.max_partitions_per_run == STUDIES_PER_RUN
        assert 64 <= STUDIES_PER_RUN <= 256
        assert node.code_version, node.key
    assert nodes[0].assets_def.node_def.pools == {FEATURE_MODEL_POOL}
    assert graph.get(dg.AssetKey("template_reference")).code_version
    # Every run of the location executes in one process (UI and backfill runs too).
    implicit = defs.resolve_implicit_global_asset_job_def()
    assert implicit.executor_def.name == "in_process"


def test_automation_is_defined_and_off_by_default() -> None:
    sensor = defs.resolve_sensor_def("new_study_sensor")
    automation = defs.resolve_sensor_def("label_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert automation.default_status == dg.DefaultSensorStatus.STOPPED
    assert isinstance(automation, dg.AutomationConditionSensorDefinition)
    assert automation.emit_backfills  # many studies: one backfill, batched by the policy
    assert not list(defs.schedules or [])  # the nightly pass is a cron condition now
    graph = defs.resolve_asset_graph()
    conditioned = {
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if graph.get(key).automation_condition is not None
    }
    assert conditioned == {
        "dicom_catalog",
        "template_reference",
        "pixel_features",
        "vertebra_localization",
        "label_dataset",
        "curated_labels",
    }  # pacs_structured_reports too, with LABELING_DICOMWEB_STORE=1 (else never materialized)


def test_resources_cover_every_requirement() -> None:
    assert set(defs.resources or {}) == {
        "pipeline",
        "feature_model",
        "io_manager",
        "catalog_io_manager",
    }
    # Raises when an asset, check, sensor or schedule needs a resource that is not defined.
    dg.Definitions.validate_loadable(defs)


@pytest.mark.slow
def test_dagster_validates_the_workspace(tmp_path: Path) -> None:
    """`dagster definitions validate -w workspace.yaml`, as `make ui` loads the code."""
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    dagster = Path(sys.executable).with_name("dagster")
    completed = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        cwd=tmp_path,  # dagster.yaml's relative .dagster/ storage lands in tmp_path
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Validation successful for code location labeling_pipeline" in output
