"""Where the DICOMweb server is and how to reach it, read from ``LABELING_DICOMWEB_*``.

Credentials (a bearer token, or a user and password) live only in :class:`DicomwebSettings`'
hidden fields and in the HTTP session built from them: they are left out of ``repr``, of
:attr:`DicomwebSettings.server_url` (which the catalog records) and of every error message.
TLS certificates are always verified (optionally against ``LABELING_DICOMWEB_CA_BUNDLE``), and
credentials are refused over plain ``http`` except to this machine.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from dicomweb_client import DICOMwebClient

URL_ENV = "LABELING_DICOMWEB_URL"
TOKEN_ENV = "LABELING_DICOMWEB_TOKEN"
USER_ENV = "LABELING_DICOMWEB_USER"
PASSWORD_ENV = "LABELING_DICOMWEB_PASSWORD"
CA_BUNDLE_ENV = "LABELING_DICOMWEB_CA_BUNDLE"
STORE_ENV = "LABELING_DICOMWEB_STORE"
TIMEOUT_ENV = "LABELING_DICOMWEB_TIMEOUT_S"
LOOKBACK_ENV = "LABELING_DICOMWEB_LOOKBACK_DAYS"
CACHE_LIMIT_ENV = "LABELING_DICOMWEB_CACHE_MB"
MODALITIES_ENV = "LABELING_DICOMWEB_MODALITIES"
BODY_PART_ENV = "LABELING_DICOMWEB_BODY_PART"
DESCRIPTION_ENV = "LABELING_DICOMWEB_SERIES_DESCRIPTION"

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_LOOKBACK_DAYS = 7
DEFAULT_CACHE_LIMIT_MB = 20_000
# Series that show the spine from the side: projection radiographs and MR/CT reconstructions.
DEFAULT_MODALITIES = ("MR", "CT", "CR", "DX")
DEFAULT_BODY_PART = r"SPINE|LUMBAR|CERVICAL|THORAC|SACR|COCCY"
# "SAG..." or a lateral view, as a word of its own ("t2_tse_sag", "L-SPINE LAT"; not "PLATE").
DEFAULT_DESCRIPTION = r"(?<![a-z])(sag|lat(?![a-z])|lateral)"

_TRUE = {"1", "true", "yes", "on"}


class DicomwebConfigError(ValueError):
    """The ``LABELING_DICOMWEB_*`` settings cannot be used; the message names the variable."""


@dataclass(frozen=True)
class SeriesFilter:
    """Which series of a study are labelled: a series passes when its Modality is one of
    ``modalities``, its SeriesDescription matches ``description`` and its BodyPartExamined
    matches ``body_part`` or is empty (many scanners leave it out). Both patterns are regular
    expressions searched case-insensitively."""

    modalities: tuple[str, ...] = DEFAULT_MODALITIES
    body_part: str = DEFAULT_BODY_PART
    description: str = DEFAULT_DESCRIPTION

    def __post_init__(self) -> None:
        for name, pattern in (("body part", self.body_part), ("description", self.description)):
            try:
                re.compile(pattern)
            except re.error as error:
                raise DicomwebConfigError(
                    f"series {name} filter {pattern!r} is not a regular expression: {error}"
                ) from error

    def accepts(self, modality: str, body_part: str, description: str) -> bool:
        if modality.upper() not in {m.upper() for m in self.modalities}:
            return False
        if not re.search(self.description, description or "", re.IGNORECASE):
            return False
        return not body_part or re.search(self.body_part, body_part, re.IGNORECASE) is not None


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` on every request; the token never appears in repr."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<hidden>)"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class DicomwebSettings:
    """How to reach one DICOMweb server. ``server_url`` is the base URL without credentials
    (e.g. ``https://pacs.example.org/dicom-web``); it is what outputs record."""

    server_url: str
    token: str = field(default="", repr=False)
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    ca_bundle: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S
    store_enabled: bool = False
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    cache_limit_bytes: int = DEFAULT_CACHE_LIMIT_MB * 1_000_000
    series_filter: SeriesFilter = field(default_factory=SeriesFilter)

    @classmethod
    def parse_url(cls, url: str) -> tuple[str, str, str]:
        """(base URL without credentials, user, password): ``https://u:p@host/x`` is accepted
        and split, so a URL pasted with its credentials still keeps them out of outputs."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DicomwebConfigError(
                f"{URL_ENV} must be an http(s) URL such as https://pacs.example.org/dicom-web"
            )
        if parts.query or parts.fragment:
            raise DicomwebConfigError(
                f"{URL_ENV} must not carry a query or fragment (put a token in {TOKEN_ENV})"
            )
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        return base, unquote(parts.username or ""), unquote(parts.password or "")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DicomwebSettings | None:
        """The settings from the environment, or None when ``LABELING_DICOMWEB_URL`` is unset."""
        env = os.environ if env is None else env

        def get(name: str) -> str:
            return env.get(name, "").strip()

        url = get(URL_ENV)
        if not url:
            return None
        base, url_user, url_password = cls.parse_url(url)
        username = get(USER_ENV) or url_user
        password = env.get(PASSWORD_ENV, "") or url_password
        token = get(TOKEN_ENV)
        if token and username:
            raise DicomwebConfigError(f"set either {TOKEN_ENV} or a user and password, not both")
        if bool(username) != bool(password):
            raise DicomwebConfigError(f"{USER_ENV} and {PASSWORD_ENV} go together")
        modalities = tuple(m.strip() for m in get(MODALITIES_ENV).split(",") if m.strip())
        try:
            timeout = float(get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
            lookback = int(get(LOOKBACK_ENV) or DEFAULT_LOOKBACK_DAYS)
            limit_mb = float(get(CACHE_LIMIT_ENV) or DEFAULT_CACHE_LIMIT_MB)
        except ValueError as error:
            raise DicomwebConfigError(
                f"a LABELING_DICOMWEB_* number is malformed: {error}"
            ) from error
        if timeout <= 0 or lookback < 0 or limit_mb <= 0:
            raise DicomwebConfigError(
                f"{TIMEOUT_ENV} and {CACHE_LIMIT_ENV} must be positive, {LOOKBACK_ENV} >= 0"
            )
        settings = cls(
            server_url=base,
            token=token,
            username=username,
            password=password,
            ca_bundle=get(CA_BUNDLE_ENV),
            timeout_s=timeout,
            store_enabled=get(STORE_ENV).lower() in _TRUE,
            lookback_days=lookback,
            cache_limit_bytes=int(limit_mb * 1_000_000),
            series_filter=SeriesFilter(
                modalities=modalities or DEFAULT_MODALITIES,
                body_part=get(BODY_PART_ENV) or DEFAULT_BODY_PART,
                description=get(DESCRIPTION_ENV) or DEFAULT_DESCRIPTION,
            ),
        )
        settings.check_transport()
        return settings

    @property
    def has_credentials(self) -> bool:
        return bool(self.token or self.username)

    def check_transport(self) -> None:
        """Credentials only over TLS, except to this machine (a local test server)."""
        parts = urlsplit(self.server_url)
        if self.has_credentials and parts.scheme != "https" and not _is_loopback(parts.hostname):
            raise DicomwebConfigError(
                f"refusing to send credentials over plain http to {parts.hostname}: use https"
            )
        if self.ca_bundle and not Path(self.ca_bundle).is_file():
            raise DicomwebConfigError(f"{CA_BUNDLE_ENV} {self.ca_bundle} is not a file")

    def session(self) -> requests.Session:
        """An HTTP session that authenticates and always verifies TLS certificates."""
        session = requests.Session()
        session.verify = self.ca_bundle or True
        if self.token:
            session.auth = BearerAuth(self.token)
        elif self.username:
            session.auth = requests.auth.HTTPBasicAuth(self.username, self.password)
        return session

    def client(self) -> DICOMwebClient:
        """A dicomweb-client for the server, with this session and timeout; transient HTTP
        errors (429, 503, ...) are retried a few times with back-off."""
        client = DICOMwebClient(self.server_url, session=self.session(), timeout=self.timeout_s)
        client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=250)
        return client
