"""`labeling-pipeline run` with LABELING_DICOMWEB_STORE=1 against a real Orthanc: the SR of each
labelled server image is stored, read back with QIDO/WADO and holds the label dataset's points;
a second run stores nothing; a correction adds one instance to the image's SR series; a store
refused by the server is recorded, does not fail the labels, and is retried on the next run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from labeling_pipeline.cli import EXIT_OK, main
from labeling_pipeline.corrections import append_corrections, make_correction
from labeling_pipeline.corrections.publish import sr_file
from labeling_pipeline.labels.sr import read_sr_landmarks, sr_series_uid
from labeling_pipeline_tests.imaging.dicomweb.helpers import settings_for
from labeling_pipeline_tests.orthanc_server import SAMPLE_DATA

pytestmark = pytest.mark.slow

ON_SERVER = ["archive/2026-02/study_0101", "incoming/site_a/2026-09-01/study_0001"]
IN_FOLDER = "archive/2026-03/study_0102"  # in the data directory only: its SR stays local
PASSWORD = "pw-sr-store-not-in-outputs"


def _run(data: Path, output: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    status = main(["run", "--data-dir", str(data), "--output-dir", str(output)])
    out = capsys.readouterr().out
    assert status == EXIT_OK, out
    return out


def _stored_srs(client, study_uids: list[str], tmp_path: Path) -> dict[str, list[pydicom.Dataset]]:
    """Source SOPInstanceUID -> the SR instances the server holds for it (QIDO, then WADO)."""
    found: dict[str, list[pydicom.Dataset]] = {}
    for study_uid in study_uids:
        answers = client.search_for_instances(
            study_uid, search_filters={"Modality": "SR"}, fields=["SeriesInstanceUID"]
        )
        for answer in answers:
            series = answer["0020000E"]["Value"][0]
            sop = answer["00080018"]["Value"][0]
            sr = client.retrieve_instance(study_uid, series, sop)
            sr.save_as(tmp_path / "read_back.dcm", enforce_file_format=True)
            (source,) = {lm.referenced_sop_instance_uid for lm in _landmarks(tmp_path)}
            found.setdefault(source, []).append(sr)
    return found


def _landmarks(tmp_path: Path):
    return [
        lm for lm in read_sr_landmarks(tmp_path / "read_back.dcm") if lm.referenced_sop_instance_uid
    ]


def _points(sr: pydicom.Dataset, tmp_path: Path, status: str) -> dict[str, tuple[float, float]]:
    sr.save_as(tmp_path / "read_back.dcm", enforce_file_format=True)
    return {lm.name: (lm.x, lm.y) for lm in _landmarks(tmp_path) if lm.status == status}


def _expected(rows: pd.DataFrame, status: str) -> dict[str, tuple[float, float]]:
    chosen = rows[rows["status"] == status]
    return {str(r.landmark): pytest.approx((r.x, r.y), abs=1e-3) for r in chosen.itertuples()}


def test_run_stores_the_srs_of_server_images_once_per_content(
    orthanc_factory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dagster_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = orthanc_factory(users={"labeler": PASSWORD})
    files = [p for study in ON_SERVER for p in (SAMPLE_DATA / study).rglob("*") if p.is_file()]
    assert set(server.upload(files).values()) == {200}
    study_uids = sorted(
        {pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID for p in files}
    )

    data = tmp_path / "data"
    for folder in ("template", "domain"):
        shutil.copytree(SAMPLE_DATA / folder, data / folder)
    shutil.copytree(SAMPLE_DATA / IN_FOLDER, data / "incoming" / "local")
    output = tmp_path / "out"
    monkeypatch.setenv("LABELING_DICOMWEB_URL", server.dicomweb_url)
    monkeypatch.setenv("LABELING_DICOMWEB_USER", "labeler")
    monkeypatch.setenv("LABELING_DICOMWEB_PASSWORD", PASSWORD)
    monkeypatch.setenv("LABELING_DICOMWEB_LOOKBACK_DAYS", "3650")  # the samples are from 2026
    monkeypatch.setenv("LABELING_DICOMWEB_STORE", "1")
    client = settings_for(
        server, LABELING_DICOMWEB_USER="labeler", LABELING_DICOMWEB_PASSWORD=PASSWORD
    ).client()

    out = _run(data, output, capsys)
    assert "studies:          3 (3 labelled, 0 failed)" in out
    assert (
        "SRs on server:    2 stored, 0 already stored, 0 failed, 1 images not from the server"
        in out
    )

    labels = pd.read_parquet(output / "labels")
    catalog = pd.read_parquet(output / "catalog.parquet")
    from_server = set(catalog.loc[catalog["source"] == "dicomweb", "sop_instance_uid"])
    server_labels = labels[labels["sop_instance_uid"].isin(from_server)]
    assert server_labels["sop_instance_uid"].nunique() == 2
    stored = _stored_srs(client, study_uids, tmp_path)
    assert set(stored) == set(server_labels["sop_instance_uid"])
    for sop, rows in server_labels.groupby("sop_instance_uid"):
        (sr,) = stored[sop]
        # The points are the label dataset's ok landmarks, on the labelled SOP instance.
        assert _points(sr, tmp_path, "ok") == _expected(rows, "ok")
        assert (rows["status"] == "ok").sum() >= 3
        # The same SR as the one in sr/: UIDs derived once, from the image and the labels.
        written = pydicom.dcmread(sr_file(output / "sr", sop))
        assert (sr.SeriesInstanceUID, sr.SOPInstanceUID) == (
            written.SeriesInstanceUID,
            written.SOPInstanceUID,
        )
        assert sr.SeriesInstanceUID == sr_series_uid(sop)

    # Unchanged labels: nothing new on the server.
    out = _run(data, output, capsys)
    assert "SRs on server:    0 stored, 2 already stored, 0 failed" in out
    assert {sop: len(srs) for sop, srs in _stored_srs(client, study_uids, tmp_path).items()} == {
        sop: 1 for sop in stored
    }

    # A reviewer moves one landmark of one server image ...
    corrected_sop = sorted(stored)[0]
    curated = pd.concat(pd.read_parquet(p) for p in sorted((output / "curated").glob("*.parquet")))
    row = curated[(curated["sop_instance_uid"] == corrected_sop) & (curated["status"] == "ok")]
    row = row.iloc[0].to_dict()
    moved = (row["x"] + 4.0, row["y"] - 2.0)
    append_corrections(
        output / "corrections", [make_correction(row, "move", "ann", x=moved[0], y=moved[1])]
    )
    # ... while the server refuses the credentials: the labels are curated, the stores fail.
    monkeypatch.setenv("LABELING_DICOMWEB_PASSWORD", "wrong")
    out = _run(data, output, capsys)
    assert "studies:          3 (3 labelled, 0 failed)" in out
    assert "SRs on server:    0 stored, 0 already stored, 2 failed (tried again next run)" in out
    assert "1 corrected" in out

    # Next run with the right password: the new version is stored, the other one is not sent.
    monkeypatch.setenv("LABELING_DICOMWEB_PASSWORD", PASSWORD)
    out = _run(data, output, capsys)
    assert "SRs on server:    1 stored, 1 already stored, 0 failed" in out
    after = _stored_srs(client, study_uids, tmp_path)
    assert {sop: len(srs) for sop, srs in after.items()} == {
        sop: 2 if sop == corrected_sop else 1 for sop in stored
    }
    versions = sorted(after[corrected_sop], key=lambda sr: int(sr.InstanceNumber))
    assert [int(sr.InstanceNumber) for sr in versions] == [1, 2]
    assert {sr.SeriesInstanceUID for sr in versions} == {stored[corrected_sop][0].SeriesInstanceUID}
    assert versions[0].SOPInstanceUID == stored[corrected_sop][0].SOPInstanceUID
    assert (
        versions[1].SOPInstanceUID
        == pydicom.dcmread(sr_file(output / "sr", corrected_sop)).SOPInstanceUID
    )
    assert _points(versions[1], tmp_path, "corrected") == {
        row["landmark"]: pytest.approx(moved, abs=1e-3)
    }

    for root in (output, dagster_home):
        for path in Path(root).rglob("*"):
            if path.is_file():
                assert PASSWORD.encode() not in path.read_bytes(), path
