"""Hypercolumns: layer maps resampled onto the output grid as grid_sample would."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labeling_pipeline.features.extractors import (
    LayerGroup,
    combine_groups,
)


def test_combine_groups_matches_grid_sample_resampling():
    """The fast separable resampling equals torch's bilinear grid_sample on the same points."""
    rng = torch.Generator().manual_seed(0)
    tensor = torch.randn(2, 5, 7, 9, generator=rng)
    out_stride, stride, offset = 4, 16, 15.0
    combined = torch.stack(
        combine_groups([LayerGroup(tensor.clone(), stride, offset)], 100, 130, out_stride)
    )
    rows, cols = combined.shape[-2:]

    def normalised(n, size):
        centres = torch.arange(n) * out_stride + (out_stride - 1) / 2
        return ((centres - offset) / stride).clamp(0, size - 1) * 2 / (size - 1) - 1

    grid = torch.stack(torch.meshgrid(normalised(cols, 9), normalised(rows, 7), indexing="xy"), -1)
    expected = F.grid_sample(
        tensor, grid[None].expand(2, -1, -1, -1), align_corners=True, padding_mode="border"
    )
    expected = F.normalize(expected, dim=1)
    torch.testing.assert_close(combined, expected, atol=1e-5, rtol=1e-5)
