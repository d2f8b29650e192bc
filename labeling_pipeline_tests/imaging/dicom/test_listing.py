"""The incoming/ fingerprint changes exactly when the files the scan would see change."""

import os
from pathlib import Path

from labeling_pipeline.imaging.dicom import tree_fingerprint


def test_missing_folder_has_no_files(tmp_path: Path) -> None:
    assert tree_fingerprint(tmp_path / "absent").files == 0


def test_fingerprint_tracks_added_changed_and_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "a.dcm").write_bytes(b"one")
    first = tree_fingerprint(tmp_path)
    assert first.files == 1
    assert tree_fingerprint(tmp_path) == first  # stable when nothing changes

    (tmp_path / ".hidden").write_bytes(b"ignored")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.dcm").write_bytes(b"ignored")
    assert tree_fingerprint(tmp_path) == first  # hidden files and folders are not scanned

    (tmp_path / "study" / "b.dcm").write_bytes(b"two")
    second = tree_fingerprint(tmp_path)
    assert second.files == 2 and second.digest != first.digest

    path = tmp_path / "study" / "b.dcm"
    stat = path.stat()
    path.write_bytes(b"TWO")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert tree_fingerprint(tmp_path).digest != second.digest  # replaced content
