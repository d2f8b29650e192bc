"""Fixtures shared across the test packages."""

from pathlib import Path

import pytest

from labeling_pipeline_tests.reviewable import ReviewableOutputs, build_reviewable_outputs


@pytest.fixture
def reviewable(tmp_path: Path) -> ReviewableOutputs:
    """Two labelled phantom studies with flagged landmarks (see ``reviewable.py``)."""
    return build_reviewable_outputs(tmp_path)
