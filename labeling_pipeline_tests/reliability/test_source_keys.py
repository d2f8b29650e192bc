"""Partition keys that name the study's source (``<source>-YYYYMMDD-<8 hex>``), through the
command line on generated studies: a study with files in both folders is keyed ``incoming``; a
study moved from ``incoming/`` to ``archive/`` gets an ``archive`` key, its old outputs are
withdrawn and a reviewer's correction still applies; label files left with keys of the old
format (``YYYYMMDD-<8 hex>``) are withdrawn by the next run."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from labeling_pipeline.cli import EXIT_OK, main
from labeling_pipeline.cli.instance import instance_at
from labeling_pipeline.corrections.curated import read_curated
from labeling_pipeline.corrections.store import append_corrections, make_correction
from labeling_pipeline.defs.ingestion.partitions import STUDIES_PARTITION_NAME
from labeling_pipeline.imaging.dicom import LEGACY_PARTITION_KEY, PARTITION_KEY, key_source
from labeling_pipeline.labels.catalog import read_catalog
from labeling_pipeline.labels.dataset import read_labels, read_labels_partition
from labeling_pipeline.synthetic.sample_data import build_dataset

pytestmark = pytest.mark.slow


def _run(data: Path, output: Path, capsys: pytest.CaptureFixture[str]) -> str:
    status = main(["run", "--data-dir", str(data), "--output-dir", str(output)])
    out = capsys.readouterr().out
    assert status == EXIT_OK, out
    return out


def _keys_by_folder(output: Path) -> dict[str, str]:
    """Case folder (``case_0000``) -> its study's partition key, from the catalog."""
    catalog = read_catalog(output / "catalog.parquet")
    studies = catalog[catalog["partition_key"] != ""]
    return {
        path.split("/")[1]: key
        for path, key in zip(studies["path"], studies["partition_key"], strict=True)
    }


def _legacy(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """The rows as a run before source keys wrote them: the key without its source."""
    frame = frame.copy()
    frame["partition_key"] = key
    return frame


def test_keys_name_the_source_and_a_move_or_an_old_key_withdraws_cleanly(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, output = tmp_path / "data", tmp_path / "out"
    build_dataset(data, 3, 6, layouts=("single", "series", "single"), size=128)
    # case_0001 (a series of 5 slices) has two slices in archive/, three in incoming/.
    series = sorted((data / "incoming" / "case_0001").rglob("*.dcm"))
    for path in series[:2]:
        target = data / "archive" / path.relative_to(data / "incoming")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)

    _run(data, output, capsys)
    keys = _keys_by_folder(output)
    assert all(PARTITION_KEY.fullmatch(key) for key in keys.values()), keys
    assert {key_source(key) for key in keys.values()} == {"incoming"}  # the split one too
    catalog = read_catalog(output / "catalog.parquet")
    split = catalog[catalog["partition_key"] == keys["case_0001"]]
    assert set(split["source"]) == {"archive", "incoming"}

    # A reviewer moves a landmark of case_0000, which is then moved to archive/.
    moved_key = keys["case_0000"]
    labels = read_labels_partition(output / "labels", moved_key)
    label = labels[labels["status"] == "ok"].iloc[0].to_dict()
    correction = make_correction(label, "move", "reviewer", x=label["x"] + 2, y=label["y"])
    append_corrections(output / "corrections", [correction])

    # An output directory of the old key format: case_0002's labels and curated rows also
    # under its key without the source, as a run before this change left them.
    kept_key = keys["case_0002"]
    legacy_key = kept_key.removeprefix("incoming-")
    assert LEGACY_PARTITION_KEY.fullmatch(legacy_key)
    old_labels = _legacy(read_labels_partition(output / "labels", kept_key), legacy_key)
    old_labels.to_parquet(output / "labels" / f"{legacy_key}.parquet", index=False)
    curated = read_curated(output / "curated")
    old_curated = _legacy(curated[curated["partition_key"] == kept_key], legacy_key)
    old_curated.to_parquet(output / "curated" / f"{legacy_key}.parquet", index=False)

    # ... and the Dagster instance: its partition too.
    with instance_at(dagster_home) as instance:
        instance.add_dynamic_partitions(STUDIES_PARTITION_NAME, [legacy_key])

    shutil.move(data / "incoming" / "case_0000", data / "archive" / "case_0000")
    out = _run(data, output, capsys)
    with instance_at(dagster_home) as instance:
        registered = set(instance.get_dynamic_partitions(STUDIES_PARTITION_NAME))
    assert legacy_key not in registered  # the old format leaves the UI's lists
    assert set(_keys_by_folder(output).values()) <= registered

    keys = _keys_by_folder(output)
    new_key = keys["case_0000"]
    assert new_key == moved_key.replace("incoming-", "archive-", 1)
    assert keys["case_0002"] == kept_key
    names = sorted(path.stem for path in (output / "labels").glob("*.parquet"))
    assert names == sorted(set(keys.values())), names  # the old key and the legacy file went
    assert sorted(p.stem for p in (output / "curated").glob("*.parquet")) == names
    every = read_labels(output / "labels")
    assert not every.duplicated(["sop_instance_uid", "landmark"]).any()
    assert set(every[every["partition_key"] == new_key]["sop_instance_uid"]) == set(
        labels["sop_instance_uid"]
    )
    assert "removed outputs:" in out

    # The correction is keyed by image and landmark: it applies under the new key.
    curated = read_curated(output / "curated")
    row = curated[
        (curated["sop_instance_uid"] == label["sop_instance_uid"])
        & (curated["landmark"] == label["landmark"])
    ].iloc[0]
    assert row["partition_key"] == new_key
    assert row["source"] == "reviewer" and row["x"] == pytest.approx(label["x"] + 2)
