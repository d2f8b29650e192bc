"""Keys and pseudonyms: the study's partition key, a file-name-safe key per image, and the
salted patient pseudonym that stands in for PatientID."""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime

from labeling_pipeline.imaging.dicom.enum import SOURCES

# Pseudonym salt: deployments should set LABELING_PSEUDONYM_SALT to a secret of their own, so
# that a patient_key cannot be recomputed from a guessed PatientID by someone who reads this code.
PSEUDONYM_SALT_ENV = "LABELING_PSEUDONYM_SALT"
DEFAULT_PSEUDONYM_SALT = "labeling_pipeline/patient-key/v1"

#: A DICOM date (DA) as the partition key accepts it: ``YYYYMMDD``.
DICOM_DATE = re.compile(r"^\d{8}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_UID_LENGTH = 64  # DICOM PS3.5 9.1


def is_uid(value: str) -> bool:
    """Whether ``value`` is shaped as a DICOM UID: digits and dots, at most 64 characters."""
    return bool(_UID.match(value or "")) and len(value) <= MAX_UID_LENGTH


def is_calendar_date(value: str) -> bool:
    """Whether ``value`` is a DICOM date (DA, ``YYYYMMDD``) that exists in the calendar."""
    if not DICOM_DATE.match(value or ""):
        return False
    try:
        datetime.strptime(value, "%Y%m%d")
    except ValueError:
        return False
    return True


#: A study's partition key: ``<source>-YYYYMMDD-<8 hex>`` (``nodate`` for a bad StudyDate).
PARTITION_KEY = re.compile(rf"^(?P<source>{'|'.join(SOURCES)})-(?:\d{{8}}|nodate)-[0-9a-f]{{8}}$")
# Which folder names a study with files in several (see study_source).
STUDY_SOURCE_PRECEDENCE = ("incoming", "dicomweb", "archive")
#: The key before the source was part of it (``YYYYMMDD-<8 hex>``): found only in output
#: directories and Dagster instances made before; never made again, so its outputs are withdrawn.
LEGACY_PARTITION_KEY = re.compile(r"^(?:\d{8}|nodate)-[0-9a-f]{8}$")


def partition_key(source: str, study_date: str, study_uid: str) -> str:
    """Dagster dynamic-partition key of a study: ``<source>-YYYYMMDD-<8 hex of sha1(uid)>``.

    ``source`` is the folder the study's files are in (``archive``, ``dicomweb``, ``incoming``;
    :func:`study_source` for a study in several), so that a substring filter (the UI's backfill
    dialog) selects a source and its dates, e.g. ``archive-2019``. Readable, stable across runs
    and machines, one per study and folder: a study whose files move to another folder gets a
    new key. ``nodate`` stands in for a missing, malformed or impossible StudyDate
    (e.g. ``20261399``).
    """
    if source not in SOURCES:
        raise ValueError(f"a partition key's source must be one of {SOURCES}, got {source!r}")
    if not study_uid:
        raise ValueError("a partition key needs a StudyInstanceUID")
    date = study_date if is_calendar_date(study_date) else "nodate"
    digest = hashlib.sha1(study_uid.encode("utf-8")).hexdigest()[:8]
    return f"{source}-{date}-{digest}"


def study_source(sources: set[str] | list[str] | tuple[str, ...]) -> str:
    """The source of a study whose files lie in ``sources``: ``incoming`` when any of them is
    there, else ``dicomweb``, else ``archive``. A study being moved from ``incoming/`` to
    ``archive/`` keeps its incoming key until its last file has left ``incoming/`` (one key
    change per move); a study with new files in ``incoming/`` is one that automation labels."""
    for source in STUDY_SOURCE_PRECEDENCE:
        if source in sources:
            return source
    raise ValueError(f"no known source among {sorted(sources)}")


def key_source(key: str) -> str | None:
    """The source a partition key names (``archive``, ``dicomweb``, ``incoming``); None for any
    other string (a key of the old format, ``YYYYMMDD-<8 hex>``, names none)."""
    match = PARTITION_KEY.match(key or "")
    return match.group("source") if match else None


def image_key(sop_instance_uid: str) -> str:
    """A file-name-safe key for one labelled image (overlay and feature-store names).

    A well-formed UID (digits and dots) is its own key, as the README's
    ``overlays/<sop_instance_uid>.png`` expects; anything else (which could hold ``/`` or
    ``..``) is replaced by ``x`` + 16 hex of its sha1.
    """
    if not sop_instance_uid:
        raise ValueError("an image key needs a SOPInstanceUID")
    if _UID.match(sop_instance_uid) and len(sop_instance_uid) <= 64:
        return sop_instance_uid
    return "x" + hashlib.sha1(sop_instance_uid.encode("utf-8")).hexdigest()[:16]


def file_key(relative_path: str) -> str:
    """The catalog's row key of an input file: 16 hex of sha256 of its path relative to the
    data directory. Logs, run metadata and values passed between assets name files by it,
    never by path (folders may be named after patients); ``catalog.parquet`` maps it back."""
    return hashlib.sha256(relative_path.encode("utf-8")).hexdigest()[:16]


def pseudonymize(patient_id: str, salt: str | None = None) -> str:
    """``patient_key``: first 16 hex of sha256(salt + PatientID); "" when PatientID is empty.

    The salt comes from the environment variable ``LABELING_PSEUDONYM_SALT`` (default: a fixed
    project string, which only protects against casual reading; set your own in deployments).
    """
    if not patient_id:
        return ""
    if salt is None:
        salt = os.environ.get(PSEUDONYM_SALT_ENV, DEFAULT_PSEUDONYM_SALT)
    return hashlib.sha256((salt + patient_id).encode("utf-8")).hexdigest()[:16]
