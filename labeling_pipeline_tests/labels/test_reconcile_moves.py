"""A study whose files moved between folders: its old key's per-partition outputs retire."""

from __future__ import annotations

import pandas as pd

from labeling_pipeline.labels.reconcile import moved_partition_keys, retire_moved_partitions


def test_only_keys_of_studies_now_under_another_source_count_as_moved() -> None:
    existing = {
        "incoming-20260101-aaaaaaaa",  # moved to the archive
        "incoming-20260102-bbbbbbbb",  # withdrawn (no file anywhere): not a move
        "archive-20260103-cccccccc",  # still there
        "20260101-aaaaaaaa",  # an old-format key: withdrawn by reconcile_outputs, not here
    }
    current = {"archive-20260101-aaaaaaaa", "archive-20260103-cccccccc"}
    assert moved_partition_keys(existing, current) == {"incoming-20260101-aaaaaaaa"}


def test_retiring_removes_labels_curated_rows_and_features_of_the_old_key(tmp_path) -> None:
    labels, curated = tmp_path / "labels", tmp_path / "curated"
    old, new = "incoming-20260101-aaaaaaaa", "archive-20260101-aaaaaaaa"
    for folder in (labels, curated):
        folder.mkdir()
        for key in (old, new):
            pd.DataFrame({"partition_key": [key]}).to_parquet(folder / f"{key}.parquet")
    catalog = pd.DataFrame(
        {"partition_key": [new], "sop_instance_uid": ["1.2.3"], "outcome": ["labelled"]}
    )
    retired = retire_moved_partitions(catalog, [], labels, tmp_path / "features.zarr", curated)
    assert retired == [old]
    for folder in (labels, curated):
        assert sorted(p.stem for p in folder.glob("*.parquet")) == [new]
    # Again: nothing is left on disk to retire.
    assert retire_moved_partitions(catalog, [], labels, tmp_path / "features.zarr", curated) == []
