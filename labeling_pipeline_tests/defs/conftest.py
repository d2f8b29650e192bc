"""Fixtures of the tests of the Dagster definitions."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from labeling_pipeline.defs.resources import PipelineResource


@pytest.fixture
def env(source_data: Path, tmp_path: Path) -> Iterator[SimpleNamespace]:
    """A copy of the module's ``source_data`` fixture (tests change its files), an output
    directory and a fresh Dagster instance; ``cursor`` carries automation's cursor between
    ticks."""
    data = tmp_path / "data"
    shutil.copytree(source_data, data)
    out = tmp_path / "out"
    pipeline = PipelineResource(data_dir=str(data), output_dir=str(out))
    with dg.instance_for_test() as instance:
        yield SimpleNamespace(data=data, out=out, pipeline=pipeline, instance=instance, cursor=None)
