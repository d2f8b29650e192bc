"""Pixel features: pixel preparation, pretrained extractors and the Zarr feature store.

- ``preprocess``: window, MONOCHROME1 inversion, resampling to mm per pixel (``prepare_image``).
- ``extractors``: ``load_extractor`` (bundled EfficientNet-Lite0 or ``open_clip:<name>``).
- ``compute``: ``compute_feature_maps``, ``feature_settings``, ``feature_fingerprint``.
- ``settings``: ``check_compatible`` / ``FeatureSettingsMismatch`` (template vs study).
- ``store``: ``FeatureStore``, the atomic ``features.zarr`` (layer maps by default, or grids).
- ``materialize``: ``materialize_features``, bring a partition up to date, skipping unchanged.
- ``feature_map``: ``FeatureMap``, the hand-off to localization, and ``LayerMaps``, the
  network's maps it was made from (what the store keeps).

Nothing is imported here, so that importing the package does not import torch.
"""
