"""Contrast variants of an image: same geometry, remapped intensities."""

from __future__ import annotations

import numpy as np
import pytest

from labeling_pipeline.features.augment import CONTRAST_VARIANTS, contrast_variant
from labeling_pipeline.imaging.image import LabelImage


def _image(pixels: np.ndarray, photometric: str = "MONOCHROME2") -> LabelImage:
    return LabelImage(
        study_uid="1.2",
        series_uid="1.2.3",
        sop_instance_uid="1.2.3.4",
        study_date="20260101",
        modality="MR",
        pixels=pixels.astype(np.float32),
        pixel_spacing_mm=(0.8, 0.8),
        photometric_interpretation=photometric,
        window_center=500.0,
        window_width=1000.0,
    )


def test_inversion_swaps_dark_and_bright_and_keeps_geometry():
    ramp = np.tile(np.linspace(0.0, 1000.0, 64), (32, 1))
    inverted = contrast_variant(_image(ramp), "inverted")
    assert inverted.pixels.shape == ramp.shape
    assert inverted.pixel_spacing_mm == (0.8, 0.8)
    assert inverted.pixels[:, 0].mean() > inverted.pixels[:, -1].mean()
    assert inverted.window_center is None  # the DICOM window no longer applies


def test_gamma_variants_keep_order_and_range_and_monochrome1_is_normalised_first():
    ramp = np.tile(np.linspace(0.0, 1000.0, 64), (8, 1))
    for variant in ("gamma-0.5", "gamma-2"):
        pixels = contrast_variant(_image(ramp), variant).pixels[0]
        assert np.all(np.diff(pixels) >= 0)
        assert pixels.min() >= 0.0 and pixels.max() <= 1000.0
    # MONOCHROME1 shows high values dark: its "inverted" variant is the MONOCHROME2 original.
    mono1 = contrast_variant(_image(ramp, "MONOCHROME1"), "inverted")
    assert mono1.photometric_interpretation == "MONOCHROME2"
    assert mono1.pixels[0, -1] > mono1.pixels[0, 0]
    assert len(CONTRAST_VARIANTS) == 4


def test_unknown_variant_and_empty_image_are_refused():
    with pytest.raises(ValueError, match="unknown contrast variant"):
        contrast_variant(_image(np.ones((4, 4))), "solarized")
    with pytest.raises(ValueError, match="no finite pixel values"):
        contrast_variant(_image(np.full((4, 4), np.nan)), "inverted")
