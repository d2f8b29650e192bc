"""The curated dataset: machine labels joined with the latest correction per landmark.

One row per label row, with the label dataset's columns (any extra ones it grows are carried
through) and these added: ``source`` (``machine`` or ``reviewer``), ``reviewer``,
``reviewed_at``, ``review_action``, and the machine's own ``machine_x``, ``machine_y``,
``machine_status``. ``status`` is a :class:`~labeling_pipeline.corrections.enum.CuratedStatus`.

Where a reviewer decided, ``x, y`` (pixels, x = column) are theirs, ``x_mm, y_mm`` follow from
the image's pixel spacing, ``confidence`` is 1, ``reason`` is empty, and the steps to the
previous landmark of the same kind (``distance_to_previous_mm``, ``angle_to_previous_deg``) are
measured again on that image with the same rule as localization: vertebrae in anatomical order,
each disc ranked just above its caudal vertebra; angle 0 = straight up (-y), positive to +x.

Layout on disk: ``<output>/curated/<partition_key>.parquet``, read as one table with
:func:`read_curated` or ``pandas.read_parquet``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from labeling_pipeline.atomic import atomic_write
from labeling_pipeline.corrections.enum import CuratedStatus, LabelSource
from labeling_pipeline.corrections.store import latest_corrections
from labeling_pipeline.labels.dataset import partition_path
from labeling_pipeline.labels.qa import DEFAULT_ORDER, step_angle_deg
from labeling_pipeline.labels.schema import CONTRACT_COLUMNS, LABEL_ARROW_SCHEMA

CURATED_COLUMNS_ADDED: dict[str, pa.DataType] = {
    "source": pa.string(),
    "reviewer": pa.string(),
    "reviewed_at": pa.string(),
    "review_action": pa.string(),
    "machine_x": pa.float64(),
    "machine_y": pa.float64(),
    "machine_status": pa.string(),
}
_KEY = ["sop_instance_uid", "landmark"]


def _landmark_rank(name: str, kind: str, rank: dict[str, int]) -> float | None:
    """Caudal-to-cranial rank: a vertebra's place in ``order``, a disc ``A-B`` half a step
    above the lower (caudal) of its two vertebrae."""
    if kind == "disc":
        first, sep, second = name.partition("-")
        if sep and first in rank and second in rank:
            return min(rank[first], rank[second]) + 0.5
        return None
    return float(rank[name]) if name in rank else None


def measure_steps(image_rows: pd.DataFrame, order: Sequence[str] = DEFAULT_ORDER) -> pd.DataFrame:
    """``distance_to_previous_mm`` and ``angle_to_previous_deg`` of one image's rows, from the
    previous landmark of the same kind in caudal-to-cranial order (NaN where either has no
    position, or a name is not in ``order``)."""
    rank = {name: i for i, name in enumerate(order)}
    out = image_rows.copy()
    out["distance_to_previous_mm"] = math.nan
    out["angle_to_previous_deg"] = math.nan
    for _kind, rows in out.groupby("kind", sort=False):
        ranked = [
            (r, index)
            for index, name in rows["landmark"].items()
            if (r := _landmark_rank(str(name), str(_kind), rank)) is not None
        ]
        ranked.sort()
        for (_, previous), (_, current) in zip(ranked, ranked[1:], strict=False):
            dx = out.at[current, "x_mm"] - out.at[previous, "x_mm"]
            dy = out.at[current, "y_mm"] - out.at[previous, "y_mm"]
            if math.isfinite(dx) and math.isfinite(dy):
                out.at[current, "distance_to_previous_mm"] = math.hypot(dx, dy)
                out.at[current, "angle_to_previous_deg"] = step_angle_deg(dx, dy)
    return out


def curate_labels(
    labels: pd.DataFrame, corrections: pd.DataFrame, order: Sequence[str] = DEFAULT_ORDER
) -> pd.DataFrame:
    """The curated rows for ``labels`` given every correction record (any order of partitions;
    records for other images or for landmarks the labels lack are ignored).

    ``corrections`` must be in time order (as :func:`~.store.read_corrections` returns them);
    the last record per (image, landmark) wins, and a ``revert`` as the last one gives the
    machine label back.
    """
    missing = [c for c in CONTRACT_COLUMNS if c not in labels.columns]
    if missing:
        raise ValueError(f"labels lack the columns {missing}")
    curated = labels.copy().reset_index(drop=True)
    curated["machine_x"] = curated["x"].astype("float64")
    curated["machine_y"] = curated["y"].astype("float64")
    curated["machine_status"] = curated["status"].astype(str)
    curated["source"] = LabelSource.MACHINE.value
    curated["reviewer"] = ""
    curated["reviewed_at"] = ""
    curated["review_action"] = ""
    if curated.empty or corrections.empty:
        return curated
    latest = latest_corrections(corrections)
    latest = latest[latest["new_status"] != ""]  # a revert: the machine label counts again
    decided = curated[_KEY].reset_index().merge(latest, on=_KEY, how="inner")
    if decided.empty:
        return curated
    index = decided["index"].to_numpy()
    curated.loc[index, "x"] = decided["new_x"].to_numpy()
    curated.loc[index, "y"] = decided["new_y"].to_numpy()
    curated.loc[index, "status"] = decided["new_status"].to_numpy()
    curated.loc[index, "source"] = LabelSource.REVIEWER.value
    curated.loc[index, "reviewer"] = decided["reviewer"].to_numpy()
    curated.loc[index, "reviewed_at"] = decided["recorded_at"].to_numpy()
    curated.loc[index, "review_action"] = decided["action"].to_numpy()
    if "reason" in curated:
        curated.loc[index, "reason"] = ""
    if "confidence" in curated:
        curated.loc[index, "confidence"] = 1.0
    moved = decided["new_status"].to_numpy() != CuratedStatus.CONFIRMED.value
    if "score" in curated:  # the similarity was measured at the machine's position only
        curated.loc[index[moved], "score"] = np.nan
    if {"pixel_spacing_row_mm", "pixel_spacing_col_mm"} <= set(curated.columns):
        curated.loc[index, "x_mm"] = (
            curated.loc[index, "x"] * curated.loc[index, "pixel_spacing_col_mm"]
        )
        curated.loc[index, "y_mm"] = (
            curated.loc[index, "y"] * curated.loc[index, "pixel_spacing_row_mm"]
        )
    touched = set(curated.loc[index, "sop_instance_uid"])
    parts = [
        measure_steps(rows, order) if sop in touched else rows
        for sop, rows in curated.groupby("sop_instance_uid", sort=False)
    ]
    return pd.concat(parts).loc[curated.index]


def _arrow_type(name: str, series: pd.Series) -> pa.DataType:
    if name in LABEL_ARROW_SCHEMA.names:
        return LABEL_ARROW_SCHEMA.field(name).type
    if name in CURATED_COLUMNS_ADDED:
        return CURATED_COLUMNS_ADDED[name]
    # A label column added after this module was written: keep its type, strings otherwise.
    if pd.api.types.is_bool_dtype(series):
        return pa.bool_()
    if pd.api.types.is_integer_dtype(series):
        return pa.int64()
    if pd.api.types.is_float_dtype(series):
        return pa.float64()
    return pa.string()


def _arrow_table(frame: pd.DataFrame) -> pa.Table:
    frame = frame.reset_index(drop=True).copy()
    fields = []
    for name in frame.columns:
        kind = _arrow_type(name, frame[name])
        if kind == pa.string():
            frame[name] = frame[name].fillna("").astype(str)
        fields.append(pa.field(name, kind))
    return pa.Table.from_pandas(frame, schema=pa.schema(fields), preserve_index=False)


def write_curated_partition(curated_dir: Path, partition_key: str, frame: pd.DataFrame) -> Path:
    """Write (or replace) one partition's curated rows, atomically; returns the path."""
    path = partition_path(curated_dir, partition_key)
    foreign = sorted(set(frame["partition_key"]) - {partition_key})
    if foreign:
        raise ValueError(f"rows of partitions {foreign} given to partition {partition_key!r}")
    table = _arrow_table(frame)
    return atomic_write(path, lambda temporary: pq.write_table(table, temporary))


def read_curated(curated_dir: Path) -> pd.DataFrame:
    """The whole curated dataset as one table (empty when nothing is written)."""
    directory = Path(curated_dir)
    files = sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))
    if not files:
        return pd.DataFrame(columns=[*CONTRACT_COLUMNS, *CURATED_COLUMNS_ADDED])
    return pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)


def read_curated_partition(curated_dir: Path, partition_key: str) -> pd.DataFrame:
    """One partition's curated rows (empty, with the columns, when it has not been written)."""
    path = partition_path(curated_dir, partition_key)
    if not path.exists():
        return pd.DataFrame(columns=[*CONTRACT_COLUMNS, *CURATED_COLUMNS_ADDED])
    return pd.read_parquet(path)
