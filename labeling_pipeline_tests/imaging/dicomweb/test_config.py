"""Settings from LABELING_DICOMWEB_*: credentials kept out of URLs, repr and errors; TLS on."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from labeling_pipeline.imaging.dicomweb import (
    DicomwebConfigError,
    DicomwebSettings,
    FailureReason,
    SeriesFilter,
    classify_error,
)

URL = "LABELING_DICOMWEB_URL"


def test_unset_url_means_no_server() -> None:
    assert DicomwebSettings.from_env({}) is None
    assert DicomwebSettings.from_env({URL: "  "}) is None


def test_credentials_in_the_url_are_split_off_and_hidden() -> None:
    settings = DicomwebSettings.from_env({URL: "http://alice:s%40cret@127.0.0.1:8042/dicom-web/"})
    assert settings is not None
    assert settings.server_url == "http://127.0.0.1:8042/dicom-web"
    assert (settings.username, settings.password) == ("alice", "s@cret")
    assert "s@cret" not in repr(settings) and "alice" not in repr(settings)
    assert settings.session().auth.password == "s@cret"


def test_token_becomes_a_bearer_header_and_stays_out_of_repr() -> None:
    settings = DicomwebSettings.from_env(
        {URL: "https://pacs.example.org/dicom-web", "LABELING_DICOMWEB_TOKEN": "tok-123"}
    )
    session = settings.session()
    prepared = session.prepare_request(requests.Request("GET", settings.server_url + "/studies"))
    assert prepared.headers["Authorization"] == "Bearer tok-123"
    assert "tok-123" not in repr(settings) and "tok-123" not in repr(session.auth)
    assert session.verify is True


def test_ca_bundle_is_used_for_verification_and_must_exist(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    env = {URL: "https://pacs.example.org/dw", "LABELING_DICOMWEB_CA_BUNDLE": str(bundle)}
    assert DicomwebSettings.from_env(env).session().verify == str(bundle)
    env["LABELING_DICOMWEB_CA_BUNDLE"] = str(tmp_path / "missing.pem")
    with pytest.raises(DicomwebConfigError, match="CA_BUNDLE"):
        DicomwebSettings.from_env(env)


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({URL: "ftp://pacs/dw"}, "http"),
        ({URL: "https://pacs/dw?access_token=x"}, "query"),
        ({URL: "http://pacs.example.org/dw", "LABELING_DICOMWEB_TOKEN": "t"}, "plain http"),
        (
            {URL: "https://pacs/dw", "LABELING_DICOMWEB_TOKEN": "t", "LABELING_DICOMWEB_USER": "u"},
            "either",
        ),
        ({URL: "https://pacs/dw", "LABELING_DICOMWEB_USER": "u"}, "go together"),
        ({URL: "https://pacs/dw", "LABELING_DICOMWEB_CACHE_MB": "lots"}, "malformed"),
        ({URL: "https://pacs/dw", "LABELING_DICOMWEB_BODY_PART": "("}, "regular expression"),
    ],
)
def test_unusable_settings_are_refused_with_the_variable_named(env: dict, match: str) -> None:
    with pytest.raises(DicomwebConfigError, match=match) as raised:
        DicomwebSettings.from_env(env)
    assert "t\x00" not in str(raised.value)


def test_numbers_store_flag_and_filter_are_read() -> None:
    settings = DicomwebSettings.from_env(
        {
            URL: "https://pacs/dw",
            "LABELING_DICOMWEB_STORE": "1",
            "LABELING_DICOMWEB_LOOKBACK_DAYS": "30",
            "LABELING_DICOMWEB_CACHE_MB": "2.5",
            "LABELING_DICOMWEB_TIMEOUT_S": "5",
            "LABELING_DICOMWEB_MODALITIES": "mr, cr",
        }
    )
    assert settings.store_enabled and settings.lookback_days == 30
    assert settings.cache_limit_bytes == 2_500_000 and settings.timeout_s == 5.0
    assert settings.series_filter.modalities == ("mr", "cr")
    assert DicomwebSettings.from_env({URL: "https://pacs/dw"}).store_enabled is False


@pytest.mark.parametrize(
    ("modality", "body_part", "description", "accepted"),
    [
        ("MR", "LSPINE", "SAG T2 TSE", True),
        ("MR", "", "t2_tse_sag_384", True),
        ("CR", "SPINE", "L-SPINE LAT", True),
        ("MR", "LSPINE", "AX T2", False),  # axial
        ("MR", "BRAIN", "SAG T1", False),  # sagittal, not spine
        ("SR", "LSPINE", "SAG labels", False),  # not an image modality
    ],
)
def test_default_series_filter_keeps_sagittal_spine_series(
    modality: str, body_part: str, description: str, accepted: bool
) -> None:
    assert SeriesFilter().accepts(modality, body_part, description) is accepted


def test_request_failures_are_sorted_into_reasons() -> None:
    def http_error(status: int) -> requests.HTTPError:
        response = requests.Response()
        response.status_code = status
        return requests.HTTPError(response=response)

    assert classify_error(requests.ConnectTimeout(), "x").reason == FailureReason.TIMEOUT
    assert classify_error(requests.ReadTimeout(), "x").reason == FailureReason.TIMEOUT
    assert classify_error(requests.ConnectionError(), "x").reason == FailureReason.UNREACHABLE
    assert classify_error(http_error(401), "x").reason == FailureReason.UNAUTHORIZED
    assert classify_error(http_error(404), "x").reason == FailureReason.NOT_FOUND
    assert classify_error(http_error(500), "x").reason == FailureReason.SERVER_ERROR
    assert not classify_error(http_error(404), "x").retryable
    assert classify_error(requests.ReadTimeout(), "x").retryable
