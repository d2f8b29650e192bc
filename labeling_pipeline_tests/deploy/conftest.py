"""Fixtures of the deployment tests: a real PostgreSQL, a Dagster home on it, a tiny data set."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from labeling_pipeline.cli import PROJECT_ROOT
from labeling_pipeline.defs.settings import DATA_DIR_ENV, OUTPUT_DIR_ENV
from labeling_pipeline.synthetic.sample_data import build_dataset
from labeling_pipeline_tests.postgres_server import PostgresServer, unavailable_reason

POSTGRES_YAML = PROJECT_ROOT / "deploy" / "dagster-postgres.yaml"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL for the session (each test gets its own database)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_home(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict[str, str]]:
    """DAGSTER_HOME with deploy/dagster-postgres.yaml on a fresh database, its variables set;
    returns (home, the connection variables)."""
    database = f"dagster_{uuid.uuid4().hex[:12]}"
    postgres.create_database(database)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(POSTGRES_YAML, home / "dagster.yaml")
    environment = postgres.environment(database)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home, environment


@pytest.fixture
def tiny_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """One generated single-frame study with its template; LABELING_DATA_DIR/OUTPUT_DIR set."""
    data, output = tmp_path / "data", tmp_path / "outputs"
    build_dataset(data, 1, 2, layouts=("single",))
    monkeypatch.setenv(DATA_DIR_ENV, str(data))
    monkeypatch.setenv(OUTPUT_DIR_ENV, str(output))
    return data, output
