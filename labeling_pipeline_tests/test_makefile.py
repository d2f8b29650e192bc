"""The Makefile's housekeeping targets keep people's work."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _outputs(root: Path) -> None:
    outputs = root / "data" / "outputs"
    for relative in ("corrections/2026-12-02.parquet", "labels/a.parquet", "catalog.parquet"):
        (outputs / relative).parent.mkdir(parents=True, exist_ok=True)
        (outputs / relative).write_bytes(b"x")
    (root / ".dagster" / "history").mkdir(parents=True)
    shutil.copy(REPOSITORY / "Makefile", root / "Makefile")
    shutil.copy(REPOSITORY / "pyproject.toml", root / "pyproject.toml")


def _clean(root: Path, *arguments: str) -> None:
    subprocess.run(["make", "-s", "clean-outputs", *arguments], cwd=root, check=True)


def test_clean_outputs_keeps_reviewers_corrections(tmp_path):
    _outputs(tmp_path)
    _clean(tmp_path)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["Makefile", "data/outputs/corrections/2026-12-02.parquet", "pyproject.toml"]


def test_clean_outputs_can_drop_corrections_when_asked(tmp_path):
    _outputs(tmp_path)
    _clean(tmp_path, "KEEP_CORRECTIONS=0")
    assert not (tmp_path / "data" / "outputs").exists()
    assert not (tmp_path / ".dagster").exists()
