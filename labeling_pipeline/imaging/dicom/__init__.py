"""DICOM ingestion: find, validate and catalogue input files and choose the image to label.

One module per concept:

- ``enum``: coded values, :class:`Source`, :class:`CatalogOutcome`, :class:`RejectionReason`.
- ``keys``: :func:`partition_key` (``<source>-YYYYMMDD-<8 hex>``; :func:`study_source`,
  :func:`key_source`), :func:`image_key`, :func:`file_key`, :func:`pseudonymize` (no patient
  data or path in the clear), :func:`is_uid`, :func:`is_calendar_date`.
- ``limits``: :class:`ImageLimits`, the bounds an image must keep to be labelled.
- ``reading``: :func:`read_label_image`, one file validated and its labelled frame decoded;
  :class:`DicomValidationError`.
- ``listing``: :func:`walk_tree` (what a scan sees, hidden and unreachable entries included),
  :func:`walk_files`, :func:`tree_fingerprint` (notice changed folders cheaply).
- ``scanning``: :func:`scan_data_dir`, :func:`scan_dicom_tree`, a whole tree catalogued and one
  image per series chosen (:class:`ScanResult`).
- ``catalog``: :class:`CatalogEntry`, :func:`catalog_to_frame` and the questions asked of the
  catalog table (:func:`labelled_partition_keys`, :func:`labelled_rows`, :func:`study_digest`,
  :func:`study_summary`, :func:`rejection_summary`).
"""

from labeling_pipeline.imaging.dicom.catalog import (
    CATALOG_COLUMNS,
    CATALOG_INT_COLUMNS,
    CatalogEntry,
    catalog_to_frame,
    labelled_partition_keys,
    labelled_rows,
    rejection_summary,
    scan_is_complete,
    studies_between,
    study_digest,
    study_digests,
    study_summary,
)
from labeling_pipeline.imaging.dicom.enum import (
    SOURCES,
    CatalogOutcome,
    RejectionReason,
    Source,
)
from labeling_pipeline.imaging.dicom.keys import (
    DEFAULT_PSEUDONYM_SALT,
    LEGACY_PARTITION_KEY,
    PARTITION_KEY,
    PSEUDONYM_SALT_ENV,
    file_key,
    image_key,
    is_calendar_date,
    is_uid,
    key_source,
    partition_key,
    pseudonymize,
    study_source,
)
from labeling_pipeline.imaging.dicom.limits import ImageLimits
from labeling_pipeline.imaging.dicom.listing import (
    TreeEntry,
    TreeFingerprint,
    tree_fingerprint,
    walk_files,
    walk_tree,
)
from labeling_pipeline.imaging.dicom.reading import (
    MIN_SIZE,
    DicomValidationError,
    middle_frame_index,
    read_label_image,
)
from labeling_pipeline.imaging.dicom.scanning import ScanResult, scan_data_dir, scan_dicom_tree

__all__ = [
    "CATALOG_COLUMNS",
    "CATALOG_INT_COLUMNS",
    "DEFAULT_PSEUDONYM_SALT",
    "LEGACY_PARTITION_KEY",
    "PARTITION_KEY",
    "MIN_SIZE",
    "PSEUDONYM_SALT_ENV",
    "SOURCES",
    "CatalogEntry",
    "CatalogOutcome",
    "DicomValidationError",
    "ImageLimits",
    "RejectionReason",
    "ScanResult",
    "Source",
    "TreeEntry",
    "TreeFingerprint",
    "catalog_to_frame",
    "file_key",
    "image_key",
    "is_calendar_date",
    "is_uid",
    "key_source",
    "labelled_partition_keys",
    "studies_between",
    "study_digests",
    "labelled_rows",
    "middle_frame_index",
    "partition_key",
    "pseudonymize",
    "read_label_image",
    "rejection_summary",
    "scan_is_complete",
    "scan_data_dir",
    "scan_dicom_tree",
    "study_digest",
    "study_source",
    "study_summary",
    "tree_fingerprint",
    "walk_files",
    "walk_tree",
]
