"""Reading LABELING_DATA_DIR / LABELING_OUTPUT_DIR: explicit values win, then the environment,
then the CONTRACT's defaults."""

from pathlib import Path

import pytest

from labeling_pipeline.defs.settings import (
    DATA_DIR_ENV,
    OUTPUT_DIR_ENV,
    PipelinePaths,
    resolve_setting,
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.delenv(OUTPUT_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_are_relative_to_the_working_directory(clean_env: Path) -> None:
    paths = PipelinePaths.resolve()
    assert paths.data_dir == clean_env.resolve() / "data"
    assert paths.output_dir == clean_env.resolve() / "data" / "outputs"


def test_environment_overrides_defaults(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, "in")
    monkeypatch.setenv(OUTPUT_DIR_ENV, str(clean_env / "elsewhere"))
    paths = PipelinePaths.resolve()
    assert paths.data_dir == clean_env.resolve() / "in"
    assert paths.output_dir == clean_env / "elsewhere"


def test_explicit_values_override_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, "from_env")
    paths = PipelinePaths.resolve(data_dir="from_option", output_dir="out")
    assert paths.data_dir.name == "from_option"
    assert paths.output_dir.name == "out"


def test_blank_values_count_as_unset(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, "  ")
    assert resolve_setting("", DATA_DIR_ENV, "data") == "data"


def test_layout_follows_the_contract(tmp_path: Path) -> None:
    paths = PipelinePaths(tmp_path / "d", tmp_path / "o")
    assert paths.incoming_dir == tmp_path / "d" / "incoming"
    assert paths.archive_dir == tmp_path / "d" / "archive"
    assert paths.template_image == tmp_path / "d" / "template" / "template.dcm"
    assert paths.template_landmarks == tmp_path / "d" / "template" / "landmarks.json"
    assert paths.domain_dir == tmp_path / "d" / "domain"
    assert paths.catalog_path == tmp_path / "o" / "catalog.parquet"
    assert paths.features_path == tmp_path / "o" / "features.zarr"
    assert paths.labels_dir == tmp_path / "o" / "labels"
    assert paths.overlays_dir == tmp_path / "o" / "overlays"
