"""open_clip image towers: ViTs with their positional embeddings resampled to each input, and
timm towers; weights from a pretrained tag in the local Hugging Face cache or a checkpoint."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from labeling_pipeline.features.extractors.base import (
    OPEN_CLIP_PREFIX,
    RANDOM_SEED,
    RANDOM_WEIGHTS,
    FeatureWeightsError,
    TorchExtractor,
)
from labeling_pipeline.features.extractors.hypercolumns import LayerGroup
from labeling_pipeline.features.extractors.weights_cache import file_sha256


def _is_checkpoint_path(weights: str) -> bool:
    return (
        os.sep in weights
        or "/" in weights
        or weights.endswith((".pt", ".pth", ".bin", ".safetensors", ".npz", ".ckpt"))
        or os.path.exists(weights)
    )


def resolve_open_clip_pretrained(
    model_name: str, tag: str, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Local file of an open_clip pretrained tag in the Hugging Face cache (``cache_dir``,
    default: the hub's own, i.e. HF_HUB_CACHE / HF_HOME). Nothing is downloaded; raises
    :class:`FeatureWeightsError` when the file is not there."""
    import open_clip
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import try_to_load_from_cache

    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if tag not in tags:
        raise FeatureWeightsError(
            f"open_clip:{model_name}: unknown pretrained tag {tag!r} (known: {tags or 'none'}); "
            "pass a known tag or a local checkpoint path as the weights (LABELING_FEATURE_WEIGHTS)"
        )
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if cfg.get("file") and os.path.isfile(cfg["file"]):
        return Path(cfg["file"])
    hub = cfg.get("hf_hub", "")
    if not hub:
        raise FeatureWeightsError(
            f"open_clip:{model_name}: pretrained tag {tag!r} is not published on the Hugging Face "
            "hub, so it cannot come from the local cache; download its checkpoint elsewhere and "
            "pass its path as the weights (LABELING_FEATURE_WEIGHTS)"
        )
    # open_clip's convention: "org/repo/filename", or "org/repo/" for its default file names.
    if hub.endswith("/"):
        repo_id, names = (
            hub.rstrip("/"),
            ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"],
        )
    else:
        repo_id, filename = os.path.split(hub)
        names = [filename]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
    for name in names:
        found = try_to_load_from_cache(
            repo_id=repo_id, filename=name, cache_dir=str(cache_dir) if cache_dir else None
        )
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    where = str(cache_dir) if cache_dir else hf_constants.HF_HUB_CACHE
    raise FeatureWeightsError(
        f"open_clip:{model_name}: weights of pretrained tag {tag!r} ({repo_id}: "
        f"{' or '.join(names)}) are not in the Hugging Face cache at {where}, and this machine "
        f"does not download them. Pre-fill the cache (e.g. `hf download {repo_id} {names[-1]}` "
        "where the hub is reachable, then copy the cache) or pass a local checkpoint path as "
        "the weights (LABELING_FEATURE_WEIGHTS)"
    )


class OpenClipExtractor(TorchExtractor):
    """Patch-token (or stage) features of an open_clip image tower.

    ViTs: ``layers`` are transformer block indices (negative counts from the end); their patch
    tokens come from ``forward_intermediates`` with the positional embeddings resampled to the
    input's patch grid, so inputs larger than the training size give denser grids. The grid
    stride is the patch size; ``output_stride`` (dividing it) upsamples bilinearly.
    timm towers (SigLIP, MobileCLIP, ...) use timm's ``forward_intermediates`` the same way.
    """

    def __init__(
        self,
        model_name: str,
        weights: str | None,
        device: torch.device,
        random_init: bool,
        layers: tuple[int, ...] | None,
        output_stride: int | None,
    ) -> None:
        import open_clip

        known = open_clip.list_models()
        if model_name not in known:
            close = [m for m in known if model_name.lower() in m.lower()][:10]
            raise ValueError(
                f"open_clip:{model_name} is not an open_clip model (open_clip.list_models())"
                + (f"; similar: {close}" if close else "")
            )
        preprocess_overrides: dict[str, Any] = {}
        if random_init:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_SEED)
                clip = open_clip.create_model(
                    model_name, pretrained=None, pretrained_text=False, device="cpu"
                )
            self.weights_source, self.weights_sha256 = RANDOM_WEIGHTS, None
        else:
            if not weights:
                raise FeatureWeightsError(
                    f"open_clip:{model_name}: no weights given. Pass a pretrained tag that is in "
                    "the local Hugging Face cache or a local checkpoint path "
                    "(LABELING_FEATURE_WEIGHTS); random weights only with allow_random_weights"
                )
            if _is_checkpoint_path(weights):
                path = Path(weights).expanduser()
                if not path.is_file():
                    raise FeatureWeightsError(
                        f"open_clip:{model_name}: checkpoint file not found: {path}; pass an "
                        "existing checkpoint path or a cached pretrained tag "
                        "(LABELING_FEATURE_WEIGHTS)"
                    )
                source = str(path)
            else:
                path = resolve_open_clip_pretrained(model_name, weights)
                source = f"pretrained:{weights}"
                tag_cfg = open_clip.get_pretrained_cfg(model_name, weights)
                preprocess_overrides = {
                    k: tag_cfg[k] for k in ("mean", "std") if tag_cfg.get(k) is not None
                }
            clip = open_clip.create_model(
                model_name, pretrained=None, pretrained_text=False, device="cpu"
            )
            try:
                open_clip.load_checkpoint(clip, str(path), strict=True)
            except Exception as error:
                raise FeatureWeightsError(
                    f"open_clip:{model_name}: cannot load weights from {path} ({error}); pass a "
                    f"checkpoint of {model_name} or a cached pretrained tag "
                    "(LABELING_FEATURE_WEIGHTS)"
                ) from error
            self.weights_source, self.weights_sha256 = source, file_sha256(path)
        self.random_init = random_init
        preprocess = dict(open_clip.get_model_preprocess_cfg(clip))
        preprocess.update(preprocess_overrides)
        mean = tuple(float(v) for v in preprocess.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        std = tuple(float(v) for v in preprocess.get("std", (0.26862954, 0.26130258, 0.27577711)))
        visual = clip.visual
        del clip  # the text tower is not needed
        self._tower = _tower_adapter(model_name, visual)
        self.layers = self._tower.normalise_layers(layers)
        super().__init__(visual, device, mean, std)
        self._input_mean, self._input_std = mean, std
        self.name = f"{OPEN_CLIP_PREFIX}{model_name}"
        self.pad_multiple = self._tower.pad_multiple
        native = self._tower.native_stride
        stride = native if output_stride is None else int(output_stride)
        if stride < 1:
            raise ValueError(f"output_stride must be >= 1, got {output_stride}")
        self.stride = stride

    def _forward_groups(self, x: torch.Tensor) -> list[LayerGroup]:
        return self._tower.forward_groups(self.model, x, self.layers)

    def settings(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "architecture": self._tower.architecture,
            "weights_source": self.weights_source,
            "weights_sha256": self.weights_sha256,
            "random_init": self.random_init,
            "random_seed": RANDOM_SEED if self.random_init else None,
            "layers": list(self.layers),
            "layer_strides": list(self._tower.layer_strides(self.layers)),
            "channels": int(self._tower.channels(self.layers)),
            "stride": self.stride,
            "input_mean": list(self._input_mean),
            "input_std": list(self._input_std),
            "normalisation": "l2_per_layer_group_over_sqrt_n",
        }


class _TowerAdapter(ABC):
    """What differs between open_clip's own ViT and timm towers."""

    architecture: str
    native_stride: int
    pad_multiple: int

    @abstractmethod
    def normalise_layers(self, layers: tuple[int, ...] | None) -> tuple[int, ...]: ...

    @abstractmethod
    def layer_strides(self, layers: tuple[int, ...]) -> tuple[int, ...]: ...

    @abstractmethod
    def channels(self, layers: tuple[int, ...]) -> int: ...

    @abstractmethod
    def forward_groups(
        self, visual: torch.nn.Module, x: torch.Tensor, layers: tuple[int, ...]
    ) -> list[LayerGroup]: ...


def _block_layers(depth: int, layers: tuple[int, ...] | None, name: str) -> tuple[int, ...]:
    """Block indices in 0..depth-1 (negatives from the end); default: middle to last block."""
    if layers is None:
        # Mid-depth tokens keep position detail, the last ones semantics; both help matching.
        layers = (depth // 2 - 1, (3 * depth) // 4 - 1, depth - 1)
    out = []
    for index in layers:
        i = int(index) + depth if int(index) < 0 else int(index)
        if not 0 <= i < depth:
            raise ValueError(f"{name}: layer {index} outside 0..{depth - 1}")
        out.append(i)
    return tuple(sorted(set(out)))


class _OpenClipViT(_TowerAdapter):
    """open_clip's ``VisionTransformer``: learned absolute positions, one class token.

    The resampled positional embedding is swapped in for the duration of each forward, so one
    extractor must not be used from several threads at once (each process has its own).
    """

    def __init__(self, model_name: str, visual: torch.nn.Module) -> None:
        self.name = f"open_clip:{model_name}"
        self.architecture = f"open_clip.VisionTransformer:{model_name}"
        patch = visual.patch_size
        if patch[0] != patch[1]:
            raise ValueError(f"{self.name}: non-square patches {patch} are not supported")
        self.native_stride = self.pad_multiple = int(patch[0])
        self.depth = len(visual.transformer.resblocks)
        self.width = int(visual.positional_embedding.shape[-1])
        self.train_grid = tuple(int(g) for g in visual.grid_size)
        self._pos_cache: dict[tuple[int, int, str], torch.Tensor] = {}

    def normalise_layers(self, layers: tuple[int, ...] | None) -> tuple[int, ...]:
        return _block_layers(self.depth, layers, self.name)

    def layer_strides(self, layers: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(self.native_stride for _ in layers)

    def channels(self, layers: tuple[int, ...]) -> int:
        return self.width * len(layers)

    def _positions(self, original: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        key = (*grid, str(original.device))
        if key not in self._pos_cache:
            from timm.layers import resample_abs_pos_embed

            # In float32 even when called under CUDA autocast: it is computed once per size.
            with torch.autocast(original.device.type, enabled=False):
                self._pos_cache[key] = resample_abs_pos_embed(
                    original.detach().float().unsqueeze(0),
                    new_size=list(grid),
                    old_size=list(self.train_grid),
                    num_prefix_tokens=1,
                )[0].to(original.dtype)
        return self._pos_cache[key]

    def forward_groups(
        self, visual: torch.nn.Module, x: torch.Tensor, layers: tuple[int, ...]
    ) -> list[LayerGroup]:
        grid = (x.shape[-2] // self.native_stride, x.shape[-1] // self.native_stride)
        original = visual.positional_embedding
        try:
            if grid != self.train_grid:
                # forward_intermediates adds visual.positional_embedding as is: swap in one
                # resampled (bicubic) to this input's patch grid for the duration of the call.
                visual.positional_embedding = torch.nn.Parameter(
                    self._positions(original, grid), requires_grad=False
                )
            out = visual.forward_intermediates(
                x, indices=list(layers), stop_early=True, intermediates_only=True
            )
        finally:
            visual.positional_embedding = original
        k = self.native_stride
        return [LayerGroup(t, k, (k - 1) / 2.0) for t in out["image_intermediates"]]


class _TimmTower(_TowerAdapter):
    """open_clip ``TimmModel``: a timm trunk. ViT-like trunks run with dynamic image size
    (timm resamples their positional embeddings per input); convolutional ones as they are."""

    def __init__(self, model_name: str, visual: torch.nn.Module) -> None:
        from timm.layers import Format

        self.name = f"open_clip:{model_name}"
        trunk = visual.trunk
        self.architecture = f"open_clip.TimmModel:{type(trunk).__name__}:{model_name}"
        self.token_based = hasattr(trunk, "patch_embed") and hasattr(trunk, "blocks")
        if self.token_based and hasattr(trunk, "dynamic_img_size"):
            trunk.dynamic_img_size = True
            patch_embed = trunk.patch_embed
            patch_embed.strict_img_size = False
            patch_embed.flatten = False
            patch_embed.output_fmt = Format.NHWC
        if self.token_based:
            patch = trunk.patch_embed.patch_size
            patch = tuple(patch) if isinstance(patch, (tuple, list)) else (patch, patch)
            if patch[0] != patch[1]:
                raise ValueError(f"{self.name}: non-square patches {patch} are not supported")
            self.native_stride = self.pad_multiple = int(patch[0])
            self.depth = len(trunk.blocks)
            self.width = int(getattr(trunk, "embed_dim", trunk.num_features))
        else:
            info = getattr(trunk, "feature_info", None)
            if not info:
                raise ValueError(f"{self.name}: timm trunk {type(trunk).__name__} has no stages")
            self.stage_info = [(int(f["reduction"]), int(f["num_chs"])) for f in info]
            self.depth = len(self.stage_info)
            self.pad_multiple = max(r for r, _ in self.stage_info)
            self.native_stride = 0  # set from layers below

    def normalise_layers(self, layers: tuple[int, ...] | None) -> tuple[int, ...]:
        if self.token_based:
            return _block_layers(self.depth, layers, self.name)
        if layers is None:
            layers = tuple(range(max(0, self.depth - 3), self.depth))
        chosen = _block_layers(self.depth, tuple(layers), self.name)
        self.native_stride = min(self.stage_info[i][0] for i in chosen)
        self.pad_multiple = max(self.stage_info[i][0] for i in chosen)
        return chosen

    def layer_strides(self, layers: tuple[int, ...]) -> tuple[int, ...]:
        if self.token_based:
            return tuple(self.native_stride for _ in layers)
        return tuple(self.stage_info[i][0] for i in layers)

    def channels(self, layers: tuple[int, ...]) -> int:
        if self.token_based:
            return self.width * len(layers)
        return sum(self.stage_info[i][1] for i in layers)

    def forward_groups(
        self, visual: torch.nn.Module, x: torch.Tensor, layers: tuple[int, ...]
    ) -> list[LayerGroup]:
        maps = visual.trunk.forward_intermediates(
            x, indices=list(layers), stop_early=True, intermediates_only=True, output_fmt="NCHW"
        )
        groups = []
        for m, stride in zip(maps, self.layer_strides(layers), strict=True):
            groups.append(LayerGroup(m, stride, (stride - 1) / 2.0))
        return groups


def _tower_adapter(model_name: str, visual: torch.nn.Module) -> _TowerAdapter:
    if hasattr(visual, "trunk"):
        return _TimmTower(model_name, visual)
    if hasattr(visual, "positional_embedding") and hasattr(visual, "forward_intermediates"):
        return _OpenClipViT(model_name, visual)
    raise ValueError(
        f"open_clip:{model_name}: image tower {type(visual).__name__} is not supported "
        "(ViTs and timm towers are)"
    )
