import math

import pandas as pd
import pytest

from labeling_pipeline.corrections import (
    append_corrections,
    curate_labels,
    make_correction,
    read_corrections,
    read_curated,
    write_curated_partition,
)
from labeling_pipeline.labels.dataset import write_labels_partition
from labeling_pipeline.labels.qa import step_angle_deg


def _row(labels: pd.DataFrame, sop: str, landmark: str) -> dict:
    match = labels[(labels["sop_instance_uid"] == sop) & (labels["landmark"] == landmark)]
    assert len(match) == 1
    return match.iloc[0].to_dict()


def test_without_corrections_every_row_is_the_machines(reviewable):
    labels = reviewable.labels()
    curated = curate_labels(labels, read_corrections(reviewable.corrections_dir))
    assert len(curated) == len(labels)
    assert set(curated["source"]) == {"machine"}
    assert curated["status"].tolist() == labels["status"].tolist()


def test_latest_correction_per_landmark_wins_and_survives_relabelling(reviewable):
    labels = reviewable.labels()
    study = reviewable.studies[0]
    sop = study.sop_instance_uid
    true_x, true_y = study.truth["L3"]
    l3 = _row(labels, sop, "L3")
    append_corrections(
        reviewable.corrections_dir,
        [make_correction(l3, "move", "ann", x=true_x + 3, y=true_y)],
    )
    append_corrections(
        reviewable.corrections_dir,
        [
            make_correction({**l3, "x": true_x + 3}, "move", "ann", x=true_x, y=true_y),
            make_correction(_row(labels, sop, "S1"), "not_in_view", "ann"),
            make_correction(_row(labels, sop, "L1"), "confirm", "ann"),
            make_correction(_row(labels, sop, "L2"), "move", "ann", x=10, y=10),
        ],
    )
    append_corrections(
        reviewable.corrections_dir, [make_correction(_row(labels, sop, "L2"), "revert", "bob")]
    )
    # A re-run writes the machine labels again, unchanged: the decisions must still count.
    write_labels_partition(
        reviewable.labels_dir, study.partition_key, labels[labels["sop_instance_uid"] == sop]
    )
    curated = curate_labels(reviewable.labels(), read_corrections(reviewable.corrections_dir))
    l3c = _row(curated, sop, "L3")
    assert l3c["status"] == "corrected" and l3c["source"] == "reviewer"
    assert (l3c["x"], l3c["y"]) == pytest.approx((true_x, true_y))
    assert l3c["x_mm"] == pytest.approx(true_x * l3c["pixel_spacing_col_mm"])
    assert l3c["machine_status"] == "needs_review" and l3c["machine_x"] == l3["x"]
    assert l3c["reason"] == "" and l3c["confidence"] == 1.0 and math.isnan(l3c["score"])
    assert _row(curated, sop, "S1")["status"] == "not_in_view"
    assert math.isnan(_row(curated, sop, "S1")["x"])
    assert _row(curated, sop, "L1")["status"] == "confirmed"
    assert _row(curated, sop, "L2")["status"] == "ok"  # reverted to the machine
    assert _row(curated, sop, "L2")["source"] == "machine"
    # L3's step from L4 (the vertebra below) is measured again at the corrected place.
    l4 = _row(curated, sop, "L4")
    dx, dy = l3c["x_mm"] - l4["x_mm"], l3c["y_mm"] - l4["y_mm"]
    assert l3c["distance_to_previous_mm"] == pytest.approx(math.hypot(dx, dy))
    assert l3c["angle_to_previous_deg"] == pytest.approx(step_angle_deg(dx, dy))
    # The other study is untouched.
    other = curated[curated["sop_instance_uid"] != sop]
    assert set(other["source"]) == {"machine"}


def test_corrections_for_unknown_landmarks_are_ignored_and_extra_columns_kept(reviewable):
    labels = reviewable.labels().assign(template="default")
    row = _row(labels, reviewable.studies[0].sop_instance_uid, "L3")
    append_corrections(
        reviewable.corrections_dir,
        [make_correction({**row, "landmark": "T11"}, "not_in_view", "ann")],
    )
    curated = curate_labels(labels, read_corrections(reviewable.corrections_dir))
    assert set(curated["source"]) == {"machine"} and "template" in curated
    key = reviewable.studies[0].partition_key
    part = curated[curated["partition_key"] == key]
    write_curated_partition(reviewable.output_dir / "curated", key, part)
    back = read_curated(reviewable.output_dir / "curated")
    assert len(back) == len(part) and set(back["template"]) == {"default"}
    with pytest.raises(ValueError, match="given to partition"):
        write_curated_partition(reviewable.output_dir / "curated", "other-key", part)
