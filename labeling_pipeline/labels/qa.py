"""Measurements for the label dataset's quality checks.

Angle convention (the same as :class:`~labeling_pipeline.localization.result.LandmarkResult`
and the domain knowledge): a step goes from the caudal vertebra to the adjacent cranial one;
its angle is that of the step vector (in mm) against the image's upward direction (-y), in
degrees, 0 = straight up, positive towards +x, in (-180, 180]. Distances are Euclidean in mm,
using each image's pixel spacing (``x_mm``, ``y_mm``).

Ranges are plain dicts so that this module does not depend on the domain-knowledge classes:
``{"L5-L4": (min_mm, max_mm, min_deg, max_deg)}`` or ``{("L5", "L4"): (...)}``, the pair named in
either order (``DomainKnowledge.to_ranges()`` gives this form).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from labeling_pipeline.localization.result import NEEDS_REVIEW, OK

# The whole spine, caudal to cranial. L6 (a transitional vertebra) only matters when a
# template names it: adjacency is taken among the vertebrae an image's rows name.
DEFAULT_ORDER: tuple[str, ...] = (
    ("Co", "S5", "S4", "S3", "S2", "S1", "L6", "L5", "L4", "L3", "L2", "L1")
    + tuple(f"T{i}" for i in range(12, 0, -1))
    + tuple(f"C{i}" for i in range(7, 0, -1))
)

STEP_COLUMNS = (
    "partition_key",
    "study_uid",
    "sop_instance_uid",
    "caudal",
    "cranial",
    "pair",
    "distance_mm",
    "angle_deg",
)

Range = tuple[float | None, float | None, float | None, float | None]


def step_angle_deg(dx_mm: float, dy_mm: float) -> float:
    """Angle of a step (dx, dy in image axes, mm) against the upward direction -y, degrees,
    positive towards +x: ``atan2(dx, -dy)``."""
    return math.degrees(math.atan2(dx_mm, -dy_mm))


def adjacent_vertebra_steps(
    frame: pd.DataFrame, order: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per image, the step between each pair of adjacent vertebrae that are both ``ok``.

    ``order`` lists vertebra names caudal to cranial (default: the whole spine,
    :data:`DEFAULT_ORDER`; ``DomainKnowledge.order`` fits). Adjacent means consecutive in that
    order among the vertebrae the image's rows name (any status), so a vertebra that needs
    review breaks the chain rather than being bridged. Vertebrae not in ``order`` and discs are
    ignored. Returns one row per step with :data:`STEP_COLUMNS`; ``pair`` is ``caudal-cranial``.
    """
    rank = {name: i for i, name in enumerate(order or DEFAULT_ORDER)}
    steps: list[dict[str, object]] = []
    vertebrae = frame[(frame["kind"] == "vertebra") & frame["landmark"].isin(rank)]
    for sop, rows in vertebrae.groupby("sop_instance_uid", sort=True):
        rows = rows.assign(_rank=rows["landmark"].map(rank)).sort_values("_rank", kind="stable")
        records = rows.to_dict("records")
        for caudal, cranial in zip(records, records[1:], strict=False):
            if caudal["status"] != OK or cranial["status"] != OK:
                continue
            dx = float(cranial["x_mm"]) - float(caudal["x_mm"])
            dy = float(cranial["y_mm"]) - float(caudal["y_mm"])
            steps.append(
                {
                    "partition_key": caudal.get("partition_key", ""),
                    "study_uid": caudal["study_uid"],
                    "sop_instance_uid": sop,
                    "caudal": caudal["landmark"],
                    "cranial": cranial["landmark"],
                    "pair": f"{caudal['landmark']}-{cranial['landmark']}",
                    "distance_mm": math.hypot(dx, dy),
                    "angle_deg": step_angle_deg(dx, dy),
                }
            )
    result = pd.DataFrame(steps, columns=list(STEP_COLUMNS))
    return result.astype({"distance_mm": "float64", "angle_deg": "float64"})


@dataclass
class QAResult:
    """Outcome of a range check: ``passed`` when no checked step is out of range.

    ``n_checked`` steps had a range; ``n_unchecked`` had none (pairs the ranges do not name).
    ``violations`` lists the failing steps with a ``problem`` column in words.
    """

    passed: bool
    n_checked: int
    violations: pd.DataFrame
    n_unchecked: int = 0
    checked_pairs: list[str] = field(default_factory=list)


def _normalise_ranges(
    ranges: Mapping[str | tuple[str, str], Sequence[float | None]],
) -> dict[tuple[str, str], Range]:
    table: dict[tuple[str, str], Range] = {}
    for key, value in ranges.items():
        if isinstance(key, str):
            first, sep, second = key.partition("-")
            if not sep or not first or not second:
                raise ValueError(f"range key {key!r} must name a pair as 'A-B'")
        else:
            first, second = key
        if len(value) != 4:
            raise ValueError(f"range of {key!r} must be (min_mm, max_mm, min_deg, max_deg)")
        bounds = tuple(None if v is None or np.isnan(v) else float(v) for v in value)
        table[(first, second)] = bounds  # type: ignore[assignment]
        table[(second, first)] = bounds  # type: ignore[assignment]
    return table


def _outside(value: float, low: float | None, high: float | None) -> bool:
    return (low is not None and value < low) or (high is not None and value > high)


def _bounds(low: float | None, high: float | None, unit: str) -> str:
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"[{lo}, {hi}] {unit}"


def check_steps(
    steps: pd.DataFrame, ranges: Mapping[str | tuple[str, str], Sequence[float | None]]
) -> QAResult:
    """Check each step's distance (mm) and angle (deg) against its pair's range.

    A bound of ``None`` or NaN is open. Steps of pairs without a range are counted in
    ``n_unchecked`` and do not fail the check. No step at all passes with ``n_checked == 0``;
    callers decide whether that is acceptable.
    """
    table = _normalise_ranges(ranges)
    problems: list[str] = []
    failing: list[int] = []
    checked, pairs = 0, set()
    for index, step in steps.iterrows():
        bounds = table.get((step["caudal"], step["cranial"]))
        if bounds is None:
            continue
        checked += 1
        pairs.add(step["pair"])
        min_mm, max_mm, min_deg, max_deg = bounds
        text = []
        if _outside(step["distance_mm"], min_mm, max_mm):
            text.append(
                f"distance {step['distance_mm']:.1f} mm outside {_bounds(min_mm, max_mm, 'mm')}"
            )
        if _outside(step["angle_deg"], min_deg, max_deg):
            text.append(
                f"angle {step['angle_deg']:.1f} deg outside {_bounds(min_deg, max_deg, 'deg')}"
            )
        if text:
            failing.append(index)
            problems.append("; ".join(text))
    violations = steps.loc[failing].copy()
    violations["problem"] = problems
    return QAResult(
        passed=not failing,
        n_checked=checked,
        violations=violations.reset_index(drop=True),
        n_unchecked=len(steps) - checked,
        checked_pairs=sorted(pairs),
    )


def status_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per landmark (in order of first appearance): how many images have it ``ok`` and how many
    ``needs_review``, the total, and the ok fraction."""
    columns = ["landmark", "kind", OK, NEEDS_REVIEW, "total", "ok_fraction"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    landmarks = list(dict.fromkeys(frame["landmark"]))
    counts = pd.crosstab(frame["landmark"], frame["status"]).reindex(
        index=landmarks, columns=[OK, NEEDS_REVIEW], fill_value=0
    )
    kinds = frame.drop_duplicates("landmark").set_index("landmark")["kind"]
    summary = pd.DataFrame(
        {
            "landmark": landmarks,
            "kind": [kinds[name] for name in landmarks],
            OK: counts[OK].to_numpy(dtype="int64"),
            NEEDS_REVIEW: counts[NEEDS_REVIEW].to_numpy(dtype="int64"),
        }
    )
    summary["total"] = summary[OK] + summary[NEEDS_REVIEW]
    summary["ok_fraction"] = summary[OK] / summary["total"].where(summary["total"] > 0)
    return summary[columns]
