"""The catalog: one row per input file seen by a scan, with what became of it, and the
questions the pipeline asks of it (which studies to label, which images, has a study changed).

Holds UIDs and a salted patient pseudonym (``patient_key``), never a patient name or ID.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields

import pandas as pd

from labeling_pipeline.imaging.dicom.enum import CatalogOutcome, RejectionReason
from labeling_pipeline.imaging.dicom.keys import file_key, key_source


@dataclass
class CatalogEntry:
    """One input file seen by a scan, and what became of it.

    ``path`` is relative to the data directory (``incoming/a/b.dcm``). ``frame_index`` is the
    labelled frame (0-based) on the ``labelled`` row, -1 elsewhere. ``rows``/``columns``/
    ``number_of_frames`` are 0 when unknown. ``note`` records fallbacks that were taken (e.g.
    ImagerPixelSpacing used, slice order from InstanceNumber). ``server_url``: for a file of
    the ``dicomweb`` source, the base URL (without credentials) of the server it came from.
    ``slice_choice`` says, on the ``labelled`` row, why that slice (frame) of its series was
    chosen (e.g. ``single frame``, ``middle slice: no difference``, ``most mid-sagittal of 9
    central slices: ...``).
    """

    path: str
    source: str
    size_bytes: int
    sha256: str
    outcome: str
    reason_code: str = ""
    reason: str = ""
    note: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_instance_uid: str = ""
    study_date: str = ""
    modality: str = ""
    partition_key: str = ""
    patient_key: str = ""
    frame_index: int = -1
    number_of_frames: int = 0
    rows: int = 0
    columns: int = 0
    server_url: str = ""
    slice_choice: str = ""
    file_key: str = ""

    def __post_init__(self) -> None:
        if not self.file_key:
            self.file_key = file_key(self.path)


CATALOG_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CatalogEntry))
CATALOG_INT_COLUMNS = ("size_bytes", "frame_index", "number_of_frames", "rows", "columns")


def catalog_to_frame(entries: list[CatalogEntry]) -> pd.DataFrame:
    """The catalog as a table with the columns of :class:`CatalogEntry`, sorted by path."""
    frame = pd.DataFrame([asdict(e) for e in entries], columns=list(CATALOG_COLUMNS))
    for column in CATALOG_COLUMNS:
        if column in CATALOG_INT_COLUMNS:
            frame[column] = frame[column].astype("int64")
        else:
            frame[column] = frame[column].astype(str)
    return frame.sort_values("path", kind="stable").reset_index(drop=True)


def labelled_partition_keys(catalog: pd.DataFrame) -> list[str]:
    """The studies that have at least one image to label, as sorted partition keys."""
    labelled = catalog[
        (catalog["outcome"] == CatalogOutcome.LABELLED) & (catalog["partition_key"] != "")
    ]
    return sorted(set(labelled["partition_key"]))


def labelled_rows(catalog: pd.DataFrame, partition_key: str) -> pd.DataFrame:
    """The catalog rows of the images to label in one study, one per SOP instance."""
    rows = catalog[
        (catalog["outcome"] == CatalogOutcome.LABELLED)
        & (catalog["partition_key"] == partition_key)
    ]
    return rows.sort_values("path", kind="stable").drop_duplicates("sop_instance_uid")


def study_digest(catalog: pd.DataFrame, partition_key: str) -> str:
    """A digest of one study's files (paths, contents, outcomes): it changes when a file of
    the study is added, removed or replaced, so a study is labelled again only then."""
    rows = catalog[catalog["partition_key"] == partition_key].sort_values("path", kind="stable")
    digest = hashlib.sha256()
    for path, sha256, outcome in zip(rows["path"], rows["sha256"], rows["outcome"], strict=True):
        digest.update(f"{path}\0{sha256}\0{outcome}\n".encode())
    return digest.hexdigest()


def study_digests(catalog: pd.DataFrame) -> dict[str, str]:
    """:func:`study_digest` of every study with an image to label, in one pass."""
    keys = set(labelled_partition_keys(catalog))
    rows = catalog[catalog["partition_key"].isin(keys)].sort_values("path", kind="stable")
    digests = {}
    for key, study in rows.groupby("partition_key", sort=True):
        digest = hashlib.sha256()
        for path, sha256, outcome in zip(
            study["path"], study["sha256"], study["outcome"], strict=True
        ):
            digest.update(f"{path}\0{sha256}\0{outcome}\n".encode())
        digests[str(key)] = digest.hexdigest()
    return digests


def study_summary(catalog: pd.DataFrame) -> pd.DataFrame:
    """Per study partition: its source folder(s), files, labelled images and rejected files."""
    studies = catalog[catalog["partition_key"] != ""]
    if studies.empty:
        return pd.DataFrame(columns=["partition_key", "source", "files", "labelled", "rejected"])
    grouped = studies.groupby("partition_key", sort=True)
    return pd.DataFrame(
        {
            "source": grouped["source"].agg(lambda s: ",".join(sorted(set(s)))),
            "files": grouped.size(),
            "labelled": grouped["outcome"].agg(lambda s: int((s == CatalogOutcome.LABELLED).sum())),
            "rejected": grouped["outcome"].agg(lambda s: int((s == CatalogOutcome.REJECTED).sum())),
        }
    ).reset_index()


def rejection_summary(catalog: pd.DataFrame) -> pd.DataFrame:
    """Rejected files counted by reason code, most frequent first."""
    rejected = catalog[catalog["outcome"] == CatalogOutcome.REJECTED]
    counts = rejected.groupby("reason_code").size().sort_values(ascending=False, kind="stable")
    return counts.rename("files").reset_index()


def scan_is_complete(catalog: pd.DataFrame) -> bool:
    """Whether the scan behind ``catalog`` saw every folder: no folder could not be listed.
    Only after a complete scan may outputs of images missing from it be removed."""
    return not (catalog["reason_code"] == RejectionReason.UNREADABLE_FOLDER).any()


def studies_between(
    catalog: pd.DataFrame, first_date: str, last_date: str, source: str | None = None
) -> list[str]:
    """The partition keys of studies with an image to label whose StudyDate (``YYYYMMDD``)
    lies in ``[first_date, last_date]``, from ``source`` (``archive``, ``incoming``,
    ``dicomweb``: the source its key names) or any; sorted. A study with files in several
    folders counts for the one its key names (``incoming`` when any file is there)."""
    rows = catalog[
        (catalog["outcome"] == CatalogOutcome.LABELLED)
        & (catalog["partition_key"] != "")
        & (catalog["study_date"].astype(str) >= first_date)
        & (catalog["study_date"].astype(str) <= last_date)
    ]
    keys = set(rows["partition_key"])
    if source is not None:
        keys = {key for key in keys if key_source(key) == source}
    return sorted(keys)
