"""Steps between landmarks: distance and angle, and their orientation along the spine."""

from __future__ import annotations

import math

from labeling_pipeline.anatomy import DomainKnowledge, PairRange
from labeling_pipeline.localization.reference import step_angle_deg


def step_between(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """Distance (mm) and angle (deg) of the step from ``a`` to ``b``."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    return math.hypot(dx, dy), step_angle_deg(dx, dy)


def angle_difference(a: float, b: float) -> float:
    return (a - b + 180.0) % 360.0 - 180.0


def caudal_cranial(step_from: str, step_to: str, domain: DomainKnowledge) -> tuple[bool, PairRange]:
    """Whether the step goes cranially, and the pair range between the two vertebrae."""
    pair = domain.pair(step_from, step_to)
    if pair is None:
        raise ValueError(f"{step_from} and {step_to} are not adjacent in the domain order")
    return domain.rank(step_to) > domain.rank(step_from), pair


def oriented_step(distance: float, angle: float, cranial: bool) -> tuple[float, float]:
    """Express a step in the caudal-to-cranial direction the domain ranges use."""
    return (distance, angle) if cranial else (distance, angle_difference(angle + 180.0, 0.0))
