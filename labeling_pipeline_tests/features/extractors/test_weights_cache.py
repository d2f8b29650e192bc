"""Weight-file hashes: computed once, kept across processes, renewed when a file changes."""

from __future__ import annotations

import hashlib
import json

from labeling_pipeline.features.extractors import file_sha256


def test_file_sha256_is_cached_across_processes_and_notices_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELING_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"abc")
    assert file_sha256(weights) == hashlib.sha256(b"abc").hexdigest()
    cached = json.loads((tmp_path / "cache" / "weights_sha256.json").read_text())
    assert list(cached.values()) == [hashlib.sha256(b"abc").hexdigest()]
    weights.write_bytes(b"abcd")  # new size and mtime: hashed again
    assert file_sha256(weights) == hashlib.sha256(b"abcd").hexdigest()
