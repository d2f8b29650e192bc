"""DICOM output of phantoms: required tags, 12-bit pixels, series order, multi-frame shape."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from labeling_pipeline.synthetic.dicom_writer import (
    StudyInfo,
    write_multiframe,
    write_series,
    write_single_frame,
)
from labeling_pipeline.synthetic.params import PhantomParams
from labeling_pipeline.synthetic.phantom import make_phantom, make_slices

PARAMS = PhantomParams(seed=21, rows=128, cols=112, pixel_spacing_mm=(2.0, 2.0))
STUDY = StudyInfo(key="test/study", case_number=7, study_date="20260315")


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(PARAMS)


@pytest.fixture(scope="module")
def stack():
    return make_slices(PARAMS, count=3, spacing_mm=5.0)


def test_single_frame_has_required_tags_and_pixels(tmp_path, phantom):
    written = write_single_frame(phantom, tmp_path / "a" / "IM0001.dcm", STUDY)
    ds = pydicom.dcmread(written.path)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == MRImageStorage and ds.Modality == "MR"
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert [float(v) for v in ds.PixelSpacing] == [2.0, 2.0]
    assert [float(v) for v in ds.ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
    assert len(ds.ImagePositionPatient) == 3 and float(ds.SliceThickness) > 0
    assert ds.StudyDate == "20260315"
    assert str(ds.PatientName) == "SYNTHETIC^CASE007" and ds.PatientID == "SYN-0007"
    assert ds.SOPInstanceUID == written.sop_instance_uid == ds.file_meta.MediaStorageSOPInstanceUID
    assert len({ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}) == 3
    assert float(ds.WindowWidth) > 0
    pixels = ds.pixel_array
    assert pixels.shape == (128, 112) and int(pixels.max()) <= 4095
    np.testing.assert_array_equal(pixels, phantom.pixels)


def test_rewriting_gives_identical_files(tmp_path, phantom):
    a = write_single_frame(phantom, tmp_path / "a.dcm", STUDY).path.read_bytes()
    b = write_single_frame(phantom, tmp_path / "b.dcm", STUDY).path.read_bytes()
    c = write_single_frame(phantom, tmp_path / "c.dcm", replace(STUDY, key="other")).path
    assert a == b
    assert (
        pydicom.dcmread(c).StudyInstanceUID != pydicom.dcmread(tmp_path / "a.dcm").StudyInstanceUID
    )
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_series_files_are_ordered_along_the_slice_normal(tmp_path, stack):
    written = write_series(stack, tmp_path / "series", STUDY, slice_spacing_mm=5.0)
    datasets = [pydicom.dcmread(w.path) for w in written]
    normal = np.cross(
        [float(v) for v in datasets[0].ImageOrientationPatient[:3]],
        [float(v) for v in datasets[0].ImageOrientationPatient[3:]],
    )
    along = [float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])) for ds in datasets]
    assert np.allclose(np.diff(along), 5.0)
    assert [ds.InstanceNumber for ds in datasets] == [1, 2, 3]
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 3
    assert [w.labelled_frame for w in written] == [None, 0, None]
    np.testing.assert_array_equal(datasets[1].pixel_array, stack[1].pixels)


def test_multiframe_holds_all_slices_in_order(tmp_path, stack):
    written = write_multiframe(stack, tmp_path / "mf.dcm", STUDY, slice_spacing_mm=5.0)
    ds = pydicom.dcmread(written.path)
    assert int(ds.NumberOfFrames) == 3 and written.labelled_frame == 1
    assert ds.pixel_array.shape == (3, 128, 112)
    for k, frame in enumerate(stack):
        np.testing.assert_array_equal(ds.pixel_array[k], frame.pixels)
    xs = [
        float(item.PlanePositionSequence[0].ImagePositionPatient[0])
        for item in ds.PerFrameFunctionalGroupsSequence
    ]
    assert xs == [5.0, 0.0, -5.0]  # normal is -X: positions along it increase


def test_bad_input_is_refused(tmp_path, phantom):
    too_bright = replace(phantom, pixels=np.full((8, 8), 5000, dtype=np.uint16))
    with pytest.raises(ValueError, match="12-bit"):
        write_single_frame(too_bright, tmp_path / "x.dcm", STUDY)
    with pytest.raises(ValueError, match="YYYYMMDD"):
        StudyInfo(key="k", case_number=1, study_date="2026-03-15")
    with pytest.raises(ValueError, match="same shape"):
        write_multiframe(
            [phantom, replace(phantom, pixels=phantom.pixels[:64])], tmp_path / "m", STUDY
        )
