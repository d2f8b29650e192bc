"""What the later stages need from the templates, built together so that they agree.

The default template (``template/template.dcm`` + ``template/landmarks.json``) decides the
region, its domain knowledge and the landmarks the label dataset has rows for. Further
templates (``template/<name>/``, and the review bank's) are alternatives: localization tries
them where the default leaves landmarks for review (``localization/study.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from labeling_pipeline.anatomy import DomainKnowledge
from labeling_pipeline.features.compute import compute_feature_maps
from labeling_pipeline.features.preprocess import PreparationSettings
from labeling_pipeline.imaging.dicom import DicomValidationError, read_label_image
from labeling_pipeline.localization.reference import (
    ReferenceSettings,
    TemplateReference,
    build_template_reference,
)
from labeling_pipeline.localization.template import (
    DEFAULT_TEMPLATE,
    TemplateError,
    TemplateFiles,
    TemplateLandmarks,
    load_template_landmarks,
)

if TYPE_CHECKING:  # the extractors import torch; the types here load with the definitions
    from labeling_pipeline.features.extractors import FeatureExtractor


@dataclass
class NamedTemplate:
    """One template's reference and landmarks, under the name the ``template`` column records."""

    name: str
    reference: TemplateReference
    landmarks: TemplateLandmarks


@dataclass
class TemplateBundle:
    """The default template's reference features, the landmarks a person placed (names and
    kinds give the rows of the label dataset) and the region's domain knowledge (search rules
    and QA ranges); ``alternatives``: the other templates of ``template/<name>/``, same region."""

    reference: TemplateReference
    landmarks: TemplateLandmarks
    domain: DomainKnowledge
    alternatives: list[NamedTemplate] = field(default_factory=list)

    def default(self) -> NamedTemplate:
        return NamedTemplate(DEFAULT_TEMPLATE, self.reference, self.landmarks)

    def other_templates(self) -> list[NamedTemplate]:
        # A bundle pickled before alternatives existed has no such attribute.
        return list(getattr(self, "alternatives", None) or [])


def landmark_table(landmarks: TemplateLandmarks) -> pd.DataFrame:
    """The template's landmarks (name, kind, x = column, y = row in template pixels)."""
    return pd.DataFrame(
        [(lm.name, lm.kind, round(lm.x, 1), round(lm.y, 1)) for lm in landmarks.landmarks],
        columns=["landmark", "kind", "x", "y"],
    )


def build_named_templates(
    files: Sequence[TemplateFiles],
    domain: DomainKnowledge,
    extractor: FeatureExtractor,
    preparation: PreparationSettings,
    settings: ReferenceSettings | None = None,
) -> tuple[list[NamedTemplate], list[str]]:
    """The reference of every template in ``files`` (features computed in one batch), and, in
    words, the templates that cannot be used: unreadable image or landmarks, another region
    than ``domain``'s, a landmark outside the image or unknown to the region. One bad template
    never stops the others."""
    loaded = []
    problems: list[str] = []
    for item in files:
        try:
            landmarks = load_template_landmarks(item.landmarks)
            if landmarks.region != domain.region:
                raise TemplateError(
                    f"labelled for region {landmarks.region!r}, the default template for "
                    f"{domain.region!r}"
                )
            loaded.append((item, landmarks, read_label_image(item.image)))
        except (TemplateError, DicomValidationError, ValueError) as error:
            problems.append(f"template {item.name!r}: {error}")
    if not loaded:
        return [], problems
    maps = compute_feature_maps([image for _, _, image in loaded], extractor, preparation)
    templates = []
    for (item, landmarks, _), feature_map in zip(loaded, maps, strict=True):
        try:
            reference = build_template_reference(feature_map, landmarks, domain, settings)
        except (TemplateError, ValueError) as error:
            problems.append(f"template {item.name!r}: {error}")
            continue
        templates.append(NamedTemplate(item.name, reference, landmarks))
    return templates, problems
