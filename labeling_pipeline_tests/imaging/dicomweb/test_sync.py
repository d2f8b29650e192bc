"""Search and retrieve against a real Orthanc: what is cached, reuse, eviction and failures."""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
import pytest

from labeling_pipeline.imaging.dicomweb import (
    UP_TO_DATE,
    DateRange,
    DicomwebError,
    FailureReason,
    StudyCache,
    StudyStatus,
    plan_sync,
    retrieve_studies,
    search_studies,
    sync_server,
)
from labeling_pipeline_tests.imaging.dicomweb.helpers import (
    cached_sops,
    label_sr,
    same_pixels,
    sample_instances,
    settings_for,
    sibling_series,
    to_bytes,
)
from labeling_pipeline_tests.orthanc_server import SAMPLE_DATA

ALL_2026 = DateRange("20260101", "20261231")
ARCHIVE = DateRange("20260201", "20260831")
SERIES_STUDY = SAMPLE_DATA / "incoming/site_a/2026-09-02/study_0003/SAG_T2"


def test_search_finds_studies_by_date_and_modality(orthanc) -> None:
    expected = sample_instances()
    client = settings_for(orthanc).client()
    archive = search_studies(client, ARCHIVE, ["MR"])
    assert len(archive) == 6
    assert all(ARCHIVE.contains(hit.study_date) for hit in archive)
    assert {hit.study_date for hit in archive} == {
        date for sops in expected.values() for date in sops.values() if date < "20260901"
    }
    assert search_studies(client, ARCHIVE, ["CT"]) == []
    assert search_studies(client, ARCHIVE, ["CT", "MR"]) == archive
    assert len(search_studies(client, DateRange("20260901", "20260930"), ["MR"])) == 6


def test_lookback_window_ends_today() -> None:
    import datetime as dt

    window = DateRange.lookback(7, today=dt.date(2026, 3, 2))
    assert (window.first, window.last) == ("20260223", "20260302")


def test_sync_retrieves_every_spine_study_and_reuses_the_cache(orthanc, tmp_path: Path) -> None:
    uploaded = orthanc.upload_sample_data()  # again: Orthanc keeps one copy of each instance
    expected = sample_instances(uploaded)
    cache = StudyCache(tmp_path / "cache", limit_bytes=10**9)
    report = sync_server(settings_for(orthanc), cache, ALL_2026)

    assert report.counts() == {"found": 12, "evicted": 0, "retrieved": 12}
    assert cached_sops(cache) == {study: set(sops) for study, sops in expected.items()}
    original = SERIES_STUDY / "IM0003.dcm"
    ds = pydicom.dcmread(original, stop_before_pixels=True)
    copy = cache.study_dir(ds.StudyInstanceUID) / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    assert same_pixels(original, copy)
    assert cache.server_url_of(ds.StudyInstanceUID) == orthanc.dicomweb_url
    assert not any((cache.root / ".staging").glob("*"))

    mtimes = {p: p.stat().st_mtime_ns for p in cache.root.rglob("*.dcm")}
    again = sync_server(settings_for(orthanc), cache, ALL_2026)
    assert again.counts() == {"found": 12, "evicted": 0, UP_TO_DATE: 12}
    assert {p: p.stat().st_mtime_ns for p in cache.root.rglob("*.dcm")} == mtimes


def test_new_instances_in_a_cached_study_are_retrieved_again(orthanc, tmp_path: Path) -> None:
    cache = StudyCache(tmp_path / "cache", limit_bytes=10**9)
    sync_server(settings_for(orthanc), cache, ARCHIVE)
    late = pydicom.dcmread(SAMPLE_DATA / "archive/2026-02/study_0101/IM0001.dcm")
    late.SOPInstanceUID = pydicom.uid.generate_uid()
    late.file_meta.MediaStorageSOPInstanceUID = late.SOPInstanceUID
    late.InstanceNumber = 2
    orthanc.upload_bytes(to_bytes(late))

    report = sync_server(settings_for(orthanc), cache, ARCHIVE)
    assert [o.study_uid for o in report.by_status(StudyStatus.RETRIEVED)] == [late.StudyInstanceUID]
    assert len(cached_sops(cache)[late.StudyInstanceUID]) == 2


def test_cache_evicts_the_oldest_retrieved_studies(orthanc, tmp_path: Path) -> None:
    one_study = (SAMPLE_DATA / "archive/2026-02/study_0101/IM0001.dcm").stat().st_size
    cache = StudyCache(tmp_path / "cache", limit_bytes=int(2.5 * one_study))
    settings = settings_for(orthanc)
    first = sync_server(settings, cache, DateRange("20260201", "20260331"))  # Feb, Mar
    assert first.counts()["retrieved"] == 2 and first.evicted == []
    february = first.outcomes[0].study_uid

    second = sync_server(settings, cache, DateRange("20260401", "20260430"))  # Apr
    assert second.evicted == [february]
    assert cache.records[february].status == StudyStatus.EVICTED
    assert not cache.study_dir(february).exists()
    assert sum(p.stat().st_size for p in cache.root.rglob("*.dcm")) <= cache.limit_bytes

    # An evicted study is not fetched again when a later window covers it again.
    third = sync_server(settings, cache, DateRange("20260201", "20260430"))
    assert third.counts() == {"found": 3, "evicted": 0, UP_TO_DATE: 3}


def test_a_study_larger_than_the_cache_is_recorded_and_retried(orthanc, tmp_path: Path) -> None:
    cache = StudyCache(tmp_path / "cache", limit_bytes=1000)
    report = sync_server(settings_for(orthanc), cache, DateRange("20260201", "20260228"))
    (outcome,) = report.outcomes
    assert (outcome.status, outcome.reason) == (StudyStatus.FAILED, FailureReason.CACHE_FULL)
    assert cached_sops(cache) == {}

    bigger = StudyCache(tmp_path / "cache", limit_bytes=10**9)
    retried = sync_server(settings_for(orthanc), bigger, DateRange("20260301", "20260331"))
    assert {o.study_uid: o.status for o in retried.outcomes}[outcome.study_uid] == "retrieved"
    assert retried.counts()["retrieved"] == 2  # March's study, and February's retried


def test_server_going_away_mid_run_is_recorded_and_resumed(orthanc, tmp_path: Path) -> None:
    cache = StudyCache(tmp_path / "cache", limit_bytes=10**9)
    settings = settings_for(orthanc, LABELING_DICOMWEB_TIMEOUT_S="5")
    seen = []

    def stop_after_two(outcome) -> None:
        seen.append(outcome)
        if len(seen) == 2:
            orthanc.stop(kill=True)

    report = sync_server(settings, cache, ARCHIVE, on_study=stop_after_two)
    assert report.counts() == {"found": 6, "evicted": 0, "retrieved": 2, "failed": 4}
    assert {o.reason for o in report.by_status(StudyStatus.FAILED)} == {FailureReason.UNREACHABLE}
    assert len(cached_sops(cache)) == 2
    saved = StudyCache(cache.root, 10**9).records
    assert saved[report.outcomes[2].study_uid].attempts == 1
    # After three studies without an answer the rest are recorded without asking.
    assert report.outcomes[-1].message == "not tried: the server stopped answering"
    assert saved[report.outcomes[-1].study_uid].status == StudyStatus.FAILED

    with pytest.raises(DicomwebError) as raised:  # the search itself cannot run now
        sync_server(settings, cache, ARCHIVE)
    assert raised.value.reason == FailureReason.UNREACHABLE

    orthanc.start()
    resumed = sync_server(settings, cache, ARCHIVE)
    assert resumed.counts() == {"found": 6, "evicted": 0, UP_TO_DATE: 2, "retrieved": 4}
    assert len(cached_sops(cache)) == 6


def test_study_deleted_between_search_and_retrieve(orthanc, tmp_path: Path) -> None:
    settings = settings_for(orthanc)
    client = settings.client()
    cache = StudyCache(tmp_path / "cache", limit_bytes=10**9)
    with cache.locked():
        plan = plan_sync(client, cache, ARCHIVE, ["MR"])
        gone = plan.found[2].study_uid
        orthanc.delete_study(gone)
        report = retrieve_studies(client, cache, plan, settings.series_filter, settings.server_url)
    statuses = {o.study_uid: o.status for o in report.outcomes}
    assert statuses.pop(gone) == StudyStatus.NOT_FOUND
    assert set(statuses.values()) == {StudyStatus.RETRIEVED}
    assert gone not in cached_sops(cache) and len(cached_sops(cache)) == 5

    # Not asked for again: the next search does not list it, and a 404 is not retried.
    again = sync_server(settings, cache, ARCHIVE)
    assert gone not in {o.study_uid for o in again.outcomes}


def test_only_image_instances_of_spine_series_are_retrieved(orthanc, tmp_path: Path) -> None:
    middle = pydicom.dcmread(SERIES_STUDY / "IM0003.dcm")
    report_in_series = label_sr(middle, {"L1": (10.0, 20.0)})
    report_in_series.SeriesInstanceUID = middle.SeriesInstanceUID  # a non-image in the series
    orthanc.upload_bytes(to_bytes(report_in_series))
    axial = sibling_series(SERIES_STUDY / "IM0001.dcm", "AX T2 TSE")
    orthanc.upload_bytes(to_bytes(axial))

    cache = StudyCache(tmp_path / "cache", limit_bytes=10**9)
    sync_server(settings_for(orthanc), cache, DateRange("20260902", "20260902"))
    cached = cached_sops(cache)[middle.StudyInstanceUID]
    assert cached == set(sample_instances()[middle.StudyInstanceUID])  # the 5 sagittal slices
    record = cache.records[middle.StudyInstanceUID]
    assert record.skipped_non_image == 1
    assert list(record.series) == [middle.SeriesInstanceUID]
    assert not cache.study_dir(middle.StudyInstanceUID).joinpath(axial.SeriesInstanceUID).exists()


def test_unauthorized_server_is_a_clear_error_and_secrets_stay_hidden(
    orthanc_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password, token = "pw-Zq8-never-logged", "tok-Zq8-never-logged"
    server = orthanc_factory(users={"labeler": password})
    server.upload_sample_data()
    cache = StudyCache(tmp_path / "cache", limit_bytes=10**9)
    caplog.set_level(logging.DEBUG)

    for env in (
        {},
        {"LABELING_DICOMWEB_TOKEN": token},
        {"LABELING_DICOMWEB_USER": "labeler", "LABELING_DICOMWEB_PASSWORD": "wrong"},
    ):
        with pytest.raises(DicomwebError) as raised:
            sync_server(settings_for(server, **env), cache, ARCHIVE)
        assert raised.value.reason == FailureReason.UNAUTHORIZED
        assert "401" in str(raised.value) and token not in str(raised.value)

    good = settings_for(
        server, LABELING_DICOMWEB_USER="labeler", LABELING_DICOMWEB_PASSWORD=password
    )
    assert sync_server(good, cache, ARCHIVE).counts()["retrieved"] == 6
    in_url = settings_for(server)
    in_url = type(in_url).from_env(
        {"LABELING_DICOMWEB_URL": server.dicomweb_url.replace("://", f"://labeler:{password}@")}
    )
    assert in_url.server_url == server.dicomweb_url
    assert sync_server(in_url, cache, ARCHIVE).counts()[UP_TO_DATE] == 6

    written = [p.read_bytes() for p in cache.root.rglob("*") if p.is_file()]
    for secret in (password, token):
        assert secret not in caplog.text
        assert not any(secret.encode() in blob for blob in written)
