"""Failures of requests to the DICOMweb server, sorted into :class:`FailureReason` codes."""

from __future__ import annotations

import requests

from labeling_pipeline.imaging.dicomweb.enum import FailureReason


class DicomwebError(RuntimeError):
    """A request to the server failed: ``reason`` is a :class:`FailureReason`; the message
    names the operation and the HTTP status, never credentials."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        """Worth asking again on the next sync (the server may be back, the study may not)."""
        return self.reason not in (FailureReason.NOT_FOUND,)


def classify_error(error: BaseException, operation: str) -> DicomwebError:
    """A :class:`DicomwebError` for an exception raised while doing ``operation``.

    Messages are built from the status code and exception type only: requests' own messages
    can hold the full request URL, which is credential-free here, but a proxy's or server's
    reason text is not under our control.
    """
    if isinstance(error, DicomwebError):
        return error
    if isinstance(error, requests.Timeout):
        return DicomwebError(FailureReason.TIMEOUT, f"{operation}: timed out")
    if isinstance(error, requests.ConnectionError):
        return DicomwebError(FailureReason.UNREACHABLE, f"{operation}: server unreachable")
    if isinstance(error, requests.HTTPError):
        status = error.response.status_code if error.response is not None else 0
        if status in (401, 403):
            reason = FailureReason.UNAUTHORIZED
            hint = " (check LABELING_DICOMWEB_TOKEN or user/password)"
        elif status in (404, 410):
            reason, hint = FailureReason.NOT_FOUND, ""
        else:
            reason, hint = FailureReason.SERVER_ERROR, ""
        return DicomwebError(reason, f"{operation}: HTTP {status}{hint}")
    if isinstance(error, (ValueError, KeyError, TypeError, IndexError)):
        return DicomwebError(
            FailureReason.INVALID_RESPONSE,
            f"{operation}: unexpected answer ({type(error).__name__})",
        )
    return DicomwebError(
        FailureReason.SERVER_ERROR, f"{operation}: {type(error).__name__} while talking to server"
    )
