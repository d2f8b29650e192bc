"""Similarity maps, their upsampling and shifting, and bilinear feature sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labeling_pipeline.localization.similarity import (
    sample_bilinear,
    shifted_sum,
    similarity_maps,
    upsample,
)


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (6, 1), (7, 5), (12, 9)])
def test_upsample_equals_torch_bilinear_without_corner_alignment(shape, factor):
    grid = np.random.default_rng([factor, *shape]).normal(size=shape).astype(np.float32)
    expected = F.interpolate(
        torch.from_numpy(grid)[None, None],
        size=(shape[0] * factor, shape[1] * factor),
        mode="bilinear",
        align_corners=False,
    )[0, 0].numpy()
    result = upsample(grid, factor)
    assert result.shape == expected.shape
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-5)


def brute_force_shifted_sum(maps: np.ndarray, offsets: np.ndarray, weights: np.ndarray):
    count, rows, cols = maps.shape
    total = np.zeros((rows, cols), dtype=np.float64)
    for y in range(rows):
        for x in range(cols):
            for k in range(count):
                sx, sy = x + int(offsets[k, 0]), y + int(offsets[k, 1])
                if 0 <= sx < cols and 0 <= sy < rows:
                    total[y, x] += weights[k] * maps[k, sy, sx]
    return total


@pytest.mark.parametrize(
    "offsets",
    [
        [(0, 0)],
        [(1, 0), (0, 1), (-1, 0), (0, -1)],
        [(3, -2), (-4, 5), (2, 2)],
        # Offsets as large as the grid or beyond it: those terms vanish entirely.
        [(7, 0), (0, -6), (-9, 9), (20, 1), (0, 0)],
    ],
)
def test_shifted_sum_equals_a_brute_force_loop(offsets):
    rng = np.random.default_rng(len(offsets))
    maps = rng.normal(size=(len(offsets), 6, 7)).astype(np.float32)
    weights = rng.uniform(0.1, 1.0, size=len(offsets)).astype(np.float32)
    offsets = np.asarray(offsets, dtype=np.int64)
    result = shifted_sum(maps, offsets, weights)
    assert result.shape == (6, 7)
    np.testing.assert_allclose(result, brute_force_shifted_sum(maps, offsets, weights), atol=1e-5)


def test_shifted_sum_far_outside_the_grid_is_zero():
    maps = np.ones((2, 4, 4), dtype=np.float32)
    result = shifted_sum(maps, np.array([[100, 0], [0, -100]]), np.ones(2, dtype=np.float32))
    assert not result.any()


def test_sample_bilinear_is_exact_on_a_linear_ramp():
    rows, cols = 5, 8
    ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float32)
    # Three channels, each linear in x (column) and y (row).
    features = np.stack([2.0 * xs + 1.0, -3.0 * ys + 0.5, 0.25 * xs + 0.75 * ys]).astype(np.float32)
    for x, y in [(0.0, 0.0), (3.25, 1.5), (6.99, 3.01), (7.0, 4.0), (0.5, 3.75)]:
        expected = [2 * x + 1, -3 * y + 0.5, 0.25 * x + 0.75 * y]
        np.testing.assert_allclose(sample_bilinear(features, x, y), expected, atol=1e-5)
    # Outside the grid the nearest edge position is used.
    np.testing.assert_allclose(
        sample_bilinear(features, -2.0, 10.0), sample_bilinear(features, 0.0, 4.0)
    )
    assert sample_bilinear(features, 1.5, 1.5).dtype == np.float32


def test_similarity_maps_are_dot_products_per_cell():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(4, 3, 5)).astype(np.float32)
    features /= np.linalg.norm(features, axis=0, keepdims=True)
    vectors = features[:, [0, 2], [1, 4]].T  # the vectors of cells (x=1, y=0) and (x=4, y=2)
    maps = similarity_maps(features, vectors).numpy()
    assert maps.shape == (2, 3, 5)
    np.testing.assert_allclose(maps, np.einsum("kc,chw->khw", vectors, features), atol=1e-6)
    # A unit vector is most similar to its own cell, with cosine 1.
    assert maps[0, 0, 1] == pytest.approx(1.0, abs=1e-6)
    assert maps[1, 2, 4] == pytest.approx(1.0, abs=1e-6)
    assert maps.max() <= 1.0 + 1e-6
