"""Feature maps of label images: geometry back to the original grid, settings, fingerprints."""

from __future__ import annotations

import numpy as np
import pytest

from labeling_pipeline.features.compute import (
    FeatureSettingsMismatch,
    check_compatible,
    compute_feature_maps,
    feature_fingerprint,
    feature_settings,
)
from labeling_pipeline.features.extractors import load_extractor
from labeling_pipeline.features.preprocess import PreparationSettings
from labeling_pipeline.imaging.image import LabelImage


@pytest.fixture(scope="module")
def lite0():
    return load_extractor("efficientnet-lite0", device="cpu")


def make_image(pixels: np.ndarray, spacing=(1.0, 1.0), uid="1.2.3.4.5") -> LabelImage:
    return LabelImage(
        study_uid="1.2.3",
        series_uid="1.2.3.4",
        sop_instance_uid=uid,
        study_date="",
        modality="MR",
        pixels=np.asarray(pixels, dtype=np.float32),
        pixel_spacing_mm=spacing,
    )


def squares(rows: int, cols: int, x0: int, y0: int, side: int) -> np.ndarray:
    pixels = np.zeros((rows, cols), np.float32)
    pixels[y0 : y0 + side, x0 : x0 + side] = 1000.0
    return pixels


def test_feature_maps_map_grid_to_original_pixels(lite0):
    image = make_image(np.random.default_rng(0).uniform(0, 1, (100, 140)), spacing=(0.5, 0.5))
    (fmap,) = compute_feature_maps([image], lite0, PreparationSettings(mm_per_pixel=1.0))
    # 0.5 mm pixels -> 50 x 70 prepared pixels at 1 mm -> 13 x 18 cells of 4 mm
    assert fmap.grid_shape == (13, 18)
    assert fmap.mm_per_cell == 4.0
    # Cell (0, 0) is centred on prepared pixel (1.5, 1.5), i.e. original pixel (3.5, 3.5);
    # one cell is 8 original pixels.
    assert fmap.transform.to_original(0.0, 0.0) == pytest.approx((3.5, 3.5))
    assert fmap.transform.to_original(1.0, 2.0) == pytest.approx((11.5, 19.5))
    assert fmap.settings["preparation"]["mm_per_pixel"] == 1.0
    assert fmap.settings["mm_per_cell"] == 4.0
    assert fmap.settings["model"] == "efficientnet-lite0"


def test_features_find_the_same_structure_across_pixel_spacings(lite0):
    """A pattern placed at a known physical position in two images with different pixel
    spacings is found by feature matching at the same physical position (transform check)."""
    # A 16 mm square with its top-left corner at (60, 40) mm; mm = pixel index * spacing.
    coarse = make_image(squares(128, 128, 60, 40, 16), spacing=(1.0, 1.0))
    fine = make_image(squares(256, 256, 120, 80, 32), spacing=(0.5, 0.5))
    a, b = compute_feature_maps([coarse, fine], lite0, PreparationSettings())
    assert a.grid_shape == b.grid_shape == (32, 32)
    # reference: the square's centre in the coarse image, sampled on its grid
    cx, cy = 67.5, 47.5  # the square's centre, coarse pixels = mm
    gx, gy = (round(v) for v in a.transform.from_original(cx, cy))
    reference = a.features[:, gy, gx]
    scores = np.einsum("c,chw->hw", reference, b.features)
    by, bx = np.unravel_index(int(np.argmax(scores)), scores.shape)
    found_x, found_y = b.transform.to_original(float(bx), float(by))
    # found in fine pixels (0.5 mm): within one 4 mm cell of the true physical position
    assert abs(found_x * 0.5 - cx) <= 4.0
    assert abs(found_y * 0.5 - cy) <= 4.0


def test_fingerprint_changes_with_pixels_and_settings(lite0):
    pixels = np.random.default_rng(1).uniform(0, 1, (32, 32))
    settings = feature_settings(lite0, PreparationSettings())
    first = feature_fingerprint(make_image(pixels), settings)
    assert first == feature_fingerprint(make_image(pixels.copy()), settings)
    changed = pixels.copy()
    changed[3, 4] += 0.5
    assert feature_fingerprint(make_image(changed), settings) != first
    other = feature_settings(lite0, PreparationSettings(mm_per_pixel=0.5))
    assert feature_fingerprint(make_image(pixels), other) != first
    moved = dict(settings, weights_source="/elsewhere/same-file.pth")
    assert feature_fingerprint(make_image(pixels), moved) == first  # same sha256, same features


def test_check_compatible(lite0):
    settings = feature_settings(lite0, PreparationSettings())
    check_compatible(settings, dict(settings, weights_source="/copied/weights.pth"))
    with pytest.raises(FeatureSettingsMismatch, match="layers"):
        check_compatible(settings, dict(settings, layers=[1, 2]))
    with pytest.raises(FeatureSettingsMismatch, match="preparation.mm_per_pixel"):
        check_compatible(settings, feature_settings(lite0, PreparationSettings(mm_per_pixel=0.7)))
