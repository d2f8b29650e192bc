"""Hypercolumns: layer maps of several strides resampled to one grid, normalised, concatenated.

Output cell (x, y) (x = column, y = row) is centred on prepared pixel
``(x * stride + (stride - 1) / 2, y * stride + (stride - 1) / 2)``. Each layer group is
L2-normalised per cell and scaled by ``1 / sqrt(n_groups)``, so every cell's vector has unit
norm and cosine similarity is a dot product.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from labeling_pipeline.features.feature_map import LayerMaps


@dataclass(frozen=True)
class LayerGroup:
    """One layer's feature map with its grid geometry.

    ``tensor`` is (B, C, h, w); cell j along an axis is centred on input pixel
    ``stride * j + offset``.
    """

    tensor: torch.Tensor
    stride: int
    offset: float


@functools.lru_cache(maxsize=256)
def interpolation_matrix(
    n_out: int, out_stride: int, stride: int, offset: float, size: int
) -> torch.Tensor:
    """(n_out, size) linear-interpolation weights from a layer's cells to output cells.

    Output cell ``g`` is centred on input pixel ``out_stride * g + (out_stride - 1) / 2``, which
    lies at fractional layer index ``(centre - offset) / stride``; outside the layer's cells the
    nearest edge cell is used (border clamping).
    """
    centres = torch.arange(n_out, dtype=torch.float64) * out_stride + (out_stride - 1) / 2.0
    index = ((centres - offset) / stride).clamp(0, size - 1)
    low = index.floor().long()
    high = (low + 1).clamp(max=size - 1)
    frac = index - low
    matrix = torch.zeros(n_out, size, dtype=torch.float64)
    rows = torch.arange(n_out)
    matrix.index_put_((rows, low), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix.float()


def combine_groups(
    groups: list[LayerGroup], rows: int, cols: int, out_stride: int
) -> list[torch.Tensor]:
    """Resample each group to the output grid, L2-normalise it per cell, scale by
    ``1 / sqrt(n_groups)`` and concatenate: per image a (sum C, ceil(rows/s), ceil(cols/s))
    float32 tensor. For inference (no autograd).

    The hypercolumns are large (hundreds of channels per cell), so each image's output is
    allocated on its own (below glibc's mmap threshold the allocator reuses freed blocks without
    new page faults) and every group is resampled, normalised and written into its slice
    without intermediate concatenation.
    """
    n_rows, n_cols = math.ceil(rows / out_stride), math.ceil(cols / out_stride)
    weight = 1.0 / math.sqrt(len(groups))
    batch = int(groups[0].tensor.shape[0])
    device = groups[0].tensor.device
    total = sum(int(g.tensor.shape[1]) for g in groups)
    outs = [
        torch.empty((total, n_rows, n_cols), dtype=torch.float32, device=device)
        for _ in range(batch)
    ]
    first = 0
    for group in groups:
        tensor = group.tensor.float()
        stride, offset = group.stride, group.offset
        if stride < out_stride and out_stride % stride == 0:
            # Coarser output than the layer: average the cells it covers instead of aliasing.
            factor = out_stride // stride
            tensor = F.avg_pool2d(tensor, factor, factor, ceil_mode=True)
            offset = offset + stride * (factor - 1) / 2.0
            stride = out_stride
        channels, (h, w) = int(tensor.shape[1]), tensor.shape[-2:]
        if stride == out_stride and offset == (out_stride - 1) / 2.0:
            # Already on the output grid (e.g. ViT patches at the patch stride): just crop.
            by_rows, ax = tensor[..., :n_rows, :n_cols], None
        else:
            # Separable bilinear resampling as matrix products (much faster on CPU than
            # grid_sample for hundreds of channels): rows first, on the small map, as one GEMM
            # (reshape also turns a channels-last layout into row-major), then columns.
            ay = interpolation_matrix(n_rows, out_stride, stride, offset, h).to(device)
            ax = interpolation_matrix(n_cols, out_stride, stride, offset, w).to(device)
            by_rows = torch.matmul(tensor.transpose(-1, -2).reshape(-1, h), ay.T)
            by_rows = by_rows.view(batch, channels, w, n_rows).transpose(-1, -2).contiguous()
        for b in range(batch):
            block = by_rows[b] if ax is None else torch.matmul(by_rows[b], ax.T)
            scale = block.square().sum(0, keepdim=True).sqrt_().clamp_min_(1e-6)
            torch.mul(
                block, scale.reciprocal_().mul_(weight), out=outs[b][first : first + channels]
            )
        first += channels
    return outs


def layer_maps_of(
    groups: list[LayerGroup], index: int, rows: int, cols: int, out_stride: int
) -> LayerMaps:
    """Image ``index`` of a batch's layer groups as float16 numpy maps (what the store keeps)."""
    return LayerMaps(
        arrays=[g.tensor[index].float().cpu().numpy().astype(np.float16) for g in groups],
        strides=[int(g.stride) for g in groups],
        offsets=[float(g.offset) for g in groups],
        rows=int(rows),
        columns=int(cols),
        output_stride=int(out_stride),
    )


def rebuild_hypercolumns(layers: LayerMaps) -> np.ndarray:
    """The (C, h, w) float32 hypercolumn grid of ``layers``: what :func:`combine_groups` made
    from the same maps (equal up to the float16 rounding of the stored maps)."""
    groups = [
        LayerGroup(torch.from_numpy(np.asarray(a, dtype=np.float32))[None], int(s), float(o))
        for a, s, o in zip(layers.arrays, layers.strides, layers.offsets, strict=True)
    ]
    with torch.inference_mode():
        [grid] = combine_groups(groups, layers.rows, layers.columns, layers.output_stride)
    return grid.numpy()
