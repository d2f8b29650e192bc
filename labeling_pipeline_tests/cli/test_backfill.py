"""``labeling-pipeline backfill``: a real Dagster backfill of a StudyDate range and source, in
batched runs (no daemon runs for the test's instance: the command does the daemon's work); run
again, it leaves finished studies out."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.execution.backfill import BulkActionStatus

from labeling_pipeline.cli import EXIT_OK, EXIT_USAGE, main
from labeling_pipeline.cli.instance import PROJECT_ROOT, instance_at
from labeling_pipeline.defs.ingestion.partitions import contiguous_batches
from labeling_pipeline.imaging.dicom import studies_between
from labeling_pipeline.synthetic.sample_data import build_dataset
from labeling_pipeline_tests.orthanc_server import SAMPLE_DATA


def test_studies_between_filters_by_date_and_source() -> None:
    catalog = pd.DataFrame(
        {
            "partition_key": [
                "archive-20200101-aaaaaaaa",
                "incoming-20200105-bbbbbbbb",
                "archive-20200110-cccccccc",
                "",
                # files in both folders: keyed incoming, so not part of an archive backfill
                "incoming-20200107-dddddddd",
                "incoming-20200107-dddddddd",
            ],
            "study_date": ["20200101", "20200105", "20200110", "20200105", "20200107", "20200107"],
            "source": ["archive", "incoming", "archive", "archive", "archive", "incoming"],
            "outcome": ["labelled", "labelled", "labelled", "rejected", "labelled", "labelled"],
        }
    )
    assert studies_between(catalog, "20200101", "20200105") == [
        "archive-20200101-aaaaaaaa",
        "incoming-20200105-bbbbbbbb",
    ]
    assert studies_between(catalog, "20200101", "20201231", "archive") == [
        "archive-20200101-aaaaaaaa",
        "archive-20200110-cccccccc",
    ]
    assert studies_between(catalog, "20200101", "20201231", "incoming") == [
        "incoming-20200105-bbbbbbbb",
        "incoming-20200107-dddddddd",
    ]
    assert studies_between(catalog, "20210101", "20211231") == []


def test_batches_are_contiguous_ranges_of_the_partition_order() -> None:
    ordered = ["a", "b", "c", "d", "e", "f", "g"]
    # "c" and "f" are not wanted: a range holds every key between its ends, so they split it.
    assert contiguous_batches(ordered, ["a", "b", "d", "e", "g"], 64) == [
        ["a", "b"],
        ["d", "e"],
        ["g"],
    ]
    assert contiguous_batches(ordered, ordered, 3) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert contiguous_batches(ordered, [], 3) == []


def test_backfill_rejects_an_inverted_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    status = main(
        ["backfill", "--from", "2026-05-01", "--to", "2026-01-01", "--data-dir", str(tmp_path)]
    )
    assert status == EXIT_USAGE
    assert "--to is before --from" in capsys.readouterr().err


@pytest.mark.slow
def test_backfill_labels_archive_studies_of_the_range_in_one_batched_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    if not (SAMPLE_DATA / "archive").is_dir():
        pytest.skip("the bundled sample data (data/) is missing")
    data, output = tmp_path / "data", tmp_path / "out"
    for part in ("template", "domain", "incoming/site_a/2026-09-01"):
        shutil.copytree(SAMPLE_DATA / part, data / part)
    for month in ("2026-02", "2026-03", "2026-07"):  # 2026-07 lies outside the range
        shutil.copytree(SAMPLE_DATA / "archive" / month, data / "archive" / month)
    command = ["backfill", "--from", "2026-01-01", "--to", "2026-06-30", "--source", "archive"]
    command += ["--data-dir", str(data), "--output-dir", str(output)]

    status = main(command)
    captured = capsys.readouterr()
    assert status == EXIT_OK, captured.out + captured.err
    assert "studies:          2 to label (0 already labelled" in captured.out
    assert "labelled:         2 studies, 2 images" in captured.out
    assert "COMPLETED_SUCCESS" in captured.out
    assert "run by:           this command" in captured.out
    assert "studies 2/2 done" in captured.err  # the progress line

    labels = pd.read_parquet(output / "labels")
    catalog = pd.read_parquet(output / "catalog.parquet")
    chosen = studies_between(catalog, "20260101", "20260630", "archive")
    assert sorted(labels["partition_key"].unique()) == chosen
    assert (output / "curated").is_dir() and len(list((output / "curated").glob("*.parquet"))) == 2

    with instance_at(dagster_home) as instance:
        backfill_runs = [run for run in instance.get_runs() if "dagster/backfill" in run.tags]
        # One run for both studies (a range of partitions), from the daemon, re-executable in
        # the UI like any backfill run.
        assert len(backfill_runs) == 1
        [run] = backfill_runs
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/asset_partition_range_start"] == chosen[0]
        assert run.tags["dagster/asset_partition_range_end"] == chosen[1]
        assert run.remote_job_origin is not None
        # The backfill's end is recorded as the daemon records it (the UI shows it ended).
        [backfill] = instance.get_backfills()
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
        assert backfill.backfill_end_timestamp is not None

    # Run again: both are labelled from their current files, nothing is launched.
    status = main(command)
    out = capsys.readouterr().out
    assert status == EXIT_OK, out
    assert "studies:          0 to label (2 already labelled from their current files)" in out


@pytest.mark.slow
def test_ctrl_c_cancels_the_backfill_and_records_it_canceled(
    tmp_path: Path, dagster_home: Path
) -> None:
    data, output = tmp_path / "data", tmp_path / "out"
    # Enough studies that the batch is still being labelled when Ctrl-C arrives.
    build_dataset(data, 8, 3)
    environment = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    command = [sys.executable, "-m", "labeling_pipeline.cli", "backfill"]
    command += ["--from", "1900-01-01", "--to", "2100-12-31"]
    process = subprocess.Popen(
        [*command, "--data-dir", str(data), "--output-dir", str(output)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        run_id = _wait_for_started_backfill_run(dagster_home, process)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        out, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, out + err
    assert "canceling the backfill and the runs it launched" in err
    assert "INTERRUPTED by SIGINT: backfill canceled, 1 runs canceled" in out, out
    with instance_at(dagster_home) as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
        assert all(run.is_finished for run in instance.get_runs())
        # Recorded as the daemon records it, though no daemon ran.
        [backfill] = instance.get_backfills()
        assert backfill.status == BulkActionStatus.CANCELED


def _wait_for_started_backfill_run(home: Path, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if (home / ".dagster" / "storage").is_dir():
            with instance_at(home) as instance:
                runs = instance.get_runs(
                    filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
                )
                runs = [run for run in runs if "dagster/backfill" in run.tags]
                if runs:
                    return runs[0].run_id
        time.sleep(0.5)
    raise AssertionError("no backfill run started")


@pytest.mark.slow
def test_a_backfill_runs_its_batches_one_after_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path, monkeypatch
) -> None:
    # Two batches of two studies (the code server reads the batch size): the `feature_model`
    # pool holds one run at a time, also on a fresh instance where the queue meets the pool
    # for the first time, so two runs' processes (each the model and a batch of images) never
    # overlap.
    monkeypatch.setenv("LABELING_STUDIES_PER_RUN", "2")
    data, output = tmp_path / "data", tmp_path / "out"
    build_dataset(data, 4, 5)
    command = ["backfill", "--from", "1900-01-01", "--to", "2100-12-31", "--quiet"]
    status = main([*command, "--data-dir", str(data), "--output-dir", str(output)])
    out = capsys.readouterr().out
    assert status == EXIT_OK, out
    assert "labelled:         4 studies" in out
    with instance_at(dagster_home) as instance:
        records = instance.get_run_records(
            filters=dg.RunsFilter(tags={"dagster/backfill": out.split()[1]})
        )
        assert len(records) == 2
        first, second = sorted(records, key=lambda record: record.start_time)
        assert first.dagster_run.status == second.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert second.start_time >= first.end_time
