"""Dense cosine-similarity maps between reference feature vectors and an image's features.

Similarity is computed on the feature grid and then upsampled to the search grid: for
bilinear interpolation this equals matching features interpolated to pixel level
([0051]), at a fraction of the cost.
"""

from __future__ import annotations

import numpy as np
import torch


def similarity_maps(features: np.ndarray | torch.Tensor, vectors: np.ndarray) -> torch.Tensor:
    """Dot products of each of ``vectors`` (K, C) with every cell of ``features`` (C, h, w).

    Features and vectors are unit-norm per cell, so the result (K, h, w) is cosine similarity.
    """
    grid = torch.as_tensor(features, dtype=torch.float32)
    channels, rows, cols = grid.shape
    refs = torch.as_tensor(vectors, dtype=torch.float32)
    return (refs @ grid.reshape(channels, rows * cols)).reshape(len(refs), rows, cols)


def _interpolation_taps(n_in: int, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weight of centre-aligned linear interpolation, edges clamped (the
    same as ``F.interpolate(..., mode="bilinear", align_corners=False)``)."""
    source = np.clip((np.arange(n_in * factor) + 0.5) / factor - 0.5, 0, n_in - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, (source - low).astype(np.float32)


def upsample(grid: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear, centre-aligned upsampling of one (h, w) map by an integer factor.

    Element-wise gathers, not BLAS: on maps this small a threaded matrix product costs more in
    thread hand-offs than in arithmetic."""
    if factor == 1:
        return grid
    low, high, weight = _interpolation_taps(grid.shape[0], factor)
    rows = grid[low] * (1 - weight)[:, None] + grid[high] * weight[:, None]
    low, high, weight = _interpolation_taps(grid.shape[1], factor)
    return (rows[:, low] * (1 - weight) + rows[:, high] * weight).astype(np.float32)


def shifted_sum(maps: np.ndarray, offsets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_k w_k * maps[k](p + offset_k)`` for every position p, zero outside the image.

    ``maps`` is (K, rows, cols); ``offsets`` are (K, 2) integer (dx, dy) in cells. This scores a
    position by how well the whole constellation of reference points (landmark plus context)
    fits around it.
    """
    count, rows, cols = maps.shape
    total = np.zeros((rows, cols), dtype=np.float32)
    for k in range(count):
        dx, dy = int(offsets[k, 0]), int(offsets[k, 1])
        # total[y, x] += maps[k, y + dy, x + dx] where both are inside the grid.
        y0, y1 = max(0, -dy), min(rows, rows - dy)
        x0, x1 = max(0, -dx), min(cols, cols - dx)
        if y0 < y1 and x0 < x1:
            total[y0:y1, x0:x1] += weights[k] * maps[k, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    return total


def sample_bilinear(features: np.ndarray, x: float, y: float) -> np.ndarray:
    """The feature vector at grid position (x, y) (column, row), bilinearly interpolated."""
    _, rows, cols = features.shape
    x = float(np.clip(x, 0, cols - 1))
    y = float(np.clip(y, 0, rows - 1))
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    x1, y1 = min(x0 + 1, cols - 1), min(y0 + 1, rows - 1)
    fx, fy = x - x0, y - y0
    top = (1 - fx) * features[:, y0, x0] + fx * features[:, y0, x1]
    bottom = (1 - fx) * features[:, y1, x0] + fx * features[:, y1, x1]
    return ((1 - fy) * top + fy * bottom).astype(np.float32)
