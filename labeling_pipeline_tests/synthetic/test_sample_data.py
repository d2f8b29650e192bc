"""Generated test sets, the command line, and the bundled sample data in data/."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest

from labeling_pipeline.imaging.dicom import scan_data_dir
from labeling_pipeline.localization.evaluation import match_truth_by_series
from labeling_pipeline.localization.template import load_template_landmarks
from labeling_pipeline.synthetic.__main__ import main
from labeling_pipeline.synthetic.sample_data import (
    BROKEN_FILE,
    TEMPLATE_LANDMARKS,
    build_dataset,
    sample_specs,
    write_case,
)

DATA = Path(__file__).resolve().parents[2] / "data"


def _labelled_pixels(root: Path, entry: dict) -> np.ndarray:
    pixels = pydicom.dcmread(root / entry["file"]).pixel_array
    return pixels[entry["frame"]] if pixels.ndim == 3 else pixels


def test_dataset_layout_truth_and_template(tmp_path):
    truth = build_dataset(
        tmp_path, count=3, seed=5, layouts=("single", "series", "multiframe"), slices=3, size=128
    )
    assert json.loads((tmp_path / "truth.json").read_text()) == truth
    template = load_template_landmarks(tmp_path / "template" / "landmarks.json")
    assert template.region == "lumbar" and tuple(template.names()) == TEMPLATE_LANDMARKS
    assert (tmp_path / "template" / "template.dcm").is_file()
    assert len(truth) == 3
    layouts = set()
    for sop, entry in truth.items():
        ds = pydicom.dcmread(tmp_path / entry["file"])
        assert ds.SOPInstanceUID == sop and ds.StudyInstanceUID == entry["study_uid"]
        assert float(ds.PixelSpacing[0]) == pytest.approx(entry["spacing"])
        rows, cols = _labelled_pixels(tmp_path, entry).shape
        assert (rows, cols) == (128, 128)
        for landmark in entry["landmarks"].values():
            assert 0 <= landmark["x"] < cols and 0 <= landmark["y"] < rows
        layouts.add(entry["layout"])
    assert layouts == {"single", "series", "multiframe"}
    assert len(list((tmp_path / "incoming").rglob("IM*.dcm"))) == 1 + 3


def test_cli_dataset_and_bad_arguments(tmp_path, capsys):
    args = ["dataset", "--out", str(tmp_path), "--count", "1", "--seed", "2", "--size", "96"]
    assert main(args) == 0
    assert len(json.loads((tmp_path / "truth.json").read_text())) == 1
    assert main(["dataset", "--out", str(tmp_path), "--count", "1", "--slices", "4"]) == 2
    with pytest.raises(SystemExit):
        main(["dataset", "--out", str(tmp_path), "--count", "1", "--layouts", "stack"])


# --- The committed sample data -------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_truth() -> dict:
    path = DATA / "sample_truth.json"
    if not path.is_file():
        pytest.skip(f"sample data not generated at {DATA}")
    return json.loads(path.read_text())


def test_sample_data_matches_its_truth(sample_truth):
    for sop, entry in sample_truth.items():
        ds = pydicom.dcmread(DATA / entry["file"])
        assert ds.SOPInstanceUID == sop
        assert _labelled_pixels(DATA, entry).max() <= 4095
        assert {"L3", "L3-L4"} <= entry["landmarks"].keys()
    template = load_template_landmarks(DATA / "template" / "landmarks.json")
    assert tuple(template.names()) == TEMPLATE_LANDMARKS


def test_sample_data_has_the_promised_content(sample_truth):
    by_folder = {"incoming": defaultdict(list), "archive": defaultdict(list)}
    unreadable = []
    for path in sorted(p for p in DATA.rglob("*") if p.is_file()):
        top = path.relative_to(DATA).parts[0]
        if top not in by_folder:
            continue
        try:
            ds = pydicom.dcmread(path)
            ds.pixel_array  # noqa: B018  (decoding is the check)
        except Exception:
            unreadable.append(path.relative_to(DATA).as_posix())
            continue
        by_folder[top][ds.StudyInstanceUID].append(ds)
    assert unreadable == [BROKEN_FILE]
    incoming, archive = by_folder["incoming"], by_folder["archive"]
    assert len(incoming) >= 5 and len(archive) >= 6
    assert any(len(files) == 5 for files in incoming.values())  # a 5-slice series
    assert any(int(ds.get("NumberOfFrames", 1)) > 1 for s in incoming.values() for ds in s)
    months = {ds.StudyDate[:6] for s in archive.values() for ds in s}
    assert len(months) >= 3
    total = sum(
        p.stat().st_size for p in DATA.rglob("*") if p.is_file() and "outputs" not in p.parts
    )
    assert total < 10 * 2**20


def test_sample_data_is_reproduced_by_the_generator(tmp_path, sample_truth):
    """Re-render two sample studies and compare with the committed files (stale data check).

    Pixels may differ by rounding on another platform's maths libraries, so they are compared
    with a small tolerance; identifiers and truth exactly.
    """
    specs = sample_specs()
    for spec in (specs[0], specs[-1]):  # the first incoming and the last archived study
        sop, entry = write_case(spec, tmp_path)
        committed_landmarks = sample_truth[sop]["landmarks"]
        assert committed_landmarks.keys() == entry["landmarks"].keys()
        for name, mark in entry["landmarks"].items():
            old = committed_landmarks[name]
            assert old["kind"] == mark["kind"]
            assert (old["x"], old["y"]) == pytest.approx((mark["x"], mark["y"]), abs=1e-3)
        fresh = _labelled_pixels(tmp_path, entry).astype(int)
        committed = _labelled_pixels(DATA, sample_truth[sop]).astype(int)
        assert np.mean(np.abs(fresh - committed) > 1) < 0.001


def test_every_labelled_sample_image_finds_its_truth_by_series(sample_truth):
    """The pipeline's choice of slice (its most mid-sagittal one) and the truth, drawn on the
    mid-sagittal slice, meet: every truth entry belongs to exactly one labelled image."""
    images = scan_data_dir(DATA).images
    matched = match_truth_by_series(
        sample_truth, [(i.sop_instance_uid, i.series_uid) for i in images]
    )
    assert sorted(e["truth_sop_instance_uid"] for e in matched.values()) == sorted(sample_truth)
    assert all(i.slice_choice for i in images)
    series = [
        i for i in images if sample_truth.get(i.sop_instance_uid, {}).get("layout") != "single"
    ]
    assert len(series) == 2  # the 5-slice series and the 5-frame file
    for image in series:
        assert image.slice_choice.startswith(("middle slice", "most mid-sagittal of 5 central"))
