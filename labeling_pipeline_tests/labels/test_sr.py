"""DICOM SR (TID 1500) per labelled image: written with highdicom, read back."""

import io
import math
from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest

from labeling_pipeline.corrections import (
    append_corrections,
    curate_labels,
    make_correction,
    read_corrections,
)
from labeling_pipeline.labels import sr as sr_module
from labeling_pipeline.labels.sr import (
    build_sr,
    document_attributes,
    labels_content_digest,
    measurement_groups,
    measurement_report,
    read_sr_landmarks,
    sr_instance_uid,
    sr_series_uid,
    write_sr,
)


def test_sr_holds_every_landmark_with_its_point_status_and_code(reviewable, tmp_path, monkeypatch):
    study = reviewable.studies[0]
    labels = reviewable.labels()
    rows = labels[labels["sop_instance_uid"] == study.sop_instance_uid]
    l3 = rows[rows["landmark"] == "L3"].iloc[0].to_dict()
    true_x, true_y = study.truth["L3"]
    append_corrections(
        reviewable.corrections_dir, [make_correction(l3, "move", "ann", x=true_x, y=true_y)]
    )
    curated = curate_labels(rows, read_corrections(reviewable.corrections_dir))
    source = reviewable.data_dir / "incoming" / "study_0" / "IM0001.dcm"
    path = tmp_path / "sr" / f"{study.sop_instance_uid}.dcm"
    assert write_sr(path, source, curated) is True

    landmarks = {lm.name: lm for lm in read_sr_landmarks(path)}
    assert list(landmarks) == [n for n in curated["landmark"] if n != "S1"] + ["S1"]
    assert landmarks["L3"].status == "corrected"
    assert (landmarks["L3"].x, landmarks["L3"].y) == pytest.approx((true_x, true_y), abs=1e-3)
    assert landmarks["L3"].referenced_sop_instance_uid == study.sop_instance_uid
    assert (landmarks["L1"].concept.value, landmarks["L1"].concept.scheme_designator) == (
        "66794005",
        "SCT",
    )
    assert landmarks["L1-L2"].concept.scheme_designator == "99LBLPIPE"
    # S1 was not found: listed, with its status, without a point.
    assert landmarks["S1"].status == "needs_review" and math.isnan(landmarks["S1"].x)

    sr = pydicom.dcmread(path)
    original = pydicom.dcmread(source, stop_before_pixels=True)
    assert sr.Modality == "SR" and sr.StudyInstanceUID == original.StudyInstanceUID
    assert (sr.PatientName, sr.PatientID) == (original.PatientName, original.PatientID)
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.CompletionFlag == "PARTIAL"  # S1 still needs review

    # Same labels again: nothing is built or rewritten; changed labels: a new instance.
    with monkeypatch.context() as patch:
        patch.setattr(sr_module, "build_sr", lambda *a, **k: pytest.fail("SR built again"))
        assert write_sr(path, source, curated) is False
    first_uid = sr.SOPInstanceUID
    changed = curated.assign(status="confirmed").assign(x=curated["x"].fillna(5.0))
    changed = changed.assign(y=curated["y"].fillna(5.0))
    assert write_sr(path, source, changed) is True
    again = pydicom.dcmread(path)
    assert again.SOPInstanceUID != first_uid and again.SeriesInstanceUID == sr.SeriesInstanceUID
    assert again.CompletionFlag == "COMPLETE"


def test_sr_uids_come_from_the_image_and_the_labels_content() -> None:
    a = labels_content_digest([("L1", 10.0, 20.0, "ok"), ("L2", 11.0, 35.0, "needs_review")])
    b = labels_content_digest([("L2", 11.000001, 35.0, "needs_review"), ("L1", 10.0, 20.0, "ok")])
    assert a == b
    assert a != labels_content_digest([("L1", 10.0, 20.0, "ok"), ("L2", 11.0, 35.0, "ok")])
    assert sr_instance_uid("1.2.3", a) == sr_instance_uid("1.2.3", b) != sr_instance_uid("1.2.4", a)
    assert sr_series_uid("1.2.3") == sr_series_uid("1.2.3") != sr_series_uid("1.2.4")


SAMPLE_DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.mark.parametrize(
    ("source_file", "frame_index", "missing"),
    [
        ("archive/2026-03/study_0102/IM0001.dcm", 0, []),
        # The first landmark without a point: the document's own report then holds no region.
        ("archive/2026-03/study_0102/IM0001.dcm", 0, ["T12", "L3"]),
        ("incoming/site_b/20260903/0004/sag_t2_multiframe.dcm", 3, ["S1"]),
    ],
)
def test_the_sr_equals_highdicoms_own_document(source_file, frame_index, missing, tmp_path) -> None:
    # build_sr hands highdicom a one-group report and puts the whole report in afterwards.
    source = pydicom.dcmread(SAMPLE_DATA / source_file, stop_before_pixels=True)
    names = ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    rows = pd.DataFrame(
        {
            "landmark": [*names, "L4-L5"],
            "kind": ["vertebra"] * len(names) + ["disc"],
            "x": np.linspace(80.0, 150.0, len(names) + 1),
            "y": np.linspace(40.0, 380.0, len(names) + 1),
            "status": ["ok"] * len(names) + ["needs_review"],
        }
    )
    rows.loc[rows["landmark"].isin(missing), ["x", "y"]] = math.nan
    built = build_sr(source, rows, frame_index)
    groups = measurement_groups(source, rows, frame_index)
    reference = hd.sr.ComprehensiveSR(
        evidence=[source], content=measurement_report(groups), **document_attributes(source, rows)
    )

    def written(dataset: pydicom.Dataset) -> pydicom.Dataset:
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        return pydicom.dcmread(io.BytesIO(buffer.getvalue()))

    # Creation times and the equipment record (it holds one) are the moment of building.
    stamped = {"InstanceCreationTime", "InstanceCreationDate", "ContentTime", "ContentDate"}
    stamped.add("ContributingEquipmentSequence")
    ours, theirs = written(built), written(reference)
    assert {e.keyword for e in ours} == {e.keyword for e in theirs}
    for element in theirs:
        if element.keyword not in stamped:
            assert ours[element.tag] == element, element.keyword
    path = tmp_path / "sr.dcm"
    ours.save_as(path, enforce_file_format=True)
    read_back = {lm.name: lm for lm in read_sr_landmarks(path)}
    assert set(read_back) == set(rows["landmark"])
    assert all(math.isnan(read_back[name].x) for name in missing)
