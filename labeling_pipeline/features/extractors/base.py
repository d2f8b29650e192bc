"""The extractor interface, its shared torch machinery, and the names of models and weights."""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from labeling_pipeline.features.extractors.cpu import configure_cpu_threads
from labeling_pipeline.features.extractors.hypercolumns import (
    LayerGroup,
    combine_groups,
    layer_maps_of,
)
from labeling_pipeline.features.feature_map import LayerMaps

BUNDLED_CNN = "efficientnet-lite0"
OPEN_CLIP_PREFIX = "open_clip:"
RANDOM_WEIGHTS = "random"
#: Seed of explicitly requested random initialisation, so that "random" features repeat.
RANDOM_SEED = 0


class FeatureWeightsError(RuntimeError):
    """The weights of a feature model are missing, unreadable or do not fit the model."""


class FeatureExtractor(ABC):
    """Dense features of prepared images.

    ``name``: the model string (``"efficientnet-lite0"`` or ``"open_clip:<name>"``).
    ``stride``: prepared pixels per output grid cell (along x and y).
    ``device``: the torch device the model runs on.
    """

    name: str
    stride: int
    device: torch.device

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """JSON-ready description that must match between template and study features:
        model, weights source, weights_sha256, layers, stride, random_init, ..."""

    @abstractmethod
    def extract(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Features of prepared images (float32 rows x columns in [0, 1]): per image
        (C, ceil(rows / stride), ceil(columns / stride)) float32, unit norm per cell."""

    def extract_with_layers(
        self, batch: list[np.ndarray]
    ) -> list[tuple[np.ndarray, LayerMaps | None]]:
        """As :meth:`extract`, each grid with the layer maps it was made from where the
        extractor has them (None otherwise: the grid itself is stored)."""
        return [(features, None) for features in self.extract(batch)]


class TorchExtractor(FeatureExtractor):
    """Shared machinery: input normalisation, padding, batching by size, autocast on CUDA."""

    #: Inputs are zero-padded (black) at the bottom/right to a multiple of this.
    pad_multiple: int = 1
    #: Most images run through the network at once (memory bound on CPU).
    max_batch: int = 16

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        self.device = device
        self.model = model.eval().requires_grad_(False).to(device)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        if device.type == "cpu":
            configure_cpu_threads()

    @abstractmethod
    def _forward_groups(self, x: torch.Tensor) -> list[LayerGroup]:
        """Run the network on a normalised (B, 3, H, W) batch and return its layer groups."""

    def _to_input(self, images: list[np.ndarray]) -> torch.Tensor:
        rows, cols = images[0].shape
        m = self.pad_multiple
        padded_rows, padded_cols = math.ceil(rows / m) * m, math.ceil(cols / m) * m
        stack = np.zeros((len(images), 1, padded_rows, padded_cols), dtype=np.float32)
        for i, image in enumerate(images):
            stack[i, 0, :rows, :cols] = image
        x = torch.from_numpy(stack)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        # Grey replicated to the three channels the network expects, then its normalisation.
        return (x.expand(-1, 3, -1, -1) - self._mean) / self._std

    def forward_batch(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        """The bare network on equally sized prepared images (for benchmarks): raw layer maps."""
        x = self._to_input(images)
        with torch.inference_mode(), self._autocast():
            return [g.tensor for g in self._forward_groups(x)]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def extract(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return [features for features, _ in self._extract(batch, keep_layers=False)]

    def extract_with_layers(
        self, batch: list[np.ndarray]
    ) -> list[tuple[np.ndarray, LayerMaps | None]]:
        return self._extract(batch, keep_layers=True)

    def _extract(
        self, batch: list[np.ndarray], keep_layers: bool
    ) -> list[tuple[np.ndarray, LayerMaps | None]]:
        results: list[tuple[np.ndarray, LayerMaps | None] | None] = [None] * len(batch)
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, image in enumerate(batch):
            array = np.asarray(image)
            if array.ndim != 2 or min(array.shape) < 1:
                raise ValueError(f"image {i}: expected a 2-D prepared image, got {array.shape}")
            # Same-size images batch together; features never depend on batch companions.
            by_size[array.shape].append(i)
        for (rows, cols), indices in by_size.items():
            for start in range(0, len(indices), self.max_batch):
                chunk = indices[start : start + self.max_batch]
                images = [np.asarray(batch[i], dtype=np.float32) for i in chunk]
                x = self._to_input(images)
                with torch.inference_mode():
                    with self._autocast():
                        groups = self._forward_groups(x)
                    features = combine_groups(groups, rows, cols, self.stride)
                    for k, (i, feature) in enumerate(zip(chunk, features, strict=True)):
                        layers = (
                            layer_maps_of(groups, k, rows, cols, self.stride)
                            if keep_layers
                            else None
                        )
                        results[i] = (feature.cpu().numpy(), layers)
        return [r for r in results if r is not None]
