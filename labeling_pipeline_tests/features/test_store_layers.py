"""features.zarr's default layout: the network's layer maps instead of the hypercolumn grid,
several times smaller, read back as the same grid (real EfficientNet-Lite0 features)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from labeling_pipeline.features.compute import compute_feature_maps, feature_settings
from labeling_pipeline.features.extractors import load_extractor
from labeling_pipeline.features.preprocess import PreparationSettings
from labeling_pipeline.features.settings import FeatureSettingsMismatch, check_compatible
from labeling_pipeline.features.store import FeatureStore, FeatureStoreError, node_name
from labeling_pipeline.imaging.image import LabelImage

UID = "1.2.826.0.1.3680043.8.498.777"
#: Issue 9's budget for features.zarr, bytes per image.
BUDGET = 600_000


@pytest.fixture(scope="module")
def lite0():
    return load_extractor("efficientnet-lite0", device="cpu")


@pytest.fixture(scope="module")
def feature_map(lite0):
    """Features of a 224 x 230 mm image with structure at every scale (1 mm pixels)."""
    rng = np.random.default_rng(7)
    pixels = sum(gaussian_filter(rng.uniform(0, 4000, (224, 230)), s) for s in (1, 4, 12))
    image = LabelImage("1.2.3", "1.2.3.4", UID, "", "MR", pixels.astype(np.float32), (1.0, 1.0))
    [fmap] = compute_feature_maps([image], lite0, PreparationSettings())
    return fmap


def _meta(store: FeatureStore, key: str = "study-1") -> dict:
    path = store.root / node_name(key) / node_name(UID) / "zarr.json"
    return json.loads(path.read_text())


def test_layer_maps_are_stored_and_read_back_as_the_same_grid(tmp_path: Path, feature_map):
    assert feature_map.layers is not None
    compact = FeatureStore(tmp_path / "compact.zarr")
    grid = FeatureStore(tmp_path / "grid.zarr", layout="grid")
    for store in (compact, grid):
        store.write("study-1", UID, feature_map, fingerprint="f" * 64)
    assert _meta(compact)["node_type"] == "group"
    assert _meta(compact)["attributes"]["layout"] == "layers"
    assert _meta(grid)["node_type"] == "array"

    back = compact.read("study-1", UID)
    assert back.features.dtype == np.float16
    assert back.features.shape == feature_map.features.shape
    # The grid itself is stored as float16 too: both differ from the computed one by rounding.
    np.testing.assert_allclose(back.features, feature_map.features, atol=2e-3)
    np.testing.assert_allclose(
        back.features.astype(np.float32),
        grid.read("study-1", UID).features.astype(np.float32),
        atol=2e-3,
    )
    norms = np.linalg.norm(back.features.astype(np.float32), axis=0)
    np.testing.assert_allclose(norms, 1.0, atol=5e-3)
    assert back.transform == feature_map.transform
    assert back.settings == json.loads(json.dumps(feature_map.settings))
    assert compact.fingerprint("study-1", UID) == "f" * 64
    assert compact.image_keys("study-1") == [UID]

    channels, rows, cols = feature_map.features.shape
    assert grid.nbytes("study-1") > 0.6 * channels * rows * cols * 2  # the old 2.4 MB kind
    assert compact.nbytes("study-1") < min(BUDGET, grid.nbytes("study-1") / 8)


def test_template_and_study_settings_are_still_compared(tmp_path: Path, lite0, feature_map):
    store = FeatureStore(tmp_path / "features.zarr")
    store.write("study-1", UID, feature_map, fingerprint="f" * 64)
    back = store.read("study-1", UID)
    check_compatible(feature_settings(lite0, PreparationSettings()), back.settings)
    other = feature_settings(lite0, PreparationSettings(mm_per_pixel=0.5))
    with pytest.raises(FeatureSettingsMismatch, match="mm_per_pixel"):
        check_compatible(other, back.settings)


def test_maps_without_layer_maps_and_out_of_range_layers_store_the_grid(
    tmp_path: Path, feature_map
):
    store = FeatureStore(tmp_path / "features.zarr")
    store.write("study-1", UID, replace(feature_map, layers=None), fingerprint="a" * 64)
    assert _meta(store)["attributes"]["layout"] == "grid"
    np.testing.assert_allclose(store.read("study-1", UID).features, feature_map.features, atol=2e-3)

    layers = feature_map.layers
    broken = replace(layers, arrays=[a.copy() for a in layers.arrays])
    broken.arrays[0][0, 0, 0] = np.inf  # beyond float16: the grid is stored instead
    store.write("study-1", UID, replace(feature_map, layers=broken), fingerprint="b" * 64)
    assert _meta(store)["attributes"]["layout"] == "grid"
    assert store.fingerprint("study-1", UID) == "b" * 64

    # and back to layer maps, replacing the grid node atomically
    store.write("study-1", UID, feature_map, fingerprint="c" * 64)
    assert _meta(store)["attributes"]["layout"] == "layers"
    assert not [p for p in store.root.rglob("*") if p.name.startswith(("_tmp-", "_old-"))]


def test_layer_group_without_completion_marker_is_absent(tmp_path: Path, feature_map):
    store = FeatureStore(tmp_path / "features.zarr")
    store.write("study-1", UID, feature_map, fingerprint="f" * 64)
    meta_path = store.root / node_name("study-1") / node_name(UID) / "zarr.json"
    meta = json.loads(meta_path.read_text())
    del meta["attributes"]["complete"]
    meta_path.write_text(json.dumps(meta))
    assert store.fingerprint("study-1", UID) is None
    assert store.image_keys("study-1") == []
    with pytest.raises(FeatureStoreError):
        store.read("study-1", UID)


def test_unknown_layout_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="layout"):
        FeatureStore(tmp_path / "features.zarr", layout="pca")
