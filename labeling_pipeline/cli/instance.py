"""The Dagster instance that records the command line's runs, and the environment it runs in."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def find_dagster_home() -> Path | None:
    """``DAGSTER_HOME`` when set, else the repository root when it holds ``dagster.yaml``
    (an editable install, as ``make`` makes), else ``None`` (runs are not recorded)."""
    configured = os.environ.get("DAGSTER_HOME", "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    if (PROJECT_ROOT / "dagster.yaml").is_file():
        return PROJECT_ROOT
    return None


@contextlib.contextmanager
def environment_variables(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore the old values."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def instance_at(home: Path | None) -> Iterator[object]:
    """The Dagster instance at ``home`` (ephemeral when ``None``).

    ``dagster.yaml`` names its storage relative to DAGSTER_HOME, and Dagster resolves relative
    paths against the working directory, so the run works from inside ``home``; the caller's
    working directory is restored afterwards.
    """
    import dagster as dg

    if home is None:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance
        return
    from labeling_pipeline.locks import exclusive_lock

    previous_home, previous_cwd = os.environ.get("DAGSTER_HOME"), Path.cwd()
    os.environ["DAGSTER_HOME"] = str(home)
    os.chdir(home)
    try:
        # Opening a fresh instance creates its SQLite tables; two processes doing it at once
        # collide ("table runs already exists"), so one at a time creates and the other opens.
        with exclusive_lock(home / ".dagster" / "instance-init.lock"):
            instance = dg.DagsterInstance.get()
            instance.get_runs(limit=1)
            instance.get_dynamic_partitions("studies")
        with instance:
            yield instance
    finally:
        os.chdir(previous_cwd)
        if previous_home is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous_home
