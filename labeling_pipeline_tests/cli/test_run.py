"""Runs of the whole pipeline from the command line, recorded in the Dagster instance at
DAGSTER_HOME, and the exit status of a failed one."""

import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from labeling_pipeline.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    main,
)
from labeling_pipeline.defs.settings import DATA_DIR_ENV, OUTPUT_DIR_ENV
from labeling_pipeline.synthetic.sample_data import build_dataset


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
    # Runs of the code location as the UI knows it (workspace.yaml's location, the
    # Definitions' repository): the UI can re-execute them and shows them on its timeline.
    for run in runs:
        origin = run.remote_job_origin
        assert origin is not None, run.job_name
        assert origin.location_name == "labeling_pipeline"
        assert origin.repository_origin.repository_name == "__repository__"
        assert origin.job_name == run.job_name
        assert run.job_code_origin is not None
    jobs = sorted((run.job_name, run.status) for run in runs)
    assert jobs == [
        ("catalog_and_template_job", dg.DagsterRunStatus.SUCCESS),
        ("label_study_job", dg.DagsterRunStatus.SUCCESS),
        ("qa_report_job", dg.DagsterRunStatus.SUCCESS),
    ]
    # The curated labels, their SRs and the QA report come with every run.
    assert (output / "qa" / "report.html").is_file() and "QA report:" in out
    assert len(list((output / "sr").glob("*.dcm"))) == len(truth)
    assert len(pd.read_parquet(output / "curated")) == len(labels)

    # Unknown partition keys are a usage error, reported with the known ones.
    status = main(["run", "--data-dir", str(data), "--output-dir", str(output), "--partition", "x"])
    assert status == EXIT_USAGE
    assert "partition key ['x']" in capsys.readouterr().err

    # The template reference is made again only when the template changed: the run above
    # catalogued again but reused it; a moved landmark makes it again.
    assert _template_materializations(dagster_home) == 1
    landmarks_file = data / "template" / "landmarks.json"
    landmarks = json.loads(landmarks_file.read_text())
    landmarks["landmarks"][0]["x"] += 1.0
    landmarks_file.write_text(json.dumps(landmarks))
    status = main(["run", "--data-dir", str(data), "--output-dir", str(output)])
    assert status == EXIT_OK, capsys.readouterr().out
    assert _template_materializations(dagster_home) == 2


def _template_materializations(dagster_home: Path) -> int:
    previous = Path.cwd()
    os.chdir(dagster_home)
    try:
        with dg.DagsterInstance.get() as instance:
            return len(
                instance.fetch_materializations(dg.AssetKey("template_reference"), limit=10).records
            )
    finally:
        os.chdir(previous)
