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


def test_io_manager_round_trips_partitioned_and_unpartitioned_values(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(studies_partitions.name, ["20260901-aaaaaaaa"])
        whole = dg.build_output_context(asset_key="template_reference")
        manager.handle_output(whole, {"reference": [1, 2, 3]})
        part = dg.build_output_context(
            asset_key="pixel_features",
            partition_key="20260901-aaaaaaaa",
            asset_partitions_def=studies_partitions,
            instance=instance,
        )
        manager.handle_output(part, ["study value"])
        stored = tmp_path / ".dagster_io" / "pixel_features" / "20260901-aaaaaaaa.pkl"
        assert pickle.loads(stored.read_bytes()) == ["study value"]
        assert not list(stored.parent.glob(".*.tmp"))  # no temporary file left behind

        load_whole = dg.build_input_context(asset_key="template_reference")
        assert manager.load_input(load_whole) == {"reference": [1, 2, 3]}
        load_part = dg.build_input_context(
            asset_key="pixel_features",
            partition_key="20260901-aaaaaaaa",
            asset_partitions_def=studies_partitions,
            instance=instance,
        )
        assert manager.load_input(load_part) == ["study value"]


def test_io_manager_names_what_to_materialize_when_a_value_is_missing(tmp_path: Path) -> None:
    with pytest.raises(dg.Failure, match="template_reference has not been materialized"):
        _manager(tmp_path).load_input(dg.build_input_context(asset_key="template_reference"))


def test_io_manager_asks_to_rematerialize_a_value_it_cannot_read(tmp_path: Path) -> None:
    stored = tmp_path / ".dagster_io" / "template_reference" / "__all__.pkl"
    stored.parent.mkdir(parents=True)
    # A pickle of a class that no longer exists where it was (a type moved between versions).
    stored.write_bytes(
        pickle.dumps(IntermediateIOManager).replace(b"IntermediateIOManager", b"GoneAwayManager1")
    )
    with pytest.raises(dg.Failure, match="cannot be read by this version.*materialize it again"):
        _manager(tmp_path).load_input(dg.build_input_context(asset_key="template_reference"))


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
