"""Pixel preparation: windowing, MONOCHROME1 inversion, resampling to a physical pixel size."""

from __future__ import annotations

import numpy as np
import pytest

from labeling_pipeline.features.preprocess import (
    PreparationSettings,
    prepare_image,
    resample,
)
from labeling_pipeline.imaging.image import LabelImage


def make_image(pixels: np.ndarray, spacing=(1.0, 1.0), **kwargs) -> LabelImage:
    return LabelImage(
        study_uid="1.2.3",
        series_uid="1.2.3.4",
        sop_instance_uid="1.2.3.4.5",
        study_date="",
        modality="MR",
        pixels=np.asarray(pixels, dtype=np.float32),
        pixel_spacing_mm=spacing,
        **kwargs,
    )


def blob(rows: int, cols: int, x0: float, y0: float, sigma: float) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    return np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2)).astype(np.float32)


def centroid(pixels: np.ndarray) -> tuple[float, float]:
    y, x = np.mgrid[0 : pixels.shape[0], 0 : pixels.shape[1]]
    w = pixels.astype(np.float64)
    return float((x * w).sum() / w.sum()), float((y * w).sum() / w.sum())


def test_percentile_window_maps_to_unit_range_and_clips_outliers():
    rng = np.random.default_rng(0)
    pixels = rng.uniform(100, 1100, size=(64, 64)).astype(np.float32)
    pixels[0, 0] = 1e6  # a hot pixel must not compress the rest of the range
    prepared = prepare_image(make_image(pixels), PreparationSettings())
    assert prepared.pixels.dtype == np.float32
    assert prepared.pixels.shape == (64, 64)
    assert prepared.pixels.min() == 0.0 and prepared.pixels.max() == 1.0
    assert 0.4 < float(np.median(prepared.pixels)) < 0.6
    assert prepared.window_source == "percentile"
    low, high = prepared.intensity_window
    assert 100 <= low < 120 and 1080 < high < 1100


def test_dicom_window_follows_the_linear_voi_function():
    pixels = np.array([[0.0, 39.5, 40.0, 59.5, 80.0, 1000.0]], dtype=np.float32)
    image = make_image(pixels, window_center=50.0, window_width=21.0)
    prepared = prepare_image(image, PreparationSettings(window="dicom"))
    # c - 0.5 -/+ (w - 1) / 2 = 39.5 .. 59.5
    np.testing.assert_allclose(prepared.pixels[0], [0, 0, 0.025, 1, 1, 1], atol=1e-6)
    assert prepared.window_source == "dicom"


def test_dicom_window_falls_back_to_percentiles_without_a_window():
    pixels = np.linspace(0, 1000, 100, dtype=np.float32).reshape(10, 10)
    prepared = prepare_image(make_image(pixels), PreparationSettings(window="dicom"))
    assert prepared.window_source == "percentile"


def test_monochrome1_is_inverted():
    pixels = np.linspace(0, 1000, 100, dtype=np.float32).reshape(10, 10)
    normal = prepare_image(make_image(pixels), PreparationSettings())
    inverted = prepare_image(
        make_image(pixels, photometric_interpretation="MONOCHROME1"), PreparationSettings()
    )
    np.testing.assert_allclose(inverted.pixels, 1.0 - normal.pixels, atol=1e-6)


def test_constant_image_does_not_divide_by_zero():
    prepared = prepare_image(make_image(np.full((8, 8), 7.0)), PreparationSettings())
    assert np.all(prepared.pixels == 0.0)


@pytest.mark.parametrize(
    "spacing, mm, expected_shape",
    [((0.5, 0.5), 1.0, (60, 80)), ((1.0, 0.5), 1.0, (120, 80)), ((1.0, 1.0), 0.5, (240, 320))],
)
def test_resampling_to_physical_pixels_keeps_positions(spacing, mm, expected_shape):
    rows, cols, x0, y0 = 120, 160, 97.3, 41.8
    image = make_image(blob(rows, cols, x0, y0, sigma=6.0), spacing=spacing)
    original = image.pixels.copy()
    prepared = prepare_image(image, PreparationSettings(mm_per_pixel=mm, low_percentile=0.0))
    assert prepared.pixels.shape == expected_shape
    assert prepared.mm_per_pixel == mm
    # The blob's centre, found on the prepared grid, maps back onto the original position.
    cx, cy = centroid(prepared.pixels)
    ox, oy = prepared.transform.to_original(cx, cy)
    assert abs(ox - x0) < 0.3 and abs(oy - y0) < 0.3
    np.testing.assert_array_equal(image.pixels, original)  # original untouched


def test_resample_preserves_mean_when_shrinking():
    rng = np.random.default_rng(1)
    pixels = rng.uniform(0, 1, size=(64, 64)).astype(np.float32)
    small = resample(pixels, 4.0, 4.0)
    assert small.shape == (16, 16)
    assert abs(float(small.mean()) - float(pixels.mean())) < 0.01
    assert small.std() < pixels.std() / 2  # averaged (anti-aliased), not point-sampled


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mm_per_pixel": 0.0},
        {"mm_per_pixel": float("nan")},
        {"window": "auto"},
        {"low_percentile": 60.0, "high_percentile": 50.0},
    ],
)
def test_invalid_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        PreparationSettings(**kwargs)


def test_invalid_spacing_is_a_clear_error():
    with pytest.raises(ValueError, match="pixel spacing"):
        prepare_image(make_image(np.ones((4, 4)), spacing=(0.0, 1.0)), PreparationSettings())


def test_settings_round_trip():
    settings = PreparationSettings(mm_per_pixel=0.8, window="dicom")
    assert PreparationSettings.from_dict(settings.to_dict()) == settings
