"""Ctrl-C during ``labeling-pipeline run``: the command stops waiting, cancels the run it
launched (said on screen), and exits 130. ``--detach`` hands the label runs to the daemon's
queue and returns; without a daemon it is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from labeling_pipeline.cli import EXIT_OK, EXIT_USAGE, main
from labeling_pipeline.cli.instance import PROJECT_ROOT, instance_at
from labeling_pipeline.cli.launch import daemon_for, daemon_running
from labeling_pipeline.synthetic.sample_data import build_dataset


def test_detach_without_a_daemon_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    data = tmp_path / "data"
    build_dataset(data, 1, 1)
    status = main(["run", "--detach", "--data-dir", str(data), "--output-dir", str(tmp_path / "o")])
    assert status == EXIT_USAGE
    assert "no daemon is running for this instance" in capsys.readouterr().err
    with instance_at(dagster_home) as instance:
        assert instance.get_runs() == []  # nothing was launched


@pytest.mark.slow
def test_detach_hands_the_label_runs_to_the_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    data, output = tmp_path / "data", tmp_path / "out"
    truth = build_dataset(data, 2, 4)
    command = ["run", "--detach", "--data-dir", str(data), "--output-dir", str(output)]
    with instance_at(dagster_home) as instance, daemon_for(instance, dagster_home):
        deadline = time.monotonic() + 180
        while not daemon_running(instance):
            assert time.monotonic() < deadline, "the daemon did not report"
            time.sleep(1)
        status = main(command)
        out = capsys.readouterr().out
        assert status == EXIT_OK, out
        assert "detached:         2 studies in 1 label runs queued for the daemon" in out
        [run] = instance.get_runs(filters=dg.RunsFilter(job_name="label_study_job"))
        while not instance.get_run_by_id(run.run_id).is_finished:
            assert time.monotonic() < deadline + 600, "the queued label run did not finish"
            time.sleep(1)
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
    labels = pd.read_parquet(output / "labels")
    assert set(labels["sop_instance_uid"]) == set(truth)


@pytest.mark.slow
def test_ctrl_c_cancels_the_launched_run(tmp_path: Path, dagster_home: Path) -> None:
    data, output = tmp_path / "data", tmp_path / "out"
    # Enough studies that the label run is still working when Ctrl-C arrives, even on a busy
    # machine (a run that ends first is not counted as canceled).
    build_dataset(data, 8, 2)
    environment = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    command = [sys.executable, "-m", "labeling_pipeline.cli", "run"]
    process = subprocess.Popen(
        [*command, "--data-dir", str(data), "--output-dir", str(output)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        label_run = _wait_for_started_label_run(dagster_home, process)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        out, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, out + err
    assert "canceling the runs this command launched" in err
    assert "INTERRUPTED by SIGINT" in out and "1 run canceled" in out, out
    with instance_at(dagster_home) as instance:
        run = instance.get_run_by_id(label_run)
        assert run.status == dg.DagsterRunStatus.CANCELED
        # Nothing is left running, and no QA report run was started after it.
        assert all(r.is_finished for r in instance.get_runs())
        assert not instance.get_runs(filters=dg.RunsFilter(job_name="qa_report_job"))


def _wait_for_started_label_run(home: Path, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if (home / ".dagster" / "storage").is_dir():
            with instance_at(home) as instance:
                runs = instance.get_runs(
                    filters=dg.RunsFilter(
                        job_name="label_study_job", statuses=[dg.DagsterRunStatus.STARTED]
                    )
                )
                if runs:
                    return runs[0].run_id
        time.sleep(0.5)
    raise AssertionError("no label run started")
