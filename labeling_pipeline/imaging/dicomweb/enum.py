"""Coded values of the DICOMweb source: what became of a study, and why a request failed."""

from enum import StrEnum


class StudyStatus(StrEnum):
    """State of one server study in the local cache's record."""

    RETRIEVED = "retrieved"  # its spine series are in the cache
    EVICTED = "evicted"  # was retrieved, removed to respect the size limit; not fetched again
    FAILED = "failed"  # the last retrieve failed (see the reason); retried on the next sync
    NOT_FOUND = "not_found"  # gone from the server between search and retrieve
    NO_SPINE_SERIES = "no_spine_series"  # no series passes the series filter


class FailureReason(StrEnum):
    """Why a request to the server failed (``DicomwebError.reason``, the record's ``reason``)."""

    UNREACHABLE = "unreachable"  # connection refused or dropped
    TIMEOUT = "timeout"
    UNAUTHORIZED = "unauthorized"  # HTTP 401 / 403
    NOT_FOUND = "not_found"  # HTTP 404 / 410
    SERVER_ERROR = "server_error"  # any other HTTP error
    INVALID_RESPONSE = "invalid_response"  # an answer that is not what DICOMweb promises
    CACHE_FULL = "cache_full"  # retrieved, but does not fit the cache even after eviction
    SR_UNREADABLE = "sr_unreadable"  # the SR file to store is missing or broken (not sent)


class StoreStatus(StrEnum):
    """What STOW-RS did with one SR."""

    STORED = "stored"
    ALREADY_STORED = "already_stored"  # the server holds this exact SR (same labels): not sent
    FAILED = "failed"
