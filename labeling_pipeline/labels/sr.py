"""DICOM Structured Reports of the labels: one TID 1500 Measurement Report per labelled image.

Each landmark is a measurement group with a tracking identifier (its name and a UID), the
landmark as a coded concept (SNOMED CT for vertebrae; the project's private scheme
``99LBLPIPE`` for discs, which SNOMED CT does not name one by one), and its status as a
qualitative evaluation (``ok``, ``needs_review``, ``corrected``, ``confirmed``,
``not_in_view``). A landmark with a position is a planar ROI group (TID 1410) whose region is an
SCOORD ``POINT`` on the source image (and frame); one without a position is a TID 1501 group
without a region. SCOORD coordinates put (0, 0) at the top-left corner of the top-left pixel,
so the point of label ``(x, y)`` (pixel centres, x = column) is ``(x + 0.5, y + 0.5)``.

The SR is a clinical object of its study: highdicom copies the source's patient and study
modules into it so that a PACS files it with the study. It is therefore, with
``catalog.parquet``, the one output that holds patient identity; keep ``sr/`` where the images
themselves may be kept.

Its UIDs are derived here, and only here (:func:`sr_series_uid`, :func:`sr_instance_uid`):
the series from the source image (every version of an image's labels shares one SR series), the
instance from the source image and a digest of the labels (:func:`labels_content_digest`). So
writing the same labels again changes nothing, changed labels give a new SR instance in the same
series, and the copy stored on a PACS (``imaging/dicomweb/store.py`` sends this file as it is)
has the UIDs of the file in ``sr/``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from labeling_pipeline.atomic import atomic_write

PRIVATE_SCHEME = "99LBLPIPE"
SR_SERIES_NUMBER = 990
MANUFACTURER = "labeling_pipeline"
_UID_NAMESPACE = "labeling_pipeline.sr"
_SERIES_NAMESPACE = "labeling_pipeline/sr-series/v1"
_INSTANCE_NAMESPACE = "labeling_pipeline/sr-instance/v1"

# SNOMED CT body structures of the vertebrae ("Bone structure of L1", ...).
SNOMED_VERTEBRAE: dict[str, str] = {
    "C1": "14806007",
    "C2": "39976000",
    "C3": "113205007",
    "C4": "5329002",
    "C5": "36978003",
    "C6": "36054005",
    "C7": "87391001",
    "T1": "64864005",
    "T2": "53733008",
    "T3": "1626008",
    "T4": "73071006",
    "T5": "56401006",
    "T6": "45296009",
    "T7": "62487009",
    "T8": "11068009",
    "T9": "82687006",
    "T10": "7610001",
    "T11": "12989004",
    "T12": "23215003",
    "L1": "66794005",
    "L2": "14293000",
    "L3": "36470004",
    "L4": "11994002",
    "L5": "49668003",
    "S1": "65985001",
}

STATUS_NAME = hd.sr.CodedConcept("STATUS", PRIVATE_SCHEME, "Landmark review status")
PROCEDURE = hd.sr.CodedConcept("VERTEBRA-LABELS", PRIVATE_SCHEME, "Vertebra labelling")
_STATUS_MEANINGS = {
    "ok": "Located",
    "needs_review": "Needs review",
    "corrected": "Corrected by reviewer",
    "confirmed": "Confirmed by reviewer",
    "not_in_view": "Not in view",
}


def landmark_concept(name: str, kind: str) -> hd.sr.CodedConcept:
    """The landmark as a coded concept: SNOMED CT for a named vertebra, else private."""
    if kind == "vertebra" and name in SNOMED_VERTEBRAE:
        return hd.sr.CodedConcept(SNOMED_VERTEBRAE[name], "SCT", f"{name} vertebra")
    label = f"{name} intervertebral disc" if kind == "disc" else f"{name} {kind}"
    return hd.sr.CodedConcept(f"LM-{name}"[:16], PRIVATE_SCHEME, label)


def status_concept(status: str) -> hd.sr.CodedConcept:
    """A status as a coded concept of the private scheme (code = the status itself)."""
    return hd.sr.CodedConcept(status, PRIVATE_SCHEME, _STATUS_MEANINGS.get(status, status))


def labels_content_digest(points: Iterable[tuple[str, float, float, str]]) -> str:
    """sha256 of an image's labels as (landmark, x, y, status), x = column and y = row in
    pixels, rounded to 1/100 pixel so that float noise does not count as a change (and in any
    order: the same labels give the same digest)."""
    canonical = sorted(f"{name}\0{x:.2f}\0{y:.2f}\0{status}" for name, x, y, status in points)
    return hashlib.sha256("\n".join(canonical).encode("utf-8")).hexdigest()


def rows_content_digest(rows: pd.DataFrame) -> str:
    """:func:`labels_content_digest` of label or curated rows (``landmark, x, y, status``)."""
    return labels_content_digest(
        zip(
            rows["landmark"].astype(str),
            rows["x"].astype(float),
            rows["y"].astype(float),
            rows["status"].astype(str),
            strict=True,
        )
    )


def sr_series_uid(source_sop_instance_uid: str) -> str:
    """The SR series of one labelled image (the same for every version of its labels)."""
    return generate_uid(entropy_srcs=[_SERIES_NAMESPACE, source_sop_instance_uid])


def sr_instance_uid(source_sop_instance_uid: str, content_digest: str) -> str:
    """The SR instance of one labelled image with one content of labels."""
    return generate_uid(entropy_srcs=[_INSTANCE_NAMESPACE, source_sop_instance_uid, content_digest])


def measurement_groups(source: pydicom.Dataset, rows: pd.DataFrame, frame_index: int = 0) -> list:
    """One TID 1500 measurement group per row (landmark) of one labelled image: a planar ROI
    group with its point where the row has one, a group without a region otherwise."""
    frames = int(getattr(source, "NumberOfFrames", 1) or 1)
    referenced = [frame_index + 1] if frames > 1 else None
    try:
        source_image = hd.sr.SourceImageForRegion.from_source_image(source, referenced)
    except TypeError:
        # Frames of a single-frame IOD (e.g. legacy MR Image Storage holding several frames)
        # cannot be referenced one by one: the region then references the instance.
        source_image = hd.sr.SourceImageForRegion.from_source_image(source)
    groups = []
    for row in rows.itertuples(index=False):
        tracking = hd.sr.TrackingIdentifier(
            uid=generate_uid(
                entropy_srcs=[_UID_NAMESPACE, source.SOPInstanceUID, str(row.landmark)]
            ),
            identifier=str(row.landmark),
        )
        common = {
            "tracking_identifier": tracking,
            "finding_type": landmark_concept(str(row.landmark), str(row.kind)),
            "qualitative_evaluations": [
                hd.sr.QualitativeEvaluation(STATUS_NAME, status_concept(str(row.status)))
            ],
        }
        if math.isfinite(row.x) and math.isfinite(row.y):
            region = hd.sr.ImageRegion(
                graphic_type=hd.sr.GraphicTypeValues.POINT,
                graphic_data=np.array([[row.x + 0.5, row.y + 0.5]]),
                source_image=source_image,
            )
            groups.append(
                hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                    referenced_region=region, **common
                )
            )
        else:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(**common))
    return groups


def measurement_report(groups: list) -> hd.sr.MeasurementReport:
    """The TID 1500 report of ``groups``, observed by this program as a device."""
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=[_UID_NAMESPACE, "device"]), name=MANUFACTURER
        ),
    )
    return hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=PROCEDURE,
        imaging_measurements=groups,
    )


def document_attributes(source: pydicom.Dataset, rows: pd.DataFrame) -> dict:
    """The SR document's own attributes (highdicom's ``ComprehensiveSR`` arguments besides
    its evidence and content): UIDs derived from the source image and the labels."""
    return {
        "series_instance_uid": sr_series_uid(source.SOPInstanceUID),
        "series_number": SR_SERIES_NUMBER,
        "sop_instance_uid": sr_instance_uid(source.SOPInstanceUID, rows_content_digest(rows)),
        "instance_number": 1,
        "manufacturer": MANUFACTURER,
        "is_complete": not (rows["status"] == "needs_review").any(),
        "series_description": "Vertebra labels",
    }


def build_sr(source: pydicom.Dataset, rows: pd.DataFrame, frame_index: int = 0) -> pydicom.Dataset:
    """The SR of one labelled image: ``source`` is its DICOM dataset (pixels not needed),
    ``rows`` its label or curated rows (``landmark, kind, x, y, status``). Returns the document
    as a plain dataset, ready to save or send (``hd.sr.srread`` gives highdicom's view of it)."""
    groups = measurement_groups(source, rows, frame_index)
    # highdicom's document deep-copies, re-parses and searches its whole content tree: two thirds
    # of an SR's cost with a group per landmark. Its evidence comes from `evidence` alone (the
    # content is only checked against it), so the document is made around a report of the first
    # group, then given the whole report's root item as highdicom copies it in. The result
    # equals highdicom's own document (labels/test_sr.py).
    document = hd.sr.ComprehensiveSR(
        evidence=[source],
        content=measurement_report(groups[:1]),
        **document_attributes(source, rows),
    )
    dataset = pydicom.Dataset(document)
    dataset.file_meta = document.file_meta
    for element in measurement_report(groups)[0]:
        dataset[element.tag] = element
    return dataset


def write_sr(path: Path, source_path: Path, rows: pd.DataFrame, frame_index: int = 0) -> bool:
    """Write the SR of one image to ``path`` atomically; returns False (and writes nothing)
    when the file there already is the SR of exactly these labels."""
    source = pydicom.dcmread(source_path, stop_before_pixels=True)
    path = Path(path)
    # The SR's UID follows from the source and the labels: compared before the SR is built
    # (about 150 ms of highdicom's work per image), so that a re-run of unchanged labels is cheap.
    if path.exists():
        try:
            existing = pydicom.dcmread(path, stop_before_pixels=True)
            if existing.SOPInstanceUID == sr_instance_uid(
                source.SOPInstanceUID, rows_content_digest(rows)
            ):
                return False
        except (pydicom.errors.InvalidDicomError, AttributeError, OSError):
            pass  # unreadable: replace it
    sr = build_sr(source, rows, frame_index)
    atomic_write(path, lambda temporary: sr.save_as(temporary, enforce_file_format=True))
    return True


@dataclass(frozen=True)
class SRLandmark:
    """One landmark read back from an SR (x, y in label convention: pixel centres)."""

    name: str
    concept: hd.sr.CodedConcept
    status: str
    x: float
    y: float
    referenced_sop_instance_uid: str


def read_sr_landmarks(path: Path) -> list[SRLandmark]:
    """The landmarks of an SR written by :func:`write_sr`, in the order written."""
    sr = hd.sr.srread(path)
    landmarks = []
    groups = [
        *sr.content.get_planar_roi_measurement_groups(),
        *sr.content.get_image_measurement_groups(),
    ]
    for group in groups:
        (evaluation,) = group.get_qualitative_evaluations(name=STATUS_NAME)
        x = y = math.nan
        referenced = ""
        region = getattr(group, "roi", None)
        if region is not None:
            column, row = (float(v) for v in region.GraphicData[:2])
            x, y = column - 0.5, row - 0.5
            image = region.ContentSequence[0]  # the SELECTED FROM image reference
            referenced = image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        landmarks.append(
            SRLandmark(
                name=group.tracking_identifier,
                concept=group.finding_type,
                status=evaluation.value.value,
                x=x,
                y=y,
                referenced_sop_instance_uid=referenced,
            )
        )
    return landmarks
