"""Images that are not spines are never labelled ok: pydicom's own test files (head and
abdomen MR, chest and liver CT, a segmentation, nuclear medicine) beside spine studies."""

import warnings
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from labeling_pipeline.cli import EXIT_OK, main
from labeling_pipeline.synthetic.sample_data import build_dataset

pytestmark = pytest.mark.slow

# Real-world files of other body parts and planes, as pydicom ships them.
FOREIGN = [
    "CT_small.dcm",  # axial chest CT
    "MR_small.dcm",  # axial MR
    "693_J2KI.dcm",  # axial CT, JPEG 2000
    "J2K_pixelrep_mismatch.dcm",  # head CT
    "examples_overlay.dcm",  # abdomen MR with an overlay
    "liver_1frame.dcm",  # a liver segmentation
    "JPEG2000.dcm",  # whole-body NM
    "rtdose_1frame.dcm",  # a dose grid
]
# Files whose headers say nothing against them any more: what is left is their pixels.
DISGUISED = ["CT_small.dcm", "693_J2KI.dcm", "examples_overlay.dcm", "J2K_pixelrep_mismatch.dcm"]


def _disguise(source: Path, target: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(source)
    for keyword in ("ImageOrientationPatient", "BodyPartExamined"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.Modality = "MR"
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)


def test_foreign_images_are_rejected_or_flagged_never_ok(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, output = tmp_path / "data", tmp_path / "out"
    truth = build_dataset(data, 2, 3, size=160)
    for name in FOREIGN:
        source = Path(get_testdata_file(name))
        (data / "incoming" / "foreign" / name).parent.mkdir(parents=True, exist_ok=True)
        (data / "incoming" / "foreign" / name).write_bytes(source.read_bytes())
    for name in DISGUISED:
        _disguise(Path(get_testdata_file(name)), data / "incoming" / "disguised" / name)

    status = main(["run", "--data-dir", str(data), "--output-dir", str(output)])
    out = capsys.readouterr().out
    assert status == EXIT_OK, out

    catalog = pd.read_parquet(output / "catalog.parquet")
    foreign = catalog[catalog["path"].str.startswith("incoming/foreign/")].set_index("path")
    # Every original is refused on its header, with the reason that names the fault.
    assert (foreign["outcome"] == "rejected").all(), foreign[["outcome", "reason_code"]]
    reasons = foreign["reason_code"].to_dict()
    assert reasons["incoming/foreign/CT_small.dcm"] == "not_sagittal"
    assert reasons["incoming/foreign/J2K_pixelrep_mismatch.dcm"] == "not_spine"
    assert reasons["incoming/foreign/examples_overlay.dcm"] == "not_spine"
    assert reasons["incoming/foreign/liver_1frame.dcm"] == "unsupported_modality"
    assert reasons["incoming/foreign/JPEG2000.dcm"] == "image_too_large"

    # The disguised ones reach localization: every landmark flagged, none ok.
    labels = pd.read_parquet(output / "labels")
    disguised = catalog[catalog["path"].str.startswith("incoming/disguised/")]
    uids = set(disguised.loc[disguised["outcome"] == "labelled", "sop_instance_uid"])
    assert uids, disguised[["path", "outcome", "reason_code"]]
    foreign_labels = labels[labels["sop_instance_uid"].isin(uids)]
    assert len(foreign_labels) == len(uids) * labels["landmark"].nunique()
    assert (foreign_labels["status"] == "needs_review").all()
    assert foreign_labels["reason"].str.startswith("not_spine_anatomy").all()
    # The spine studies beside them are labelled as before.
    spine = labels[labels["sop_instance_uid"].isin(set(truth))]
    assert (spine["status"] == "ok").mean() > 0.8
