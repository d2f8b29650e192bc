"""STOW-RS of the label SRs against a real Orthanc: stored once as written, read back, a new
instance per change, only for images the server holds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pydicom
import pytest

from labeling_pipeline.imaging.dicomweb import (
    SrToStore,
    StoreStatus,
    images_on_server,
    store_counts,
    store_sr_files,
    store_structured_reports,
)
from labeling_pipeline.labels.sr import build_sr, read_sr_landmarks, sr_series_uid, write_sr
from labeling_pipeline_tests.imaging.dicomweb.helpers import settings_for
from labeling_pipeline_tests.orthanc_server import SAMPLE_DATA

SOURCE = SAMPLE_DATA / "archive/2026-03/study_0102/IM0001.dcm"
OTHER = SAMPLE_DATA / "archive/2026-04/study_0103/IM0001.dcm"


def _rows(points: dict[str, tuple[float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"landmark": name, "kind": "vertebra", "x": x, "y": y, "status": "ok"}
            for name, (x, y) in points.items()
        ]
    )


def _item(path: Path, points: dict[str, tuple[float, float]]) -> SrToStore:
    source = pydicom.dcmread(path, stop_before_pixels=True)
    return SrToStore(build_sr(source, _rows(points)), source.SOPInstanceUID)


def test_only_structured_reports_are_stored(orthanc) -> None:
    source = pydicom.dcmread(SOURCE)
    with pytest.raises(ValueError, match="structured reports"):
        store_structured_reports(
            settings_for(orthanc).client(), [SrToStore(source, source.SOPInstanceUID)]
        )


def test_srs_are_stored_as_written_once_and_changes_add_one_instance(
    orthanc, tmp_path: Path
) -> None:
    client = settings_for(orthanc, LABELING_DICOMWEB_STORE="1").client()
    source = pydicom.dcmread(SOURCE, stop_before_pixels=True)
    points = {"L1": (129.8, 49.4), "L2": (127.5, 80.25)}
    sr_file = tmp_path / "sr" / "image.dcm"
    assert write_sr(sr_file, SOURCE, _rows(points))
    written = pydicom.dcmread(sr_file)

    (first,) = store_sr_files(client, {source.SOPInstanceUID: sr_file})
    assert first.status == StoreStatus.STORED
    # The stored SR is the written file: same UIDs, derived in labels/sr.py.
    assert (first.series_uid, first.sop_instance_uid) == (
        written.SeriesInstanceUID,
        written.SOPInstanceUID,
    )
    assert first.series_uid == sr_series_uid(source.SOPInstanceUID)
    (again,) = store_sr_files(client, {source.SOPInstanceUID: sr_file})
    assert (again.status, again.sop_instance_uid) == (
        StoreStatus.ALREADY_STORED,
        first.sop_instance_uid,
    )

    moved = dict(points, L2=(127.5, 84.0))
    assert write_sr(sr_file, SOURCE, _rows(moved))
    (changed,) = store_sr_files(client, {source.SOPInstanceUID: sr_file})
    assert changed.status == StoreStatus.STORED
    assert changed.series_uid == first.series_uid
    assert changed.sop_instance_uid == pydicom.dcmread(sr_file).SOPInstanceUID
    assert changed.sop_instance_uid != first.sop_instance_uid

    # QIDO lists both versions in the one SR series of the image; WADO gives the points back.
    answers = client.search_for_instances(
        source.StudyInstanceUID, first.series_uid, fields=["SOPInstanceUID", "InstanceNumber"]
    )
    listed = {a["00080018"]["Value"][0]: a["00200013"]["Value"][0] for a in answers}
    assert listed == {first.sop_instance_uid: 1, changed.sop_instance_uid: 2}
    stored = client.retrieve_instance(
        source.StudyInstanceUID, first.series_uid, changed.sop_instance_uid
    )
    stored.save_as(tmp_path / "back.dcm", enforce_file_format=True)
    landmarks = read_sr_landmarks(tmp_path / "back.dcm")
    assert {lm.name: (lm.x, lm.y) for lm in landmarks} == {
        k: pytest.approx(v, abs=1e-3) for k, v in moved.items()
    }
    assert {lm.referenced_sop_instance_uid for lm in landmarks} == {source.SOPInstanceUID}
    assert stored.Modality == "SR" and stored.StudyInstanceUID == source.StudyInstanceUID


def test_a_failed_store_is_recorded_and_the_others_go_on(orthanc, tmp_path: Path) -> None:
    client = settings_for(orthanc).client()
    broken = _item(SOURCE, {"L1": (1.0, 2.0)})
    broken.dataset.StudyInstanceUID = "not-a-uid"
    missing = tmp_path / "missing.dcm"
    outcomes = store_structured_reports(client, [broken, _item(OTHER, {"L1": (3.0, 4.0)})])
    outcomes += store_sr_files(client, {"1.2.3": missing})
    assert [o.status for o in outcomes] == [
        StoreStatus.FAILED,
        StoreStatus.STORED,
        StoreStatus.FAILED,
    ]
    assert outcomes[0].reason and outcomes[2].reason == "sr_unreadable"
    assert store_counts(outcomes) == {"stored": 1, "already_stored": 0, "failed": 2}


def test_only_images_the_server_holds_are_sent_back() -> None:
    url = "http://127.0.0.1:8042/dicom-web"
    catalog = pd.DataFrame(
        {
            "sop_instance_uid": ["1.1", "1.2", "1.3", "1.4", "1.5"],
            "source": ["dicomweb", "incoming", "dicomweb", "dicomweb", "archive"],
            "server_url": [url, "", "http://other/dicom-web", url, ""],
            "outcome": ["labelled", "labelled", "labelled", "accepted", "labelled"],
        }
    )
    assert images_on_server(catalog, ["1.1", "1.2", "1.3", "1.4", "1.5"], url) == ["1.1"]
    assert images_on_server(catalog.drop(columns="server_url"), ["1.1"], url) == []
