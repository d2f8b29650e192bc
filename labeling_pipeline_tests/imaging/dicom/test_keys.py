"""Partition keys and image keys: readable, stable, safe as file names."""

from __future__ import annotations

import hashlib
import re

import pytest

from labeling_pipeline.imaging.dicom import image_key, partition_key


def test_partition_and_image_keys() -> None:
    uid = "1.2.826.0.1.3680043.8.498.1"
    key = partition_key("20240315", uid)
    assert key == f"20240315-{hashlib.sha1(uid.encode()).hexdigest()[:8]}"
    assert re.fullmatch(r"\d{8}-[0-9a-f]{8}", key)
    assert (
        partition_key("", uid)
        == partition_key("2024-03-15", uid)
        == key.replace("20240315", "nodate")
    )
    assert partition_key("20240315", uid + "2") != key
    with pytest.raises(ValueError):
        partition_key("20240315", "")
    assert image_key(uid) == uid
    assert re.fullmatch(r"x[0-9a-f]{16}", image_key("../../etc/passwd"))
