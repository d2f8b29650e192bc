"""An image's search grid: lazily computed score maps per landmark, coordinate conversions
between search-grid cells, grid millimetres and original pixels, and peak picking."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from labeling_pipeline.features.feature_map import FeatureMap
from labeling_pipeline.localization.reference import TemplateReference
from labeling_pipeline.localization.result import OK
from labeling_pipeline.localization.similarity import shifted_sum, similarity_maps, upsample


class SearchSpace:
    """The image's search grid and its score maps, computed lazily per landmark."""

    def __init__(self, fmap: FeatureMap, reference: TemplateReference, search_mm: float):
        self.fmap = fmap
        self.reference = reference
        self.factor = max(1, int(round(fmap.mm_per_cell / search_mm)))
        self.cell_mm = fmap.mm_per_cell / self.factor
        rows, cols = fmap.grid_shape
        self.height, self.width = rows * self.factor, cols * self.factor
        self._refs = reference.by_name()
        self._maps: dict[str, np.ndarray] = {}
        self._visible: dict[str, np.ndarray] = {}
        used = np.unique(np.concatenate([r.point_index for r in reference.landmarks]))
        # Similarity of every reference point at every feature-grid cell, computed once.
        self._point_maps = similarity_maps(fmap.features, reference.point_vectors[used]).numpy()
        self._row_of_point = {int(k): i for i, k in enumerate(used)}

    def score_map(self, name: str) -> np.ndarray:
        """(height, width) similarity of ``name``'s reference constellation at each position.

        The constellation's points lie on one lattice, so their offsets from the landmark share
        a fractional part: the weighted sum runs on the coarse feature grid with whole-cell
        shifts, and only the result is upsampled and moved by the common fraction.
        """
        if name not in self._maps:
            ref = self._refs[name]
            rows = [self._row_of_point[int(k)] for k in ref.point_index]
            self._maps[name] = self._constellation_sum(name, self._point_maps[rows])
        return self._maps[name]

    def visible_map(self, name: str) -> np.ndarray:
        """(height, width) share of ``name``'s constellation weight inside the image at each
        position, on the same terms as :meth:`score_map` (the rest matches nothing there)."""
        if name not in self._visible:
            count = len(self._refs[name].point_index)
            ones = np.ones((count, *self._point_maps.shape[1:]), dtype=np.float32)
            self._visible[name] = self._constellation_sum(name, ones)
        return self._visible[name]

    def _constellation_sum(self, name: str, point_maps: np.ndarray) -> np.ndarray:
        """The weighted sum of ``point_maps`` (one per constellation point) moved by the
        points' offsets, on the search grid."""
        ref = self._refs[name]
        offsets = ref.offsets_mm / self.fmap.mm_per_cell
        whole = np.round(offsets).astype(int)
        fraction = (offsets - whole).mean(axis=0)
        coarse = shifted_sum(point_maps, whole, ref.weights)
        fine = upsample(coarse, self.factor)[None]
        shift = np.round(fraction * self.factor).astype(int)[None]
        return shifted_sum(fine, shift, np.ones(1))

    # Positions: search-grid (x, y) <-> grid millimetres <-> original pixels.
    def to_mm(self, x: float, y: float) -> tuple[float, float]:
        gx, gy = (x + 0.5) / self.factor - 0.5, (y + 0.5) / self.factor - 0.5
        return gx * self.fmap.mm_per_cell, gy * self.fmap.mm_per_cell

    def from_mm(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        gx, gy = x_mm / self.fmap.mm_per_cell, y_mm / self.fmap.mm_per_cell
        return (gx + 0.5) * self.factor - 0.5, (gy + 0.5) * self.factor - 0.5

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        gx, gy = (x + 0.5) / self.factor - 0.5, (y + 0.5) / self.factor - 0.5
        ox, oy = self.fmap.transform.to_original(gx, gy)
        return float(ox), float(oy)

    def mm_grids(self) -> tuple[np.ndarray, np.ndarray]:
        """x (1, width) and y (height, 1) of the search-grid positions, in mm (broadcastable)."""
        xs = ((np.arange(self.width) + 0.5) / self.factor - 0.5) * self.fmap.mm_per_cell
        ys = ((np.arange(self.height) + 0.5) / self.factor - 0.5) * self.fmap.mm_per_cell
        return xs[None, :].astype(np.float32), ys[:, None].astype(np.float32)


@dataclass
class Located:
    """A landmark's position in grid mm (None when not found) and how it was found."""

    position: tuple[float, float] | None
    score: float = math.nan
    status: str = OK
    reason: str = ""
    iterations: int = 1
    confidence: float = math.nan


def best_position(scores: np.ndarray, mask: np.ndarray | None = None) -> tuple[int, int, float]:
    """Best position (x, y) and its score; score -inf when the mask leaves nothing."""
    masked = scores if mask is None else np.where(mask, scores, -np.inf)
    y, x = np.unravel_index(int(np.argmax(masked)), scores.shape)
    return int(x), int(y), float(masked[y, x])


def top_peaks(space: SearchSpace, scores: np.ndarray, count: int, separation_mm: float):
    """The ``count`` best local maxima, at least ``separation_mm`` apart: (x_mm, y_mm, score)."""
    padded = np.pad(scores, 1, constant_values=-np.inf)
    neighbourhood = np.max(
        [
            padded[1 + dy : padded.shape[0] - 1 + dy, 1 + dx : padded.shape[1] - 1 + dx]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if dy or dx
        ],
        axis=0,
    )
    ys, xs = np.nonzero((scores >= neighbourhood) & np.isfinite(scores))
    order = np.argsort(-scores[ys, xs])
    found: list[tuple[float, float, float]] = []
    for i in order:
        px, py = space.to_mm(float(xs[i]), float(ys[i]))
        if all((px - fx) ** 2 + (py - fy) ** 2 >= separation_mm**2 for fx, fy, _ in found):
            found.append((px, py, float(scores[ys[i], xs[i]])))
            if len(found) == count:
                break
    return found
