import math

import pandas as pd
import pytest

from labeling_pipeline.corrections import (
    CorrectionError,
    ReviewAction,
    append_corrections,
    latest_corrections,
    make_correction,
    read_corrections,
)
from labeling_pipeline.corrections.store import correction_files

LABEL = {
    "partition_key": "incoming-20260901-00000000",
    "study_uid": "1.2",
    "series_uid": "1.2.3",
    "sop_instance_uid": "1.2.3.4",
    "landmark": "L3",
    "kind": "vertebra",
    "x": 50.0,
    "y": 60.0,
    "status": "needs_review",
    "rows": 100,
    "columns": 80,
}


def test_move_records_old_and_new_position_and_reviewer():
    record = make_correction(LABEL, "move", "  Dr  Who ", x=40.5, y=61.0)
    assert record["action"] == "move" and record["new_status"] == "corrected"
    assert (record["old_x"], record["old_y"], record["old_status"]) == (50.0, 60.0, "needs_review")
    assert (record["new_x"], record["new_y"]) == (40.5, 61.0)
    assert record["reviewer"] == "Dr Who"
    assert record["recorded_at"].endswith("Z")


@pytest.mark.parametrize(
    ("action", "kwargs", "message"),
    [
        ("move", {}, "needs the new position"),
        ("move", {"x": 80.0, "y": 10.0}, "outside the 80 x 100 image"),
        ("teleport", {}, "unknown review action"),
    ],
)
def test_invalid_actions_are_refused(action, kwargs, message):
    with pytest.raises(CorrectionError, match=message):
        make_correction(LABEL, action, "reviewer", **kwargs)


def test_a_reviewer_name_is_required_and_confirm_needs_a_position():
    with pytest.raises(CorrectionError, match="reviewer name"):
        make_correction(LABEL, ReviewAction.CONFIRM, "  ")
    unplaced = {**LABEL, "x": math.nan, "y": math.nan}
    with pytest.raises(CorrectionError, match="no position to confirm"):
        make_correction(unplaced, ReviewAction.CONFIRM, "reviewer")
    record = make_correction(unplaced, ReviewAction.NOT_IN_VIEW, "reviewer")
    assert record["new_status"] == "not_in_view" and math.isnan(record["new_x"])


def test_appends_never_replace_and_latest_wins(tmp_path):
    directory = tmp_path / "corrections"
    first = append_corrections(directory, [make_correction(LABEL, "move", "a", x=10, y=10)])
    second = append_corrections(
        directory,
        [
            make_correction(LABEL, "confirm", "b"),
            make_correction({**LABEL, "landmark": "L4"}, "not_in_view", "b"),
        ],
    )
    assert append_corrections(directory, []) is None
    assert first != second and correction_files(directory) == [first, second]
    before = first.read_bytes()
    table = read_corrections(directory)
    assert list(table["action"]) == ["move", "confirm", "not_in_view"]
    assert first.read_bytes() == before  # untouched by the second append
    latest = latest_corrections(table).set_index("landmark")
    assert latest.loc["L3", "new_status"] == "confirmed" and latest.loc["L3", "reviewer"] == "b"
    assert latest.loc["L4", "new_status"] == "not_in_view"
    # The directory reads as one table with plain pandas too.
    assert len(pd.read_parquet(directory)) == 3


def test_a_broken_file_is_named(tmp_path):
    directory = tmp_path / "corrections"
    directory.mkdir()
    (directory / "20260101T000000000000Z-bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(CorrectionError, match="bad.parquet"):
        read_corrections(directory)
