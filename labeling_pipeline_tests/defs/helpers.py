"""Wiring shared by the tests of the Dagster definitions: generated source data, the resources
of a pipeline, a catalog run and a sensor tick on an ``env`` (see ``conftest.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg

from labeling_pipeline.defs.ingestion.assets import dicom_catalog
from labeling_pipeline.defs.ingestion.sensors import new_study_sensor
from labeling_pipeline.defs.resources import (
    CatalogIOManager,
    IntermediateIOManager,
    PipelineResource,
)
from labeling_pipeline.synthetic.sample_data import build_dataset

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def generated_studies(root: Path, studies: int, seed: int, archived: str) -> Path:
    """A data directory of ``studies`` generated studies in incoming/, the case folder
    ``archived`` (``case_0001``) moved to archive/."""
    data = root / "data"
    build_dataset(data, studies, seed=seed)
    (data / "archive").mkdir()
    shutil.move(data / "incoming" / archived, data / "archive" / archived)
    return data


def pipeline_resources(pipeline: PipelineResource, **extra: Any) -> dict[str, Any]:
    """The pipeline resource with the IO managers the assets write through (and ``extra``)."""
    return {
        "pipeline": pipeline,
        "io_manager": IntermediateIOManager(pipeline=pipeline),
        "catalog_io_manager": CatalogIOManager(pipeline=pipeline),
        **extra,
    }


def materialize_catalog(env: SimpleNamespace) -> dg.ExecuteInProcessResult:
    """A run of ``dicom_catalog`` on ``env.pipeline``'s directories, in ``env.instance``."""
    result = dg.materialize(
        [dicom_catalog],
        instance=env.instance,
        resources=pipeline_resources(env.pipeline),
        run_config=QUIET,
    )
    assert result.success
    return result


def sensor_tick(env: SimpleNamespace):
    """One evaluation of ``new_study_sensor`` on ``env.pipeline``, in ``env.instance``."""
    # Closed at once: an evaluation context left open holds the instance's state storage
    # context, and garbage-collecting it later restores a dead instance's storage as current.
    with dg.build_sensor_context(
        instance=env.instance, resources={"pipeline": env.pipeline}
    ) as context:
        return new_study_sensor(context)
