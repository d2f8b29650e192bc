"""Pixel features: pixel preparation, pretrained extractors and the Zarr feature store."""
