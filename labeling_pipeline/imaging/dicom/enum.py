"""Coded values of DICOM ingestion: where a file came from, what became of it, and why a file
was rejected (the catalog's ``source``, ``outcome`` and ``reason_code`` columns)."""

from enum import StrEnum


class Source(StrEnum):
    """The folder of the data directory a file was found in (``dicomweb/`` is written by the
    DICOMweb source, :mod:`labeling_pipeline.imaging.dicomweb`)."""

    INCOMING = "incoming"
    ARCHIVE = "archive"
    DICOMWEB = "dicomweb"  # the local cache of studies retrieved from a DICOMweb server


class CatalogOutcome(StrEnum):
    """What became of a file in the catalog."""

    LABELLED = "labelled"  # its image (or one of its frames) is the one labelled for its series
    ACCEPTED = "accepted"  # valid, part of a labelled series, but not the slice that is labelled
    REJECTED = "rejected"


class RejectionReason(StrEnum):
    """Machine-readable reasons (``DicomValidationError.reason`` and the catalog's
    ``reason_code``)."""

    NOT_DICOM = "not_dicom"
    UNREADABLE = "unreadable"
    EMPTY_DATASET = "empty_dataset"
    MISSING_UID = "missing_uid"
    NO_PIXEL_DATA = "no_pixel_data"
    TRUNCATED = "truncated"
    NOT_GRAYSCALE = "not_grayscale"
    INVALID_DIMENSIONS = "invalid_dimensions"
    MISSING_PIXEL_SPACING = "missing_pixel_spacing"
    INVALID_PIXEL_SPACING = "invalid_pixel_spacing"
    UNDECODABLE = "undecodable"
    DUPLICATE = "duplicate"
    # Bounds: what a spine image can plausibly be (ImageLimits), checked before decoding.
    INVALID_UID = "invalid_uid"
    IMPLAUSIBLE_PIXEL_SPACING = "implausible_pixel_spacing"
    IMAGE_TOO_LARGE = "image_too_large"
    NOT_SAGITTAL = "not_sagittal"
    NOT_SPINE = "not_spine"
    UNSUPPORTED_MODALITY = "unsupported_modality"
    # What the scan found in the folders themselves (one row per folder or link).
    HIDDEN = "hidden"
    UNREADABLE_FOLDER = "unreadable_folder"
    LINK_OUTSIDE_DATA_DIR = "link_outside_data_dir"
    LINK_LOOP = "link_loop"


#: The source folders, in the order a data directory's scan lists them by default.
SOURCES: tuple[str, ...] = tuple(source.value for source in Source)
