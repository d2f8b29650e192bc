"""Bring a server's new spine studies into the local cache: search (QIDO-RS), then retrieve
only the series that will be labelled and only their image instances (WADO-RS).

A study already retrieved with the same series and instance counts is not retrieved again
(deduplication by StudyInstanceUID, so a look-back window can overlap the previous one). A
study whose retrieve fails or times out is recorded with the reason and retried on the next
sync; it never stops the others. A study that vanished from the server is recorded as
``not_found`` and asked for again only if a later search lists it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from dicomweb_client import DICOMwebClient

from labeling_pipeline.imaging.dicomweb.cache import StudyCache, StudyRecord, cache_root
from labeling_pipeline.imaging.dicomweb.config import DicomwebSettings, SeriesFilter
from labeling_pipeline.imaging.dicomweb.enum import FailureReason, StudyStatus
from labeling_pipeline.imaging.dicomweb.errors import DicomwebError, classify_error
from labeling_pipeline.imaging.dicomweb.query import (
    DateRange,
    StudyHit,
    search_studies,
    series_instances,
    spine_series,
    study_series,
)

logger = logging.getLogger(__name__)

UP_TO_DATE = "up_to_date"
# After this many studies in a row without an answer (refused, timed out), the rest of a sync
# is recorded as failed without asking: a server that is down would cost a timeout per study.
MAX_UNANSWERED = 3  # an outcome of a sync, not a record status: nothing had to be done


@dataclass(frozen=True)
class StudyOutcome:
    """What one sync did with one study (``status``: a :class:`StudyStatus` or ``up_to_date``)."""

    study_uid: str
    status: str
    reason: str = ""
    message: str = ""
    files: int = 0


@dataclass
class SyncReport:
    """The result of one sync, for logs and run metadata (UIDs and counts only)."""

    server_url: str
    dates: DateRange
    found: int = 0  # studies the search listed
    outcomes: list[StudyOutcome] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)

    def by_status(self, status: str) -> list[StudyOutcome]:
        return [o for o in self.outcomes if o.status == status]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {"found": self.found, "evicted": len(self.evicted)}
        for outcome in self.outcomes:
            counts[str(outcome.status)] = counts.get(str(outcome.status), 0) + 1
        return counts


@dataclass(frozen=True)
class SyncPlan:
    """The studies a sync looks at: ``found`` by the search, then ``retries`` (recorded as
    failed for a reason worth retrying, and not listed by this search)."""

    dates: DateRange
    found: list[StudyHit]
    retries: list[StudyHit]

    @property
    def studies(self) -> list[StudyHit]:
        return self.found + self.retries


def plan_sync(
    client: DICOMwebClient, cache: StudyCache, dates: DateRange, modalities: Iterable[str]
) -> SyncPlan:
    """Search the server for studies in ``dates`` and add the retries from ``cache``'s record.
    Raises :class:`DicomwebError` when the search itself fails (e.g. ``unauthorized``)."""
    found = search_studies(client, dates, modalities)
    listed = {hit.study_uid for hit in found}
    retries = [
        StudyHit(record.study_uid, record.study_date)
        for record in sorted(cache.records.values(), key=lambda r: r.study_uid)
        if record.status == StudyStatus.FAILED and record.study_uid not in listed
    ]
    return SyncPlan(dates, found, retries)


def _retrieve_into_staging(
    client: DICOMwebClient, cache: StudyCache, record: StudyRecord, series_filter: SeriesFilter
) -> tuple[int, int]:
    """Retrieve the image instances of the study's spine series into its staging folder;
    (files written, non-image instances skipped). Raises :class:`DicomwebError`."""
    cache.discard_staging(record.study_uid)
    staging = cache.staging_dir(record.study_uid)
    written = skipped = 0
    for series in spine_series(study_series(client, record.study_uid), series_filter):
        instances = series_instances(client, series)
        images = [instance for instance in instances if instance.is_image]
        skipped += len(instances) - len(images)
        folder = staging / series.series_uid
        folder.mkdir(parents=True, exist_ok=True)
        for instance in images:
            try:
                dataset = client.retrieve_instance(
                    series.study_uid, series.series_uid, instance.sop_instance_uid
                )
            except Exception as error:  # noqa: BLE001
                raise classify_error(error, "instance retrieve") from error
            if str(dataset.get("SOPInstanceUID", "")) != instance.sop_instance_uid:
                raise DicomwebError(
                    FailureReason.INVALID_RESPONSE, "instance retrieve: another instance came back"
                )
            pydicom.dcmwrite(
                folder / f"{instance.sop_instance_uid}.dcm", dataset, enforce_file_format=True
            )
            written += 1
    return written, skipped


def retrieve_studies(
    client: DICOMwebClient,
    cache: StudyCache,
    plan: SyncPlan,
    series_filter: SeriesFilter,
    server_url: str,
    on_study: Callable[[StudyOutcome], None] | None = None,
) -> SyncReport:
    """Retrieve each study that is new or changed into ``cache`` (which the caller holds
    :meth:`~StudyCache.locked`); the record is saved after every study, so an interrupted sync
    keeps what it finished. ``on_study`` is called with each outcome."""
    report = SyncReport(server_url=server_url, dates=plan.dates, found=len(plan.found))
    protected: set[str] = set()
    unanswered = 0  # consecutive studies the server did not answer for
    for hit in plan.studies:
        previous = cache.records.get(hit.study_uid)
        if unanswered >= MAX_UNANSWERED:
            outcome = _not_tried(cache, hit, previous, server_url)
            cache.save()
            report.outcomes.append(outcome)
            if on_study is not None:
                on_study(outcome)
            continue
        record = StudyRecord(
            study_uid=hit.study_uid,
            server_url=server_url,
            status=StudyStatus.FAILED,
            study_date=hit.study_date or (previous.study_date if previous else ""),
            attempts=previous.attempts if previous else 0,
        )
        outcome = _sync_one(client, cache, record, previous, series_filter, protected, report)
        if outcome.status == StudyStatus.RETRIEVED:
            protected.add(hit.study_uid)
        gone = outcome.reason in (FailureReason.UNREACHABLE, FailureReason.TIMEOUT)
        unanswered = unanswered + 1 if gone else 0
        cache.save()
        report.outcomes.append(outcome)
        logger.info(
            "DICOMweb study %s: %s%s",
            hit.study_uid,
            outcome.status,
            f" ({outcome.message})" if outcome.message else "",
        )
        if on_study is not None:
            on_study(outcome)
    return report


def _not_tried(
    cache: StudyCache, hit: StudyHit, previous: StudyRecord | None, server_url: str
) -> StudyOutcome:
    """Record a study skipped because the server stopped answering (retried next sync)."""
    message = "not tried: the server stopped answering"
    if previous is not None and previous.status == StudyStatus.RETRIEVED:
        return StudyOutcome(hit.study_uid, UP_TO_DATE, message=message, files=previous.files)
    record = previous or StudyRecord(hit.study_uid, server_url, StudyStatus.FAILED, hit.study_date)
    record.status, record.reason, record.message = (
        StudyStatus.FAILED,
        FailureReason.UNREACHABLE,
        message,
    )
    cache.records[hit.study_uid] = record
    return StudyOutcome(hit.study_uid, record.status, record.reason, message)


def _sync_one(
    client: DICOMwebClient,
    cache: StudyCache,
    record: StudyRecord,
    previous: StudyRecord | None,
    series_filter: SeriesFilter,
    protected: set[str],
    report: SyncReport,
) -> StudyOutcome:
    uid = record.study_uid
    try:
        every_series = study_series(client, uid)
        wanted = spine_series(every_series, series_filter)
        record.series = {s.series_uid: s.instances for s in wanted}
        if not every_series:
            raise DicomwebError(FailureReason.NOT_FOUND, "series search: study not on the server")
        if not wanted:
            record.status = StudyStatus.NO_SPINE_SERIES
            cache.records[uid] = record
            return StudyOutcome(uid, record.status)
        current = previous is not None and previous.series == record.series
        if current and (
            previous.status == StudyStatus.EVICTED
            or (previous.status == StudyStatus.RETRIEVED and cache.study_dir(uid).is_dir())
        ):
            return StudyOutcome(uid, UP_TO_DATE, files=previous.files)
        written, skipped = _retrieve_into_staging(client, cache, record, series_filter)
        record.skipped_non_image = skipped
        if written == 0:
            cache.discard_staging(uid)
            record.status = StudyStatus.NO_SPINE_SERIES
            record.message = "its spine series hold no image instances"
            cache.records[uid] = record
            return StudyOutcome(uid, record.status, message=record.message)
    except DicomwebError as error:
        cache.discard_staging(uid)
        record.status = StudyStatus.NOT_FOUND if not error.retryable else StudyStatus.FAILED
        record.reason, record.message = error.reason, error.message
        record.attempts += 1
        # A failed retry keeps what is cached: a new version failing must not lose the old one.
        if previous is not None and previous.status == StudyStatus.RETRIEVED:
            previous.attempts, previous.reason, previous.message = (
                record.attempts,
                record.reason,
                record.message,
            )
            if error.retryable:
                previous.status = StudyStatus.FAILED  # retried next sync; files stay
            cache.records[uid] = previous
        else:
            cache.records[uid] = record
        return StudyOutcome(uid, record.status, record.reason, record.message)
    if not cache.commit(record, protected, report.evicted):
        record.status = StudyStatus.FAILED
        record.reason = FailureReason.CACHE_FULL
        record.message = f"does not fit the cache limit of {cache.limit_bytes} bytes"
        record.attempts += 1
        cache.records[uid] = record
        return StudyOutcome(uid, record.status, record.reason, record.message)
    return StudyOutcome(uid, StudyStatus.RETRIEVED, files=record.files)


def sync_server(
    settings: DicomwebSettings,
    cache: StudyCache,
    dates: DateRange,
    client: DICOMwebClient | None = None,
    on_study: Callable[[StudyOutcome], None] | None = None,
) -> SyncReport:
    """Search ``dates`` on the server of ``settings`` and retrieve what is new into ``cache``.
    Raises :class:`DicomwebError` when the search fails (nothing is changed then)."""
    client = client or settings.client()
    with cache.locked():
        plan = plan_sync(client, cache, dates, settings.series_filter.modalities)
        return retrieve_studies(
            client, cache, plan, settings.series_filter, settings.server_url, on_study=on_study
        )


def pending_studies(settings: DicomwebSettings, cache: StudyCache, dates: DateRange) -> list[str]:
    """A cheap look for the sensor (one QIDO search, no retrieve): ``uid:attempts`` of each
    study the next sync would retrieve (not recorded yet, listed again after it vanished, or
    failed before). The attempts make a new list after each failed retry."""
    plan = plan_sync(settings.client(), cache, dates, settings.series_filter.modalities)
    pending = []
    for hit in plan.studies:
        record = cache.records.get(hit.study_uid)
        if record is None or record.status in (StudyStatus.FAILED, StudyStatus.NOT_FOUND):
            pending.append(f"{hit.study_uid}:{record.attempts if record else 0}")
    return sorted(pending)


def sync_data_dir(
    settings: DicomwebSettings, data_dir: Path, dates: DateRange | None = None
) -> SyncReport:
    """Sync the server into ``data_dir/dicomweb`` over ``dates`` (default: the look-back window
    of ``LABELING_DICOMWEB_LOOKBACK_DAYS`` up to today). Raises :class:`DicomwebError` when the
    server cannot be searched."""
    cache = StudyCache(cache_root(data_dir), settings.cache_limit_bytes)
    return sync_server(settings, cache, dates or DateRange.lookback(settings.lookback_days))
