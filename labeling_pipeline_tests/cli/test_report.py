"""The printed summary: counts, failures and failed checks."""

from pathlib import Path

from labeling_pipeline.cli import (
    RunSummary,
    StudyOutcome,
    format_summary,
)
from labeling_pipeline.defs.settings import PipelinePaths


def test_summary_reports_counts_failures_and_checks(tmp_path: Path) -> None:
    summary = RunSummary(
        paths=PipelinePaths(tmp_path / "data", tmp_path / "out"),
        dagster_home=str(tmp_path),
        studies=[
            StudyOutcome(
                "incoming-20260901-aaaaaaaa",
                "run-1",
                True,
                checks_passed=2,
                warned_checks=[
                    "landmarks_need_review: 1 landmarks in 1 images need review",
                    "curated_needs_review: 1 landmarks in 1 images need review",
                ],
            ),
            StudyOutcome(
                "incoming-20260902-bbbbbbbb",
                "run-2",
                False,
                error="pixel_features: boom",
                failed_checks=["one_row_per_landmark: 1 problem"],
            ),
        ],
        files_seen=10,
        rejected_files=2,
        rejections={"not_dicom": 1, "truncated": 1},
        images_labelled=1,
        landmarks_ok=8,
        landmarks_needs_review=1,
        curated_statuses={"ok": 8, "corrected": 1, "needs_review": 0},
    )
    text = format_summary(summary)
    assert "studies:          2 (1 labelled, 1 failed)" in text
    assert "rejected files:   2 (not_dicom: 1, truncated: 1)" in text
    assert "landmarks:        8 ok, 1 needs_review" in text
    assert "after review:     8 ok, 1 corrected" in text
    assert "label checks:     2 passed, 2 warnings, 1 failed" in text
    assert "to review:        1 studies with flagged landmarks" in text
    assert "FAILED incoming-20260902-bbbbbbbb (run run-2): pixel_features: boom" in text
    assert not summary.succeeded
