"""No path in Dagster: studies under folders named after patients, one file broken in the
middle of a run, and not one byte of those names under DAGSTER_HOME or in the outputs (but
``catalog.parquet``). Then a study withdrawn and one newly rejected: their outputs go."""

import os
from pathlib import Path

import pandas as pd
import pytest

from labeling_pipeline.cli import EXIT_FAILED, EXIT_OK, main
from labeling_pipeline.features.store import FeatureStore
from labeling_pipeline.imaging.dicom import image_key
from labeling_pipeline.labels import catalog as catalog_module
from labeling_pipeline.labels.dataset import read_labels
from labeling_pipeline.synthetic.sample_data import build_dataset

pytestmark = pytest.mark.slow

PATIENTS = ["DOE_JOHN", "ROE_JANE", "POE_EDGAR"]


def _bytes_containing(root: Path, needles: list[bytes], skip: set[Path]) -> list[str]:
    found = []
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            if path in skip:
                continue
            content = path.read_bytes()
            found += [f"{path}: {needle!r}" for needle in needles if needle in content]
    return found


def test_no_patient_folder_name_reaches_dagster_and_withdrawn_outputs_go(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    data, output = tmp_path / "data", tmp_path / "out"
    build_dataset(data, 3, 6, size=128)
    cases = sorted((data / "incoming").iterdir())
    for case, patient in zip(cases, PATIENTS, strict=True):
        case.rename(case.parent / patient)

    # The first study's file turns unreadable after the catalog was made (mid-run): the command
    # reads the catalog its catalog run wrote, then launches the label runs (other processes).
    real_read = catalog_module.read_catalog
    broken = next((data / "incoming" / PATIENTS[0]).rglob("*.dcm"))

    def read_after_breaking(path):
        if broken.exists():
            broken.unlink()
        return real_read(path)

    monkeypatch.setattr(catalog_module, "read_catalog", read_after_breaking)
    status = main(["run", "--data-dir", str(data), "--output-dir", str(output)])
    out = capsys.readouterr().out
    assert status == EXIT_FAILED, out  # the broken study failed, the others were labelled
    assert "studies:          3 (2 labelled, 1 failed)" in out
    monkeypatch.undo()

    needles = [name.encode() for name in PATIENTS] + [name.encode("utf-16-le") for name in PATIENTS]
    leaks = _bytes_containing(dagster_home, needles, set())
    leaks += _bytes_containing(output, needles, {output / "catalog.parquet"})
    assert leaks == []
    assert (dagster_home / ".dagster" / "storage").is_dir()  # the search looked at something

    # Withdraw one study, break another for good: a complete run removes their outputs.
    catalog = pd.read_parquet(output / "catalog.parquet")
    labelled = catalog[catalog["outcome"] == "labelled"]
    gone = {
        str(row.sop_instance_uid): str(row.partition_key)
        for row in labelled.itertuples(index=False)
        if row.path.split("/")[1] in PATIENTS[1:]
    }
    assert len(gone) == 2
    for patient in PATIENTS[1:2]:
        for path in (data / "incoming" / patient).rglob("*"):
            if path.is_file():
                path.unlink()
    for path in (data / "incoming" / PATIENTS[2]).rglob("*.dcm"):
        path.write_bytes(path.read_bytes()[:400])  # now rejected (truncated)
    (output / "corrections").mkdir()
    correction = output / "corrections" / f"{image_key(next(iter(gone)))}.json"
    correction.write_text("{}")  # a reviewer's correction is never removed
    sr = output / "sr" / f"{image_key(next(iter(gone)))}.dcm"
    sr.parent.mkdir(exist_ok=True)
    sr.write_bytes(b"SR")

    status = main(["run", "--data-dir", str(data), "--output-dir", str(output)])
    out = capsys.readouterr().out
    assert status == EXIT_OK, out
    assert f"removed outputs:  {len(gone)} images no longer labelled" in out
    labels = read_labels(output / "labels")  # nothing is left: every study withdrawn or rejected
    assert not set(labels["sop_instance_uid"]) & set(gone)
    for uid, key in gone.items():
        assert not (output / "overlays" / f"{image_key(uid)}.png").exists()
        assert uid not in FeatureStore(output / "features.zarr").image_keys(key)
    assert not sr.exists() and correction.exists()
