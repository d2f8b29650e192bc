"""Scoring localization results against known vertebra positions."""

from __future__ import annotations

import math

import pytest

from labeling_pipeline.localization.evaluation import (
    FALSE_POSITIVE,
    IDENTIFIED,
    REVIEW,
    WRONG,
    Outcome,
    match_truth_by_series,
    score_image,
    summarize,
)
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK, LandmarkResult

NAN = math.nan
# Vertebra centres 40 pixels apart (1 mm pixels): identified within 20 mm.
TRUTH = {"L1": (100.0, 50.0), "L2": (100.0, 90.0), "L3": (100.0, 130.0)}


def result(name, x, y, status=OK, kind="vertebra") -> LandmarkResult:
    return LandmarkResult(name=name, kind=kind, x=x, y=y, score=0.9, status=status)


def by_landmark(outcomes):
    return {o.landmark: o for o in outcomes}


def test_outcomes_of_each_kind():
    results = [
        result("L1", 103.0, 54.0),  # 5 mm off: identified
        result("L2", 101.0, 91.0, NEEDS_REVIEW),  # near but flagged: review
        result("L3", 100.0, 92.0),  # on L2: confidently wrong
        result("T12", 100.0, 10.0),  # ok but not in view
        result("S1", NAN, NAN, NEEDS_REVIEW),  # absent and flagged: not counted
        result("L1-L2", 100.0, 70.0, kind="disc"),  # discs are not scored
    ]
    outcomes = by_landmark(score_image("case", results, TRUTH, (1.0, 1.0)))
    assert set(outcomes) == {"L1", "L2", "L3", "T12"}
    assert outcomes["L1"] == Outcome("case", "L1", IDENTIFIED, 5.0)
    assert outcomes["L2"].outcome == REVIEW
    assert outcomes["L2"].error_mm == pytest.approx(math.sqrt(2))
    assert outcomes["L3"].outcome == WRONG and outcomes["L3"].error_mm == pytest.approx(38.0)
    assert outcomes["T12"].outcome == FALSE_POSITIVE and math.isnan(outcomes["T12"].error_mm)


def test_a_flagged_landmark_without_position_is_review_with_nan_error():
    (outcome,) = score_image("c", [result("L2", NAN, NAN, NEEDS_REVIEW)], TRUTH, (1.0, 1.0))
    assert outcome.outcome == REVIEW and math.isnan(outcome.error_mm)


def test_tolerance_is_half_the_distance_to_the_nearest_other_vertebra():
    truth = {"L1": (0.0, 0.0), "L2": (0.0, 30.0), "L3": (0.0, 100.0)}
    at_limit = score_image("c", [result("L1", 0.0, 15.0)], truth, (1.0, 1.0))
    beyond = score_image("c", [result("L1", 0.0, 15.1)], truth, (1.0, 1.0))
    assert at_limit[0].outcome == IDENTIFIED
    assert beyond[0].outcome == WRONG
    # L3's nearest neighbour is 70 mm away: 34 mm off still counts as identified.
    assert score_image("c", [result("L3", 0.0, 66.0)], truth, (1.0, 1.0))[0].outcome == IDENTIFIED


def test_a_single_vertebra_in_view_has_no_tolerance_limit():
    (outcome,) = score_image("c", [result("L3", 500.0, 500.0)], {"L3": (0.0, 0.0)}, (1.0, 1.0))
    assert outcome.outcome == IDENTIFIED


def test_errors_use_the_anisotropic_pixel_spacing():
    # spacing_mm is (row, column): rows 2 mm apart, columns 0.5 mm apart.
    truth = {"L1": (100.0, 50.0), "L2": (100.0, 70.0)}  # 40 mm apart
    outcomes = by_landmark(
        score_image("c", [result("L1", 108.0, 53.0), result("L2", 100.0, 81.0)], truth, (2.0, 0.5))
    )
    assert outcomes["L1"].error_mm == pytest.approx(math.hypot(8 * 0.5, 3 * 2.0))
    assert outcomes["L1"].outcome == IDENTIFIED
    # 11 rows = 22 mm > half of 40 mm: wrong, although 11 pixels would be near at 1 mm.
    assert outcomes["L2"].error_mm == pytest.approx(22.0)
    assert outcomes["L2"].outcome == WRONG
    # Swapped spacing: the same pixel offsets are close.
    swapped = by_landmark(
        score_image(
            "c", [result("L2", 100.0, 81.0)], {"L1": (100, 50), "L2": (100, 70)}, (0.5, 2.0)
        )
    )
    assert swapped["L2"].error_mm == pytest.approx(5.5)


def test_summary_shares_count_present_vertebrae_only():
    outcomes = [
        Outcome("a", "L1", IDENTIFIED, 1.0),
        Outcome("a", "L2", IDENTIFIED, 3.0),
        Outcome("a", "L3", REVIEW, NAN),
        Outcome("b", "L1", WRONG, 30.0),
        Outcome("b", "T12", FALSE_POSITIVE, NAN),
        Outcome("b", "T11", FALSE_POSITIVE, NAN),
    ]
    summary = summarize(outcomes)
    assert summary.vertebrae == 4
    assert summary.identified == 0.5
    assert summary.needs_review == 0.25
    assert summary.confidently_wrong == 0.25
    assert summary.ok_but_absent == 2
    assert summary.mean_error_mm == 2.0  # identified ones only


def test_summary_of_nothing():
    summary = summarize([])
    assert summary.vertebrae == 0
    assert summary.identified == summary.needs_review == summary.confidently_wrong == 0.0
    assert summary.ok_but_absent == 0
    assert math.isnan(summary.mean_error_mm)


def test_summary_accepts_a_generator_and_score_image_results_end_to_end():
    results = [result("L1", 100.0, 52.0), result("L2", 100.0, 130.0), result("L3", 0.0, 0.0)]
    results[2].status = NEEDS_REVIEW
    summary = summarize(o for o in score_image("c", results, TRUTH, (1.0, 1.0)))
    assert (summary.identified, summary.confidently_wrong, summary.needs_review) == pytest.approx(
        (1 / 3, 1 / 3, 1 / 3)
    )
    assert summary.mean_error_mm == pytest.approx(2.0)


def test_truth_is_matched_to_the_labelled_slice_by_series():
    truth = {
        "sop-mid": {"series_uid": "series-a", "file": "a/slice_04.dcm", "landmarks": {}},
        "sop-single": {"series_uid": "series-b", "file": "b/IM1.dcm", "landmarks": {}},
        "sop-no-series": {"file": "c/slice_04.dcm", "landmarks": {}},
    }
    labelled = [
        ("sop-other", "series-a"),  # another slice of series a: its truth carries over
        ("sop-single", "series-b"),  # the slice the truth was drawn on
        ("sop-no-series", "series-c"),  # found by its own SOP
        ("sop-c2", "series-c"),  # truth without series_uid matches by SOP only
        ("sop-x", "series-x"),  # no truth
    ]
    matched = match_truth_by_series(truth, labelled)
    assert sorted(matched) == ["sop-no-series", "sop-other", "sop-single"]
    assert matched["sop-other"]["truth_sop_instance_uid"] == "sop-mid"
    assert matched["sop-other"]["file"] == "a/slice_04.dcm"
    assert matched["sop-single"]["truth_sop_instance_uid"] == "sop-single"
    assert "truth_sop_instance_uid" not in truth["sop-mid"]  # the input is left alone


def test_two_truth_entries_for_one_series_are_ambiguous():
    truth = {"a": {"series_uid": "s"}, "b": {"series_uid": "s"}}
    with pytest.raises(ValueError, match="two truth entries"):
        match_truth_by_series(truth, [("c", "s")])
