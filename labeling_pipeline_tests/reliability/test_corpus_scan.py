"""Every kind of bad input of the corpus gets the catalog row that names its fault."""

from pathlib import Path

from labeling_pipeline.imaging.dicom import partition_key, scan_data_dir
from labeling_pipeline_tests.reliability.corpus import write_bad_corpus


def test_each_bad_input_kind_gets_its_reason(tmp_path: Path) -> None:
    expected = write_bad_corpus(tmp_path / "data", tmp_path / "outside")
    assert len(expected) >= 40
    catalog = scan_data_dir(tmp_path / "data").catalog_frame().set_index("path")
    got = {
        path: (catalog.at[path, "reason_code"] if path in catalog.index else "<no row>")
        for path in expected
    }
    assert got == expected
    labelled = {p for p, reason in expected.items() if reason == ""}
    outcomes = catalog.loc[sorted(labelled), "outcome"]
    assert (outcomes == "labelled").all(), outcomes
    # An impossible StudyDate never reaches a partition key.
    row = catalog.loc["incoming/bad/impossible_date.dcm"]
    assert row["study_date"] == "" and row["partition_key"].startswith("incoming-nodate-")
    assert row["partition_key"] == partition_key("incoming", "", row["study_uid"])
