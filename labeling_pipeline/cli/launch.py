"""Runs of the code location, made by the command line the way the UI and the daemon make
them: with the remote origin of the ``labeling_pipeline`` location of ``workspace.yaml``, so
that each can be re-executed from the UI and shows on its timeline. They execute here, in this
process (in-process executor), like ``execute_in_process`` would.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

LOCATION_NAME = "labeling_pipeline"  # workspace.yaml's location name
DEFINITIONS_MODULE = "labeling_pipeline.definitions"
REPOSITORY_NAME = "__repository__"  # the repository a Definitions object makes


def remote_job_origin(job_name: str, working_directory: Path):
    """The origin of ``job_name`` in the UI's workspace (location ``labeling_pipeline``)."""
    from dagster._core.remote_origin import (
        ManagedGrpcPythonEnvCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = ManagedGrpcPythonEnvCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name=DEFINITIONS_MODULE,
            working_directory=str(working_directory),
        ),
        location_name=LOCATION_NAME,
    )
    return RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=location, repository_name=REPOSITORY_NAME
        ),
        job_name=job_name,
    )


def execute_location_run(
    instance,
    job_name: str,
    tags: Mapping[str, str],
    run_config: Mapping | None = None,
    asset_selection: Sequence | None = None,
):
    """Create a run of ``job_name`` (optionally only ``asset_selection``) with the code
    location's origins, and execute it here; returns Dagster's execution result."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import execute_run

    from labeling_pipeline.definitions import defs

    working_directory = Path.cwd()
    repository = ReconstructableRepository.for_module(
        DEFINITIONS_MODULE, "defs", working_directory=str(working_directory)
    )
    reconstructable = repository.get_reconstructable_job(job_name)
    job = defs.resolve_job_def(job_name)
    selection = frozenset(asset_selection) if asset_selection else None
    if selection:
        reconstructable = reconstructable.get_subset(asset_selection=selection)
        job = job.get_subset(asset_selection=selection)
    run = instance.create_run_for_job(
        job_def=job,
        run_config=dict(run_config or {}),
        tags=dict(tags),
        asset_selection=selection,
        remote_job_origin=remote_job_origin(job_name, working_directory),
        job_code_origin=reconstructable.get_python_origin(),
    )
    return execute_run(reconstructable, run, instance, raise_on_error=False)
