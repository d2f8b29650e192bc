"""sha256 of weight files, hashed once: the settings of every feature map name the exact
weights they were made with, and hashing a few hundred MB per process start would cost seconds."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

_SHA256_CACHE: dict[tuple[str, int, int], str] = {}
_SHA256_LOCK = threading.Lock()


def _sha256_cache_file() -> Path:
    """Where hashes of weight files persist between processes (each Dagster step is one)."""
    base = os.environ.get("LABELING_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "labeling_pipeline"
    )
    return Path(base) / "weights_sha256.json"


def _read_sha256_cache() -> dict[str, str]:
    try:
        data = json.loads(_sha256_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_sha256_cache(key: str, value: str) -> None:
    """Best effort (a read-only home only costs a re-hash); written atomically."""
    path = _sha256_cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # entries of files that are gone (moved checkpoints, test files) are dropped
        data = {k: v for k, v in _read_sha256_cache().items() if os.path.exists(k.split("|")[0])}
        data[key] = value
        temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(data, indent=0, sort_keys=True), encoding="utf-8")
        os.replace(temp, path)
    except OSError:
        pass


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file, hashed once: cached per (path, size, mtime) in this process and
    in a small JSON file under ``~/.cache/labeling_pipeline`` (LABELING_CACHE_DIR) across
    processes. A changed file (size or mtime) is hashed again."""
    resolved = os.path.realpath(path)
    stat = os.stat(resolved)
    key = (resolved, stat.st_size, stat.st_mtime_ns)
    with _SHA256_LOCK:
        cached = _SHA256_CACHE.get(key)
    if cached is not None:
        return cached
    text_key = f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}"
    value = _read_sha256_cache().get(text_key)
    if not (isinstance(value, str) and len(value) == 64):
        digest = hashlib.sha256()
        with open(resolved, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        value = digest.hexdigest()
        _write_sha256_cache(text_key, value)
    with _SHA256_LOCK:
        _SHA256_CACHE[key] = value
    return value
