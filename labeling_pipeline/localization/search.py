"""Where each template landmark lies in a new image: the search strategies.

All strategies share one core: per-landmark score maps (similarity of the landmark's reference
constellation at every position of a search grid of about ``search_mm`` cells) and the
domain's reference distances and angles. They differ in where they look:

- ``plain``: every landmark over the whole image (process 200, the baseline).
- ``ordered``: the first landmark in its default region, then anatomical order, each search
  cropped to the far side of the previous landmark (processes 600 and 700).
- ``restricted``: each next landmark only within the domain's distance and angle range from
  the previous one (process 800).
- ``adaptive``: a search region around the expected position that grows step by step until
  the match meets the spatial accuracy criterion, else ``needs_review`` (process 900).
- ``chain`` (default, beyond the published method): several candidates per vertebra and the
  globally best ordered chain by similarity, distances, angles and turns (dynamic programming),
  which recovers from a wrong first match; each label gets a confidence from the margin over
  the best chain that places it elsewhere.

The pieces live beside this module: ``settings`` (strategy names and parameters), ``space``
(the search grid, score maps and peaks), ``geometry`` (steps between landmarks) and ``chain``
(the chain solver).

Coordinates: search-grid (x, y) = (column, row); millimetres are template-compatible grid
millimetres (isotropic); results are reported in original image pixels.
"""

from __future__ import annotations

import math

import numpy as np

from labeling_pipeline.anatomy import DomainKnowledge
from labeling_pipeline.features.feature_map import FeatureMap
from labeling_pipeline.features.settings import check_compatible
from labeling_pipeline.localization.chain import ChainProblem, ChainSolver
from labeling_pipeline.localization.geometry import (
    angle_difference,
    caudal_cranial,
    oriented_step,
    step_between,
)
from labeling_pipeline.localization.reference import TemplateReference
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK, LandmarkResult
from labeling_pipeline.localization.settings import STRATEGIES, SearchSettings
from labeling_pipeline.localization.space import Located, SearchSpace, best_position, top_peaks

__all__ = ["STRATEGIES", "Localizer", "SearchSettings", "localize"]


class Localizer:
    """Runs one strategy on one image."""

    def __init__(
        self,
        fmap: FeatureMap,
        reference: TemplateReference,
        domain: DomainKnowledge,
        settings: SearchSettings,
    ):
        if settings.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {settings.strategy!r}; choose one of {STRATEGIES}")
        if not 0 < settings.anchor_visible_floor <= 1:
            raise ValueError("anchor_visible_floor must lie in (0, 1]: 1 takes the raw evidence")
        check_compatible(reference.feature_settings, fmap.settings)
        self.space = SearchSpace(fmap, reference, settings.search_mm)
        self.reference = reference
        self.domain = domain
        self.settings = settings
        self.xs, self.ys = self.space.mm_grids()
        self.vertebrae = reference.vertebrae
        self.diagnostics: dict[str, float | str] = {}  # how the chain was decided

    # ----- shared pieces ---------------------------------------------------------------
    def _first(self) -> str:
        first = self.domain.first_landmark
        return first if first in self.vertebrae else self.vertebrae[0]

    def _visiting_order(self) -> list[tuple[str, str | None]]:
        """(vertebra, the already-located neighbour it is searched from), first one first."""
        first = self._first()
        index = self.vertebrae.index(first)
        order: list[tuple[str, str | None]] = [(first, None)]
        order += [
            (self.vertebrae[i], self.vertebrae[i - 1])
            for i in range(index + 1, len(self.vertebrae))
        ]
        order += [(self.vertebrae[i], self.vertebrae[i + 1]) for i in range(index - 1, -1, -1)]
        return order

    def _default_region(self, name: str) -> np.ndarray:
        """Where the first landmark is searched: the domain's default region for the domain's
        first landmark, else a box around the template's relative position."""
        width_mm, height_mm = float(self.xs[0, -1]), float(self.ys[-1, 0])
        if name == self.domain.first_landmark:
            (x0, x1), (y0, y1) = self.domain.default_search_region
        else:
            tx, ty = self.reference.positions_mm[name]
            tw, th = self.reference.image_size_mm
            x0, x1 = tx / tw - 0.25, tx / tw + 0.25
            y0, y1 = ty / th - 0.25, ty / th + 0.25
        return (
            (self.xs >= x0 * width_mm)
            & (self.xs <= x1 * width_mm)
            & (self.ys >= y0 * height_mm)
            & (self.ys <= y1 * height_mm)
        )

    def framed_position(self, name: str) -> tuple[float, float]:
        """Where ``name`` would be if the image were framed like the template (centres
        aligned, in mm): a weak prior, as studies of one protocol are framed alike."""
        tx, ty = self.reference.positions_mm[name]
        tw, th = self.reference.image_size_mm
        width, height = float(self.xs[0, -1]), float(self.ys[-1, 0])
        return tx - tw / 2 + width / 2, ty - th / 2 + height / 2

    def inside_view(self, x_mm: float, y_mm: float) -> bool:
        """Whether a vertebra centred at (x_mm, y_mm) would be in view: at least
        ``border_mm`` inside the image's edges."""
        border = self.settings.border_mm
        return (
            border <= x_mm <= float(self.xs[0, -1]) - border
            and border <= y_mm <= float(self.ys[-1, 0]) - border
        )

    def _template_step_vector(self, step_from: str, step_to: str) -> tuple[float, float]:
        (x0, y0), (x1, y1) = (self.reference.positions_mm[n] for n in (step_from, step_to))
        return x1 - x0, y1 - y0

    def _located(self, x: int, y: int, score: float, **extra) -> Located:
        return Located(self.space.to_mm(x, y), score, **extra)

    # ----- strategies ------------------------------------------------------------------
    def plain(self) -> dict[str, Located]:
        found = {}
        for ref in self.reference.labelled():
            x, y, score = best_position(self.space.score_map(ref.name))
            found[ref.name] = self._located(x, y, score)
        return found

    def sequential(self, region_for) -> dict[str, Located]:
        """Processes 600-900: the first landmark in its default region, then each next one in
        the region ``region_for(name, previous, located)`` allows."""
        located: dict[str, Located] = {}
        for name, previous in self._visiting_order():
            if previous is None:
                x, y, score = best_position(self.space.score_map(name), self._default_region(name))
                if math.isfinite(score):
                    located[name] = self._located(x, y, score)
                else:
                    located[name] = Located(
                        None, status=NEEDS_REVIEW, reason="default search region is empty"
                    )
                continue
            if located[previous].position is None:
                located[name] = Located(
                    None,
                    status=NEEDS_REVIEW,
                    reason=f"{previous} was not located, so {name} has no search region",
                )
                continue
            located[name] = region_for(name, previous, located)
        return located

    def _ordered_region(self, name: str, previous: str, located: dict[str, Located]) -> Located:
        """Process 700: crop away everything behind the previous landmark (opposite to the
        direction of travel) and around every landmark labelled so far."""
        px, py = located[previous].position
        ux, uy = self._template_step_vector(previous, name)
        norm = math.hypot(ux, uy) or 1.0
        ahead = (self.xs - px) * ux / norm + (self.ys - py) * uy / norm > 0
        _, pair = caudal_cranial(previous, name, self.domain)
        for other in located.values():
            if other.position is not None:
                ox, oy = other.position
                ahead &= (self.xs - ox) ** 2 + (self.ys - oy) ** 2 >= (pair.min_mm / 2) ** 2
        x, y, score = best_position(self.space.score_map(name), ahead)
        if not math.isfinite(score):
            return Located(
                None, status=NEEDS_REVIEW, reason="nothing of the image is left to search"
            )
        return self._located(x, y, score)

    def _restricted_mask(self, name: str, previous: str, origin: tuple[float, float]) -> np.ndarray:
        """Process 800: positions within the domain's distance and angle range of ``origin``."""
        cranial, pair = caudal_cranial(previous, name, self.domain)
        dx, dy = self.xs - origin[0], self.ys - origin[1]
        distance = np.sqrt(dx * dx + dy * dy)
        angle = np.degrees(np.arctan2(dx, -dy))
        if not cranial:
            angle = np.remainder(angle + 360.0, 360.0) - 180.0
        return (
            (distance >= pair.min_mm)
            & (distance <= pair.max_mm)
            & (angle >= pair.min_deg)
            & (angle <= pair.max_deg)
        )

    def _restricted_region(self, name: str, previous: str, located: dict[str, Located]) -> Located:
        mask = self._restricted_mask(name, previous, located[previous].position)
        x, y, score = best_position(self.space.score_map(name), mask)
        if not math.isfinite(score):
            return Located(
                None,
                status=NEEDS_REVIEW,
                reason=f"the region allowed from {previous} lies outside the image",
            )
        return self._located(x, y, score)

    def _adaptive_region(self, name: str, previous: str, located: dict[str, Located]) -> Located:
        """Process 900: grow a region around the expected position until the best match in it
        is an interior maximum that meets the distance, angle and turn criteria."""
        origin = located[previous].position
        ux, uy = self._template_step_vector(previous, name)
        expected = (origin[0] + ux, origin[1] + uy)
        cranial, pair = caudal_cranial(previous, name, self.domain)
        allowed = self._restricted_mask(name, previous, origin)
        before = self._step_before(previous, name, located)
        radii = self.domain.search_growth.radii()
        scores = self.space.score_map(name)
        distance_to_expected = np.sqrt((self.xs - expected[0]) ** 2 + (self.ys - expected[1]) ** 2)
        reason = "no image inside the search region"
        for iteration, radius in enumerate(radii, start=1):
            x, y, score = best_position(scores, distance_to_expected <= radius)
            if not math.isfinite(score):
                continue
            position = self.space.to_mm(x, y)
            distance, angle = oriented_step(*step_between(origin, position), cranial)
            if (
                radius - math.dist(position, expected) < 2 * self.space.cell_mm
                and radius < radii[-1]
            ):
                reason = "best match on the edge of the search region"
                continue
            if not bool(allowed[y, x]):
                reason = (
                    f"step from {previous} of {distance:.0f} mm at {angle:.0f} deg "
                    "is outside the reference range"
                )
                continue
            if (
                before is not None
                and abs(angle_difference(step_between(origin, position)[1], before))
                > self.domain.max_turn_deg
            ):
                limit = self.domain.max_turn_deg
                reason = f"the spine would turn by more than {limit:.0f} deg at {previous}"
                continue
            return Located(position, score, iterations=iteration)
        return Located(
            None,
            status=NEEDS_REVIEW,
            iterations=len(radii),
            reason=f"not found within {radii[-1]:.0f} mm of the expected position: {reason}",
        )

    def _step_before(self, previous: str, name: str, located: dict[str, Located]) -> float | None:
        """Angle of the step that led to ``previous``, in the direction of travel."""
        index, prev_index = self.vertebrae.index(name), self.vertebrae.index(previous)
        before_index = 2 * prev_index - index
        if not 0 <= before_index < len(self.vertebrae):
            return None
        before = located.get(self.vertebrae[before_index])
        if before is None or before.position is None:
            return None
        return step_between(before.position, located[previous].position)[1]

    # ----- the globally consistent chain ---------------------------------------------------
    def _map_at(self, grid: np.ndarray, x_mm: float, y_mm: float) -> float:
        """A search-grid map's value at a position in grid mm (nearest cell)."""
        x, y = self.space.from_mm(x_mm, y_mm)
        row = min(max(int(round(y)), 0), grid.shape[0] - 1)
        col = min(max(int(round(x)), 0), grid.shape[1] - 1)
        return float(grid[row, col])

    def _score_at(self, name: str, x_mm: float, y_mm: float) -> float:
        """``name``'s score map at a position in grid mm (nearest search-grid cell)."""
        return self._map_at(self.space.score_map(name), x_mm, y_mm)

    def _visible_share(self, name: str, x_mm: float, y_mm: float) -> float:
        """The share of ``name``'s constellation weight inside the image with the landmark at
        (x_mm, y_mm) (nearest search-grid cell): the rest lies beyond the edge."""
        return self._map_at(self.space.visible_map(name), x_mm, y_mm)

    def _anchor_bonus(self, names: list[str], candidates) -> list[np.ndarray]:
        """Per chain vertebra and candidate, the evidence that fixes the count at each anchor
        (a level unlike its neighbours: the sacrum, C2): how much more an anchor candidate
        looks like the anchor than like the adjacent level (S1 against L5), and, weighted by
        ``anchor_neighbour_share``, how much more the adjacent level's candidates look like
        themselves than like the anchor (L5 against S1). The evidence is that of the part of
        the candidate's constellation inside the image, per unit of its weight (at most
        ``1 / anchor_visible_floor`` times the raw difference). An anchor candidate that looks
        more like the adjacent level than like the anchor is weighted by
        ``anchor_against_weight`` instead of ``anchor_weight``."""
        bonus = [np.zeros(len(c)) for c in candidates]
        s = self.settings
        weight = s.anchor_weight * s.similarity_weight
        against = s.anchor_against_weight * s.similarity_weight
        if not weight and not against:
            return bonus
        for anchor in self.domain.anchors:
            if anchor not in names:
                continue
            i = names.index(anchor)
            for j in (i - 1, i + 1):
                if not 0 <= j < len(names):
                    continue
                for own, other, share in ((i, j, 1.0), (j, i, s.anchor_neighbour_share)):
                    if not share:
                        continue
                    for k, (x, y, score) in enumerate(candidates[own]):
                        if math.isfinite(score):
                            evidence = score - self._score_at(names[other], x, y)
                            visible = self._visible_share(names[own], x, y)
                            evidence /= max(visible, s.anchor_visible_floor)
                            # Only the anchor's own candidates: an L5 that looks sacral is the
                            # VB3_08 case, where evidence against L5 shifted whole chains.
                            scale = against if own == i and evidence < 0 else weight
                            bonus[own][k] += share * scale * evidence
        return bonus

    def chain_solver(self, scale: float = 1.0) -> ChainSolver:
        """The chain problem of this image: candidates per chain vertebra and their scores."""
        return ChainSolver(self, self._chain_problem(), scale)

    def _chain_problem(self) -> ChainProblem:
        names = self.reference.chain
        s = self.settings
        candidates = [
            top_peaks(self.space, self.space.score_map(n), s.candidates, s.peak_separation_mm)
            for n in names
        ]
        typical = float(np.median([c[0][2] for c in candidates if c]))
        missing_unary = s.similarity_weight * s.missing_fraction * typical
        # An inner vertebra that matches nowhere (fracture, artefact) must not force the chain
        # to shift by a level: it may instead take a gap, one template step on from each
        # candidate below it, at the price of a poor match; a gap is flagged, never labelled.
        for i in range(1, len(names) - 1):
            if names[i] in self.vertebrae:
                tx, ty = self._template_step_vector(names[i - 1], names[i])
                candidates[i] = candidates[i] + [
                    (x + tx, y + ty, math.nan) for x, y, v in candidates[i - 1] if math.isfinite(v)
                ]
        return ChainProblem(
            names,
            candidates,
            missing_unary,
            s.gap_fraction * typical,
            self._anchor_bonus(names, candidates),
        )

    def chain(self) -> dict[str, Located]:
        s = self.settings
        problem = self._chain_problem()
        base = ChainSolver(self, problem)
        solver, best = max(
            ((solver, solver.best()) for solver in map(base.rescaled, s.scales or (1.0,))),
            key=lambda pair: pair[1].score,
        )
        names, candidates = solver.names, solver.candidates
        self.diagnostics["scale"] = solver.scale
        for anchor in self.domain.anchors:
            if anchor in names:
                i = names.index(anchor)
                choice = best.assignment[i]
                self.diagnostics["anchor"] = anchor
                self.diagnostics["anchor_evidence"] = (
                    math.nan if choice is None else float(problem.anchor_bonus[i][choice])
                )
        dissent = self._anchor_dissent(solver, best)
        if dissent is not None:
            self.diagnostics["count_disputed_by"] = dissent[0]
        located: dict[str, Located] = {}
        for i, name in enumerate(names):
            choice = best.assignment[i]
            if name not in self.vertebrae:
                continue  # context beyond the chain's ends, not labelled
            if choice is None:
                located[name] = Located(
                    None,
                    status=NEEDS_REVIEW,
                    reason="not found: outside the field of view or no match fits the chain",
                )
                continue
            x_mm, y_mm, score = candidates[i][choice]
            if not math.isfinite(score):
                located[name] = Located(
                    None,
                    status=NEEDS_REVIEW,
                    reason="no match where the chain expects it: the vertebra may be unusual "
                    "(fracture, artefact) or out of the imaging plane",
                )
                continue
            # The label is in doubt only if a chain that puts the vertebra at another level
            # scores almost as well: an alternative within half a step of this one (another
            # peak on the same body, or a gap there) agrees on the label (the criterion of
            # evaluation.score_image), so it is banned along with this candidate.
            same_level = self._same_level(solver, i, choice)
            margin = best.score - solver.best_without(i, same_level).score
            logit = s.confidence_slope * margin + s.confidence_offset
            confidence = 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))
            status, reason = OK, ""
            if confidence < s.min_confidence:
                status, reason = (
                    NEEDS_REVIEW,
                    f"uncertain: another chain places {name} elsewhere almost as well",
                )
            if dissent is not None and dissent[1].assignment[i] != choice:
                # Two counts disagree: no better than even odds, whatever the margin says.
                confidence = min(confidence, 0.5)
                status, reason = (
                    NEEDS_REVIEW,
                    f"count in doubt: {dissent[0]} matches better in a chain that places "
                    f"{name} elsewhere (transitional anatomy or a cut-off sacrum?)",
                )
            located[name] = Located(
                (x_mm, y_mm), score, status, reason, iterations=1, confidence=confidence
            )
        return located

    def _same_level(self, solver: ChainSolver, i: int, choice: int) -> list[int]:
        """Vertebra ``i``'s candidates within half the (scaled) template step to its nearest
        neighbour level of candidate ``choice``: places on the same vertebra, not another."""
        names = solver.names
        steps = [
            self.reference.step(names[min(i, j)], names[max(i, j)])[0]
            for j in (i - 1, i + 1)
            if 0 <= j < len(names)
        ]
        radius = 0.5 * solver.scale * min(steps)
        x, y = solver.candidates[i][choice][:2]
        return [
            k
            for k, (cx, cy, _) in enumerate(solver.candidates[i])
            if k == choice or math.hypot(cx - x, cy - y) < radius
        ]

    def _anchor_dissent(self, solver: ChainSolver, best) -> tuple[str, object] | None:
        """An anchor that votes against the best chain: (anchor, the best chain that puts the
        anchor elsewhere) when the anchor itself matches that other place better by more than
        ``anchor_dissent_margin`` (similarity units times weight), although the rest of the
        chain (the other levels' appearance and the geometry) outweighs it. The count then
        rests on the levels' likeness to the template's, against the one unique level in view:
        the two counts disagree, and a person should look. None when every anchor agrees."""
        limit = self.settings.anchor_dissent_margin
        if not math.isfinite(limit):
            return None
        for anchor in self.domain.anchors:
            if anchor not in solver.names:
                continue
            i = solver.names.index(anchor)
            choice = best.assignment[i]
            # Left out of view by the best chain, the anchor votes with its match in the best
            # chain that places it in view, against the cost of a vertebra out of view.
            other = solver.best_with(i) if choice is None else solver.best_without(i, choice)
            elsewhere = other.assignment[i]
            if elsewhere is None or not math.isfinite(other.score):
                continue
            here = solver.missing_unary if choice is None else solver.unary[i][choice]
            labelled = [
                j
                for j, name in enumerate(solver.names)
                if name in self.vertebrae
                and best.assignment[j] is not None
                and other.assignment[j] is not None
            ]
            # A vote on the count: the other chain moves every level placed in both, not just
            # the anchor and its neighbour (another candidate on the same sacrum, say), and
            # matches the anchor's neighbours (no gap there: an anchor deep in the sacrum,
            # where nothing looks like L5, must not outvote a chain that matches every level).
            moved = all(other.assignment[j] != best.assignment[j] for j in labelled)
            attached = all(
                math.isfinite(solver.candidates[j][other.assignment[j]][2])
                for j in (i - 1, i + 1)
                if 0 <= j < len(solver.names) and other.assignment[j] is not None
            )
            if moved and attached and solver.unary[i][elsewhere] - here > limit:
                return anchor, other
        return None

    # ----- discs -------------------------------------------------------------------------
    def discs(self, located: dict[str, Located]) -> dict[str, Located]:
        """Each disc between its two vertebrae, where the template puts it relative to them."""
        found = {}
        for disc, (upper, lower) in self.reference.discs.items():
            anchors = [
                n for n in (lower, upper) if n in located and located[n].position is not None
            ]
            if not anchors:
                found[disc] = Located(
                    None, status=NEEDS_REVIEW, reason=f"neither {upper} nor {lower} was located"
                )
                continue
            expected, span = self._disc_expectation(disc, lower, upper, located, anchors)
            if expected is None:
                found[disc] = Located(
                    None,
                    status=NEEDS_REVIEW,
                    reason="the template does not place this disc relative to its vertebrae",
                )
                continue
            radius = self.settings.disc_radius_fraction * span
            mask = (self.xs - expected[0]) ** 2 + (self.ys - expected[1]) ** 2 <= radius**2
            x, y, score = best_position(self.space.score_map(disc), mask)
            if not math.isfinite(score):
                found[disc] = Located(
                    None, status=NEEDS_REVIEW, reason="expected position outside the image"
                )
                continue
            status, reason = OK, ""
            doubtful = [n for n in (lower, upper) if n not in anchors or located[n].status != OK]
            if doubtful:
                status, reason = (
                    NEEDS_REVIEW,
                    f"adjacent vertebra {', '.join(doubtful)} needs review",
                )
            found[disc] = self._located(x, y, score, status=status, reason=reason)
        return found

    def _disc_expectation(self, disc, lower, upper, located, anchors):
        """Expected disc position and the vertebra step length it scales with (mm)."""
        positions = self.reference.positions_mm
        disc_t = positions.get(disc)
        if disc_t is None:
            return None, 0.0
        if len(anchors) == 2 and lower in positions and upper in positions:
            # Same place relative to the two vertebrae as on the template (a similarity map).
            (lx, ly), (ux, uy) = positions[lower], positions[upper]
            ax, ay = located[lower].position
            bx, by = located[upper].position
            t_vec, a_vec = complex(ux - lx, uy - ly), complex(bx - ax, by - ay)
            rel = complex(disc_t[0] - lx, disc_t[1] - ly) / t_vec
            point = complex(ax, ay) + rel * a_vec
            return (point.real, point.imag), abs(a_vec)
        anchor = anchors[0]
        if anchor not in positions:
            return None, 0.0
        ax, ay = located[anchor].position
        tx, ty = positions[anchor]
        span = 2 * math.dist(disc_t, positions[anchor])
        return (ax + disc_t[0] - tx, ay + disc_t[1] - ty), span

    # ----- entry ---------------------------------------------------------------------------
    def run(self) -> dict[str, Located]:
        strategy = self.settings.strategy
        if strategy == "plain":
            return self.plain()
        if strategy == "chain":
            vertebrae = self.chain()
        else:
            region = {
                "ordered": self._ordered_region,
                "restricted": self._restricted_region,
                "adaptive": self._adaptive_region,
            }[strategy]
            vertebrae = self.sequential(region)
        return {**vertebrae, **self.discs(vertebrae)}


def localize(
    fmap: FeatureMap,
    reference: TemplateReference,
    domain: DomainKnowledge,
    settings: SearchSettings | None = None,
) -> list[LandmarkResult]:
    """Locate every template landmark in the image whose features are ``fmap``.

    Returns one result per template landmark, in the template's order, positions in original
    image pixels (NaN when not found) with distance and angle to the previous landmark of the
    same kind in caudal-to-cranial order.
    """
    settings = settings or SearchSettings()
    localizer = Localizer(fmap, reference, domain, settings)
    located = localizer.run()
    return _results(localizer, located)


def _results(localizer: Localizer, located: dict[str, Located]) -> list[LandmarkResult]:
    space, reference, domain = localizer.space, localizer.reference, localizer.domain
    order = {name: domain.rank(name) for name in reference.vertebrae}
    for disc, (_upper, lower) in reference.discs.items():
        order[disc] = domain.rank(lower) + 0.5
    kinds = {ref.name: ref.kind for ref in reference.landmarks}
    results = []
    for ref in reference.labelled():
        item = located[ref.name]
        x = y = math.nan
        if item.position is not None:
            sx, sy = space.from_mm(*item.position)
            x, y = space.to_original(sx, sy)
        distance = angle = math.nan
        same_kind = sorted(
            (n for n in order if kinds[n] == ref.kind and order[n] < order[ref.name]),
            key=order.get,
        )
        if same_kind and item.position is not None:
            previous = located.get(same_kind[-1])
            if previous is not None and previous.position is not None:
                distance, angle = step_between(previous.position, item.position)
        confidence = item.confidence
        if math.isnan(confidence):
            confidence = 1.0 if item.status == OK else 0.0
        results.append(
            LandmarkResult(
                name=ref.name,
                kind=ref.kind,
                x=x,
                y=y,
                score=item.score,
                status=item.status,
                reason=item.reason,
                iterations=item.iterations,
                confidence=confidence,
                distance_to_previous_mm=distance,
                angle_to_previous_deg=angle,
            )
        )
    return results
