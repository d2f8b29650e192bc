"""QIDO-RS: find studies by StudyDate and modality, their spine series, and the image
instances of a series.

Only UIDs, dates, modality, series description, body part and counts are read from the
answers; patient attributes that a server returns anyway are dropped here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dicomweb_client import DICOMwebClient
from pydicom.uid import UID

from labeling_pipeline.imaging.dicomweb.config import SeriesFilter
from labeling_pipeline.imaging.dicomweb.enum import FailureReason
from labeling_pipeline.imaging.dicomweb.errors import DicomwebError, classify_error

_DATE = re.compile(r"^\d{8}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# Storage SOP classes whose name says they hold images ("MR Image Storage", "Enhanced CT Image
# Storage", "Digital X-Ray Image Storage - For Presentation", secondary captures...).
_IMAGE_CLASS = re.compile(r"Image Storage", re.IGNORECASE)


@dataclass(frozen=True)
class DateRange:
    """StudyDate from ``first`` to ``last``, both included, as YYYYMMDD strings."""

    first: str
    last: str

    def __post_init__(self) -> None:
        for value in (self.first, self.last):
            if not _DATE.match(value):
                raise ValueError(f"a StudyDate must be YYYYMMDD, got {value!r}")
        if self.first > self.last:
            raise ValueError(f"StudyDate range {self.first}-{self.last} is empty")

    @classmethod
    def lookback(cls, days: int, today: dt.date | None = None) -> DateRange:
        """The last ``days`` days up to and including ``today``: studies that arrive late (an
        older StudyDate) are still found on the following syncs."""
        today = today or dt.date.today()
        return cls((today - dt.timedelta(days=days)).strftime("%Y%m%d"), today.strftime("%Y%m%d"))

    @classmethod
    def from_dates(cls, first: dt.date, last: dt.date) -> DateRange:
        return cls(first.strftime("%Y%m%d"), last.strftime("%Y%m%d"))

    def query(self) -> str:
        return f"{self.first}-{self.last}"

    def contains(self, study_date: str) -> bool:
        return self.first <= study_date <= self.last


@dataclass(frozen=True)
class StudyHit:
    study_uid: str
    study_date: str  # YYYYMMDD, "" when the server has none


@dataclass(frozen=True)
class SeriesHit:
    study_uid: str
    series_uid: str
    modality: str
    description: str
    body_part: str
    instances: int  # NumberOfSeriesRelatedInstances, -1 when the server does not say


@dataclass(frozen=True)
class InstanceHit:
    sop_instance_uid: str
    sop_class_uid: str

    @property
    def is_image(self) -> bool:
        """False for SOP classes known not to hold images (SR, presentation states, key
        objects, encapsulated documents); an unknown class is given the benefit of the doubt
        (ingestion validates what arrives)."""
        uid = UID(self.sop_class_uid)
        if not uid.is_valid or uid.name == str(uid):
            return True  # private or unknown class
        return _IMAGE_CLASS.search(uid.name) is not None


def _value(answer: dict[str, Any], tag: str) -> Any:
    values = answer.get(tag, {}).get("Value") or []
    return values[0] if values else None


def _text(answer: dict[str, Any], tag: str) -> str:
    value = _value(answer, tag)
    return "" if value is None else str(value).strip()


def _uid(answer: dict[str, Any], tag: str, what: str) -> str:
    value = _text(answer, tag)
    # A UID becomes a cache folder name: anything but digits and dots is refused outright.
    if not _UID.match(value) or len(value) > 64:
        raise DicomwebError(FailureReason.INVALID_RESPONSE, f"{what}: malformed UID")
    return value


def _count(answer: dict[str, Any], tag: str) -> int:
    try:
        return int(_value(answer, tag))
    except (TypeError, ValueError):
        return -1


PAGE_SIZE = 500


def search_pages(
    search: Callable[..., list[dict[str, Any]]], key_tag: str, operation: str
) -> list[dict[str, Any]]:
    """Every answer of a QIDO search, page by page (``limit``/``offset``), without repeats.

    Not dicomweb-client's ``get_remaining``: a server that ignores ``offset`` for some filters
    (Orthanc's DICOMweb plugin does with ModalitiesInStudy) would make it ask forever. Paging
    stops at a short page or at a page that brings nothing new.
    """
    answers: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        try:
            page = search(limit=PAGE_SIZE, offset=offset)
        except Exception as error:  # noqa: BLE001 - sorted into reasons by classify_error
            raise classify_error(error, operation) from error
        new = 0
        for answer in page:
            key = _text(answer, key_tag)
            if key not in answers:
                answers[key] = answer
                new += 1
        if len(page) < PAGE_SIZE or new == 0:
            return list(answers.values())
        offset += len(page)


def search_studies(
    client: DICOMwebClient, dates: DateRange, modalities: Iterable[str]
) -> list[StudyHit]:
    """Studies with a StudyDate in ``dates`` and one of ``modalities`` (server-side filter when
    there is one modality, checked here on ModalitiesInStudy otherwise), one per
    StudyInstanceUID, ordered by date then UID. Raises :class:`DicomwebError`."""
    wanted = {m.upper() for m in modalities}
    filters: dict[str, Any] = {"StudyDate": dates.query()}
    if len(wanted) == 1:
        filters["ModalitiesInStudy"] = next(iter(wanted))
    answers = search_pages(
        lambda **page: client.search_for_studies(
            search_filters=filters,
            fields=["StudyInstanceUID", "StudyDate", "ModalitiesInStudy"],
            **page,
        ),
        "0020000D",
        "study search",
    )
    hits: dict[str, StudyHit] = {}
    for answer in answers:
        study_uid = _uid(answer, "0020000D", "study search")
        in_study = {str(m).upper() for m in answer.get("00080061", {}).get("Value") or []}
        if in_study and not in_study & wanted:
            continue
        date = _text(answer, "00080020")
        hits.setdefault(study_uid, StudyHit(study_uid, date if _DATE.match(date) else ""))
    return sorted(hits.values(), key=lambda h: (h.study_date, h.study_uid))


def study_series(client: DICOMwebClient, study_uid: str) -> list[SeriesHit]:
    """Every series of a study, ordered by UID (an empty list when the study is gone: servers
    answer a search in a missing study with no match). Raises :class:`DicomwebError`."""
    fields = [
        "SeriesInstanceUID",
        "Modality",
        "SeriesDescription",
        "BodyPartExamined",
        "NumberOfSeriesRelatedInstances",
    ]
    answers = search_pages(
        lambda **page: client.search_for_series(study_uid, fields=fields, **page),
        "0020000E",
        "series search",
    )
    hits = []
    for answer in answers:
        hit = SeriesHit(
            study_uid=study_uid,
            series_uid=_uid(answer, "0020000E", "series search"),
            modality=_text(answer, "00080060"),
            description=_text(answer, "0008103E"),
            body_part=_text(answer, "00180015"),
            instances=_count(answer, "00201209"),
        )
        hits.append(hit)
    return sorted(hits, key=lambda h: h.series_uid)


def spine_series(series: list[SeriesHit], series_filter: SeriesFilter) -> list[SeriesHit]:
    """The series that pass ``series_filter`` (those that will be labelled)."""
    return [s for s in series if series_filter.accepts(s.modality, s.body_part, s.description)]


def series_instances(client: DICOMwebClient, series: SeriesHit) -> list[InstanceHit]:
    """Every instance of a series with its SOP class, ordered by UID."""
    answers = search_pages(
        lambda **page: client.search_for_instances(
            series.study_uid, series.series_uid, fields=["SOPInstanceUID", "SOPClassUID"], **page
        ),
        "00080018",
        "instance search",
    )
    hits = {
        uid: InstanceHit(uid, _text(answer, "00080016"))
        for answer in answers
        for uid in [_uid(answer, "00080018", "instance search")]
    }
    return [hits[uid] for uid in sorted(hits)]
