"""``catalog.parquet``: every input file seen, with its outcome (labelled, accepted, rejected
and why). Holds UIDs and a salted patient pseudonym, never a patient name or ID."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from labeling_pipeline.atomic import atomic_write
from labeling_pipeline.imaging.dicom import (
    CATALOG_COLUMNS,
    CATALOG_INT_COLUMNS,
    catalog_to_frame,
    file_key,
)

CATALOG_ARROW_SCHEMA = pa.schema(
    [
        pa.field(name, pa.int64() if name in CATALOG_INT_COLUMNS else pa.string())
        for name in CATALOG_COLUMNS
    ]
)


def _conform(frame: pd.DataFrame) -> pd.DataFrame:
    if "file_key" not in frame.columns and "path" in frame.columns:  # written by an older version
        frame = frame.assign(file_key=[file_key(str(p)) for p in frame["path"]])
    missing = [c for c in CATALOG_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"catalog lacks columns {missing}")
    out = frame[list(CATALOG_COLUMNS)].copy()
    for name in CATALOG_COLUMNS:
        if name in CATALOG_INT_COLUMNS:
            out[name] = out[name].astype("int64")
        else:
            out[name] = out[name].fillna("").astype(str)
    return out.sort_values("path", kind="stable").reset_index(drop=True)


def write_catalog(path: Path, frame: pd.DataFrame) -> Path:
    """Write the catalog table (:meth:`ScanResult.catalog_frame`) atomically, sorted by path."""
    arrow = pa.Table.from_pandas(_conform(frame), schema=CATALOG_ARROW_SCHEMA, preserve_index=False)
    return atomic_write(Path(path), lambda temporary: pq.write_table(arrow, temporary))


def read_catalog(path: Path) -> pd.DataFrame:
    """The catalog written by :func:`write_catalog` (empty, with its columns, when absent)."""
    path = Path(path)
    if not path.exists():
        return catalog_to_frame([])
    return _conform(pd.read_parquet(path))
