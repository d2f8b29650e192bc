"""Dense features of one image, the hand-off between feature extraction and localization."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labeling_pipeline.imaging.transform import PixelTransform


@dataclass
class LayerMaps:
    """The network's layer maps a hypercolumn grid was made from, at their own resolution.

    A hypercolumn repeats each deep layer's cells over many output cells (a stride-32 layer
    fills 8 x 8 cells of a stride-4 grid), so these maps are several times smaller than the grid
    they make, and the grid is rebuilt from them exactly (``extractors.rebuild_hypercolumns``):
    that is how ``features.zarr`` stores features. ``arrays[i]`` is layer ``i`` (C_i, h_i, w_i)
    as the network gave it (before resampling and normalisation); its cell j is centred on
    prepared pixel ``strides[i] * j + offsets[i]``; ``rows`` x ``columns`` is the prepared
    image's size and ``output_stride`` the grid's stride.
    """

    arrays: list[np.ndarray]
    strides: list[int]
    offsets: list[float]
    rows: int
    columns: int
    output_stride: int

    def to_dict(self) -> dict[str, Any]:
        """The geometry (everything but the arrays), JSON-ready."""
        return {
            "strides": [int(s) for s in self.strides],
            "offsets": [float(o) for o in self.offsets],
            "channels": [int(a.shape[0]) for a in self.arrays],
            "rows": int(self.rows),
            "columns": int(self.columns),
            "output_stride": int(self.output_stride),
        }


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
    #: The layer maps ``features`` was made from, when the extractor gives them (the compact
    #: form ``features.zarr`` stores); None for maps read back or from other extractors.
    layers: LayerMaps | None = field(default=None, repr=False, compare=False)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return int(self.features.shape[1]), int(self.features.shape[2])
