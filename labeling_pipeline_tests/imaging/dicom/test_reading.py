"""Reading one DICOM file: the modality LUT applied to the decoded pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labeling_pipeline.imaging.dicom import read_label_image

from ..dicom_files import make_dataset, slice_pixels, write


def test_modality_lut_is_applied(tmp_path: Path) -> None:
    ds = make_dataset(pixels=slice_pixels(1000))
    ds.RescaleSlope = 2
    ds.RescaleIntercept = -1024
    write(ds, tmp_path / "ct.dcm")
    image = read_label_image(tmp_path / "ct.dcm")
    expected = slice_pixels(1000).astype(np.float64) * 2 - 1024
    np.testing.assert_allclose(image.pixels, expected)
    assert image.pixels.dtype == np.float32
