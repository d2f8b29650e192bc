"""catalog.parquet: written atomically, read back as written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from labeling_pipeline.imaging.dicom import CATALOG_COLUMNS, CatalogEntry, catalog_to_frame
from labeling_pipeline.labels.catalog import read_catalog, write_catalog


def _catalog() -> pd.DataFrame:
    return catalog_to_frame(
        [
            CatalogEntry(
                "incoming/b.dcm",
                "incoming",
                10,
                "ab" * 32,
                "rejected",
                "no_pixel_data",
                "no pixel data",
                study_uid="1.2",
            ),
            CatalogEntry(
                "incoming/a.dcm",
                "incoming",
                20,
                "cd" * 32,
                "labelled",
                study_uid="1.2",
                sop_instance_uid="1.2.3",
                frame_index=0,
                rows=64,
                columns=64,
                number_of_frames=1,
                partition_key="incoming-nodate-12345678",
            ),
        ]
    )


def test_catalog_round_trip_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "out" / "catalog.parquet"
    write_catalog(path, _catalog())
    first = path.read_bytes()
    table = pd.read_parquet(path)
    assert list(table.columns) == list(CATALOG_COLUMNS)
    assert table["path"].tolist() == ["incoming/a.dcm", "incoming/b.dcm"]
    assert table["size_bytes"].tolist() == [20, 10]
    pd.testing.assert_frame_equal(read_catalog(path), _catalog())
    write_catalog(path, _catalog().iloc[::-1])
    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == ["catalog.parquet"]


def test_missing_catalog_reads_empty(tmp_path: Path) -> None:
    empty = read_catalog(tmp_path / "none.parquet")
    assert empty.empty and list(empty.columns) == list(CATALOG_COLUMNS)
