"""The Dagster instance the command line records its runs in."""

from pathlib import Path

import pytest

from labeling_pipeline.cli import (
    PROJECT_ROOT,
    find_dagster_home,
)


def test_dagster_home_defaults_to_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert find_dagster_home() == PROJECT_ROOT
    monkeypatch.setenv("DAGSTER_HOME", "/some/where")
    assert find_dagster_home() == Path("/some/where")
