"""Resources read the LABELING_* variables when used, and the IO manager keeps one file per
asset partition under the output directory."""

import pickle
from pathlib import Path

import dagster as dg
import pytest

from labeling_pipeline.defs.ingestion.partitions import studies_partitions
from labeling_pipeline.defs.resources import (
    FeatureModelResource,
    IntermediateIOManager,
    PipelineResource,
)
from labeling_pipeline.defs.settings import (
    DATA_DIR_ENV,
    FEATURE_MODEL_ENV,
    FEATURE_WEIGHTS_ENV,
    OUTPUT_DIR_ENV,
    STRATEGY_ENV,
)


def test_unset_fields_follow_the_environment_at_use_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = PipelineResource()  # built before the variables are set, as at import time
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "d"))
    monkeypatch.setenv(OUTPUT_DIR_ENV, str(tmp_path / "o"))
    monkeypatch.setenv(STRATEGY_ENV, "ordered")
    assert config.paths().data_dir == tmp_path / "d"
    assert config.paths().output_dir == tmp_path / "o"
    assert config.strategy() == "ordered"
    explicit = PipelineResource(data_dir=str(tmp_path / "x"), localization_strategy="plain")
    assert explicit.paths().data_dir == tmp_path / "x"
    assert explicit.strategy() == "plain"


def test_feature_model_defaults_to_the_bundled_cnn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FEATURE_MODEL_ENV, raising=False)
    monkeypatch.delenv(FEATURE_WEIGHTS_ENV, raising=False)
    assert FeatureModelResource().model_name() == "efficientnet-lite0"
    assert FeatureModelResource().weights_name() is None
    monkeypatch.setenv(FEATURE_MODEL_ENV, "open_clip:ViT-B-16")
    monkeypatch.setenv(FEATURE_WEIGHTS_ENV, "openai")
    assert FeatureModelResource().model_name() == "open_clip:ViT-B-16"
    assert FeatureModelResource().weights_name() == "openai"


def test_extractor_is_loaded_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FEATURE_WEIGHTS_ENV, raising=False)
    first = FeatureModelResource(model="efficientnet-lite0").extractor()
    assert FeatureModelResource(model="efficientnet-lite0").extractor() is first


def _manager(tmp_path: Path) -> IntermediateIOManager:
    return IntermediateIOManager(pipeline=PipelineResource(output_dir=str(tmp_path)))


def _output(asset: str, run_id: str, instance: dg.DagsterInstance, partition: str | None = None):
    # Only partitioned contexts need the instance (dynamic partitions).
    if partition is None:
        return dg.build_output_context(asset_key=asset, run_id=run_id)
    return dg.build_output_context(
        asset_key=asset,
        run_id=run_id,
        partition_key=partition,
        asset_partitions_def=studies_partitions,
        instance=instance,
    )


def _input(asset: str, upstream: dg.OutputContext | None, instance, partition: str | None = None):
    if partition is None:
        return dg.build_input_context(asset_key=asset, upstream_output=upstream)
    return dg.build_input_context(
        asset_key=asset,
        upstream_output=upstream,
        partition_key=partition,
        asset_partitions_def=studies_partitions,
        instance=instance,
    )


def test_io_manager_keeps_one_value_per_run_and_reads_its_own_runs(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    key = "incoming-20260901-aaaaaaaa"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(studies_partitions.name, [key])
        mine, theirs = (
            _output("template_reference", "run-a", instance),
            _output("template_reference", "run-b", instance),
        )
        manager.handle_output(mine, {"reference": "A"})
        manager.handle_output(theirs, {"reference": "B"})  # another run, same output directory
        part = _output("pixel_features", "run-a", instance, key)
        manager.handle_output(part, ["study value"])
        stored = tmp_path / ".dagster_io" / "pixel_features" / key / "run-a.pkl"
        assert pickle.loads(stored.read_bytes()) == ["study value"]
        assert not list(stored.parent.glob(".*.tmp"))  # no temporary file left behind

        # Each run reads the value it made itself, never the other run's.
        assert manager.load_input(_input("template_reference", mine, instance)) == {
            "reference": "A"
        }
        assert manager.load_input(_input("template_reference", theirs, instance)) == {
            "reference": "B"
        }
        assert manager.load_input(_input("pixel_features", part, instance, key)) == ["study value"]


def test_io_manager_names_what_to_materialize_when_a_value_is_missing(tmp_path: Path) -> None:
    with pytest.raises(dg.Failure, match="template_reference has not been materialized"):
        _manager(tmp_path).load_input(dg.build_input_context(asset_key="template_reference"))


def test_io_manager_asks_to_rematerialize_a_value_it_cannot_read(tmp_path: Path) -> None:
    stored = tmp_path / ".dagster_io" / "template_reference" / "__all__" / "run-a.pkl"
    stored.parent.mkdir(parents=True)
    # A pickle of a class that no longer exists where it was (a type moved between versions).
    stored.write_bytes(
        pickle.dumps(IntermediateIOManager).replace(b"IntermediateIOManager", b"GoneAwayManager1")
    )
    upstream = dg.build_output_context(asset_key="template_reference", run_id="run-a")
    context = dg.build_input_context(asset_key="template_reference", upstream_output=upstream)
    with pytest.raises(dg.Failure, match="cannot be read by this version.*materialize it again"):
        _manager(tmp_path).load_input(context)


def test_reference_context_comes_from_config_then_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from labeling_pipeline.defs.resources import PipelineResource
    from labeling_pipeline.localization.reference import ReferenceSettings

    monkeypatch.delenv("LABELING_CONTEXT_MM", raising=False)
    assert PipelineResource().reference_settings() == ReferenceSettings()
    monkeypatch.setenv("LABELING_CONTEXT_MM", "32")
    assert PipelineResource().reference_settings().context_mm == 32.0
    assert PipelineResource(reference_context_mm=16.0).reference_settings().context_mm == 16.0
    monkeypatch.setenv("LABELING_CONTEXT_MM", "wide")
    with pytest.raises(ValueError, match="LABELING_CONTEXT_MM"):
        PipelineResource().reference_settings()
    monkeypatch.setenv("LABELING_CONTEXT_MM", "-4")
    with pytest.raises(ValueError, match="positive"):
        PipelineResource().reference_settings()
