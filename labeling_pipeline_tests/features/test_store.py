"""features.zarr: round trip, atomic replacement, crashed writes never read as valid."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

from labeling_pipeline.features.extractors import FeatureExtractor
from labeling_pipeline.features.feature_map import FeatureMap
from labeling_pipeline.features.materialize import materialize_features, materialize_features_batch
from labeling_pipeline.features.preprocess import PreparationSettings
from labeling_pipeline.features.store import (
    FeatureStore,
    FeatureStoreError,
    decode_key,
    encode_key,
)
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.imaging.transform import PixelTransform

UID = "1.2.826.0.1.3680043.8.498.12345"
SETTINGS = {
    "model": "efficientnet-lite0",
    "weights_sha256": "ab" * 32,
    "layers": [1, 2, 3],
    "stride": 4,
    "random_init": False,
    "preparation": {"mm_per_pixel": 0.8, "window": "percentile"},
    "mm_per_cell": 3.2,
}


def make_map(seed: int = 0, shape=(24, 40, 70)) -> FeatureMap:
    rng = np.random.default_rng(seed)
    features = rng.standard_normal(shape).astype(np.float32)
    features /= np.linalg.norm(features, axis=0, keepdims=True)
    transform = PixelTransform.for_resampling(4, 4).then(PixelTransform.for_resampling(0.8, 0.8))
    return FeatureMap(features=features, transform=transform, mm_per_cell=3.2, settings=SETTINGS)


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if p.name.startswith(("_tmp-", "_old-"))]


def test_round_trip(tmp_path):
    store = FeatureStore(tmp_path / "features.zarr", chunk_cells=32)
    fmap = make_map()
    store.write("study-1", UID, fmap, fingerprint="f" * 64)
    back = store.read("study-1", UID)
    assert back.features.dtype == np.float16
    assert back.features.shape == fmap.features.shape
    np.testing.assert_allclose(back.features, fmap.features, atol=2e-3)
    assert back.transform == fmap.transform
    assert back.mm_per_cell == fmap.mm_per_cell
    assert back.settings == SETTINGS
    assert store.fingerprint("study-1", UID) == "f" * 64
    assert store.image_keys("study-1") == [UID]
    assert store.partition_keys() == ["study-1"]
    # attributes, chunks, compression as documented
    array = zarr.open_array(tmp_path / "features.zarr" / "study-1" / UID, mode="r")
    attrs = dict(array.attrs)
    assert attrs["model"] == "efficientnet-lite0"
    assert attrs["weights_sha256"] == "ab" * 32
    assert attrs["layers"] == [1, 2, 3] and attrs["stride"] == 4
    assert attrs["mm_per_pixel"] == 0.8 and attrs["mm_per_cell"] == 3.2
    assert PixelTransform.from_dict(attrs["transform"]) == fmap.transform
    assert attrs["complete"] is True
    assert array.chunks == (24, 32, 32)
    assert array.compressors and "blosc" in type(array.compressors[0]).__name__.lower()
    assert store.nbytes("study-1") > 0


def test_missing_entries(tmp_path):
    store = FeatureStore(tmp_path / "features.zarr")
    assert store.fingerprint("p", UID) is None
    assert store.image_keys("p") == []
    assert store.nbytes("p") == 0
    with pytest.raises(FeatureStoreError, match=UID):
        store.read("p", UID)
    store.delete_partition("p")  # absent: no error


def test_rewrite_replaces_and_leaves_nothing_behind(tmp_path):
    root = tmp_path / "features.zarr"
    store = FeatureStore(root)
    store.write("p", UID, make_map(1), fingerprint="one")
    store.write("p", UID, make_map(2, shape=(24, 10, 12)), fingerprint="two")
    back = store.read("p", UID)
    assert back.features.shape == (24, 10, 12)
    np.testing.assert_allclose(back.features, make_map(2, shape=(24, 10, 12)).features, atol=2e-3)
    assert store.fingerprint("p", UID) == "two"
    assert leftovers(root) == []


def test_delete_partition_and_image(tmp_path):
    store = FeatureStore(tmp_path / "features.zarr")
    store.write("p", UID, make_map(), fingerprint="x")
    store.write("p", UID + ".2", make_map(), fingerprint="y")
    store.write("q", UID, make_map(), fingerprint="z")
    store.delete_image("p", UID)
    assert store.image_keys("p") == [UID + ".2"]
    store.delete_partition("p")
    assert store.image_keys("p") == [] and store.partition_keys() == ["q"]
    assert store.fingerprint("q", UID) == "z"


@pytest.mark.parametrize(
    "key", [UID, "2024-01-31", "a/b c", "_tmp-x", "__x", ".", "..", "ÄÖ_ü.1", "x_41y"]
)
def test_key_encoding_is_reversible_and_safe(key):
    name = encode_key(key)
    assert decode_key(name) == key
    assert "/" not in name and not name.startswith(("__", "_tmp-", "_old-", "."))
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def test_odd_keys_round_trip_through_the_store(tmp_path):
    store = FeatureStore(tmp_path / "features.zarr")
    store.write("2024/01 study", "a_b/c", make_map(shape=(4, 3, 3)), fingerprint="k")
    assert store.partition_keys() == ["2024/01 study"]
    assert store.image_keys("2024/01 study") == ["a_b/c"]
    assert store.read("2024/01 study", "a_b/c").features.shape == (4, 3, 3)


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import zarr
    from labeling_pipeline.features.feature_map import FeatureMap
    from labeling_pipeline.features.store import FeatureStore
    from labeling_pipeline.imaging.transform import PixelTransform

    root, stage = sys.argv[1], sys.argv[2]
    fmap = FeatureMap(np.ones((8, 40, 40), np.float32), PixelTransform(), 4.0, {"model": "m"})
    if stage == "data":  # killed while the chunks are being written
        original = zarr.Array.__setitem__
        def dying_setitem(self, key, value):
            original(self, (slice(None), slice(0, 20), slice(None)), value[:, :20])
            os._exit(3)
        zarr.Array.__setitem__ = dying_setitem
    elif stage == "marker":  # killed after the data, before the completion marker
        def dying_update(self, *args, **kwargs):
            os._exit(3)
        zarr.Array.update_attributes = dying_update
    elif stage == "rename":  # killed after the marker, before the rename into place
        import labeling_pipeline.features.store as store_module
        real_rename = os.rename
        def dying_rename(src, dst):
            if os.path.basename(str(src)).startswith("_tmp-"):
                os._exit(3)
            real_rename(src, dst)
        store_module.os.rename = dying_rename
    FeatureStore(root).write("p", "img", fmap, fingerprint="new")
    """
)


@pytest.mark.parametrize("stage", ["data", "marker", "rename"])
def test_crashed_write_leaves_no_valid_looking_array(tmp_path, stage):
    root = tmp_path / "features.zarr"
    result = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(root), stage], capture_output=True, text=True
    )
    assert result.returncode == 3, result.stderr
    assert leftovers(root)  # the crash left a temporary node behind...
    store = FeatureStore(root)
    assert store.fingerprint("p", "img") is None  # ...which readers treat as absent
    assert store.image_keys("p") == []
    with pytest.raises(FeatureStoreError):
        store.read("p", "img")
    # a later write goes through normally
    store.write("p", "img", make_map(shape=(8, 4, 4)), fingerprint="again")
    assert store.fingerprint("p", "img") == "again"


def test_array_without_completion_marker_is_absent(tmp_path):
    root = tmp_path / "features.zarr"
    store = FeatureStore(root)
    store.write("p", "other", make_map(shape=(4, 2, 2)), fingerprint="ok")
    group = zarr.open_group(root / "p", mode="r+")
    group.create_array(encode_key("img"), shape=(4, 2, 2), dtype="float16", attributes={})
    assert store.fingerprint("p", "img") is None
    assert store.image_keys("p") == ["other"]
    meta = json.loads((root / "p" / "img" / "zarr.json").read_text())
    assert "complete" not in meta["attributes"]


class CountingExtractor(FeatureExtractor):
    """A deterministic stand-in that counts the images it is asked for."""

    def __init__(self) -> None:
        self.name, self.stride, self.device, self.calls = "fake", 4, "cpu", 0

    def settings(self) -> dict:
        return {"model": "fake", "weights_sha256": None, "layers": [0], "stride": 4}

    def extract(self, batch):
        self.calls += len(batch)
        out = []
        for image in batch:
            h, w = -(-image.shape[0] // 4), -(-image.shape[1] // 4)
            cells = np.ones((2, h, w), np.float32) / np.sqrt(2)
            out.append(cells * float(image.mean() > 0.5))
        return out


def label_image(uid: str, value: float) -> LabelImage:
    pixels = np.zeros((16, 16), np.float32)
    pixels[4:12, 4:12] = value
    return LabelImage("s", "se", uid, "", "MR", pixels, (1.0, 1.0))


def test_materialize_skips_unchanged_images_and_replaces_the_partition(tmp_path):
    store = FeatureStore(tmp_path / "features.zarr")
    extractor = CountingExtractor()
    preparation = PreparationSettings()
    first = [label_image("1.1", 100.0), label_image("1.2", 200.0)]
    report = materialize_features(store, "p", first, extractor, preparation)
    assert sorted(report.computed) == ["1.1", "1.2"] and extractor.calls == 2

    report = materialize_features(store, "p", first, extractor, preparation)
    assert report.computed == [] and sorted(report.reused) == ["1.1", "1.2"]
    assert extractor.calls == 2  # nothing computed again

    changed = [label_image("1.1", 100.0), label_image("1.3", 50.0)]
    changed[0].pixels[0, 0] = 5.0
    report = materialize_features(store, "p", changed, extractor, preparation)
    assert sorted(report.computed) == ["1.1", "1.3"] and report.removed == ["1.2"]
    assert store.image_keys("p") == ["1.1", "1.3"]

    other_settings = PreparationSettings(mm_per_pixel=0.5)
    report = materialize_features(store, "p", changed, extractor, other_settings)
    assert sorted(report.computed) == ["1.1", "1.3"]  # settings changed: recomputed
    assert store.read("p", "1.1").settings["preparation"]["mm_per_pixel"] == 0.5


def test_materialize_rejects_duplicate_uids(tmp_path):
    store = FeatureStore(tmp_path / "features.zarr")
    images = [label_image("1.1", 1.0), label_image("1.1", 2.0)]
    with pytest.raises(ValueError, match="duplicate"):
        materialize_features(store, "p", images, CountingExtractor(), PreparationSettings())


def test_a_batch_stop_keeps_what_was_computed_and_computes_no_more(tmp_path):
    store = FeatureStore(tmp_path / "features.zarr")
    extractor = CountingExtractor()
    studies = {f"study-{i}": [label_image(f"1.{i}", 100.0 + i)] for i in range(5)}
    looks: list[int] = []

    class Canceled(Exception):
        pass

    def between_batches() -> None:
        looks.append(extractor.calls)
        if len(looks) == 2:
            raise Canceled

    with pytest.raises(Canceled):
        materialize_features_batch(
            store, studies, extractor, PreparationSettings(), 2, between_batches=between_batches
        )
    assert looks == [2, 4] and extractor.calls == 4  # the third batch was never computed
    written = [key for key in studies if store.image_keys(key)]
    assert written == ["study-0", "study-1", "study-2", "study-3"]
