"""Shared wiring of the command-line tests: a Dagster home of their own."""

import shutil
from pathlib import Path

import pytest

from labeling_pipeline.cli import (
    PROJECT_ROOT,
)
from labeling_pipeline.defs.settings import DATA_DIR_ENV, OUTPUT_DIR_ENV


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Dagster home with the repository's dagster.yaml (storage under its .dagster/)."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name in (DATA_DIR_ENV, OUTPUT_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    return home
