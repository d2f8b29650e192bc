"""Fixtures shared across the test packages."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labeling_pipeline.cli import PROJECT_ROOT
from labeling_pipeline.defs.settings import DATA_DIR_ENV, OUTPUT_DIR_ENV
from labeling_pipeline_tests.orthanc_server import OrthancServer, find_orthanc
from labeling_pipeline_tests.reviewable import ReviewableOutputs, build_reviewable_outputs


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test``), modules with ``slow`` tests go first: the workers
    take whole modules in collection order, and the long runs of the command line left for
    the end would keep one worker busy for minutes after the other ran out of work."""
    if not hasattr(config, "workerinput"):  # not an xdist worker: keep the order of the files
        return
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)  # stable sort


@pytest.fixture
def reviewable(tmp_path: Path) -> ReviewableOutputs:
    """Two labelled phantom studies with flagged landmarks (see ``reviewable.py``)."""
    return build_reviewable_outputs(tmp_path)


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Callable[..., OrthancServer]]:
    """Start Orthanc servers (``users`` turns on HTTP basic auth), each stopped after the test.
    Skips when Orthanc or its DICOMweb plugin is not installed (``.ci/run`` installs them)."""
    if find_orthanc() is None:
        pytest.skip(
            "Orthanc with the DICOMweb plugin is not installed "
            "(apt-get install orthanc orthanc-dicomweb)"
        )
    servers: list[OrthancServer] = []

    def start(users: dict[str, str] | None = None) -> OrthancServer:
        server = OrthancServer(tmp_path / f"orthanc{len(servers)}", users=users)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop(kill=True)  # its storage is thrown away with tmp_path


@pytest.fixture
def orthanc(orthanc_factory: Callable[..., OrthancServer]) -> OrthancServer:
    """An Orthanc holding the sample studies of data/incoming and data/archive."""
    server = orthanc_factory()
    server.upload_sample_data()
    return server


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
