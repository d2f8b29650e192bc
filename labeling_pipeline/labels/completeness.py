"""Completeness of a study's labels: exactly one row per (labelled image, template landmark),
each with a known status, and a position on every ``ok`` row."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from labeling_pipeline.labels.schema import STATUSES
from labeling_pipeline.localization.result import OK

PROBLEM_COLUMNS = ["sop_instance_uid", "landmark", "problem"]


def completeness_problems(
    labels: pd.DataFrame, sop_instance_uids: Sequence[str], landmarks: Sequence[str]
) -> pd.DataFrame:
    """What keeps ``labels`` from being one row per (image, landmark): missing, repeated or
    unexpected rows, unknown statuses, ``ok`` rows without a position. Empty when complete."""
    problems: list[tuple[str, str, str]] = []
    expected_images, expected_names = set(sop_instance_uids), list(landmarks)
    for sop in sorted(set(labels["sop_instance_uid"]) - expected_images):
        problems.append((sop, "", "rows for an image that was not localized"))
    for sop in sorted(expected_images):
        rows = labels[labels["sop_instance_uid"] == sop]
        counts = rows["landmark"].value_counts()
        for name in expected_names:
            found = int(counts.get(name, 0))
            if found != 1:
                problems.append((sop, name, "missing" if found == 0 else f"{found} rows"))
        for name in sorted(set(rows["landmark"]) - set(expected_names)):
            problems.append((sop, name, "landmark not in the template"))
        for row in rows.itertuples(index=False):
            if row.status not in STATUSES:
                problems.append((sop, row.landmark, f"status {row.status!r}"))
            elif row.status == OK and not (math.isfinite(row.x) and math.isfinite(row.y)):
                problems.append((sop, row.landmark, "ok without a position"))
    return pd.DataFrame(problems, columns=PROBLEM_COLUMNS)
