"""The label dataset: rows per image, Parquet layout, atomic and idempotent writes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labeling_pipeline.labels import dataset
from labeling_pipeline.labels.dataset import (
    label_rows,
    partition_path,
    read_labels,
    read_labels_partition,
    remove_labels_partition,
    write_labels_partition,
)
from labeling_pipeline.labels.schema import CONTRACT_COLUMNS, LABEL_COLUMNS, empty_labels
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK, LandmarkResult

from .helpers import make_image, make_results, make_template

EXTRA = {"feature_model": "efficientnet-lite0", "strategy": "domain"}


def test_one_row_per_template_landmark_in_template_order() -> None:
    image = make_image(spacing=(0.5, 0.25))
    results = make_results(review=("L3",), missing=("L4-L5",))
    frame = label_rows(image, "incoming-20240315-abcdef12", results[::-1], EXTRA, make_template())

    assert list(frame.columns) == list(LABEL_COLUMNS)
    assert frame["landmark"].tolist() == make_template().names()
    assert frame["sop_instance_uid"].unique().tolist() == [image.sop_instance_uid]
    l1 = frame.set_index("landmark").loc["L1"]
    assert (l1["x"], l1["y"]) == (50.0, 20.0)
    assert l1["x_mm"] == pytest.approx(50.0 * 0.25)  # column spacing
    assert l1["y_mm"] == pytest.approx(20.0 * 0.5)  # row spacing
    assert (l1["rows"], l1["columns"]) == (120, 100)
    assert (l1["pixel_spacing_row_mm"], l1["pixel_spacing_col_mm"]) == (0.5, 0.25)
    assert l1["feature_model"] == "efficientnet-lite0" and l1["strategy"] == "domain"
    assert l1["status"] == OK and l1["reason"] == "" and l1["iterations"] == 1
    l3 = frame.set_index("landmark").loc["L3"]
    assert l3["status"] == NEEDS_REVIEW and math.isnan(l3["x_mm"]) and l3["reason"] == "far off"
    disc = frame.set_index("landmark").loc["L4-L5"]
    assert disc["status"] == NEEDS_REVIEW and disc["kind"] == "disc"
    assert disc["reason"] == dataset.NO_RESULT_REASON


def test_label_rows_rejects_inconsistent_input() -> None:
    image, template = make_image(), make_template()
    results = make_results()
    stray = LandmarkResult("S1", "vertebra", 1.0, 1.0, 0.5, OK)
    with pytest.raises(ValueError, match="not in the template"):
        label_rows(image, "k-1", [*results, stray], EXTRA, template)
    with pytest.raises(ValueError, match="two results"):
        label_rows(image, "k-1", [results[0], results[0]], EXTRA, template)
    with pytest.raises(ValueError, match="no position"):
        label_rows(image, "k-1", [LandmarkResult("L1", "vertebra", math.nan, 2.0, 0.5, OK)])
    with pytest.raises(ValueError, match="status"):
        label_rows(image, "k-1", [LandmarkResult("L1", "vertebra", 1.0, 2.0, 0.5, "maybe")])
    with pytest.raises(ValueError, match="extra"):
        label_rows(image, "k-1", results, {"feature_modle": "x"})


def _partition(key: str, sops: list[str]) -> pd.DataFrame:
    frames = [
        label_rows(make_image(sop=sop, study=key), key, make_results(review=("L2",)), EXTRA)
        for sop in sops
    ]
    return pd.concat(frames, ignore_index=True)


def test_partitions_read_back_as_one_table(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    write_labels_partition(
        labels,
        "incoming-20240101-aaaaaaaa",
        _partition("incoming-20240101-aaaaaaaa", ["1.5", "1.4"]),
    )
    write_labels_partition(
        labels, "incoming-nodate-bbbbbbbb", _partition("incoming-nodate-bbbbbbbb", ["2.1"])
    )
    table = pd.read_parquet(labels)  # what the CONTRACT promises users

    assert list(table.columns) == list(LABEL_COLUMNS)  # no extra partition column
    assert list(table.columns[: len(CONTRACT_COLUMNS)]) == list(CONTRACT_COLUMNS)
    assert len(table) == 3 * len(make_template().landmarks)
    assert set(table["partition_key"]) == {"incoming-20240101-aaaaaaaa", "incoming-nodate-bbbbbbbb"}
    assert table["x"].dtype == np.float64 and table["iterations"].dtype == np.int64
    # Within a partition, images are sorted and each keeps the template's landmark order.
    first = read_labels_partition(labels, "incoming-20240101-aaaaaaaa")
    assert first["sop_instance_uid"].tolist()[0] == "1.4"
    assert first[first["sop_instance_uid"] == "1.5"]["landmark"].tolist() == make_template().names()
    pd.testing.assert_frame_equal(read_labels(labels), table.pipe(dataset.conform_labels))


def test_rewrite_is_byte_identical_and_replaces(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    key = "incoming-20240101-aaaaaaaa"
    path = write_labels_partition(labels, key, _partition(key, ["1.5", "1.4"]))
    first = path.read_bytes()
    # Same labels in another row order: same bytes.
    again = write_labels_partition(labels, key, _partition(key, ["1.4", "1.5"]))
    assert again == path and path.read_bytes() == first
    # A new run with one image replaces the partition.
    write_labels_partition(labels, key, _partition(key, ["1.4"]))
    assert read_labels(labels)["sop_instance_uid"].unique().tolist() == ["1.4"]
    assert sorted(p.name for p in labels.iterdir()) == [f"{key}.parquet"]  # no temp files
    # An empty partition is written with the schema and reads back empty.
    write_labels_partition(labels, key, empty_labels())
    assert read_labels(labels).empty and list(read_labels(labels).columns) == list(LABEL_COLUMNS)
    assert remove_labels_partition(labels, key) and not remove_labels_partition(labels, key)
    assert read_labels(labels).empty


def test_failed_write_leaves_previous_partition(tmp_path: Path, monkeypatch) -> None:
    labels = tmp_path / "labels"
    key = "incoming-20240101-aaaaaaaa"
    path = write_labels_partition(labels, key, _partition(key, ["1.4"]))
    before = path.read_bytes()

    def broken_write(table, where, **kwargs):
        Path(where).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(dataset.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_labels_partition(labels, key, _partition(key, ["1.4", "1.5"]))
    assert path.read_bytes() == before
    assert sorted(p.name for p in labels.iterdir()) == [f"{key}.parquet"]


def test_partition_keys_are_checked(tmp_path: Path) -> None:
    key = "incoming-20240101-aaaaaaaa"
    with pytest.raises(ValueError, match="partitions"):
        write_labels_partition(tmp_path, "incoming-20240101-bbbbbbbb", _partition(key, ["1.4"]))
    for bad in ("../evil", "", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="invalid partition key"):
            partition_path(tmp_path, bad)
    with pytest.raises(ValueError, match="CONTRACT"):
        write_labels_partition(tmp_path, key, pd.DataFrame({"landmark": ["L1"]}))
    with pytest.raises(ValueError, match="outside the schema"):
        write_labels_partition(tmp_path, key, _partition(key, ["1.4"]).assign(patient_name="x"))


def test_the_template_column_names_who_placed_each_landmark(tmp_path: Path) -> None:
    image = make_image()
    frame = label_rows(
        image, "k-1", make_results(), EXTRA, make_template(), template_names={"L2": "t1"}
    )
    placed = frame.set_index("landmark")["template"]
    assert placed["L2"] == "t1" and placed["L1"] == "default"
    assert set(placed.drop("L2")) == {"default"}


def test_partitions_written_before_the_template_column_read_as_the_default(tmp_path: Path) -> None:
    labels_dir = tmp_path / "labels"
    old = label_rows(make_image(), "a-1", make_results(), EXTRA, make_template())
    old = old.drop(columns=["template"])
    labels_dir.mkdir()
    old.to_parquet(labels_dir / "a-1.parquet", index=False)  # the schema of an older version
    new_image = make_image(sop="1.2.826.0.1.3680043.8.498.99")
    new = label_rows(
        new_image, "b-1", make_results(), EXTRA, make_template(), template_names={"L1": "t1"}
    )
    write_labels_partition(labels_dir, "b-1", new)
    table = read_labels(labels_dir)
    assert len(table) == len(old) + len(new)
    by_key = table.groupby("partition_key")["template"].apply(set)
    assert by_key["a-1"] == {"default"}
    assert by_key["b-1"] == {"default", "t1"}
    assert set(read_labels_partition(labels_dir, "a-1")["template"]) == {"default"}
