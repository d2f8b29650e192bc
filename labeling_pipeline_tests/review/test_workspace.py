import pytest

from labeling_pipeline.corrections import CorrectionError, read_corrections
from labeling_pipeline.review.workspace import QueueFilter, ReviewWorkspace, UnknownImageError


def test_queue_lists_flagged_images_most_uncertain_first(reviewable):
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    queue = workspace.queue()
    assert [item["partition_key"] for item in queue] == [
        s.partition_key for s in reviewable.studies
    ]
    first, second = queue
    assert first["matching"] == ["L3", "S1"] and first["min_confidence"] == 0.0
    assert second["matching"] == ["L4", "L5"] and second["min_confidence"] == pytest.approx(0.2)
    assert first["counts"] == {"ok": 9, "needs_review": 2}
    assert first["reasons"] == ["not found", "uncertain"]
    assert [i["partition_key"] for i in workspace.queue(QueueFilter(landmark="L5"))] == [
        second["partition_key"]
    ]
    assert workspace.queue(QueueFilter(study=second["partition_key"][-8:])) == [second]
    assert len(workspace.queue(QueueFilter(status=""))) == 2


def test_decisions_clear_the_queue_and_are_stored(reviewable):
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    study = reviewable.studies[0]
    x, y = study.truth["L3"]
    workspace.record(
        study.sop_instance_uid, "ann", [{"landmark": "L3", "action": "move", "x": x, "y": y}]
    )
    workspace.record(study.sop_instance_uid, "ann", [{"landmark": "S1", "action": "not_in_view"}])
    detail = workspace.image_detail(study.sop_instance_uid)
    statuses = {lm["landmark"]: lm["status"] for lm in detail["landmarks"]}
    assert statuses["L3"] == "corrected" and statuses["S1"] == "not_in_view"
    # The page says which template placed each landmark (all by the default one here).
    assert {lm["template"] for lm in detail["landmarks"]} == {"default"}
    assert detail["next"] == reviewable.studies[1].sop_instance_uid
    assert [i["partition_key"] for i in workspace.queue()] == [reviewable.studies[1].partition_key]
    # Accept all confirms the machine's placed landmarks, not the reviewer's decisions.
    records = workspace.record(study.sop_instance_uid, "bob", [{"action": "accept_all"}])
    assert len(records) == 9 and {r["landmark"] for r in records}.isdisjoint({"L3", "S1"})
    assert len(read_corrections(reviewable.corrections_dir)) == 11


def test_accept_all_after_moves_in_the_same_save_keeps_the_moves(reviewable):
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    study = reviewable.studies[1]
    x, y = study.truth["L4"]
    records = workspace.record(
        study.sop_instance_uid,
        "ann",
        [{"landmark": "L4", "action": "move", "x": x, "y": y}, {"action": "accept_all"}],
    )
    assert [r["landmark"] for r in records].count("L4") == 1
    statuses = {
        lm["landmark"]: (lm["status"], lm["x"])
        for lm in workspace.image_detail(study.sop_instance_uid)["landmarks"]
    }
    assert statuses["L4"] == ("corrected", x) and statuses["L5"][0] == "confirmed"


def test_bad_decisions_are_refused_and_nothing_is_stored(reviewable):
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    sop = reviewable.studies[0].sop_instance_uid
    with pytest.raises(CorrectionError, match="no landmark 'T1'"):
        workspace.record(sop, "ann", [{"landmark": "T1", "action": "confirm"}])
    with pytest.raises(CorrectionError, match="outside"):
        workspace.record(sop, "ann", [{"landmark": "L3", "action": "move", "x": 9999, "y": 1}])
    with pytest.raises(UnknownImageError):
        workspace.record("1.2.3", "ann", [])
    assert read_corrections(reviewable.corrections_dir).empty


def test_the_labelled_image_is_read_from_the_catalog(reviewable):
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    study = reviewable.studies[1]
    image = workspace.image(study.sop_instance_uid)
    assert image.sop_instance_uid == study.sop_instance_uid and image.rows == 256
    assert {i["sop_instance_uid"] for i in workspace.labelled_images()} == {
        s.sop_instance_uid for s in reviewable.studies
    }
