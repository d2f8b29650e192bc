"""Dense features of one image, the hand-off between feature extraction and localization."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labeling_pipeline.imaging.transform import PixelTransform


@dataclass
class FeatureMap:
    """Per-cell feature vectors of one image on a regular grid.

    ``features`` is (channels, grid rows, grid columns); each cell's vector is L2-normalised
    per layer group, so cosine similarity is a dot product up to a constant. ``transform`` maps
    grid (x, y) to the original image's pixel (x, y). ``mm_per_cell`` is the physical size of a
    grid cell (the grid is isotropic in mm). ``settings`` names the model, its weights' sha256,
    layers, stride and preprocessing, and must match between template and study.
    """

    features: np.ndarray
    transform: PixelTransform
    mm_per_cell: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return int(self.features.shape[1]), int(self.features.shape[2])
