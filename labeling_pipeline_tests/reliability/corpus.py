"""A generated corpus of bad inputs, one per kind, each with the catalog outcome it must get.

:func:`write_bad_corpus` writes them under ``incoming/bad/`` of a data directory (and a folder
outside it for links that leave it) and returns ``{catalog path: expected reason code}``; the
reason ``""`` means the file must be labelled all the same (a fault the reading works around).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import JPEGBaseline8Bit

from labeling_pipeline_tests.imaging.dicom_files import make_dataset, slice_pixels, write

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def _valid(**changes: object):
    ds = make_dataset(pixels=slice_pixels(300, 64, 64), spacing=(0.8, 0.8))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


def _text_value(keyword: str, text: str):
    # Written as text (LO), as a careless writer would: pydicom would refuse it as DS.
    ds = _valid()
    tag = Tag(keyword)
    del ds[tag]
    ds[tag] = DataElement(tag, "LO", text)
    return ds


def _without(*keywords: str):
    ds = _valid()
    for keyword in keywords:
        delattr(ds, keyword)
    return ds


def write_bad_corpus(data_dir: Path, outside: Path) -> dict[str, str]:
    """Write every kind of bad input; returns ``{catalog path: expected reason code}``."""
    bad = data_dir / "incoming" / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    def dataset(name: str, ds, reason: str) -> Path:
        path = write(ds, bad / name)
        expected[f"incoming/bad/{name}"] = reason
        return path

    def raw(name: str, content: bytes, reason: str) -> None:
        (bad / name).write_bytes(content)
        expected[f"incoming/bad/{name}"] = reason

    valid_bytes = write(_valid(), outside / "valid.dcm").read_bytes()
    raw("text.txt", b"not a DICOM file\n", "not_dicom")
    raw("empty.dcm", b"", "not_dicom")
    raw(
        "random.bin",
        bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
        "not_dicom",
    )
    raw("preamble_only.dcm", b"\0" * 128 + b"DICM", "empty_dataset")
    raw("cut_in_header.dcm", valid_bytes[:300], "truncated")
    raw("cut_in_pixels.dcm", valid_bytes[:-500], "truncated")
    dataset("no_pixels.dcm", _without("PixelData"), "no_pixel_data")
    dataset("no_sop_uid.dcm", _without("SOPInstanceUID"), "missing_uid")
    dataset("no_study_uid.dcm", _without("StudyInstanceUID"), "missing_uid")
    dataset("long_uid.dcm", _valid(SOPInstanceUID="1." + "2" * 300), "invalid_uid")
    dataset("letters_uid.dcm", _valid(SeriesInstanceUID="1.2.abc/../x"), "invalid_uid")
    dataset(
        "rgb.dcm",
        make_dataset(pixels=np.zeros((64, 64, 3), np.uint8), photometric="RGB"),
        "not_grayscale",
    )
    dataset("palette.dcm", _valid(PhotometricInterpretation="PALETTE COLOR"), "not_grayscale")
    dataset("tiny.dcm", make_dataset(pixels=slice_pixels(1, 16, 16)), "invalid_dimensions")
    dataset("zero_rows.dcm", _valid(Rows=0), "invalid_dimensions")
    dataset("no_spacing.dcm", _without("PixelSpacing"), "missing_pixel_spacing")
    dataset("spacing_text.dcm", _text_value("PixelSpacing", "a\\b"), "invalid_pixel_spacing")
    dataset("spacing_negative.dcm", _valid(PixelSpacing=[-1, 1]), "invalid_pixel_spacing")
    dataset("spacing_one_value.dcm", _valid(PixelSpacing=[1.0]), "invalid_pixel_spacing")
    dataset("spacing_nan.dcm", _text_value("PixelSpacing", "nan\\1"), "invalid_pixel_spacing")
    dataset("spacing_1e6.dcm", _valid(PixelSpacing=[1e6, 1e6]), "implausible_pixel_spacing")
    dataset("spacing_20.dcm", _valid(PixelSpacing=[20, 20]), "implausible_pixel_spacing")
    dataset("spacing_0.01.dcm", _valid(PixelSpacing=[0.01, 0.01]), "implausible_pixel_spacing")
    dataset("header_5000px.dcm", _valid(Rows=5000, Columns=5000), "image_too_large")
    dataset(
        "view_2m.dcm",
        make_dataset(pixels=slice_pixels(5, 500, 500), spacing=(4.0, 4.0)),
        "image_too_large",
    )
    dataset("axial.dcm", _valid(ImageOrientationPatient=list(AXIAL)), "not_sagittal")
    dataset("coronal.dcm", _valid(ImageOrientationPatient=list(CORONAL)), "not_sagittal")
    dataset("head.dcm", _valid(BodyPartExamined="HEAD"), "not_spine")
    dataset("liver.dcm", _valid(BodyPartExamined="LIVER"), "not_spine")
    dataset("segmentation.dcm", _valid(Modality="SEG"), "unsupported_modality")
    dataset("dose.dcm", _valid(Modality="RTDOSE"), "unsupported_modality")
    jpeg = _valid()
    jpeg.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    jpeg.PixelData = encapsulate([b"\xff\xd8\xff\xe0 not a JPEG stream " * 4])
    dataset("bad_jpeg.dcm", jpeg, "undecodable")
    duplicate = _valid()
    dataset("original.dcm", duplicate, "")
    dataset("zz_duplicate.dcm", duplicate, "duplicate")

    # Faults the reading works around: the file is labelled all the same.
    dataset("impossible_date.dcm", _valid(StudyDate="20261399"), "")
    dataset(
        "orientation_garbage.dcm", _text_value("ImageOrientationPatient", "a\\b\\c\\d\\e\\f"), ""
    )
    dataset("oblique_sagittal.dcm", _valid(ImageOrientationPatient=[0.2, 0.98, 0, 0, 0, -1]), "")
    no_syntax = write(_valid(), bad / "no_transfer_syntax.dcm")
    _drop_transfer_syntax(no_syntax)
    expected["incoming/bad/no_transfer_syntax.dcm"] = ""
    (bad / "no_meta.dcm").write_bytes(_strip_meta(write(_valid(), outside / "v2.dcm").read_bytes()))
    expected["incoming/bad/no_meta.dcm"] = ""

    # The folders themselves.
    raw(".hidden.dcm", valid_bytes, "hidden")
    (bad / ".cache").mkdir()
    (bad / ".cache" / "x.dcm").write_bytes(valid_bytes)
    expected["incoming/bad/.cache"] = "hidden"
    os.symlink(outside, bad / "link_outside")
    expected["incoming/bad/link_outside"] = "link_outside_data_dir"
    os.symlink(bad, bad / "link_loop")
    expected["incoming/bad/link_loop"] = "link_loop"
    os.symlink(bad / "gone.dcm", bad / "broken_link.dcm")
    expected["incoming/bad/broken_link.dcm"] = "unreadable"
    os.mkfifo(bad / "fifo.dcm")
    expected["incoming/bad/fifo.dcm"] = "unreadable"
    inside = data_dir / "incoming" / "linked_target"
    write(_valid(), inside / "linked.dcm")
    # A linked folder inside the data directory is followed: its files are seen twice, and
    # the copy whose path sorts first is kept.
    os.symlink(inside, bad / "link_inside")
    expected["incoming/bad/link_inside/linked.dcm"] = ""
    expected["incoming/linked_target/linked.dcm"] = "duplicate"
    return expected


def _drop_transfer_syntax(path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(path)
    del ds.file_meta.TransferSyntaxUID
    ds.save_as(path, enforce_file_format=False, implicit_vr=False, little_endian=True)


def _strip_meta(content: bytes) -> bytes:
    # An implicit-VR data set with no preamble and no meta header, as old writers made them.
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(content))
    out = pydicom.filebase.DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, True
    pydicom.filewriter.write_dataset(out, ds)
    return out.getvalue()
