"""QA measurements: steps between adjacent vertebrae, range checks, status counts."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from labeling_pipeline.labels.dataset import label_rows
from labeling_pipeline.labels.qa import (
    STEP_COLUMNS,
    adjacent_vertebra_steps,
    check_steps,
    status_summary,
    step_angle_deg,
)
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK, LandmarkResult

from .helpers import make_image, make_results, make_template


def _labels(
    positions: dict[str, tuple[float, float]], spacing=(1.0, 1.0), sop="1.1"
) -> pd.DataFrame:
    results = [
        LandmarkResult(name, "vertebra", x, y, 0.9, OK if math.isfinite(x) else NEEDS_REVIEW)
        for name, (x, y) in positions.items()
    ]
    return label_rows(make_image(sop=sop, spacing=spacing), "k-1", results, {})


def test_angle_convention() -> None:
    assert step_angle_deg(0.0, -10.0) == pytest.approx(0.0)  # straight up the image
    assert step_angle_deg(10.0, -10.0) == pytest.approx(45.0)  # up and towards +x
    assert step_angle_deg(-10.0, -10.0) == pytest.approx(-45.0)
    assert step_angle_deg(10.0, 0.0) == pytest.approx(90.0)


def test_steps_go_caudal_to_cranial_in_mm() -> None:
    # Rows given cranial first; L5 lowest in the image. Column spacing 0.5, row spacing 1.0.
    frame = _labels(
        {"L3": (60.0, 20.0), "L4": (60.0, 50.0), "L5": (40.0, 80.0)}, spacing=(1.0, 0.5)
    )
    steps = adjacent_vertebra_steps(frame)
    assert list(steps.columns) == list(STEP_COLUMNS)
    assert steps["pair"].tolist() == ["L5-L4", "L4-L3"]
    l5_l4 = steps.iloc[0]
    # dx = 20 px * 0.5 mm = 10 mm, dy = -30 mm: distance sqrt(100 + 900), angle atan(10/30).
    assert l5_l4["distance_mm"] == pytest.approx(math.sqrt(1000.0))
    assert l5_l4["angle_deg"] == pytest.approx(math.degrees(math.atan2(10.0, 30.0)))
    assert steps.iloc[1]["distance_mm"] == pytest.approx(30.0)
    assert steps.iloc[1]["angle_deg"] == pytest.approx(0.0)


def test_review_breaks_the_chain_and_images_stay_apart() -> None:
    nan = math.nan
    first = _labels({"L2": (50, 10), "L3": (nan, nan), "L4": (50, 70), "L5": (50, 100)}, sop="1.1")
    second = _labels({"L4": (10, 10), "L5": (10, 40)}, sop="1.2")
    discs = label_rows(
        make_image(sop="1.3"), "k-1", make_results(), {}, make_template()
    )  # discs present too; they are not steps
    steps = adjacent_vertebra_steps(pd.concat([first, second, discs], ignore_index=True))
    by_image = steps.groupby("sop_instance_uid")["pair"].apply(list).to_dict()
    assert by_image == {
        "1.1": ["L5-L4"],  # L4-L3 and L3-L2 need L3; L4-L2 are not adjacent
        "1.2": ["L5-L4"],
        "1.3": ["L5-L4", "L4-L3", "L3-L2", "L2-L1"],
    }
    # A custom order (e.g. the domain knowledge's) decides adjacency.
    custom = adjacent_vertebra_steps(first, order=["L5", "L4", "L2"])
    assert custom["pair"].tolist() == ["L5-L4", "L4-L2"]


def test_check_steps_pass_and_fail() -> None:
    frame = _labels({"L3": (50.0, 20.0), "L4": (50.0, 55.0), "L5": (70.0, 90.0)})
    steps = adjacent_vertebra_steps(frame)  # L5-L4: 40.3 mm at -29.7 deg; L4-L3: 35 mm, 0 deg
    wide = {"L5-L4": (20, 50, -45, 45), ("L3", "L4"): (20, 50, -45, 45)}  # either order
    result = check_steps(steps, wide)
    assert result.passed and result.n_checked == 2 and result.violations.empty
    assert result.checked_pairs == ["L4-L3", "L5-L4"]

    strict = {"L4-L5": (20, 50, -10, 10), "L4-L3": (36, None, None, None)}
    result = check_steps(steps, strict)
    assert not result.passed and result.n_checked == 2
    problems = dict(zip(result.violations["pair"], result.violations["problem"], strict=True))
    assert "angle -29.7 deg outside [-10, 10] deg" in problems["L5-L4"]
    assert "distance 35.0 mm outside [36, inf] mm" in problems["L4-L3"]

    partial = check_steps(steps, {"L5-L4": (20, 50, -45, 45)})
    assert partial.passed and partial.n_checked == 1 and partial.n_unchecked == 1
    empty = check_steps(adjacent_vertebra_steps(frame.iloc[0:0]), wide)
    assert empty.passed and empty.n_checked == 0
    with pytest.raises(ValueError):
        check_steps(steps, {"L5L4": (20, 50, -45, 45)})


def test_status_summary_counts_per_landmark() -> None:
    template = make_template()
    frames = [
        label_rows(make_image(sop="1.1"), "k", make_results(review=("L1",)), {}, template),
        label_rows(make_image(sop="1.2"), "k", make_results(review=("L1", "L2")), {}, template),
    ]
    summary = status_summary(pd.concat(frames, ignore_index=True)).set_index("landmark")
    assert summary.index.tolist() == template.names()
    assert summary.loc["L1", OK] == 0 and summary.loc["L1", NEEDS_REVIEW] == 2
    assert summary.loc["L2", OK] == 1 and summary.loc["L2", "ok_fraction"] == pytest.approx(0.5)
    assert summary.loc["L5", OK] == 2 and summary.loc["L5", "total"] == 2
    assert status_summary(frames[0].iloc[0:0]).empty
