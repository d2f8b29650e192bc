"""Killed and interrupted runs: SIGKILL of a real ``labeling-pipeline run`` at several points,
a SIGTERM, then a re-run that completes with the same labels as an uninterrupted run, no run
left STARTED and no temporary file left behind; and two runs sharing one output directory."""

import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest

from labeling_pipeline.cli import EXIT_OK, PROJECT_ROOT, main
from labeling_pipeline.synthetic.sample_data import build_dataset
from labeling_pipeline_tests.reliability.helpers import (
    label_table,
    start_run,
    temporary_leftovers,
    unfinished_runs,
    wait_for,
)

pytestmark = pytest.mark.slow


def _home(path: Path) -> Path:
    path.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "dagster.yaml", path / "dagster.yaml")
    return path


def _label_files(output: Path) -> list[Path]:
    return sorted((output / "labels").glob("[!.]*.parquet")) if (output / "labels").is_dir() else []


def test_killed_and_interrupted_runs_end_honestly_and_a_rerun_completes(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, output = tmp_path / "data", tmp_path / "out"
    build_dataset(data, 3, 3, size=128)
    home = _home(tmp_path / "killed_home")

    # SIGKILL while the catalog and template run (the catalog is written, the rest not yet).
    process = start_run(data, output, home)
    wait_for(lambda: (output / "catalog.parquet").exists(), process)
    process.kill()
    process.wait()
    # SIGKILL in the middle of labelling (the first study's labels written).
    process = start_run(data, output, home)
    wait_for(lambda: len(_label_files(output)) >= 1, process)
    process.kill()
    process.wait()
    assert unfinished_runs(home), "a SIGKILL should leave the run in progress"

    # SIGTERM: the whole command ends, with a summary, exit 143; the run is not left going.
    for path in _label_files(output):
        path.unlink()
    process = start_run(data, output, home)
    wait_for(lambda: len(_label_files(output)) >= 1, process)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, out
    assert "INTERRUPTED by SIGTERM" in out
    # The second run failed the first one's zombie on start; this one fails the second's.
    assert "stale runs:       1 left unfinished by a dead process, marked failed" in out
    assert len(_label_files(output)) < 3  # the studies after the interrupted one not started
    assert not unfinished_runs(home)

    # The re-run completes: every study labelled, as an uninterrupted run labels them.
    process = start_run(data, output, home)
    out, _ = process.communicate(timeout=300)
    assert process.returncode == EXIT_OK, out
    assert "studies:          3 (3 labelled, 0 failed)" in out
    assert not unfinished_runs(home)
    assert temporary_leftovers(output) == []

    reference = tmp_path / "reference"
    status = main(["run", "--data-dir", str(data), "--output-dir", str(reference)])
    assert status == EXIT_OK, capsys.readouterr().out
    pd.testing.assert_frame_equal(label_table(output), label_table(reference))


def test_two_runs_share_an_output_directory_and_other_inputs_are_refused(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, output = tmp_path / "data", tmp_path / "out"
    build_dataset(data, 3, 4, size=128)
    other = tmp_path / "other"
    build_dataset(other, 1, 5, size=128)
    home = _home(tmp_path / "fresh_home")  # both initialise this fresh home at once

    first, second = start_run(data, output, home), start_run(data, output, home)
    wait_for(lambda: any((output / ".locks").glob("holder-*.json")), first)
    # Another data directory on the same output directory: refused at once, holder named.
    status = main(["run", "--data-dir", str(other), "--output-dir", str(output)])
    err = capsys.readouterr().err
    assert status == 3, err
    assert "output directory in use by pid" in err and "started" in err

    outs = [process.communicate(timeout=400)[0] for process in (first, second)]
    assert [first.returncode, second.returncode] == [EXIT_OK, EXIT_OK], outs
    labels = label_table(output)
    catalog = pd.read_parquet(output / "catalog.parquet")
    labelled = catalog[catalog["outcome"] == "labelled"]
    assert set(labels["sop_instance_uid"]) == set(labelled["sop_instance_uid"])
    assert len(labels) == len(labelled) * labels["landmark"].nunique()
    assert not unfinished_runs(home)
    assert not list((output / ".locks").glob("holder-*.json"))  # both released their hold
