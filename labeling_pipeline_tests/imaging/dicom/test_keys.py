"""Partition keys and image keys: readable, stable, safe as file names."""

from __future__ import annotations

import hashlib
import re

import pytest

from labeling_pipeline.imaging.dicom import (
    LEGACY_PARTITION_KEY,
    PARTITION_KEY,
    image_key,
    key_source,
    partition_key,
    study_source,
)


def test_partition_and_image_keys() -> None:
    uid = "1.2.826.0.1.3680043.8.498.1"
    key = partition_key("archive", "20240315", uid)
    assert key == f"archive-20240315-{hashlib.sha1(uid.encode()).hexdigest()[:8]}"
    assert PARTITION_KEY.fullmatch(key) and not LEGACY_PARTITION_KEY.fullmatch(key)
    assert key_source(key) == "archive"
    assert (
        partition_key("archive", "", uid)
        == partition_key("archive", "2024-03-15", uid)
        == key.replace("20240315", "nodate")
    )
    assert partition_key("incoming", "20240315", uid) == key.replace("archive", "incoming")
    assert partition_key("archive", "20240315", uid + "2") != key
    with pytest.raises(ValueError):
        partition_key("archive", "20240315", "")
    with pytest.raises(ValueError, match="source"):
        partition_key("../x", "20240315", uid)
    # A key of the old format names no source.
    assert key_source("20240315-0123abcd") is None
    assert LEGACY_PARTITION_KEY.fullmatch("20240315-0123abcd")


def test_a_study_in_several_folders_is_keyed_by_the_one_that_is_watched() -> None:
    assert study_source({"archive", "incoming"}) == "incoming"
    assert study_source({"archive", "dicomweb"}) == "dicomweb"
    assert study_source(["archive"]) == "archive"
    with pytest.raises(ValueError):
        study_source(set())


def test_image_keys() -> None:
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert image_key(uid) == uid
    assert re.fullmatch(r"x[0-9a-f]{16}", image_key("../../etc/passwd"))
