"""The labelled images of one study, read again from the catalog for feature extraction and
handed on to localization."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from labeling_pipeline.imaging.dicom import DicomValidationError, labelled_rows, read_label_image
from labeling_pipeline.imaging.image import LabelImage


@dataclass
class StudyImages:
    """The labelled images of one study, whose features are in ``features.zarr`` under
    (``partition_key``, SOPInstanceUID). ``unreadable`` lists (catalog ``file_key``, reason)
    of labelled files that could no longer be read (changed or removed since the catalog).
    Nothing here holds a file path (``source_files`` are file keys too)."""

    partition_key: str
    study_digest: str
    feature_model: str
    images: list[LabelImage] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def read_study_images(
    catalog: pd.DataFrame, partition_key: str, data_dir: Path
) -> tuple[list[LabelImage], list[tuple[str, str]]]:
    """Read the labelled image (the catalogued frame) of each series of the study again.

    Catalog paths are relative to ``data_dir``. A file that fails is returned in the second
    list as (file key, reason), the reason with the file's path replaced by its key; the
    others go on. Images name their file by its key (``source_files``).
    """
    images, unreadable = [], []
    for row in labelled_rows(catalog, partition_key).itertuples(index=False):
        path = data_dir / row.path
        try:
            image = read_label_image(path, frame_index=int(row.frame_index))
        except (DicomValidationError, OSError, ValueError) as error:
            unreadable.append((row.file_key, without_path(str(error), path, row.file_key)))
            continue
        image.study_date = row.study_date  # the study's date, as the partition key has it
        image.source_files = [row.file_key]
        image.slice_choice = str(getattr(row, "slice_choice", "") or "")  # older catalogs lack it
        images.append(image)
    return images, unreadable


def without_path(text: str, path: Path, key: str) -> str:
    """``text`` (an error message) with ``path`` (as given and resolved) replaced by
    ``<file KEY>``, so that a folder named after a patient does not travel into logs."""
    for form in sorted({str(path), str(Path(path).resolve())}, key=len, reverse=True):
        text = text.replace(form, f"<file {key}>")
    return text
