"""Keys and pseudonyms: the study's partition key, a file-name-safe key per image, and the
salted patient pseudonym that stands in for PatientID."""

from __future__ import annotations

import hashlib
import os
import re

# Pseudonym salt: deployments should set LABELING_PSEUDONYM_SALT to a secret of their own, so
# that a patient_key cannot be recomputed from a guessed PatientID by someone who reads this code.
PSEUDONYM_SALT_ENV = "LABELING_PSEUDONYM_SALT"
DEFAULT_PSEUDONYM_SALT = "labeling_pipeline/patient-key/v1"

#: A DICOM date (DA) as the partition key accepts it: ``YYYYMMDD``.
DICOM_DATE = re.compile(r"^\d{8}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def partition_key(study_date: str, study_uid: str) -> str:
    """Dagster dynamic-partition key of a study: ``YYYYMMDD-<first 8 hex of sha1(study_uid)>``.

    Readable (sorts by date), stable across runs and machines, one per study. ``nodate`` stands
    in for a missing or malformed StudyDate.
    """
    if not study_uid:
        raise ValueError("a partition key needs a StudyInstanceUID")
    date = study_date if DICOM_DATE.match(study_date or "") else "nodate"
    digest = hashlib.sha1(study_uid.encode("utf-8")).hexdigest()[:8]
    return f"{date}-{digest}"


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
