"""``labeling-pipeline run``: options over environment, exit statuses, the summary, and runs
recorded in the Dagster instance at DAGSTER_HOME."""

import os
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._utils.error import SerializableErrorInfo

from labeling_pipeline.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    PROJECT_ROOT,
    RunSummary,
    StudyOutcome,
    find_dagster_home,
    format_summary,
    main,
    root_cause,
)
from labeling_pipeline.defs.settings import DATA_DIR_ENV, OUTPUT_DIR_ENV, PipelinePaths
from labeling_pipeline.synthetic.sample_data import build_dataset


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Dagster home with the repository's dagster.yaml (storage under its .dagster/)."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name in (DATA_DIR_ENV, OUTPUT_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    return home


def test_missing_data_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    assert main(["run", "--data-dir", str(tmp_path / "absent")]) == EXIT_USAGE
    assert "absent does not exist" in capsys.readouterr().err


def test_option_wins_over_environment(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    dagster_home: Path,
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))  # exists, but the option names another
    assert main(["run", "--data-dir", str(tmp_path / "option")]) == EXIT_USAGE
    assert "option does not exist" in capsys.readouterr().err


def test_environment_is_used_without_options(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    dagster_home: Path,
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "from_env"))
    assert main(["run"]) == EXIT_USAGE
    assert "from_env does not exist" in capsys.readouterr().err


def test_unknown_command_is_rejected() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["label-everything"])
    assert exit_info.value.code == 2


def test_dagster_home_defaults_to_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert find_dagster_home() == PROJECT_ROOT
    monkeypatch.setenv("DAGSTER_HOME", "/some/where")
    assert find_dagster_home() == Path("/some/where")


def test_summary_reports_counts_failures_and_checks(tmp_path: Path) -> None:
    summary = RunSummary(
        paths=PipelinePaths(tmp_path / "data", tmp_path / "out"),
        dagster_home=str(tmp_path),
        studies=[
            StudyOutcome("20260901-aaaaaaaa", "run-1", True, checks_passed=2),
            StudyOutcome(
                "20260902-bbbbbbbb",
                "run-2",
                False,
                error="pixel_features: boom",
                failed_checks=["one_row_per_landmark: 1 problem"],
            ),
        ],
        files_seen=10,
        rejected_files=2,
        rejections={"not_dicom": 1, "truncated": 1},
        images_labelled=1,
        landmarks_ok=8,
        landmarks_needs_review=1,
    )
    text = format_summary(summary)
    assert "studies:          2 (1 labelled, 1 failed)" in text
    assert "rejected files:   2 (not_dicom: 1, truncated: 1)" in text
    assert "landmarks:        8 ok, 1 needs_review" in text
    assert "label checks:     2 passed, 1 failed" in text
    assert "FAILED 20260902-bbbbbbbb (run run-2): pixel_features: boom" in text
    assert not summary.succeeded


def test_root_cause_skips_dagster_wrappers() -> None:
    inner = SerializableErrorInfo(
        "labeling_pipeline.features.extractors.FeatureWeightsError: no weights\n", [], "X"
    )
    wrapper = SerializableErrorInfo(
        "Error occurred while executing op", [], "DagsterExecutionStepExecutionError", inner
    )
    assert root_cause(wrapper) == "FeatureWeightsError: no weights"
    failure = SerializableErrorInfo(
        "dagster._core.definitions.events.Failure: the template cannot be used", [], "Failure"
    )
    assert root_cause(failure) == "the template cannot be used"


def test_failed_template_gives_a_failing_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    (data / "incoming" / "junk.bin").write_bytes(b"\x00" * 10)
    status = main(["run", "--data-dir", str(data), "--output-dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert status == EXIT_FAILED
    assert "FAILED before labelling" in out
    assert "template_reference: the template cannot be used" in out
    assert "rejected files:   1 (not_dicom: 1)" in out


@pytest.mark.slow
def test_run_labels_a_study_and_records_its_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    data, output = tmp_path / "data", tmp_path / "out"
    truth = build_dataset(data, 1, 3)
    (data / "incoming" / "broken.dcm").write_bytes(b"DICM" * 8)
    cwd = Path.cwd()

    status = main(["run", "--data-dir", str(data), "--output-dir", str(output)])
    out = capsys.readouterr().out
    assert status == EXIT_OK, out
    assert Path.cwd() == cwd  # the working directory is restored, and the environment
    assert DATA_DIR_ENV not in os.environ and OUTPUT_DIR_ENV not in os.environ
    assert "studies:          1 (1 labelled, 0 failed)" in out
    assert "images labelled:  1" in out
    assert "rejected files:   1" in out
    labels = pd.read_parquet(output / "labels")
    assert set(labels["sop_instance_uid"]) == set(truth)

    # The runs are in the instance at DAGSTER_HOME, where `make ui` reads them.
    assert (dagster_home / ".dagster" / "storage").is_dir()
    previous = Path.cwd()
    os.chdir(dagster_home)  # dagster.yaml's storage paths are relative to DAGSTER_HOME
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
    finally:
        os.chdir(previous)
    jobs = sorted((run.job_name, run.status) for run in runs)
    assert jobs == [
        ("catalog_and_template_job", dg.DagsterRunStatus.SUCCESS),
        ("label_study_job", dg.DagsterRunStatus.SUCCESS),
    ]

    # Unknown partition keys are a usage error, reported with the known ones.
    status = main(["run", "--data-dir", str(data), "--output-dir", str(output), "--partition", "x"])
    assert status == EXIT_USAGE
    assert "partition key ['x']" in capsys.readouterr().err
