"""``labeling-pipeline backfill --from --to`` with LABELING_DICOMWEB_URL set, against a real
Orthanc: the server's studies of that StudyDate range are retrieved first (only those), then
backfilled; a server that refuses the credentials makes the command fail, saying so."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from labeling_pipeline.cli import EXIT_FAILED, EXIT_OK, main
from labeling_pipeline.imaging.dicomweb import cache_root
from labeling_pipeline_tests.orthanc_server import SAMPLE_DATA

pytestmark = pytest.mark.slow

IN_RANGE = ["archive/2026-02/study_0101", "archive/2026-03/study_0102"]
OUT_OF_RANGE = ["archive/2026-07/study_0105", "incoming/site_a/2026-09-01/study_0001"]


def test_backfill_syncs_the_range_from_the_server_then_labels_it(
    orthanc_factory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dagster_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not (SAMPLE_DATA / "archive").is_dir():
        pytest.skip("the bundled sample data (data/) is missing")
    password = "pw-backfill-not-in-outputs"
    server = orthanc_factory(users={"labeler": password})
    files = [
        p
        for study in IN_RANGE + OUT_OF_RANGE
        for p in (SAMPLE_DATA / study).rglob("*")
        if p.is_file()
    ]
    assert set(server.upload(files).values()) == {200}
    in_range_uids = {
        pydicom.dcmread(
            next((SAMPLE_DATA / s).rglob("*.dcm")), stop_before_pixels=True
        ).StudyInstanceUID
        for s in IN_RANGE
    }

    data, output = tmp_path / "data", tmp_path / "out"
    for folder in ("template", "domain"):
        shutil.copytree(SAMPLE_DATA / folder, data / folder)
    monkeypatch.setenv("LABELING_DICOMWEB_URL", server.dicomweb_url)
    monkeypatch.setenv("LABELING_DICOMWEB_USER", "labeler")
    monkeypatch.setenv("LABELING_DICOMWEB_PASSWORD", password)
    # The catalog's own look-back window (yesterday and today) holds none of the 2026 samples:
    # what is labelled came through the backfill's sync of its range.
    monkeypatch.setenv("LABELING_DICOMWEB_LOOKBACK_DAYS", "1")
    command = ["backfill", "--from", "2026-01-01", "--to", "2026-06-30", "--quiet"]
    command += ["--data-dir", str(data), "--output-dir", str(output)]

    status = main([*command, "--source", "dicomweb"])
    captured = capsys.readouterr()
    assert status == EXIT_OK, captured.out + captured.err
    assert f"dicomweb:         {server.dicomweb_url} StudyDate 20260101-20260630: " in captured.out
    assert "found 2, evicted 0, retrieved 2" in captured.out
    assert "studies:          2 to label (0 already labelled" in captured.out
    assert "labelled:         2 studies, 2 images" in captured.out
    assert "studies " not in captured.err  # --quiet: no progress line

    catalog = pd.read_parquet(output / "catalog.parquet")
    assert set(catalog["source"]) == {"dicomweb"}
    assert set(catalog["study_uid"]) == in_range_uids  # only the range was retrieved
    labels = pd.read_parquet(output / "labels")
    assert set(labels["study_uid"]) == in_range_uids
    assert cache_root(data).is_dir()

    # Again: nothing new on the server for that range, both studies labelled already.
    status = main(command)
    out = capsys.readouterr().out
    assert status == EXIT_OK, out
    assert "found 2, evicted 0, up_to_date 2" in out
    assert "studies:          0 to label (2 already labelled from their current files)" in out

    # A server that refuses the credentials: said so, and the command fails.
    monkeypatch.setenv("LABELING_DICOMWEB_PASSWORD", "wrong")
    status = main(command)
    out = capsys.readouterr().out
    assert status == EXIT_FAILED, out
    assert "NOT SEARCHED, study search: HTTP 401" in out

    for path in [*output.rglob("*"), *dagster_home.rglob("*")]:
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
