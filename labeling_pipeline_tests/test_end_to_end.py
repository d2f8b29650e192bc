"""The whole asset graph on generated studies: catalog, features, template, localization, labels,
checks and overlays, with the bundled EfficientNet-Lite0 on CPU.

Three small phantoms (a single frame, a 5-slice series, a 5-frame file) and one file that is
not DICOM; the three studies are labelled in one batched run (a range of partition keys), as
``labeling-pipeline run`` and backfills do.
"""

import json
import math
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import numpy as np
import pandas as pd
import pydicom
import pytest

from labeling_pipeline.defs.ingestion.assets import dicom_catalog, study_files
from labeling_pipeline.defs.ingestion.partitions import STUDIES_PARTITION_NAME, range_tags
from labeling_pipeline.defs.labels.assets import label_studies
from labeling_pipeline.defs.labels.checks import (
    landmark_spacing_within_domain,
    one_row_per_landmark,
)
from labeling_pipeline.defs.resources import (
    CatalogIOManager,
    FeatureModelResource,
    IntermediateIOManager,
    PipelineResource,
)
from labeling_pipeline.defs.template.assets import template_reference
from labeling_pipeline.defs.template.bank import template_bank
from labeling_pipeline.features.store import FeatureStore
from labeling_pipeline.labels.schema import CONTRACT_COLUMNS
from labeling_pipeline.localization.evaluation import match_truth_by_series
from labeling_pipeline.localization.template import load_template_landmarks
from labeling_pipeline.review.workspace import ReviewWorkspace
from labeling_pipeline.synthetic.sample_data import build_dataset

pytestmark = pytest.mark.slow

ALL = [
    dicom_catalog,
    study_files,
    template_reference,
    label_studies,
    landmark_spacing_within_domain,
    one_row_per_landmark,
]
PREPARE = [dicom_catalog, template_reference]
LABEL = [label_studies, landmark_spacing_within_domain, one_row_per_landmark]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SEED = 2  # a seed whose three phantoms are all well inside the template's variation


def _resources(data: Path, output: Path) -> dict:
    pipeline = PipelineResource(data_dir=str(data), output_dir=str(output))
    return {
        "pipeline": pipeline,
        "feature_model": FeatureModelResource(model="efficientnet-lite0"),
        "io_manager": IntermediateIOManager(pipeline=pipeline),
        "catalog_io_manager": CatalogIOManager(pipeline=pipeline),
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("e2e")
    data, output = root / "data", root / "outputs"
    truth = build_dataset(data, 3, SEED, layouts=("single", "series", "multiframe"))
    (data / "incoming" / "notes").mkdir()
    (data / "incoming" / "notes" / "readme.txt").write_text("not a DICOM file\n")
    resources = _resources(data, output)
    with dg.instance_for_test() as instance:
        prepare = dg.materialize(
            ALL, instance=instance, resources=resources, selection=PREPARE, run_config=QUIET
        )
        keys = instance.get_dynamic_partitions(STUDIES_PARTITION_NAME)
        batch = dg.materialize(
            ALL,
            instance=instance,
            resources=resources,
            selection=LABEL,
            run_config=QUIET,
            tags=range_tags(keys),
        )
        # A series may be labelled on another slice than the one its truth was drawn on: match
        # the truth to the labelled images by series.
        catalog = pd.read_parquet(output / "catalog.parquet")
        labelled = catalog[catalog["outcome"] == "labelled"]
        matched = match_truth_by_series(
            truth, zip(labelled["sop_instance_uid"], labelled["series_uid"], strict=True)
        )
        assert sorted(e["truth_sop_instance_uid"] for e in matched.values()) == sorted(truth)
        yield SimpleNamespace(
            data=data,
            output=output,
            truth=matched,
            instance=instance,
            resources=resources,
            prepare=prepare,
            keys=keys,
            batch=batch,
        )


def _input_files(data: Path) -> list[str]:
    files = []
    for source in ("incoming", "archive"):
        for directory, _, names in os.walk(data / source):
            files += [(Path(directory) / n).relative_to(data).as_posix() for n in names]
    return sorted(files)


def test_every_run_succeeds(run: SimpleNamespace) -> None:
    assert run.prepare.success
    assert len(run.keys) == 3
    assert run.batch.success


def test_catalog_lists_every_file_with_its_outcome(run: SimpleNamespace) -> None:
    catalog = pd.read_parquet(run.output / "catalog.parquet")
    assert sorted(catalog["path"]) == _input_files(run.data)
    junk = catalog[catalog["path"] == "incoming/notes/readme.txt"].iloc[0]
    assert junk["outcome"] == "rejected" and junk["reason_code"] == "not_dicom"
    labelled = catalog[catalog["outcome"] == "labelled"]
    assert sorted(labelled["sop_instance_uid"]) == sorted(run.truth)
    assert sorted(set(labelled["partition_key"])) == sorted(run.keys)


def test_labels_have_one_row_per_landmark_per_labelled_image(run: SimpleNamespace) -> None:
    labels = pd.read_parquet(run.output / "labels")
    template = load_template_landmarks(run.data / "template" / "landmarks.json")
    assert set(CONTRACT_COLUMNS) <= set(labels.columns)
    assert len(labels) == len(run.truth) * len(template.landmarks)
    assert set(labels["sop_instance_uid"]) == set(run.truth)
    assert (labels.groupby(["sop_instance_uid", "landmark"]).size() == 1).all()
    assert (labels["slice_choice"] != "").all()  # why that slice of its series
    assert set(labels["template"]) == {"default"}  # one template, no review bank yet
    assert set(labels["landmark"]) == set(template.names())
    assert set(labels["status"]) <= {"ok", "needs_review"}
    ok = labels[labels["status"] == "ok"]
    assert ok["x"].notna().all() and ok["y"].notna().all()
    assert np.allclose(ok["x_mm"], ok["x"] * ok["pixel_spacing_col_mm"])


def test_located_landmarks_are_near_the_truth(run: SimpleNamespace) -> None:
    """x = column, y = row all the way from DICOM to Parquet: ok labels lie on the phantom's
    true landmarks (a transposed or mis-scaled coordinate would be tens of mm off)."""
    labels = pd.read_parquet(run.output / "labels")
    errors = []
    for row in labels[labels["status"] == "ok"].itertuples():
        case = run.truth[row.sop_instance_uid]
        true = case["landmarks"].get(row.landmark)
        if true is not None:
            errors.append(math.hypot(row.x - true["x"], row.y - true["y"]) * case["spacing"])
    assert len(errors) >= len(labels) // 2
    assert float(np.median(errors)) < 5.0, errors


def test_label_checks_pass_for_every_study(run: SimpleNamespace) -> None:
    evaluations = run.batch.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == {
        "landmark_spacing_within_domain",
        "one_row_per_landmark",
    }
    assert all(e.passed for e in evaluations), [e.description for e in evaluations]
    for evaluation in evaluations:
        assert evaluation.metadata["studies_checked"].value == len(run.keys)
        assert evaluation.metadata["studies"].value == {}


def test_one_run_labels_the_batch_with_metadata_per_study(run: SimpleNamespace) -> None:
    events = [
        e
        for e in run.batch.asset_materializations_for_node("label_studies")
        if e.asset_key == dg.AssetKey("label_dataset")
    ]
    assert sorted(e.partition for e in events) == sorted(run.keys)  # one per study
    # Recorded once per study of the batch: the per-study table only where it is read.
    for asset in ("pixel_features", "vertebra_localization"):
        [other] = [
            e
            for e in run.batch.asset_materializations_for_node("label_studies")
            if e.asset_key == dg.AssetKey(asset) and e.partition == events[0].partition
        ]
        assert "studies" not in other.metadata
        assert other.metadata["studies_in_run"].value == len(run.keys)
    studies = events[0].metadata["studies"].value
    assert sorted(studies) == sorted(run.keys)
    assert sum(s["images"] for s in studies.values()) == len(run.truth)
    catalog = pd.read_parquet(run.output / "catalog.parquet")
    for key, study in studies.items():
        assert study["images"] == int((catalog["partition_key"] == key).sum()) - int(
            ((catalog["partition_key"] == key) & (catalog["outcome"] != "labelled")).sum()
        )
    # Values stay in the files the assets write: nothing pickled for the study assets.
    pickled = run.output / ".dagster_io"
    names = {p.name for p in pickled.iterdir()} if pickled.is_dir() else set()
    assert not names & {"pixel_features", "vertebra_localization", "label_dataset"}


def test_overlays_and_features_are_written(run: SimpleNamespace) -> None:
    for sop in run.truth:
        assert (run.output / "overlays" / f"{sop}.png").stat().st_size > 0
    store = FeatureStore(run.output / "features.zarr")
    assert sorted(store.partition_keys()) == sorted(run.keys)
    assert sorted(k for key in run.keys for k in store.image_keys(key)) == sorted(run.truth)


def test_outputs_hold_no_patient_data(run: SimpleNamespace) -> None:
    first = run.data / run.truth[next(iter(run.truth))]["file"]
    header = pydicom.dcmread(first, stop_before_pixels=True)
    secrets = {str(header.PatientID), str(header.PatientName)} - {""}
    assert secrets
    texts = [
        pd.read_parquet(run.output / "labels").to_csv(),
        pd.read_parquet(run.output / "catalog.parquet").to_csv(),
    ]
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_materializations_are_recorded_per_partition(run: SimpleNamespace) -> None:
    for name in ("pixel_features", "vertebra_localization", "label_dataset"):
        materialized = run.instance.get_materialized_partitions(dg.AssetKey(name))
        assert set(materialized) == set(run.keys), name
    event = run.instance.get_latest_materialization_event(dg.AssetKey("dicom_catalog"))
    metadata = event.asset_materialization.metadata
    assert metadata["files"].value == len(_input_files(run.data))
    assert metadata["rejected_files"].value == 1


def test_rerunning_a_study_reuses_features_and_rewrites_identical_labels(
    run: SimpleNamespace,
) -> None:
    key = run.keys[0]
    labels_file = run.output / "labels" / f"{key}.parquet"
    before = labels_file.read_bytes()
    again = dg.materialize(
        ALL,
        instance=run.instance,
        resources=run.resources,
        partition_key=key,
        selection=LABEL,
        run_config=QUIET,
    )
    assert again.success
    [features_event] = [
        e
        for e in again.asset_materializations_for_node("label_studies")
        if e.asset_key == dg.AssetKey("pixel_features")
    ]
    assert features_event.partition == key
    assert features_event.metadata["computed"].value == 0
    assert features_event.metadata["reused"].value == features_event.metadata["images_in_run"].value
    assert labels_file.read_bytes() == before
    assert json.loads(json.dumps(sorted(os.listdir(run.output / "labels")))) == sorted(
        f"{k}.parquet" for k in run.keys
    )


def _stale(run: SimpleNamespace, asset: str) -> dict[str, str]:
    """Each study's stale status of ``asset`` as the UI computes it ("Unsynced" = STALE)."""
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._core.loader import LoadingContextForTest

    graph = dg.Definitions(assets=ALL, resources=run.resources).resolve_asset_graph()
    resolver = CachingStaleStatusResolver(run.instance, graph, LoadingContextForTest(run.instance))
    keys = run.instance.get_dynamic_partitions(STUDIES_PARTITION_NAME)
    return {key: resolver.get_status(dg.AssetKey(asset), key).value for key in keys}


def test_only_new_studies_and_template_changes_make_labels_stale(run: SimpleNamespace) -> None:
    """Runs last: it adds a study and changes the template."""
    assert set(_stale(run, "label_dataset").values()) == {"FRESH"}
    # The catalog and template reference made again from unchanged files: nothing is stale.
    again = dg.materialize(
        ALL, instance=run.instance, resources=run.resources, selection=PREPARE, run_config=QUIET
    )
    assert again.success
    assert set(_stale(run, "label_dataset").values()) == {"FRESH"}

    # A new study arrives: it is missing, every other study stays current.
    extra = run.data.parent / "extra"
    build_dataset(extra, 1, SEED + 1, layouts=("single",))
    (extra / "incoming").rename(run.data / "incoming" / "new_site")
    dg.materialize(
        ALL,
        instance=run.instance,
        resources=run.resources,
        selection=[dicom_catalog],
        run_config=QUIET,
    )
    statuses = _stale(run, "label_dataset")
    new = [key for key in statuses if key not in run.keys]
    assert len(new) == 1 and statuses[new[0]] == "MISSING"
    assert {statuses[key] for key in run.keys} == {"FRESH"}

    # A reviewed image joins the review bank: no labelled study becomes stale, and a study
    # labelled again reads the bank (and keeps its labels where the default placed everything).
    workspace = ReviewWorkspace(run.data, run.output)
    sop = sorted(run.truth)[0]
    rows = workspace.image_rows(sop).to_dict("records")
    first = next(row for row in rows if row["landmark"] in run.truth[sop]["landmarks"])
    true = run.truth[sop]["landmarks"][first["landmark"]]
    workspace.record(
        sop,
        "tester",
        [
            {"landmark": first["landmark"], "action": "move", "x": true["x"], "y": true["y"]},
            *(
                {"landmark": row["landmark"], "action": "not_in_view"}
                for row in rows
                if row["x"] != row["x"]  # not placed: NaN
            ),
            {"action": "accept_all"},
        ],
    )
    banked = dg.materialize(
        [*ALL, template_bank],
        instance=run.instance,
        resources=run.resources,
        selection=[template_bank],
        run_config=QUIET,
    )
    assert banked.success
    [entry] = banked.asset_materializations_for_node("template_bank")[0].metadata["entries"].value
    assert (run.output / "template_bank" / entry / "template.dcm").is_file()
    statuses = _stale(run, "label_dataset")
    assert {statuses[key] for key in run.keys} == {"FRESH"}
    relabelled = dg.materialize(
        ALL,
        instance=run.instance,
        resources=run.resources,
        partition_key=run.keys[0],
        selection=LABEL,
        run_config=QUIET,
    )
    assert relabelled.success
    [localization] = [
        e
        for e in relabelled.asset_materializations_for_node("label_studies")
        if e.asset_key == dg.AssetKey("vertebra_localization")
    ]
    assert localization.metadata["templates"].value == ["default", f"bank/{entry}"]

    # A second template (template/<name>/) is a template change: every labelled study is stale.
    shutil.copytree(run.data / "template", run.data / "template_t2")
    (run.data / "template_t2").rename(run.data / "template" / "t2")
    named = dg.materialize(
        ALL,
        instance=run.instance,
        resources=run.resources,
        selection=[template_reference],
        run_config=QUIET,
    )
    [made] = named.asset_materializations_for_node("template_reference")
    assert made.metadata["templates"].value == ["default", "t2"]
    assert made.metadata["templates_left_out"].value == []
    statuses = _stale(run, "label_dataset")
    assert {statuses[key] for key in run.keys} == {"STALE"}

    # The template changes: every labelled study is stale.
    landmarks_file = run.data / "template" / "landmarks.json"
    landmarks = json.loads(landmarks_file.read_text())
    landmarks["landmarks"][0]["x"] += 2.0
    landmarks_file.write_text(json.dumps(landmarks))
    dg.materialize(
        ALL,
        instance=run.instance,
        resources=run.resources,
        selection=[template_reference],
        run_config=QUIET,
    )
    statuses = _stale(run, "label_dataset")
    assert {statuses[key] for key in run.keys} == {"STALE"}
