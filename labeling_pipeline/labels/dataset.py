"""The label dataset: rows for one labelled image, and one Parquet file per study partition.

Layout: ``<output>/labels/<partition_key>.parquet``, flat files with the same schema
(:data:`~labeling_pipeline.labels.schema.LABEL_ARROW_SCHEMA`), each holding its own
``partition_key`` column. ``pandas.read_parquet("<output>/labels")`` reads them as one table.
(Hive-style ``partition_key=<key>/`` folders were not used: readers would add the key again as a
categorical column, which clashes with the stored one.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from labeling_pipeline.atomic import atomic_write
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.labels.schema import (
    EXTRA_COLUMNS,
    LABEL_ARROW_SCHEMA,
    LABEL_COLUMNS,
    STATUSES,
    conform_labels,
    empty_labels,
)
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK, LandmarkResult
from labeling_pipeline.localization.template import DEFAULT_TEMPLATE, TemplateLandmarks

_PARTITION_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NO_RESULT_REASON = "not located: localization returned no result for this landmark"


def label_rows(
    image: LabelImage,
    partition_key: str,
    results: Sequence[LandmarkResult],
    extra: Mapping[str, Any] | None = None,
    template: TemplateLandmarks | None = None,
    template_names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The label rows of one image: exactly one per landmark.

    With ``template``, rows follow the template's landmark order, a landmark without a result
    gets a ``needs_review`` row (x, y NaN), and a result for a landmark the template does not
    have raises. Without it, rows follow ``results``. ``extra`` fills the columns that the
    caller knows (``feature_model``, ``strategy``). ``template_names`` maps a landmark to the
    template that placed it (the ``template`` column; ``default`` for landmarks not named).
    ``x_mm = x * column spacing`` and ``y_mm = y * row spacing``.
    """
    template_names = dict(template_names or {})
    extra = dict(extra or {})
    unknown = sorted(set(extra) - set(EXTRA_COLUMNS))
    if unknown:
        raise ValueError(f"label_rows: unknown extra columns {unknown}; allowed: {EXTRA_COLUMNS}")
    by_name: dict[str, LandmarkResult] = {}
    for result in results:
        if result.name in by_name:
            raise ValueError(f"label_rows: two results for landmark {result.name!r}")
        _check_result(result)
        by_name[result.name] = result
    if template is not None:
        names = template.names()
        stray = sorted(set(by_name) - set(names))
        if stray:
            raise ValueError(f"label_rows: results for landmarks not in the template: {stray}")
        ordered = [
            by_name.get(lm.name)
            or LandmarkResult(
                lm.name, lm.kind, math.nan, math.nan, math.nan, NEEDS_REVIEW, NO_RESULT_REASON
            )
            for lm in template.landmarks
        ]
    else:
        ordered = list(results)
    row_mm, col_mm = (float(v) for v in image.pixel_spacing_mm)
    rows = []
    for result in ordered:
        rows.append(
            {
                "study_uid": image.study_uid,
                "series_uid": image.series_uid,
                "sop_instance_uid": image.sop_instance_uid,
                "landmark": result.name,
                "kind": result.kind,
                "x": float(result.x),
                "y": float(result.y),
                "x_mm": float(result.x) * col_mm,
                "y_mm": float(result.y) * row_mm,
                "score": float(result.score),
                "status": result.status,
                "distance_to_previous_mm": float(result.distance_to_previous_mm),
                "angle_to_previous_deg": float(result.angle_to_previous_deg),
                "reason": result.reason,
                "confidence": float(result.confidence),
                "iterations": int(result.iterations),
                "partition_key": partition_key,
                "study_date": image.study_date,
                "frame_index": int(image.frame_index),
                "rows": image.rows,
                "columns": image.columns,
                "pixel_spacing_row_mm": row_mm,
                "pixel_spacing_col_mm": col_mm,
                **{name: str(extra.get(name, "")) for name in EXTRA_COLUMNS},
                "slice_choice": image.slice_choice,
                "template": template_names.get(result.name, DEFAULT_TEMPLATE),
            }
        )
    if not rows:
        return empty_labels()
    return conform_labels(pd.DataFrame(rows, columns=list(LABEL_COLUMNS)))


def _check_result(result: LandmarkResult) -> None:
    if result.status not in STATUSES:
        raise ValueError(f"landmark {result.name!r}: status {result.status!r} not in {STATUSES}")
    if result.status == OK and not result.found:
        raise ValueError(f"landmark {result.name!r} is 'ok' but has no position")


def _check_partition_key(partition_key: str) -> None:
    # The key becomes a file name: refuse anything that could leave the labels folder.
    if not _PARTITION_KEY.match(partition_key or ""):
        raise ValueError(f"invalid partition key {partition_key!r}")


def partition_path(labels_dir: Path, partition_key: str) -> Path:
    """Where the labels of one partition live: ``labels_dir/<partition_key>.parquet``."""
    _check_partition_key(partition_key)
    return Path(labels_dir) / f"{partition_key}.parquet"


def write_labels_partition(labels_dir: Path, partition_key: str, frame: pd.DataFrame) -> Path:
    """Write (or replace) one partition's labels, atomically; returns the file's path.

    Every row must belong to ``partition_key``. Rows are ordered by image (SOPInstanceUID),
    keeping the landmark order within an image, so the same labels always give the same bytes.
    An empty ``frame`` writes an empty file with the schema (the partition was processed and
    has nothing to label).
    """
    path = partition_path(labels_dir, partition_key)
    table = conform_labels(frame)
    foreign = sorted(set(table["partition_key"]) - {partition_key})
    if foreign:
        raise ValueError(f"rows of partitions {foreign} given to partition {partition_key!r}")
    table = table.sort_values("sop_instance_uid", kind="stable").reset_index(drop=True)
    arrow = pa.Table.from_pandas(table, schema=LABEL_ARROW_SCHEMA, preserve_index=False)
    return atomic_write(path, lambda temporary: pq.write_table(arrow, temporary))


def remove_labels_partition(labels_dir: Path, partition_key: str) -> bool:
    """Delete one partition's labels (e.g. a study whose files were withdrawn)."""
    path = partition_path(labels_dir, partition_key)
    if path.exists():
        path.unlink()
        return True
    return False


def read_labels(labels_dir: Path) -> pd.DataFrame:
    """The whole label dataset as one table (empty, with the schema, when nothing is written)."""
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir() or not any(labels_dir.glob("[!._]*.parquet")):
        return empty_labels()
    # The dataset's schema, not the first file's: partitions written before a column was added
    # read with its default instead of dropping the column from the whole table.
    return conform_labels(pd.read_parquet(labels_dir, schema=LABEL_ARROW_SCHEMA))


def read_labels_partition(labels_dir: Path, partition_key: str) -> pd.DataFrame:
    """One partition's labels (empty when it has not been written)."""
    path = partition_path(labels_dir, partition_key)
    if not path.exists():
        return empty_labels()
    return conform_labels(pd.read_parquet(path))
