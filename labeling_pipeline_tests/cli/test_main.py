"""``labeling-pipeline``: options over environment, usage errors and their exit status."""

import subprocess
import sys
from pathlib import Path

import pytest

from labeling_pipeline.cli import (
    EXIT_USAGE,
    main,
)
from labeling_pipeline.defs.settings import DATA_DIR_ENV


def test_missing_data_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    assert main(["run", "--data-dir", str(tmp_path / "absent")]) == EXIT_USAGE
    assert "absent does not exist" in capsys.readouterr().err


def test_option_wins_over_environment(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    dagster_home: Path,
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))  # exists, but the option names another
    assert main(["run", "--data-dir", str(tmp_path / "option")]) == EXIT_USAGE
    assert "option does not exist" in capsys.readouterr().err


def test_environment_is_used_without_options(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    dagster_home: Path,
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "from_env"))
    assert main(["run"]) == EXIT_USAGE
    assert "from_env does not exist" in capsys.readouterr().err


def test_unknown_command_is_rejected() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["label-everything"])
    assert exit_info.value.code == 2


def test_module_runs_as_the_console_script() -> None:
    """``python -m labeling_pipeline.cli`` is the same entry point as ``labeling-pipeline``."""
    completed = subprocess.run(
        [sys.executable, "-m", "labeling_pipeline.cli", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "--data-dir" in completed.stdout and "--partition" in completed.stdout
