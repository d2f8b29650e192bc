"""STOW-RS write-back of DICOM SRs (one per labelled image), without piling up.

The SRs arrive with their UIDs already derived from what they describe (``labels/sr.py`` does
that, the one place): the series from the labelled image, the instance from that and the
labels' content. They are stored as they are, so the copy on the server and the file in ``sr/``
agree on every UID. Storing unchanged labels again finds the instance already on the server and
sends nothing; changed labels add one new instance to the same series. Only images the server
holds are sent back (:func:`images_on_server`). Off unless ``LABELING_DICOMWEB_STORE=1``; the
caller checks that setting.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pydicom
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset

from labeling_pipeline.imaging.dicomweb.enum import FailureReason, StoreStatus
from labeling_pipeline.imaging.dicomweb.errors import DicomwebError, classify_error
from labeling_pipeline.imaging.dicomweb.query import search_pages

logger = logging.getLogger(__name__)

DICOMWEB_SOURCE = "dicomweb"


@dataclass(frozen=True)
class SrToStore:
    """The SR of one labelled image (``source_sop_instance_uid``), UIDs already derived."""

    dataset: Dataset
    source_sop_instance_uid: str


@dataclass(frozen=True)
class StoreOutcome:
    source_sop_instance_uid: str
    series_uid: str
    sop_instance_uid: str
    status: StoreStatus
    reason: str = ""
    message: str = ""


def store_counts(outcomes: Iterable[StoreOutcome]) -> dict[str, int]:
    """How many SRs were stored, already stored, failed (every status, zeros included)."""
    counted = Counter(outcome.status for outcome in outcomes)
    return {status.value: counted.get(status, 0) for status in StoreStatus}


def images_on_server(
    catalog: pd.DataFrame, sop_instance_uids: Iterable[str], server_url: str
) -> list[str]:
    """Those of ``sop_instance_uids`` whose labelled file the catalog says came from the
    server at ``server_url`` (source ``dicomweb``): the server holds their study, so an SR of
    them belongs there. Images from the folders are not sent to a server that lacks them."""
    if "server_url" not in catalog:  # a catalog made without a server
        return []
    wanted = set(map(str, sop_instance_uids))
    rows = catalog[
        (catalog["source"] == DICOMWEB_SOURCE)
        & (catalog["server_url"] == server_url)
        & (catalog["outcome"] == "labelled")
        & catalog["sop_instance_uid"].isin(wanted)
    ]
    return sorted(set(rows["sop_instance_uid"].astype(str)))


def check_sr(dataset: Dataset) -> None:
    """Raise ValueError unless ``dataset`` is an SR with its three UIDs."""
    if str(dataset.get("Modality", "")) != "SR":
        raise ValueError("only structured reports (Modality SR) are stored back")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if not str(dataset.get(keyword, "")):
            raise ValueError(f"the SR has no {keyword}")


def ready_to_send(dataset: Dataset, instance_number: int) -> Dataset:
    """A copy of the SR numbered as the ``instance_number``-th version in its series; its UIDs
    are left as they are."""
    check_sr(dataset)
    dataset = copy.deepcopy(dataset)
    dataset.InstanceNumber = instance_number
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
    does not stop the others. Raises ValueError, before sending anything, when an item is not
    an SR with its UIDs."""
    items = list(items)
    for item in items:
        check_sr(item.dataset)
    outcomes = []
    for item in items:
        study_uid = str(item.dataset.get("StudyInstanceUID", ""))
        series_uid = str(item.dataset.get("SeriesInstanceUID", ""))
        sop_uid = str(item.dataset.get("SOPInstanceUID", ""))
        try:
            existing = _instances_in_series(client, study_uid, series_uid)
            if sop_uid in existing:
                status = StoreStatus.ALREADY_STORED
            else:
                dataset = ready_to_send(item.dataset, instance_number=len(existing) + 1)
                try:
                    response = client.store_instances([dataset], study_uid)
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


def store_sr_files(client: DICOMwebClient, sr_files: Mapping[str, Path]) -> list[StoreOutcome]:
    """:func:`store_structured_reports` of SR files (labelled image's SOPInstanceUID -> the
    file ``labels/sr.py`` wrote); a file that cannot be read is recorded as failed."""
    items, outcomes = [], []
    for source_sop, path in sorted(sr_files.items()):
        try:
            dataset = pydicom.dcmread(path)
        except (OSError, pydicom.errors.InvalidDicomError) as error:
            outcomes.append(
                StoreOutcome(
                    source_sop,
                    "",
                    "",
                    StoreStatus.FAILED,
                    FailureReason.SR_UNREADABLE,
                    f"SR file unreadable ({type(error).__name__})",
                )
            )
            continue
        items.append(SrToStore(dataset, source_sop))
    return outcomes + store_structured_reports(client, items)
