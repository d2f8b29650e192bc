"""Axis-aligned affine maps between pixel grids (original image, resampled image, feature grid)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PixelTransform:
    """Maps coordinates on a derived grid to the original image's pixel grid.

    Coordinates are (x, y) = (column, row) of pixel centres, in pixels.
    ``x_original = x * scale_x + offset_x`` and ``y_original = y * scale_y + offset_y``.
    A grid resampled by a factor ``s`` with pixel-centre alignment (``align_corners=False``)
    has ``scale = 1 / s`` and ``offset = 0.5 * scale - 0.5``.
    """

    scale_x: float = 1.0
    scale_y: float = 1.0
    offset_x: float = 0.0
    offset_y: float = 0.0

    @classmethod
    def for_resampling(cls, scale_x: float, scale_y: float) -> PixelTransform:
        """Transform of a grid whose cells are ``scale`` original pixels wide (centre-aligned)."""
        return cls(scale_x, scale_y, 0.5 * scale_x - 0.5, 0.5 * scale_y - 0.5)

    def to_original(self, x: np.ndarray | float, y: np.ndarray | float):
        """Derived-grid (x, y) to original-image (x, y)."""
        return x * self.scale_x + self.offset_x, y * self.scale_y + self.offset_y

    def from_original(self, x: np.ndarray | float, y: np.ndarray | float):
        """Original-image (x, y) to derived-grid (x, y)."""
        return (x - self.offset_x) / self.scale_x, (y - self.offset_y) / self.scale_y

    def then(self, outer: PixelTransform) -> PixelTransform:
        """Compose: ``self`` (grid to intermediate), then ``outer`` (intermediate to original)."""
        return PixelTransform(
            scale_x=self.scale_x * outer.scale_x,
            scale_y=self.scale_y * outer.scale_y,
            offset_x=self.offset_x * outer.scale_x + outer.offset_x,
            offset_y=self.offset_y * outer.scale_y + outer.offset_y,
        )

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, float]) -> PixelTransform:
        return cls(**{k: float(values[k]) for k in ("scale_x", "scale_y", "offset_x", "offset_y")})
