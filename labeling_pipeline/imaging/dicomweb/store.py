"""STOW-RS write-back of DICOM SRs (one per labelled image), without piling up.

An SR's UIDs are derived from what it describes: its series from the labelled image's
SOPInstanceUID (all versions of an image's labels share one SR series), its instance from that
and a digest of the labels' content. Storing unchanged labels again therefore finds the
instance already on the server and sends nothing; changed labels add one new instance to the
same series. Off unless ``LABELING_DICOMWEB_STORE=1``; the caller checks that setting.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from labeling_pipeline.imaging.dicomweb.enum import FailureReason, StoreStatus
from labeling_pipeline.imaging.dicomweb.errors import DicomwebError, classify_error
from labeling_pipeline.imaging.dicomweb.query import search_pages

logger = logging.getLogger(__name__)

_SERIES_NAMESPACE = "labeling_pipeline/sr-series/v1"
_INSTANCE_NAMESPACE = "labeling_pipeline/sr-instance/v1"


def labels_content_digest(points: Iterable[tuple[str, float, float, str]]) -> str:
    """sha256 of an image's labels as (landmark, x, y, status), x = column and y = row in
    pixels, rounded to 1/100 pixel so that float noise does not count as a change."""
    canonical = sorted(f"{name}\0{x:.2f}\0{y:.2f}\0{status}" for name, x, y, status in points)
    return hashlib.sha256("\n".join(canonical).encode("utf-8")).hexdigest()


def sr_series_uid(source_sop_instance_uid: str) -> str:
    """The SR series of one labelled image (the same for every version of its labels)."""
    return generate_uid(entropy_srcs=[_SERIES_NAMESPACE, source_sop_instance_uid])


def sr_instance_uid(source_sop_instance_uid: str, content_digest: str) -> str:
    """The SR instance of one labelled image with one content of labels."""
    return generate_uid(entropy_srcs=[_INSTANCE_NAMESPACE, source_sop_instance_uid, content_digest])


@dataclass(frozen=True)
class SrToStore:
    """An SR describing the labels of one image (``source_*``: the labelled image's UIDs;
    ``content_digest``: e.g. :func:`labels_content_digest` of its labels)."""

    dataset: Dataset
    source_study_uid: str
    source_sop_instance_uid: str
    content_digest: str


@dataclass(frozen=True)
class StoreOutcome:
    source_sop_instance_uid: str
    series_uid: str
    sop_instance_uid: str
    status: StoreStatus
    reason: str = ""
    message: str = ""


def with_derived_uids(item: SrToStore, instance_number: int) -> Dataset:
    """A copy of the SR with its study, series and instance UIDs set as derived above."""
    if str(item.dataset.get("Modality", "")) != "SR":
        raise ValueError("only structured reports (Modality SR) are stored back")
    dataset = copy.deepcopy(item.dataset)
    dataset.StudyInstanceUID = item.source_study_uid
    dataset.SeriesInstanceUID = sr_series_uid(item.source_sop_instance_uid)
    dataset.SOPInstanceUID = sr_instance_uid(item.source_sop_instance_uid, item.content_digest)
    dataset.InstanceNumber = instance_number
    # A complete DICOM file (preamble, "DICM", meta): dicomweb-client sends the dataset as
    # pydicom writes it, and servers keep and serve back the bytes they were given.
    meta = getattr(dataset, "file_meta", None) or FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    if not meta.get("TransferSyntaxUID"):
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta = meta
    dataset.preamble = b"\0" * 128
    return dataset


def _instances_in_series(client: DICOMwebClient, study_uid: str, series_uid: str) -> set[str]:
    try:
        answers = search_pages(
            lambda **page: client.search_for_instances(
                study_uid, series_uid, fields=["SOPInstanceUID"], **page
            ),
            "00080018",
            "SR series search",
        )
    except DicomwebError as error:
        if error.reason == FailureReason.NOT_FOUND:
            return set()  # no SR stored yet
        raise
    return {str(answer["00080018"]["Value"][0]) for answer in answers}


def _failed_in_response(response: Dataset | None, sop_instance_uid: str) -> bool:
    failed = response.get("FailedSOPSequence", []) if response is not None else []
    return any(str(item.get("ReferencedSOPInstanceUID", "")) == sop_instance_uid for item in failed)


def store_structured_reports(
    client: DICOMwebClient, items: Iterable[SrToStore]
) -> list[StoreOutcome]:
    """STOW-RS each SR unless the server already holds it; a failure is recorded per SR and
    does not stop the others."""
    outcomes = []
    for item in items:
        series_uid = sr_series_uid(item.source_sop_instance_uid)
        sop_uid = sr_instance_uid(item.source_sop_instance_uid, item.content_digest)
        try:
            existing = _instances_in_series(client, item.source_study_uid, series_uid)
            if sop_uid in existing:
                status = StoreStatus.ALREADY_STORED
            else:
                dataset = with_derived_uids(item, instance_number=len(existing) + 1)
                try:
                    response = client.store_instances([dataset], item.source_study_uid)
                except Exception as error:  # noqa: BLE001
                    raise classify_error(error, "SR store") from error
                if _failed_in_response(response, sop_uid):
                    raise DicomwebError(FailureReason.SERVER_ERROR, "SR store: refused by server")
                status = StoreStatus.STORED
            outcome = StoreOutcome(item.source_sop_instance_uid, series_uid, sop_uid, status)
        except DicomwebError as error:
            outcome = StoreOutcome(
                item.source_sop_instance_uid,
                series_uid,
                sop_uid,
                StoreStatus.FAILED,
                error.reason,
                error.message,
            )
        logger.info("SR for image %s: %s", item.source_sop_instance_uid, outcome.status)
        outcomes.append(outcome)
    return outcomes
