"""Everything the curated dataset produces for one study partition, and the COCO export.

:func:`publish_curated_partition` joins a partition's machine labels with the corrections,
writes ``curated/<partition>.parquet`` and one DICOM SR per labelled image under
``sr/<image key>.dcm``; :func:`export_coco_dataset` writes the COCO keypoints of the whole
curated dataset. Both find each labelled image's DICOM file through ``catalog.parquet``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from labeling_pipeline.corrections.curated import curate_labels, write_curated_partition
from labeling_pipeline.corrections.enum import CuratedStatus, LabelSource
from labeling_pipeline.imaging.dicom import image_key, read_label_image
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.labels.coco import DatePrecision, export_coco
from labeling_pipeline.labels.qa import DEFAULT_ORDER
from labeling_pipeline.labels.sr import write_sr

LABELLED_OUTCOME = "labelled"


class MissingSourceError(LookupError):
    """The catalog names no labelled DICOM file for an image of the labels."""


def labelled_source(catalog: pd.DataFrame, sop_instance_uid: str) -> tuple[str, int]:
    """The catalog's labelled file (path relative to the data directory) and frame index of
    one labelled image."""
    rows = catalog[
        (catalog["sop_instance_uid"] == sop_instance_uid) & (catalog["outcome"] == LABELLED_OUTCOME)
    ]
    if rows.empty:
        raise MissingSourceError(f"the catalog has no labelled file for {sop_instance_uid!r}")
    return str(rows.iloc[0]["path"]), max(int(rows.iloc[0]["frame_index"]), 0)


def sr_file(sr_dir: Path, sop_instance_uid: str) -> Path:
    """Where the SR of one labelled image is written: ``sr/<image key>.dcm``."""
    return Path(sr_dir) / f"{image_key(str(sop_instance_uid))}.dcm"


@dataclass
class CuratedPartition:
    """What :func:`publish_curated_partition` wrote for one partition."""

    curated: pd.DataFrame
    path: Path
    sr_paths: list[Path] = field(default_factory=list)
    sr_written: int = 0  # new or changed SR files (unchanged ones are left as they are)

    def counts(self) -> dict[str, int]:
        statuses = self.curated["status"].value_counts()
        return {status.value: int(statuses.get(status.value, 0)) for status in CuratedStatus}

    def reviewed(self) -> int:
        return int((self.curated["source"] == LabelSource.REVIEWER.value).sum())


def publish_curated_partition(
    partition_key: str,
    labels: pd.DataFrame,
    corrections: pd.DataFrame,
    catalog: pd.DataFrame,
    data_dir: Path,
    curated_dir: Path,
    sr_dir: Path,
    order: Sequence[str] = DEFAULT_ORDER,
) -> CuratedPartition:
    """Curate one partition's ``labels`` with every correction record, write its curated
    Parquet file and an SR per labelled image; returns what was written."""
    curated = curate_labels(labels, corrections, order)
    path = write_curated_partition(curated_dir, partition_key, curated)
    result = CuratedPartition(curated=curated, path=path)
    for sop, rows in curated.groupby("sop_instance_uid", sort=True):
        relative, frame = labelled_source(catalog, str(sop))
        target = sr_file(sr_dir, str(sop))
        result.sr_written += write_sr(target, Path(data_dir) / relative, rows, frame)
        result.sr_paths.append(target)
    return result


def export_coco_dataset(
    curated: pd.DataFrame,
    catalog: pd.DataFrame,
    data_dir: Path,
    output: Path,
    region: str = "lumbar",
    dates: DatePrecision | str = DatePrecision.KEEP,
) -> dict[str, Any]:
    """COCO keypoints of ``curated`` at ``output``, the slices as PNG beside it."""

    def load(sop: str) -> LabelImage:
        relative, frame = labelled_source(catalog, sop)
        return read_label_image(Path(data_dir) / relative, frame_index=frame)

    return export_coco(curated, load, output, region=region, dates=dates, image_key=image_key)
