"""Fixtures shared across the test packages."""

import shutil
from pathlib import Path

import pytest

from labeling_pipeline.cli import PROJECT_ROOT
from labeling_pipeline.defs.settings import DATA_DIR_ENV, OUTPUT_DIR_ENV
from labeling_pipeline_tests.reviewable import ReviewableOutputs, build_reviewable_outputs


@pytest.fixture
def reviewable(tmp_path: Path) -> ReviewableOutputs:
    """Two labelled phantom studies with flagged landmarks (see ``reviewable.py``)."""
    return build_reviewable_outputs(tmp_path)


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Dagster home with the repository's dagster.yaml (storage under its .dagster/), for
    tests that run the command line."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name in (DATA_DIR_ENV, OUTPUT_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    return home
