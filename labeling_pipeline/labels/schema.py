"""The label dataset's columns, their types, and conforming a table to them.

One row per (labelled image, landmark of the template). ``x, y`` are column and row in pixels
of the labelled image; ``x_mm = x * column spacing`` and ``y_mm = y * row spacing`` (mm from the
image's top-left pixel centre). ``status`` is ``ok`` or ``needs_review``. The content is
deterministic (no timestamps), so re-running a partition writes an identical file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from labeling_pipeline.localization.result import NEEDS_REVIEW, OK
from labeling_pipeline.localization.template import DEFAULT_TEMPLATE

STATUSES = (OK, NEEDS_REVIEW)

# The columns the CONTRACT promises, in its order.
CONTRACT_COLUMNS: tuple[str, ...] = (
    "study_uid",
    "series_uid",
    "sop_instance_uid",
    "landmark",
    "kind",
    "x",
    "y",
    "x_mm",
    "y_mm",
    "score",
    "status",
    "distance_to_previous_mm",
    "angle_to_previous_deg",
)

# Every column of the dataset, in file order, with its pyarrow type.
_TYPES: dict[str, pa.DataType] = {
    "study_uid": pa.string(),
    "series_uid": pa.string(),
    "sop_instance_uid": pa.string(),
    "landmark": pa.string(),
    "kind": pa.string(),
    "x": pa.float64(),  # column, pixels; NaN when not located
    "y": pa.float64(),  # row, pixels; NaN when not located
    "x_mm": pa.float64(),
    "y_mm": pa.float64(),
    "score": pa.float64(),  # cosine similarity of the match, -1..1
    "status": pa.string(),
    "distance_to_previous_mm": pa.float64(),
    "angle_to_previous_deg": pa.float64(),  # 0 = straight up (-y), positive towards +x
    "reason": pa.string(),  # why review is needed; "" when ok
    "confidence": pa.float64(),  # estimated probability that the label is right, 0..1
    "iterations": pa.int64(),  # search-region growth steps used
    "partition_key": pa.string(),
    "study_date": pa.string(),  # YYYYMMDD or ""
    "frame_index": pa.int64(),
    "rows": pa.int64(),
    "columns": pa.int64(),
    "pixel_spacing_row_mm": pa.float64(),
    "pixel_spacing_col_mm": pa.float64(),
    "feature_model": pa.string(),
    "strategy": pa.string(),
    # Why this slice (frame) of its series was labelled, as the catalog records it.
    "slice_choice": pa.string(),
    # The template that placed the landmark: "default" (template/template.dcm), the folder
    # name of template/<name>/, or "bank/<name>" for a reviewed image of the template bank.
    "template": pa.string(),
}

LABEL_COLUMNS: tuple[str, ...] = tuple(_TYPES)
LABEL_ARROW_SCHEMA = pa.schema([pa.field(name, kind) for name, kind in _TYPES.items()])
STRING_COLUMNS = tuple(n for n, t in _TYPES.items() if t == pa.string())
FLOAT_COLUMNS = tuple(n for n, t in _TYPES.items() if t == pa.float64())
INT_COLUMNS = tuple(n for n, t in _TYPES.items() if t == pa.int64())
# Filled in by whoever builds the rows (label_rows' ``extra``), not derived from image/results.
EXTRA_COLUMNS = ("feature_model", "strategy")

_DEFAULTS: dict[str, object] = {
    **{name: "" for name in STRING_COLUMNS},
    **{name: np.nan for name in FLOAT_COLUMNS},
    **{name: 0 for name in INT_COLUMNS},
    # Files written before there were several templates were all labelled by the default.
    "template": DEFAULT_TEMPLATE,
}


def empty_labels() -> pd.DataFrame:
    """A label table with no rows and the dataset's columns and types."""
    return conform_labels(pd.DataFrame({name: [] for name in LABEL_COLUMNS}))


def conform_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the dataset's columns in order and types cast.

    The CONTRACT columns must be present; other dataset columns that are missing get their
    default ("" / NaN / 0). Unknown columns raise, so that every partition has one schema and
    the directory reads as one table.
    """
    missing = [c for c in CONTRACT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"label table lacks the CONTRACT columns {missing}")
    unknown = [c for c in frame.columns if c not in _TYPES]
    if unknown:
        raise ValueError(
            f"label table has columns outside the schema {unknown}; "
            "add them to labeling_pipeline/labels/schema.py first"
        )
    # Columns are cast first and the frame built once: inserting them one by one into a frame
    # cost ~100 ms per study (pandas copies its blocks on each insert).
    columns: dict[str, pd.Series] = {}
    for name in LABEL_COLUMNS:
        column = (
            frame[name] if name in frame.columns else pd.Series(_DEFAULTS[name], index=frame.index)
        )
        if name in STRING_COLUMNS:
            columns[name] = column.fillna(_DEFAULTS[name]).astype(str)
        elif name in FLOAT_COLUMNS:
            columns[name] = pd.to_numeric(column, errors="raise").astype("float64")
        else:
            columns[name] = pd.to_numeric(column, errors="raise").fillna(0).astype("int64")
    out = pd.DataFrame(columns, index=frame.index)
    bad = sorted(set(out["status"]) - set(STATUSES))
    if bad:
        raise ValueError(f"label status must be one of {STATUSES}, got {bad}")
    return out.reset_index(drop=True)
