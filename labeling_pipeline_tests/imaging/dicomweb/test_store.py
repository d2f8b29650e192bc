"""STOW-RS of SRs against a real Orthanc: stored once, read back, a new instance per change."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from labeling_pipeline.imaging.dicomweb import (
    SrToStore,
    StoreStatus,
    labels_content_digest,
    sr_instance_uid,
    sr_series_uid,
    store_structured_reports,
)
from labeling_pipeline_tests.imaging.dicomweb.helpers import label_sr, settings_for, sr_points
from labeling_pipeline_tests.orthanc_server import SAMPLE_DATA

SOURCE = SAMPLE_DATA / "archive/2026-03/study_0102/IM0001.dcm"


def _item(source: pydicom.Dataset, points: dict[str, tuple[float, float]]) -> SrToStore:
    digest = labels_content_digest((name, x, y, "ok") for name, (x, y) in points.items())
    return SrToStore(
        label_sr(source, points), source.StudyInstanceUID, source.SOPInstanceUID, digest
    )


def test_content_digest_ignores_order_and_float_noise() -> None:
    a = labels_content_digest([("L1", 10.0, 20.0, "ok"), ("L2", 11.0, 35.0, "needs_review")])
    b = labels_content_digest([("L2", 11.000001, 35.0, "needs_review"), ("L1", 10.0, 20.0, "ok")])
    assert a == b
    assert a != labels_content_digest([("L1", 10.0, 20.0, "ok"), ("L2", 11.0, 35.0, "ok")])
    assert sr_instance_uid("1.2.3", a) == sr_instance_uid("1.2.3", b) != sr_instance_uid("1.2.4", a)
    assert sr_series_uid("1.2.3") == sr_series_uid("1.2.3") != sr_series_uid("1.2.4")


def test_only_structured_reports_are_stored(orthanc) -> None:
    source = pydicom.dcmread(SOURCE)
    item = SrToStore(source, source.StudyInstanceUID, source.SOPInstanceUID, "d")
    with pytest.raises(ValueError, match="structured reports"):
        store_structured_reports(settings_for(orthanc).client(), [item])


def test_srs_are_stored_once_and_changes_add_one_instance(orthanc, tmp_path: Path) -> None:
    client = settings_for(orthanc, LABELING_DICOMWEB_STORE="1").client()
    source = pydicom.dcmread(SOURCE)
    points = {"L1": (129.8, 49.4), "L2": (127.5, 80.25)}

    (first,) = store_structured_reports(client, [_item(source, points)])
    assert first.status == StoreStatus.STORED
    assert first.series_uid == sr_series_uid(source.SOPInstanceUID)
    (again,) = store_structured_reports(client, [_item(source, points)])
    assert (again.status, again.sop_instance_uid) == (
        StoreStatus.ALREADY_STORED,
        first.sop_instance_uid,
    )

    moved = dict(points, L2=(127.5, 84.0))
    (changed,) = store_structured_reports(client, [_item(source, moved)])
    assert changed.status == StoreStatus.STORED
    assert changed.series_uid == first.series_uid
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
    assert sr_points(stored) == {k: pytest.approx(v, abs=1e-4) for k, v in moved.items()}  # FL
    assert stored.Modality == "SR"
    assert (
        stored.ContentSequence[0]
        .ContentSequence[0]
        .ReferencedSOPSequence[0]
        .ReferencedSOPInstanceUID
        == source.SOPInstanceUID
    )


def test_a_failed_store_is_recorded_and_the_others_go_on(orthanc) -> None:
    client = settings_for(orthanc).client()
    source = pydicom.dcmread(SOURCE)
    other = pydicom.dcmread(SAMPLE_DATA / "archive/2026-04/study_0103/IM0001.dcm")
    broken = _item(source, {"L1": (1.0, 2.0)})
    broken = SrToStore(broken.dataset, "not-a-uid", broken.source_sop_instance_uid, "x")
    outcomes = store_structured_reports(client, [broken, _item(other, {"L1": (3.0, 4.0)})])
    assert [o.status for o in outcomes] == [StoreStatus.FAILED, StoreStatus.STORED]
    assert outcomes[0].reason
