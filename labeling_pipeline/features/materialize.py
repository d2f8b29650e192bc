"""Bring a partition of ``features.zarr`` up to date, computing only what changed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from labeling_pipeline.features.compute import (
    compute_feature_maps,
    feature_fingerprint,
    feature_settings,
)
from labeling_pipeline.features.preprocess import PreparationSettings
from labeling_pipeline.features.store import FeatureStore
from labeling_pipeline.imaging.image import LabelImage

if TYPE_CHECKING:  # the extractors import torch: only the callers that pass one in load it
    from labeling_pipeline.features.extractors import FeatureExtractor


@dataclass
class MaterializeReport:
    """What :func:`materialize_features` did, by image key (SOPInstanceUID)."""

    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def materialize_features(
    store: FeatureStore,
    partition_key: str,
    images: list[LabelImage],
    extractor: FeatureExtractor,
    preparation: PreparationSettings,
    batch_size: int = 8,
    remove_stale: bool = True,
) -> MaterializeReport:
    """Make the partition hold the features of exactly ``images`` (keyed by SOPInstanceUID).

    An image whose stored fingerprint (pixels + settings) matches is not computed again;
    others are computed and written atomically, replacing old features. With ``remove_stale``
    the partition's other images are removed, so re-materialising replaces the partition.
    """
    reports = materialize_features_batch(
        store, {partition_key: images}, extractor, preparation, batch_size, remove_stale
    )
    return reports[partition_key]


def materialize_features_batch(
    store: FeatureStore,
    studies: Mapping[str, list[LabelImage]],
    extractor: FeatureExtractor,
    preparation: PreparationSettings,
    batch_size: int = 16,
    remove_stale: bool = True,
    between_batches: Callable[[], None] | None = None,
) -> dict[str, MaterializeReport]:
    """:func:`materialize_features` for several partitions at once (``studies``: partition key
    -> its images): the images to compute of every partition go through the network together,
    ``batch_size`` at a time, so a batch of small studies fills the network's batches.
    ``between_batches`` is called after each network batch; it may raise to stop (a canceled
    run), and what was computed so far is written."""
    settings = feature_settings(extractor, preparation)
    reports = {key: MaterializeReport() for key in studies}
    todo: list[tuple[str, LabelImage, str]] = []
    for partition_key, images in studies.items():
        keys = [image.sop_instance_uid for image in images]
        if len(set(keys)) != len(keys):
            duplicates = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(
                f"duplicate SOPInstanceUIDs in partition {partition_key!r}: {duplicates}"
            )
        for image in images:
            fingerprint = feature_fingerprint(image, settings)
            if store.fingerprint(partition_key, image.sop_instance_uid) == fingerprint:
                reports[partition_key].reused.append(image.sop_instance_uid)
            else:
                todo.append((partition_key, image, fingerprint))

    def write_all(chunk: list[tuple[str, LabelImage, str]], maps: list) -> None:
        for (partition_key, image, fingerprint), fmap in zip(chunk, maps, strict=True):
            store.write(partition_key, image.sop_instance_uid, fmap, fingerprint)
            reports[partition_key].computed.append(image.sop_instance_uid)

    # Writing (float16 conversion, compression, files) of one batch overlaps the extraction of
    # the next; at most one batch waits, which bounds memory. Errors surface via result().
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-store") as writer:
        pending: Future[None] | None = None
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            maps = compute_feature_maps(
                [i for _, i, _ in chunk], extractor, preparation, batch_size
            )
            if pending is not None:
                pending.result()
            pending = writer.submit(write_all, chunk, maps)
            if between_batches is not None:
                between_batches()
        if pending is not None:
            pending.result()
    if remove_stale:
        for partition_key, images in studies.items():
            wanted = {image.sop_instance_uid for image in images}
            for key in store.image_keys(partition_key):
                if key not in wanted:
                    store.delete_image(partition_key, key)
                    reports[partition_key].removed.append(key)
    return reports
