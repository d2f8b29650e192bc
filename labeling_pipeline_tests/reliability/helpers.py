"""Running ``labeling-pipeline run`` as a real subprocess, and what a finished output
directory and Dagster home must look like."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd

from labeling_pipeline.atomic import TEMPORARY_FILE, TEMPORARY_NODE
from labeling_pipeline.cli import PROJECT_ROOT
from labeling_pipeline.defs.runs import UNFINISHED_STATUSES


def start_run(data: Path, output: Path, home: Path) -> subprocess.Popen[str]:
    """``labeling-pipeline run`` in a process of its own (this checkout first on the path)."""
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(PROJECT_ROOT)}
    for name in ("LABELING_DATA_DIR", "LABELING_OUTPUT_DIR"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "labeling_pipeline.cli", "run"]
        + ["--data-dir", str(data), "--output-dir", str(output)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout_s: float = 240):
    """Poll ``condition`` until it holds (fails when the process ends first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"process ended first:\n{process.stdout.read()}")  # type: ignore[union-attr]
        time.sleep(0.02)
    process.kill()
    raise AssertionError("timed out waiting")


def unfinished_runs(home: Path) -> list[dg.DagsterRun]:
    previous = Path.cwd()
    os.chdir(home)  # dagster.yaml's storage paths are relative to DAGSTER_HOME
    try:
        with dg.DagsterInstance.get() as instance:
            return list(instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED_STATUSES)))
    finally:
        os.chdir(previous)


def temporary_leftovers(output: Path) -> list[Path]:
    return [
        path
        for path in output.rglob("*")
        if TEMPORARY_FILE.match(path.name) or TEMPORARY_NODE.match(path.name)
    ]


def label_table(output: Path) -> pd.DataFrame:
    labels = pd.read_parquet(output / "labels")
    columns = ["partition_key", "sop_instance_uid", "landmark", "x", "y", "status"]
    return labels[columns].sort_values(columns[:3]).reset_index(drop=True)
