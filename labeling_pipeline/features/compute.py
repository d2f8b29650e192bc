"""Feature maps of label images: preparation, extraction, geometry and settings together."""

from __future__ import annotations

import copy
import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

from labeling_pipeline.features.feature_map import FeatureMap
from labeling_pipeline.features.preprocess import PreparationSettings, prepare_image
from labeling_pipeline.features.settings import (
    FeatureSettingsMismatch,
    canonical_json,
    check_compatible,
)
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.imaging.transform import PixelTransform

if TYPE_CHECKING:  # the extractors import torch: only the callers that pass one in load it
    from labeling_pipeline.features.extractors import FeatureExtractor

__all__ = [
    "FeatureSettingsMismatch",
    "check_compatible",
    "compute_feature_maps",
    "feature_fingerprint",
    "feature_settings",
]


def feature_settings(
    extractor: FeatureExtractor, preparation: PreparationSettings
) -> dict[str, Any]:
    """The settings recorded with every feature map: the extractor's plus ``preparation`` and
    ``mm_per_cell`` (physical grid cell size, mm)."""
    settings = dict(extractor.settings())
    settings["preparation"] = preparation.to_dict()
    settings["mm_per_cell"] = float(preparation.mm_per_pixel * extractor.stride)
    return settings


def feature_fingerprint(image: LabelImage, settings: dict[str, Any]) -> str:
    """sha256 over the image's pixels, the metadata preparation uses and the comparable feature
    ``settings`` (as from :func:`feature_settings`): equal fingerprints mean equal features."""
    digest = hashlib.sha256()
    pixels = np.ascontiguousarray(image.pixels, dtype=np.float32)
    digest.update(repr(pixels.shape).encode())
    digest.update(pixels.tobytes())
    meta = (
        tuple(float(v) for v in image.pixel_spacing_mm),
        image.photometric_interpretation.strip().upper(),
        image.window_center,
        image.window_width,
    )
    digest.update(repr(meta).encode())
    digest.update(canonical_json(settings).encode())
    return digest.hexdigest()


def compute_feature_maps(
    images: list[LabelImage],
    extractor: FeatureExtractor,
    preparation: PreparationSettings,
    batch_size: int = 8,
) -> list[FeatureMap]:
    """Prepare and extract features of ``images`` (same order), ``batch_size`` at a time.

    Each map's ``transform`` takes grid (x, y) to the ORIGINAL image's pixel (x, y): grid ->
    prepared (``PixelTransform.for_resampling(stride, stride)``) then prepared -> original.
    ``mm_per_cell = mm_per_pixel * stride``. Features are float32 (C, h, w), unit norm per cell;
    ``layers`` holds the layer maps they were made from where the extractor gives them (what the
    feature store keeps).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    settings = feature_settings(extractor, preparation)
    stride = extractor.stride
    grid_to_prepared = PixelTransform.for_resampling(stride, stride)
    maps: list[FeatureMap] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        prepared = [prepare_image(image, preparation) for image in chunk]
        extracted = extractor.extract_with_layers([p.pixels for p in prepared])
        for item, (feats, layers) in zip(prepared, extracted, strict=True):
            maps.append(
                FeatureMap(
                    features=feats,
                    transform=grid_to_prepared.then(item.transform),
                    mm_per_cell=float(item.mm_per_pixel * stride),
                    settings=copy.deepcopy(settings),
                    layers=layers,
                )
            )
    return maps
