"""What the later stages need from the template, built together so that they agree."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from labeling_pipeline.anatomy import DomainKnowledge
from labeling_pipeline.localization.reference import TemplateReference
from labeling_pipeline.localization.template import TemplateLandmarks


@dataclass
class TemplateBundle:
    """The reference features, the landmarks a person placed (names and kinds give the rows of
    the label dataset) and the region's domain knowledge (search rules and QA ranges)."""

    reference: TemplateReference
    landmarks: TemplateLandmarks
    domain: DomainKnowledge


def landmark_table(landmarks: TemplateLandmarks) -> pd.DataFrame:
    """The template's landmarks (name, kind, x = column, y = row in template pixels)."""
    return pd.DataFrame(
        [(lm.name, lm.kind, round(lm.x, 1), round(lm.y, 1)) for lm in landmarks.landmarks],
        columns=["landmark", "kind", "x", "y"],
    )
