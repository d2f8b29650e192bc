"""The entry point: a feature extractor from a model name and its weights."""

from __future__ import annotations

import torch

from labeling_pipeline.features.extractors.base import (
    BUNDLED_CNN,
    OPEN_CLIP_PREFIX,
    RANDOM_WEIGHTS,
    FeatureExtractor,
    FeatureWeightsError,
)
from labeling_pipeline.features.extractors.cpu import default_device
from labeling_pipeline.features.extractors.efficientnet import (
    LITE0_DEFAULT_LAYERS,
    LITE0_DEFAULT_OUTPUT_STRIDE,
    EfficientNetLite0Extractor,
)
from labeling_pipeline.features.extractors.openclip import OpenClipExtractor


def load_extractor(
    model: str = BUNDLED_CNN,
    weights: str | None = None,
    device: str | None = None,
    allow_random_weights: bool = False,
    layers: tuple[int, ...] | None = None,
    output_stride: int | None = None,
) -> FeatureExtractor:
    """Build a feature extractor.

    ``model``: ``"efficientnet-lite0"`` (bundled ImageNet weights) or ``"open_clip:<name>"``
    (README "Configuration": LABELING_FEATURE_MODEL). ``weights``: for the CNN an optional
    state-dict path (default: the bundled file); for open_clip a pretrained tag found in the
    local Hugging Face cache or a checkpoint path (LABELING_FEATURE_WEIGHTS). ``"random"`` asks
    for random initialisation, allowed only with ``allow_random_weights=True`` (tests, timing);
    open_clip without weights is random only then too. ``device``: default ``cuda`` when
    available. ``layers``: CNN feature indices (default 2, 3, 4 = strides 8, 16, 32) or ViT
    block indices (default mid to last). ``output_stride``: prepared pixels per grid cell (CNN
    default 4, ViT default the patch size).
    """
    torch_device = torch.device(device) if device else default_device()
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here")
    wants_random = weights == RANDOM_WEIGHTS
    if wants_random and not allow_random_weights:
        raise FeatureWeightsError(
            f"{model}: random weights were requested but not allowed; pass "
            "allow_random_weights=True (tests only) or real weights"
        )
    if model == BUNDLED_CNN:
        return EfficientNetLite0Extractor(
            weights=None if wants_random else weights,
            device=torch_device,
            random_init=wants_random,
            layers=tuple(layers) if layers is not None else LITE0_DEFAULT_LAYERS,
            output_stride=output_stride or LITE0_DEFAULT_OUTPUT_STRIDE,
        )
    if model.startswith(OPEN_CLIP_PREFIX):
        name = model[len(OPEN_CLIP_PREFIX) :]
        random_init = wants_random or (weights is None and allow_random_weights)
        return OpenClipExtractor(
            name,
            weights=None if random_init else weights,
            device=torch_device,
            random_init=random_init,
            layers=tuple(layers) if layers is not None else None,
            output_stride=output_stride,
        )
    raise ValueError(
        f"unknown feature model {model!r}: use {BUNDLED_CNN!r} or '{OPEN_CLIP_PREFIX}<name>' "
        "with a name from open_clip.list_models()"
    )
