"""open_clip towers: local checkpoints, grids that grow with the input, clear weight errors,
and pretrained tags from the local Hugging Face cache only."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from labeling_pipeline.features.extractors import (
    FeatureWeightsError,
    load_extractor,
    resolve_open_clip_pretrained,
)

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
