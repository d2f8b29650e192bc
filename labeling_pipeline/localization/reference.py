"""Reference features of the template's landmarks, with their anatomical context.

A landmark's reference is a small constellation of feature vectors taken from the template:
the landmark's own neighbourhood (a disc of ``context_mm`` radius, which for a vertebral body
takes in the adjacent discs, [0058]). Beyond each end of the labelled chain the template also
yields a context-only landmark, one template step further (S1 below a chain ending at L5):
it is matched with the chain but never labelled, so that a chain shifted by one level
(L1 on T12, L5 on L4) loses what lies beyond its ends, such as the sacrum ([0068]).

Positions here are in template grid millimetres: feature-grid (x, y) times ``mm_per_cell``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labeling_pipeline.anatomy import DomainKnowledge
from labeling_pipeline.features.feature_map import FeatureMap
from labeling_pipeline.localization.template import TemplateError, TemplateLandmarks


@dataclass(frozen=True)
class ReferenceSettings:
    """How references are built. Defaults come from lumbar anatomy, not from tuning:
    ``context_mm`` = 24 covers a body (~27 mm tall) and half of each adjacent disc;
    ``sample_mm`` = 8 samples that neighbourhood about four times per body height, enough for
    features whose deeper layers have strides of 16-32 mm, and keeps the search fast."""

    context_mm: float = 24.0
    sample_mm: float = 8.0


@dataclass
class LandmarkReference:
    """The constellation that identifies one landmark: rows ``point_index`` of the template's
    ``point_vectors``, at ``offsets_mm`` (P, 2) (dx, dy) from the landmark, with ``weights``
    (P,) summing to one."""

    name: str
    kind: str
    point_index: np.ndarray
    offsets_mm: np.ndarray
    weights: np.ndarray
    context_only: bool = False  # matched as context beyond the chain's ends, never labelled


@dataclass
class TemplateReference:
    """Everything localization needs from the template, computed once and reused."""

    region: str
    landmarks: list[LandmarkReference]
    point_vectors: np.ndarray  # (K, C) unit feature vectors of the shared lattice points
    positions_mm: dict[str, tuple[float, float]]
    vertebrae: list[str]  # the template's vertebrae, caudal to cranial
    chain: list[str]  # the vertebrae plus the context-only ones beyond its ends
    discs: dict[str, tuple[str, str]]  # the template's discs -> (cranial, caudal) vertebra
    image_size_mm: tuple[float, float]  # template field of view (width, height)
    feature_settings: dict[str, Any] = field(default_factory=dict)
    settings: ReferenceSettings = field(default_factory=ReferenceSettings)

    def by_name(self) -> dict[str, LandmarkReference]:
        return {ref.name: ref for ref in self.landmarks}

    def labelled(self) -> list[LandmarkReference]:
        """The template's own landmarks, in its order (without context-only ones)."""
        return [ref for ref in self.landmarks if not ref.context_only]

    def step(self, caudal: str, cranial: str) -> tuple[float, float]:
        """Template step from ``caudal`` to ``cranial``: (distance mm, angle deg)."""
        (x0, y0), (x1, y1) = self.positions_mm[caudal], self.positions_mm[cranial]
        return math.hypot(x1 - x0, y1 - y0), step_angle_deg(x1 - x0, y1 - y0)


def step_angle_deg(dx: float, dy: float) -> float:
    """Angle of a step (dx, dy) against the image's upward direction, positive towards +x."""
    return math.degrees(math.atan2(dx, -dy))


def _patch_points(
    centre_mm: tuple[float, float],
    grid_size_mm: tuple[float, float],
    s: ReferenceSettings,
    step_mm: float,
) -> list[tuple[tuple[int, int], float]]:
    """Lattice points (integer multiples of ``step_mm``, shared by all landmarks so that their
    similarity maps are computed once) within ``context_mm`` of ``centre_mm`` and inside the
    template, each with a Gaussian weight so that the landmark's own position counts most."""
    sigma = max(s.context_mm, 1.0) / 1.5
    width, height = grid_size_mm
    x_lo = math.ceil((centre_mm[0] - s.context_mm) / step_mm)
    x_hi = math.floor((centre_mm[0] + s.context_mm) / step_mm)
    y_lo = math.ceil((centre_mm[1] - s.context_mm) / step_mm)
    y_hi = math.floor((centre_mm[1] + s.context_mm) / step_mm)
    points = []
    for iy in range(y_lo, y_hi + 1):
        for ix in range(x_lo, x_hi + 1):
            px, py = ix * step_mm, iy * step_mm
            dx, dy = px - centre_mm[0], py - centre_mm[1]
            inside = 0 <= px <= width and 0 <= py <= height
            if inside and dx * dx + dy * dy <= s.context_mm**2:
                points.append(((ix, iy), math.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))))
    return points


def _beyond_chain(
    vertebrae: list[str], positions: dict[str, tuple[float, float]], domain: DomainKnowledge
) -> dict[str, tuple[float, float]]:
    """The domain's vertebrae just beyond each end of the labelled chain, placed one template
    step further than the end (needs two labelled vertebrae to know the step)."""
    beyond: dict[str, tuple[float, float]] = {}
    if len(vertebrae) < 2:
        return beyond
    for end, inner, direction in (
        (vertebrae[0], vertebrae[1], -1),
        (vertebrae[-1], vertebrae[-2], 1),
    ):
        index = domain.rank(end) + direction
        if 0 <= index < len(domain.order):
            (ex, ey), (ix, iy) = positions[end], positions[inner]
            beyond[domain.order[index]] = (2 * ex - ix, 2 * ey - iy)
    return beyond


def build_template_reference(
    template_map: FeatureMap,
    template: TemplateLandmarks,
    domain: DomainKnowledge,
    settings: ReferenceSettings | None = None,
    variant_maps: Sequence[FeatureMap] = (),
) -> TemplateReference:
    """Reference features for every landmark of the template.

    ``variant_maps`` are the features of contrast variants of the template image (same
    geometry, :mod:`labeling_pipeline.features.augment`): each reference vector is then the
    normalised mean over the template and its variants, which keeps what the contrasts share
    (anatomy) and averages out what they do not.

    Raises ``TemplateError`` when the template's region differs from the domain's, a landmark
    is unknown to the domain, or a landmark lies outside the template image.
    """
    settings = settings or ReferenceSettings()
    if template.region != domain.region:
        raise TemplateError(
            f"template is labelled for region {template.region!r} but the domain knowledge "
            f"is for {domain.region!r}"
        )
    features = np.asarray(template_map.features, dtype=np.float32)
    rows, cols = features.shape[1:]
    mm = template_map.mm_per_cell
    positions: dict[str, tuple[float, float]] = {}
    for lm in template.landmarks:
        if lm.kind == "vertebra" and lm.name not in domain.order:
            raise TemplateError(f"vertebra {lm.name!r} is not in the {domain.region} order")
        if lm.kind == "disc" and lm.name not in domain.discs:
            raise TemplateError(f"disc {lm.name!r} is not a {domain.region} disc")
        gx, gy = template_map.transform.from_original(lm.x, lm.y)
        if not (-0.5 <= gx <= cols - 0.5 and -0.5 <= gy <= rows - 0.5):
            raise TemplateError(f"landmark {lm.name!r} lies outside the template image")
        positions[lm.name] = (float(gx) * mm, float(gy) * mm)
    vertebrae = domain.ordered([lm.name for lm in template.landmarks if lm.kind == "vertebra"])
    if not vertebrae:
        raise TemplateError("the template labels no vertebra")
    discs = {lm.name: domain.discs[lm.name] for lm in template.landmarks if lm.kind == "disc"}

    size_mm = ((cols - 1) * mm, (rows - 1) * mm)
    # The lattice step is a whole number of feature cells, so that all offsets from a landmark
    # share one fractional part (the search relies on it).
    step = mm * max(1, round(settings.sample_mm / mm))
    lattice: dict[tuple[int, int], int] = {}
    beyond = _beyond_chain(vertebrae, positions, domain)
    wanted = [(lm.name, lm.kind, False) for lm in template.landmarks]
    wanted += [(name, "vertebra", True) for name in beyond]
    positions.update(beyond)
    references = []
    for name, kind, context_only in wanted:
        centre = positions[name]
        points = _patch_points(centre, size_mm, settings, step)
        if not points:
            if context_only:
                continue  # beyond the template's field of view: no context to take
            raise TemplateError(f"no template features around landmark {name!r}")
        weights = np.asarray([w for _, w in points], dtype=np.float32)
        references.append(
            LandmarkReference(
                name=name,
                kind=kind,
                point_index=np.asarray(
                    [lattice.setdefault(p, len(lattice)) for p, _ in points], dtype=np.int64
                ),
                offsets_mm=np.asarray(
                    [(ix * step - centre[0], iy * step - centre[1]) for (ix, iy), _ in points],
                    dtype=np.float32,
                ),
                weights=weights / weights.sum(),
                context_only=context_only,
            )
        )
    # torch (the similarity kernels) only when a reference is built: the types of this module
    # travel with the Dagster definitions, which load without torch.
    from labeling_pipeline.localization.similarity import sample_bilinear

    kept = {ref.name for ref in references}
    chain = domain.ordered([n for n in [*vertebrae, *beyond] if n in kept])
    stacks = [features]
    for variant in variant_maps:
        if variant.grid_shape != template_map.grid_shape:
            raise TemplateError("a contrast variant's features are not on the template's grid")
        stacks.append(np.asarray(variant.features, dtype=np.float32))
    vectors = np.zeros((len(lattice), features.shape[0]), dtype=np.float32)
    for (ix, iy), k in lattice.items():
        total = np.zeros(features.shape[0], dtype=np.float32)
        for stack in stacks:
            vector = sample_bilinear(stack, ix * step / mm, iy * step / mm)
            total += vector / max(float(np.linalg.norm(vector)), 1e-6)
        vectors[k] = total / max(float(np.linalg.norm(total)), 1e-6)
    return TemplateReference(
        region=template.region,
        landmarks=references,
        point_vectors=vectors,
        positions_mm=positions,
        vertebrae=vertebrae,
        chain=chain,
        discs=discs,
        image_size_mm=size_mm,
        feature_settings=dict(template_map.settings),
        settings=settings,
    )
