"""Completeness names every way a study's labels differ from one row per (image, landmark)."""

from __future__ import annotations

import math

import pandas as pd

from labeling_pipeline.labels.completeness import PROBLEM_COLUMNS, completeness_problems
from labeling_pipeline.labels.dataset import label_rows

from .helpers import make_image, make_results, make_template

KEY = "incoming-20240315-aaaaaaaa"


def _labels(sop: str) -> pd.DataFrame:
    return label_rows(make_image(sop), KEY, make_results(), template=make_template())


def test_complete_labels_have_no_problems() -> None:
    complete = pd.concat([_labels("1.1"), _labels("1.2")], ignore_index=True)
    problems = completeness_problems(complete, ["1.1", "1.2"], make_template().names())
    assert problems.empty and list(problems.columns) == PROBLEM_COLUMNS


def test_completeness_names_missing_repeated_stray_and_unplaced_rows() -> None:
    complete = pd.concat([_labels("1.1"), _labels("1.2")], ignore_index=True)
    broken = complete[~((complete["sop_instance_uid"] == "1.2") & (complete["landmark"] == "L3"))]
    broken = pd.concat([broken, _labels("1.1").iloc[[0]], _labels("9.9")], ignore_index=True)
    broken.loc[(broken["sop_instance_uid"] == "1.1") & (broken["landmark"] == "L4"), "x"] = math.nan
    broken.loc[(broken["sop_instance_uid"] == "1.2") & (broken["landmark"] == "L5"), "status"] = "?"
    problems = completeness_problems(broken, ["1.1", "1.2"], make_template().names())
    found = set(problems.itertuples(index=False, name=None))
    first = make_template().landmarks[0].name
    assert found == {
        ("9.9", "", "rows for an image that was not localized"),
        ("1.2", "L3", "missing"),
        ("1.1", first, "2 rows"),
        ("1.1", "L4", "ok without a position"),
        ("1.2", "L5", "status '?'"),
    }


def test_landmarks_outside_the_template_are_named() -> None:
    labels = _labels("1.1")
    names = [name for name in make_template().names() if name != "L1"]
    problems = completeness_problems(labels, ["1.1"], names)
    assert problems.to_dict("records") == [
        {"sop_instance_uid": "1.1", "landmark": "L1", "problem": "landmark not in the template"}
    ]
